"""Where a benchmark's figures go: ``STEM.json`` (the data) and ``STEM.md`` (its table)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from n2n_infer.files import write_text_atomic


def write_results(stem: Path, result: dict[str, Any], table: str) -> None:
    """Write ``result`` to ``STEM.json`` and ``table`` to ``STEM.md``, each atomically.

    Creates the folder when missing.

    Raises:
        OSError: the folder cannot be created or written.
        TypeError: ``result`` holds something JSON cannot encode.
    """
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(stem.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    write_text_atomic(stem.with_suffix(".md"), table)
