"""Remove torch's per-node metadata (Python stack traces with the exporting machine's source
paths) from exported ONNX files, in place; the computation and the model's own metadata are
unchanged, which the script checks by comparing the graphs without node metadata.

    .venv/bin/python scripts/strip_node_metadata.py models/photo.onnx models/seedlike.onnx

``n2n-export onnx`` strips them itself (``export.exporter.strip_node_metadata``); this is
for files exported before it did.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import onnx

from n2n_export.exporter import strip_node_metadata
from n2n_infer.files import write_atomic


def strip_file(path: Path) -> int:
    """Strip ``path`` in place; returns the number of entries removed (0: left untouched)."""
    model = onnx.load(str(path))
    props = [(p.key, p.value) for p in model.metadata_props]
    removed = strip_node_metadata(model)
    if removed:
        onnx.checker.check_model(model, full_check=True)
        assert [(p.key, p.value) for p in model.metadata_props] == props
        write_atomic(path, lambda f: f.write(model.SerializeToString()))
    return removed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    for path in parser.parse_args().models:
        print(f"{path}: {strip_file(path)} node metadata entries removed")


if __name__ == "__main__":
    main()
