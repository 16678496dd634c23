"""``n2n-train sweep``: runs, skips, resumes and tabulates a tiny spec; refuses bad specs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from n2n_train.cli import main
from n2n_train.data import save_course_pairs
from n2n_train.plots import sweep_scale
from n2n_train.sweep import (
    MARKER,
    SweepError,
    fit_args,
    load_spec,
    parse_set,
    seed_spread,
    spread_table,
)

BASE = """
[base]
course = "data/train_data.pkl"
course_val = "data/val_data.pkl"
features = [4, 8]
epochs = 1
batch_size = 16
"""
RUNS = """
[[runs]]
name = "a"
label = "run A"
study_psnr = 20.5

[[runs]]
name = "b"
pooling = "max"
"""


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    """A folder with tiny course-format data (64 training, 16 validation 32×32 pairs) and a spec."""
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(60, 200, (80, 3, 8, 8), generator=gen, dtype=torch.uint8)
    clean = clean.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)

    def noisy() -> torch.Tensor:
        noise = torch.randint(-30, 31, clean.shape, generator=gen)
        return (clean.int() + noise).clamp(0, 255).to(torch.uint8)

    data = tmp_path / "data"
    data.mkdir()
    save_course_pairs(data / "train_data.pkl", noisy()[:64], noisy()[:64])
    save_course_pairs(data / "val_data.pkl", noisy()[64:], clean[64:])
    (tmp_path / "spec.toml").write_text('title = "tiny"\n' + BASE + RUNS)
    return tmp_path


def _sweep(*args: str) -> object:
    return CliRunner().invoke(main, ["sweep", *args], catch_exceptions=False)


def _fit_calls(run_dir: Path) -> list[str]:
    return [line for line in (run_dir / "fit.log").read_text().splitlines() if line[:2] == "$ "]


def test_sweep_runs_skips_and_rescores(spec_dir: Path):
    out = spec_dir / "out"
    result = _sweep(str(spec_dir / "spec.toml"), str(out), "--jobs", "2")
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "sweep.json").read_text())
    assert [r["name"] for r in doc["runs"]] == ["a", "b"]
    for row in doc["runs"]:
        assert row["status"] == "done" and row["state_before"] == "new"
        assert row["best_epoch"] == 1 and row["epochs"] == 1
        assert isinstance(row["psnr"], float) and isinstance(row["psnr_global_mse"], float)
        assert row["noisy_psnr"] > 0 and isinstance(row["diverged"], bool)
    assert doc["runs"][1]["changes"] == {"pooling": "max"}
    table = (out / "sweep.md").read_text()
    assert "| run A | (base) | 20.50 |" in table and "| b | pooling=max | – |" in table
    assert all(line.count("|") == 9 for line in table.splitlines() if line.startswith("|"))

    # a rerun trains nothing: both are done
    result = _sweep(str(spec_dir / "spec.toml"), str(out), "--jobs", "2")
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "sweep.json").read_text())
    assert [r["state_before"] for r in doc["runs"]] == ["done", "done"]
    assert len(_fit_calls(out / "a")) == len(_fit_calls(out / "b")) == 1

    # trained but not scored (the sweep stopped between the two): scored, not retrained
    (out / "a" / MARKER).unlink()
    result = _sweep(str(spec_dir / "spec.toml"), str(out))
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["runs"][0]["state_before"] == "score" and doc["runs"][0]["status"] == "done"
    assert len(_fit_calls(out / "a")) == 1

    # --collect writes the tables from the markers alone
    (out / "sweep.md").unlink()
    result = _sweep(str(spec_dir / "spec.toml"), str(out), "--collect")
    assert result.exit_code == 0 and "| run A |" in (out / "sweep.md").read_text()
    result = _sweep(str(spec_dir / "spec.toml"), str(spec_dir / "empty"), "--collect")
    table = (spec_dir / "empty" / "sweep.md").read_text()
    assert "| run A | (base) | 20.50 | not run | – | – | – | – |" in table
    assert all(line.count("|") == 9 for line in table.splitlines() if line.startswith("|"))

    # a finished run whose options changed is refused, naming the marker
    changed = spec_dir / "changed.toml"
    changed.write_text(BASE + RUNS.replace('pooling = "max"', 'pooling = "avg"'))
    result = CliRunner().invoke(main, ["sweep", str(changed), str(out)])
    assert result.exit_code == 2
    assert str(out / "b" / MARKER) in result.output and "other options" in result.output

    # the figure
    png = spec_dir / "sweep.png"
    result = CliRunner().invoke(main, ["sweep-plot", str(png), str(out / "sweep.json")])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    # another pass beside it (here: the same runs at another scale) adds a bar per run
    other = json.loads((out / "sweep.json").read_text())
    other["base"]["limit_pairs"] = 20
    # run b was not run there
    other["runs"] = [{**r, "psnr": r["psnr"] - 1.0} for r in other["runs"][:1]]
    (spec_dir / "other.json").write_text(json.dumps(other))
    png3 = spec_dir / "sweep3.png"
    beside = ["--beside", str(spec_dir / "other.json")]
    args = ["sweep-plot", str(png3), str(out / "sweep.json"), *beside]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert png3.read_bytes()[:4] == b"\x89PNG" and png3.read_bytes() != png.read_bytes()
    assert sweep_scale(other) == "20 pairs" and sweep_scale({"base": {}}) == "all pairs"
    # more --beside files than sweeps, or a file that is no sweep.json: exit 2, naming it
    result = CliRunner().invoke(main, [*args, "--beside", str(spec_dir / "other.json")])
    assert result.exit_code == 2 and "--beside: 2 files for 1 sweeps" in result.output
    (spec_dir / "not_a_sweep.json").write_text("[1, 2]")
    result = CliRunner().invoke(main, [*args[:3], "--beside", str(spec_dir / "not_a_sweep.json")])
    assert result.exit_code == 2 and "not_a_sweep.json: not a sweep.json" in result.output


def test_sweep_says_each_run_as_it_starts_and_ends(spec_dir: Path):
    """A line per run on stderr as it starts and as it ends (its place, name, PSNR or
    status); the tables alone on stdout."""
    out = spec_dir / "out"
    result = _sweep(str(spec_dir / "spec.toml"), str(out), "--only", "b")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == "sweep: [1/1] b: training"
    assert re.fullmatch(
        r"sweep: \[1/1\] b: done, PSNR \d+\.\d\d dB \(noisy input \d+\.\d\d dB\), "
        r"best epoch 1 of 1(, diverged: .*)?",
        lines[1],
    ), lines
    assert "sweep:" not in result.stdout and "| b | pooling=max |" in result.stdout
    again = _sweep(str(spec_dir / "spec.toml"), str(out))
    assert again.exit_code == 0, again.output
    said = again.stderr.splitlines()
    assert "sweep: [1/2] a: training" in said
    assert any(line.startswith("sweep: [2/2] b: done already, PSNR") for line in said)
    assert any(line.startswith("sweep: [1/2] a: done, PSNR") for line in said)


def test_a_failed_run_is_said_with_its_log(spec_dir: Path, tmp_path: Path):
    (spec_dir / "data" / "train_data.pkl").write_bytes(b"not a course file")
    result = CliRunner().invoke(main, ["sweep", str(spec_dir / "spec.toml"), str(tmp_path)])
    assert result.exit_code == 1
    assert f"sweep: [1/2] a: failed (exit 2; see {tmp_path / 'a' / 'fit.log'})" in result.stderr


def test_sweep_resumes_a_stopped_run(spec_dir: Path):
    """A run folder with an unfinished last.pt (as a killed run leaves it) is resumed."""
    out = spec_dir / "out"
    spec = load_spec(spec_dir / "spec.toml", {"limit_pairs": 40})
    stopped = [*fit_args(spec.runs[0].options), "--out", str(out / "a"), "--no-progress"]
    result = CliRunner().invoke(main, ["fit", *stopped], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    first = (out / "a" / "metrics.jsonl").read_text().splitlines()
    assert len(first) == 1

    result = _sweep(
        str(spec_dir / "spec.toml"),
        str(out),
        *("--jobs", "2", "--set", "epochs=2", "--set", "limit_pairs=40"),
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "sweep.json").read_text())
    assert [r["state_before"] for r in doc["runs"]] == ["resume", "new"]
    assert [r["epochs"] for r in doc["runs"]] == [2, 2]
    assert [r["pairs"] for r in doc["runs"]] == [40, 40]
    assert _fit_calls(out / "a")[0].endswith("--resume")
    rows = (out / "a" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2 and rows[0] == first[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[base]\nepochs = 1\n[[runs]]\nname = "a"\ncolour = "red"\n', "unknown key 'colour'"),
        (BASE + '[[runs]]\nname = "a"\n[[runs]]\nname = "a"\n', "duplicate run name 'a'"),
        ('[[runs]]\nname = "a"\n', "missing [base]"),
        (BASE, "expected one or more [[runs]]"),
        (BASE + '[[runs]]\nname = "../up"\n', "plain folder name"),
        (BASE + '[[runs]]\nname = "a"\npooling = "median"\n', "run 'a'"),
        (BASE + '[[runs]]\nname = "a"\nthreads = 4\n', "set by the sweep itself"),
        (BASE + "[[runs]\n", "not a readable TOML"),
        ('titel = "x"\n' + BASE + RUNS, "unknown top-level keys ['titel']"),
    ],
)
def test_bad_specs_exit_2_naming_the_file(tmp_path: Path, text: str, expected: str):
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    with pytest.raises(SweepError, match=r"bad\.toml"):
        load_spec(spec)
    result = CliRunner().invoke(main, ["sweep", str(spec), str(tmp_path / "out")])
    assert result.exit_code == 2
    assert str(spec) in result.output and expected in result.output
    assert not (tmp_path / "out").exists()


def test_parse_set_reads_toml_values_else_strings():
    assert parse_set(["epochs=3", "batch-norm=true", "course=~/d/train_data.pkl"]) == {
        "epochs": 3,
        "batch_norm": True,
        "course": "~/d/train_data.pkl",
    }
    with pytest.raises(SweepError, match="KEY=VALUE"):
        parse_set(["epochs"])


def test_the_studys_specs_load():
    root = Path(__file__).resolve().parents[2] / "studies"
    one, two = load_spec(root / "round1.toml"), load_spec(root / "round2.toml")
    assert [r.study_psnr for r in one.runs][:9] == [
        15.99, 24.20, 17.56, 24.31, 16.03, 14.60, 17.18, 15.04, 14.03
    ]  # fmt: skip
    assert [r.study_psnr for r in two.runs] == [
        24.53, 24.53, 24.67, 23.40, 12.68, 24.45, 24.48, 23.38
    ]  # fmt: skip
    assert one.base["batch_norm"] is True and two.base["batch_norm"] is False


def test_limit_pairs_beyond_the_file_is_refused(spec_dir: Path):
    data = spec_dir / "data" / "train_data.pkl"
    args = ["fit", "--course", str(data), "--out", str(spec_dir / "o"), "--limit-pairs", "65"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert str(data) in result.output and "more than its 64 pairs" in result.output
    args = ["fit", "--photos", str(spec_dir), "--out", str(spec_dir / "o"), "--limit-pairs", "9"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "--limit-pairs needs --course" in result.output


def test_a_bundled_init_name_is_kept_and_own_data_folders_are_resolved(tmp_path: Path):
    spec = tmp_path / "spec.toml"
    spec.write_text('[base]\ninit = "photo"\nbursts = "frames"\n\n[[runs]]\nname = "a"\n')
    base = load_spec(spec).base
    assert base["init"] == "photo"
    assert base["bursts"] == str((tmp_path / "frames").resolve())


def test_seed_spread_groups_runs_that_differ_only_by_their_seed(tmp_path):
    """Across documents (a table's row at seed 0, its other seeds in another spec); runs
    not finished, and settings run at one seed only, are left out."""
    base = {"features": "16,32", "seed": 0, "lr": 0.01}

    def run(name, label, psnr, status="done", **changes):
        return {"name": name, "label": label, "changes": changes, "status": status, "psnr": psnr}

    table = {
        "base": base,
        "runs": [run("b", "baseline", 23.0), run("lr", "lr 0.001", 21.0, lr=0.001)],
    }
    seeds = {
        "base": {**base, "seed": 5},
        "runs": [
            run("b1", "baseline, seed 1", 23.4, seed=1),
            run("b2", "baseline, seed 2", 22.8, seed=2),
            run("b3", "baseline, seed 3", None, status="not run", seed=3),
            run("b5", "baseline, seed 5", 23.2),  # the base's own seed
            run("lr1", "lr 0.001, seed 1", 20.0, lr=0.001, seed=1),
            run("f1", "features 8, seed 1", 19.0, features="8", seed=1),
        ],
    }
    rows = seed_spread([table, seeds])
    assert [(r["label"], r["n"], r["seeds"]) for r in rows] == [
        ("baseline", 4, [0, 1, 2, 5]),
        ("lr 0.001", 2, [0, 1]),
    ]
    assert rows[0]["mean"] == pytest.approx(23.1) and rows[0]["min"] == 22.8
    assert rows[0]["std"] == pytest.approx(0.258199, abs=1e-6) and rows[1]["max"] == 21.0
    assert (
        spread_table(rows).splitlines()[2]
        == "| baseline | 0,1,2,5 | 23.10 | 0.26 | 22.80 | 23.40 |"
    )

    for doc, name in ((table, "t.json"), (seeds, "s.json")):
        (tmp_path / name).write_text(json.dumps(doc))
    result = CliRunner().invoke(
        main, ["sweep-spread", str(tmp_path / "t.json"), str(tmp_path / "s.json")]
    )
    assert result.exit_code == 0 and "| lr 0.001 | 0,1 | 20.50 |" in result.output
    result = CliRunner().invoke(main, ["sweep-spread", str(tmp_path / "t.json")])
    assert result.exit_code == 1 and "no runs that differ only by their seed" in result.output


def test_only_trains_the_runs_named_and_tables_every_run(spec_dir: Path):
    out = spec_dir / "out"
    bad = _sweep(str(spec_dir / "spec.toml"), str(out), "--only", "c")
    assert bad.exit_code == 2 and "no run named 'c'; its runs: a, b" in bad.output
    assert not (out / "a").exists() and not (out / "b").exists()
    result = _sweep(str(spec_dir / "spec.toml"), str(out), "--only", "b")
    assert result.exit_code == 0, result.output
    assert not (out / "a").exists() and (out / "b" / MARKER).is_file()
    rows = {r["name"]: r for r in json.loads((out / "sweep.json").read_text())["runs"]}
    assert rows["a"]["status"] == "not run" and rows["b"]["status"] == "done"
    result = _sweep(str(spec_dir / "spec.toml"), str(out), "--only", "a")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads((out / "sweep.json").read_text())["runs"]}
    assert rows["a"]["state_before"] == "new" and rows["b"]["status"] == "done"
    assert "state_before" not in rows["b"]  # read from its marker, not brought to done again
    assert len(_fit_calls(out / "b")) == 1  # b was not trained again
