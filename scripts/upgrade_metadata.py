"""Bring exported models to metadata format 2 without exporting them again.

Usage: python scripts/upgrade_metadata.py [--check] [MODEL.onnx ...]

Format 2 files state their own facts (architecture, channels, receptive
radius, grey handling, noise in words: ``n2n_infer/metadata.py``). For each
model (default: ``models/*.onnx``) this finds the checkpoint whose sha256 its
metadata records (``models/*.pt``, ``bench/models/*.pt`` or beside the model),
adds the facts that :func:`export.exporter.stated_facts` gives for it with
:func:`export.exporter.update_metadata`, checks that the graph (hence every
weight and output) is byte for byte the same, and writes the model card again
(:func:`export.card.write_model_card`). A model already at format 2 is left as
it is. With ``--check`` it only lists the models still below format 2 (exit
status 1 if any).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from n2n_export.card import write_model_card  # noqa: E402
from n2n_export.exporter import stated_facts, update_metadata  # noqa: E402
from n2n_infer import metadata as md  # noqa: E402
from n2n_infer.files import sha256_file  # noqa: E402
from n2n_train.checkpoint import load_checkpoint  # noqa: E402


def _props(model: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(model)).metadata_props}


def _graph_bytes(model: Path) -> bytes:
    import onnx

    return onnx.load(str(model)).graph.SerializeToString()


def format_version(model: Path) -> int:
    """The metadata format of ``model`` (0 when it does not say)."""
    try:
        return int(_props(model).get(md.KEY_FORMAT_VERSION, "0"))
    except ValueError:
        return 0


def find_checkpoint(model: Path) -> Path:
    """The checkpoint whose sha256 ``model``'s metadata records.

    Raises:
        FileNotFoundError: no checkpoint in the places searched has it.
    """
    recorded = _props(model).get(md.KEY_CHECKPOINT_SHA256, "")
    places = [model.parent, REPO / "models", REPO / "bench" / "models"]
    for pt in sorted({p.resolve() for place in places for p in place.glob("*.pt")}):
        if sha256_file(pt) == recorded:
            return pt
    raise FileNotFoundError(f"{model}: no checkpoint with sha256 {recorded or '(none)'} found")


def upgrade(model: Path) -> bool:
    """Add the format-2 facts to ``model`` and write its card; False if it had them already.

    Raises:
        FileNotFoundError: its checkpoint cannot be found.
        AssertionError: the graph changed (it cannot: only metadata is rewritten).
    """
    if format_version(model) >= 2:
        return False
    facts = stated_facts(load_checkpoint(find_checkpoint(model)))
    graph = _graph_bytes(model)
    update_metadata(model, facts)
    assert _graph_bytes(model) == graph, f"{model}: the graph changed"
    write_model_card(model)
    return True


def main() -> int:
    """Upgrade (or with ``--check``, list) the models; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path, help="Default: models/*.onnx.")
    parser.add_argument("--check", action="store_true", help="Only list the models below 2.")
    args = parser.parse_args()
    models = args.models or sorted((REPO / "models").glob("*.onnx"))
    if args.check:
        old = [m for m in models if format_version(m) < md.FORMAT_VERSION]
        print("\n".join(f"{m}: format {format_version(m)}" for m in old) or "all at format 2")
        return 1 if old else 0
    for model in models:
        done = upgrade(model)
        print(f"{model}: {'upgraded to format 2' if done else 'already at format 2'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
