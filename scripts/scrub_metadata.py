"""Make the shipped files name their data and files, never a path of the machine that made them.

Usage: python scripts/scrub_metadata.py [--check]

The checkpoints ``models/*.pt`` and ``bench/models/*.pt`` were trained before
summaries recorded names: their summaries held absolute paths (the photo
folder, the course files, the run folders of ``--init`` and of the averaged
snapshots). This rewrites each summary with
:func:`export.exporter.portable_summary` (and the photo folder's size, which
the old summaries did not record), leaving the weights as they are (checked);
then rewrites each ``models/*.onnx``'s training summary and checkpoint sha256
to match (the graph, hence every output, is untouched), re-runs the parity
check of ``scripts/export_shipped.sh`` on ``examples/clean`` into
``models/*.parity.json`` and writes the cards ``models/*.md`` again.
With ``--check`` it only lists the paths still there (exit status 1 if any).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from n2n_export.card import write_model_card  # noqa: E402
from n2n_export.exporter import portable_summary, update_metadata  # noqa: E402
from n2n_infer import metadata as md  # noqa: E402
from n2n_infer.files import sha256_file, write_atomic  # noqa: E402

#: Photo folders -> their number of photos, which the old summaries did not record:
#: the 66 TRAIN_CORE photos of training/train_photos.tsv less the 4 behind examples/
#: (scripts/photo_corpus.sh).
PHOTO_FOLDER_FILES = {"TRAIN_CORE_minus_examples": 62}


def checkpoints() -> list[Path]:
    """The committed checkpoints."""
    return sorted((REPO / "models").glob("*.pt")) + sorted((REPO / "bench" / "models").glob("*.pt"))


def scrubbed(summary: dict[str, Any]) -> dict[str, Any]:
    """``summary`` without paths, with the photo folder's size where it is known."""
    out = portable_summary(summary)
    data = out.get("data") or {}
    if data.get("source") == "photos" and data.get("name") in PHOTO_FOLDER_FILES:
        data.setdefault("files", PHOTO_FOLDER_FILES[data["name"]])
    return out


def rewrite_checkpoint(path: Path) -> None:
    """Replace the summary of the checkpoint at ``path``; the weights must stay identical."""
    raw = torch.load(path, map_location="cpu", weights_only=True)
    raw["summary"] = scrubbed(raw["summary"])
    write_atomic(path, lambda f: torch.save(raw, f))
    again = torch.load(path, map_location="cpu", weights_only=True)
    assert again["summary"] == raw["summary"]
    for name, tensor in raw["state_dict"].items():
        assert torch.equal(again["state_dict"][name], tensor), f"{path.name}: {name} changed"


def rewrite_model(model: Path, by_sha: dict[str, Path]) -> Path:
    """Point ``model``'s metadata at its rewritten checkpoint; return that checkpoint."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    checkpoint = by_sha[props[md.KEY_CHECKPOINT_SHA256]]
    summary = torch.load(checkpoint, map_location="cpu", weights_only=True)["summary"]
    update_metadata(
        model,
        {
            md.KEY_TRAINING: json.dumps(portable_summary(summary), default=str),
            md.KEY_CHECKPOINT_SHA256: sha256_file(checkpoint),
        },
    )
    return checkpoint


def parity_and_card(model: Path, checkpoint: Path) -> None:
    """The parity report of ``scripts/export_shipped.sh`` and the card, written again."""
    report = model.with_suffix(".parity.json")
    command = [sys.executable, "-m", "n2n_export.cli", "parity", str(checkpoint.relative_to(REPO))]
    command += [str(model.relative_to(REPO)), "--images", "examples/clean"]
    command += ["--noise", "gaussian:25", "--report", str(report.relative_to(REPO))]
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    write_model_card(model)


def leftover_paths() -> list[str]:
    """``file: key`` for every summary or metadata entry that still holds a path."""
    import onnx

    found = []
    for pt in checkpoints():
        summary = torch.load(pt, map_location="cpu", weights_only=True)["summary"]
        if portable_summary(summary) != summary:
            found.append(f"{pt.relative_to(REPO)}: summary")
    for model in sorted((REPO / "models").glob("*.onnx")):
        for p in onnx.load(str(model)).metadata_props:
            if p.key == md.KEY_TRAINING and portable_summary(json.loads(p.value)) != json.loads(
                p.value
            ):
                found.append(f"{model.relative_to(REPO)}: {p.key}")
    return found


def main() -> int:
    """Rewrite (or with ``--check``, inspect) the shipped files; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Only list the paths left.")
    args = parser.parse_args()
    if args.check:
        found = leftover_paths()
        print("\n".join(found) or "no paths in the shipped summaries and metadata")
        return 1 if found else 0
    old = {sha256_file(pt): pt for pt in checkpoints()}
    for pt in checkpoints():
        rewrite_checkpoint(pt)
    for model in sorted((REPO / "models").glob("*.onnx")):
        checkpoint = rewrite_model(model, old)
        parity_and_card(model, checkpoint)
        print(f"{model.relative_to(REPO)}: metadata of {checkpoint.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
