"""Summaries, ONNX metadata and model cards name files by name and checksum, never by path.

A model made in a temporary folder is trained (photos and course data),
averaged, fine-tuned and exported; no string it carries may hold that folder,
the home folder, or any absolute path.
"""

import json
import re
from pathlib import Path

import onnx
import pytest
import torch
from click.testing import CliRunner

from n2n_export.cli import main as export_main
from n2n_export.exporter import portable_summary
from n2n_infer.files import sha256_file
from n2n_train.checkpoint import load_checkpoint, save_checkpoint
from n2n_train.cli import main as train_main
from n2n_train.config import UNetConfig
from n2n_train.unet import UNet

#: An absolute path inside a text: '/x', '~' or 'C:\' at the start or after a separator.
_ABSOLUTE_IN_TEXT = re.compile(r"(?:^|[\s\"'`=(\[,])(/[^\s/]|~|[A-Za-z]:[\\/])")


def absolute_paths(text: str, allow_home: bool = False) -> list[str]:
    """The places in ``text`` that look like absolute paths, with some context.

    ``allow_home`` lets ``~`` (anyone's home, as in a command to run) pass.
    """
    return [
        text[max(0, m.start() - 30) : m.end() + 50]
        for m in _ABSOLUTE_IN_TEXT.finditer(text)
        if not (allow_home and m.group(1) == "~")
    ]


def assert_no_paths(text: str, *folders: Path, what: str = "") -> None:
    """Fail when ``text`` holds an absolute path or any of ``folders`` (and the home folder)."""
    assert not absolute_paths(text), (what, absolute_paths(text))
    home = str(Path.home())
    for folder in (*folders, Path(home) if home not in ("/", "") else None):
        if folder is not None:
            assert str(folder) not in text, (what, str(folder))


def onnx_texts(model: Path) -> dict[str, str]:
    """The ONNX file's metadata, key -> value."""
    return {p.key: p.value for p in onnx.load(str(model)).metadata_props}


def _train(*args):
    result = CliRunner().invoke(train_main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _export(*args):
    result = CliRunner().invoke(export_main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


FIT = ["--preset", "tiny", "--optimizer", "adam", "--batch-size", "4", "--no-progress"]
PHOTO_FIT = [*FIT, "--noise", "gaussian:25", "--steps-per-epoch", "2", "--patch-size", "32"]


@pytest.fixture(scope="module")
def made(tmp_path_factory, photos_dir):
    """Runs and exports made in a temporary folder: photos, average, fine-tune, course data."""
    root = tmp_path_factory.mktemp("made_here")
    run, tuned, course_run = root / "run", root / "tuned", root / "course_run"
    photos = ["fit", "--photos", photos_dir, *PHOTO_FIT]
    _train(*photos, "--out", run, "--epochs", "2", "--snapshot-every", "1")
    # validation of the average finds the data through the run folder's local_paths.json
    _train("average", run / "averaged.pt", run / "snapshots")
    _train(*photos, "--out", tuned, "--epochs", "1", "--init", run / "averaged.pt")
    course = root / "course"
    course.mkdir()
    gen = torch.Generator().manual_seed(0)
    for name in ("train.pkl", "val.pkl"):
        pair = [torch.randint(0, 256, (40, 3, 32, 32), generator=gen, dtype=torch.uint8)]
        torch.save((pair[0], pair[0].flip(0)), course / name)
    pairs = ["--course", course / "train.pkl", "--course-val", course / "val.pkl"]
    _train("fit", *pairs, "--out", course_run, *FIT, "--epochs", "1")
    out = root / "exported"
    recipe = ["--reproduce", "n2n-train fit --photos photos --out run"]
    _export("onnx", tuned / "best.pt", out / "tuned.onnx", "--images", photos_dir, *recipe)
    _export("onnx", course_run / "best.pt", out / "course.onnx")
    runs = (run, tuned, course_run)
    return {"root": root, "photos": photos_dir, "course": course, "out": out, "runs": runs}


def test_summaries_name_the_data_and_files_never_their_paths(made):
    checkpoints = [p for r in made["runs"] for p in sorted(r.rglob("*.pt"))]
    assert len(checkpoints) >= 7
    for pt in checkpoints:
        raw = torch.load(pt, map_location="cpu", weights_only=True)
        assert_no_paths(json.dumps(raw["summary"]), made["root"], made["photos"], what=str(pt))
    run, tuned, course_run = made["runs"]
    photos = load_checkpoint(run / "best.pt").summary["data"]
    assert photos == {"source": "photos", "name": made["photos"].name, "files": 6}
    # where the data and --init lie stays in the run folder, outside every checkpoint
    local = json.loads((tuned / "local_paths.json").read_text())
    assert local == {
        "photos": str(made["photos"].resolve()),
        "init": str((run / "averaged.pt").resolve()),
    }
    averaged = load_checkpoint(run / "averaged.pt").summary["averaged"]
    assert [c["file"] for c in averaged["checkpoints"]] == ["epoch-001.pt", "epoch-002.pt"]
    assert averaged["validation"]["val_loss"] > 0  # the data was found again
    start = load_checkpoint(tuned / "best.pt").summary
    assert start["data"]["init"] == "averaged.pt"
    assert start["init"]["sha256"] == sha256_file(run / "averaged.pt")
    data = load_checkpoint(course_run / "best.pt").summary["data"]
    assert data["name"] == "train.pkl" and data["val_name"] == "val.pkl"
    assert data["sha256"] == sha256_file(made["course"] / "train.pkl")
    assert data["val_sha256"] == sha256_file(made["course"] / "val.pkl")
    assert data["pairs"] == 40


def test_exported_metadata_and_cards_hold_no_paths(made):
    for name in ("tuned", "course"):
        model = made["out"] / f"{name}.onnx"
        for key, value in onnx_texts(model).items():
            assert_no_paths(value, made["root"], made["photos"], what=f"{name}.onnx {key}")
        card = model.with_suffix(".md").read_text()
        assert_no_paths(card, made["root"], made["photos"], what=f"{name}.md")
    card = (made["out"] / "tuned.md").read_text()
    assert f"clean photos `{made['photos'].name}` (6 photos)" in card
    assert (
        "course-format pairs `train.pkl` (40 pairs, sha256 `"
        in (made["out"] / "course.md").read_text()
    )


def test_the_exporter_drops_the_paths_of_older_checkpoints(tmp_path):
    """Checkpoints from before names replaced paths export with names only."""
    summary = {
        "noise": "gaussian:25",
        "data": {
            "source": "course",
            "path": str(tmp_path / "d" / "train_data.pkl"),
            "val_path": "C:\\Users\\me\\val_data.pkl",
            "init": "~/runs/a/best.pt",
        },
        "averaged": {"count": 1, "checkpoints": [{"file": str(tmp_path / "epoch-001.pt")}]},
    }
    assert portable_summary(summary)["data"] == {
        "source": "course",
        "name": "train_data.pkl",
        "val_name": "val_data.pkl",
        "init": "best.pt",
    }
    save_checkpoint(tmp_path / "old.pt", UNet(UNetConfig(features=(8, 16))), summary)
    _export("onnx", tmp_path / "old.pt", tmp_path / "old.onnx")
    for key, value in onnx_texts(tmp_path / "old.onnx").items():
        assert_no_paths(value, tmp_path, what=key)
    assert_no_paths((tmp_path / "old.md").read_text(), tmp_path, what="old.md")
    assert "course-format pairs `train_data.pkl`" in (tmp_path / "old.md").read_text()


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("/data/n2n/photos", True),
        ('{"file": "/mnt/me/a.pt"}', True),
        ("run at ~/x", True),
        ("C:\\Users\\me", True),
        ("gaussian:0-50, photos also at 1/2 … 1/8 size", False),
        ("`noisy` → `denoised` http://example.org", False),
    ],
)
def test_the_path_detector(text, found):
    assert bool(absolute_paths(text)) is found
