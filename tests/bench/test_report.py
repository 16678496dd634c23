"""bench/report.py: the one place a benchmark writes its JSON and its table."""

import json

from bench.report import write_results


def test_results_go_to_json_and_markdown_beside_each_other(tmp_path):
    stem = tmp_path / "new" / "memory"
    write_results(stem, {"rows": [1, 2], "machine": "x"}, "| a |\n")
    assert json.loads(stem.with_suffix(".json").read_text()) == {"rows": [1, 2], "machine": "x"}
    assert stem.with_suffix(".md").read_text() == "| a |\n"
    assert sorted(p.name for p in stem.parent.iterdir()) == ["memory.json", "memory.md"]
