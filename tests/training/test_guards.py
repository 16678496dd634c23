"""Training, export and sweep guards found by a black-box review: nothing a user has is
replaced unasked, no run goes on with other data or options, no untrusted file
allocates what its config asks before its weights are checked, and bad values
stop with one line and exit status 2."""

from __future__ import annotations

import json
import resource
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from n2n_export.cli import main as export_main
from n2n_train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from n2n_train.cli import main
from n2n_train.config import UNetConfig
from n2n_train.plots import read_metrics
from n2n_train.sweep import STARTED, SweepError, load_spec, marker_options, run_state
from n2n_train.unet import UNet
from tests.conftest import synthetic_photo


def _fit(*args: object):
    return CliRunner().invoke(main, ["fit", *(str(a) for a in args)], catch_exceptions=False)


TINY = ("--preset", "tiny", "--steps-per-epoch", "2", "--batch-size", "4", "--patch-size", "32")


# --- a run folder is not replaced unasked --------------------------------------------------


def test_fit_refuses_a_folder_that_holds_a_run_unless_resumed_or_overwritten(tmp_path, photos_dir):
    out = tmp_path / "run"
    first = _fit(
        "--photos",
        photos_dir,
        "--out",
        out,
        *TINY,
        "--epochs",
        "1",
        "--snapshot-every",
        "1",
        "--no-progress",
    )
    assert first.exit_code == 0, first.output
    best = (out / "best.pt").read_bytes()
    again = _fit("--photos", photos_dir, "--out", out, *TINY, "--epochs", "1", "--no-progress")
    assert again.exit_code == 2 and "already holds a run (best.pt, last.pt)" in again.output
    assert (out / "best.pt").read_bytes() == best
    both = _fit("--photos", photos_dir, "--out", out, *TINY, "--resume", "--overwrite")
    assert both.exit_code == 2 and "not both" in both.output
    assert (out / "snapshots" / "epoch-001.pt").is_file()
    fresh = _fit(
        "--photos",
        photos_dir,
        "--out",
        out,
        *TINY,
        "--epochs",
        "1",
        "--seed",
        "1",
        "--overwrite",
        "--no-progress",
    )
    assert fresh.exit_code == 0, fresh.output
    assert not (out / "snapshots").exists() or not list((out / "snapshots").glob("*.pt"))
    assert load_checkpoint(out / "best.pt").summary["train_config"]["seed"] == 1


def test_resume_refuses_other_training_data(tmp_path, photos_dir):
    out = tmp_path / "run"
    assert (
        _fit(
            "--photos", photos_dir, "--out", out, *TINY, "--epochs", "1", "--no-progress"
        ).exit_code
        == 0
    )
    paths_before = (out / "local_paths.json").read_text()
    other = tmp_path / "other"
    other.mkdir()
    for i, p in enumerate(sorted(photos_dir.iterdir())[:4]):
        (other / f"x{i}.png").write_bytes(p.read_bytes())
    result = _fit(
        "--photos", other, "--out", out, *TINY, "--epochs", "2", "--resume", "--no-progress"
    )
    assert result.exit_code == 2 and "trained on other data" in result.output, result.output
    assert (out / "local_paths.json").read_text() == paths_before  # not rewritten by a refusal


# --- bad values: one line, exit 2 ----------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--patch-size", "33"), "must be a multiple of the model's stride"),
        (("--lr", "nan"), "'--lr': expected a finite number, got 'nan'"),
        (("--lr", "-0.1"), "'--lr': -0.1 is not in the range x>0"),
        (("--steps-per-epoch", "0"), "--steps-per-epoch"),
        (("--threads", "-1"), "--threads"),
    ],
)
def test_bad_numbers_stop_with_one_line(tmp_path, photos_dir, extra, message):
    args = ["--photos", photos_dir, "--out", tmp_path / "r", "--preset", "tiny", "--epochs", "1"]
    args += ["--steps-per-epoch", "1", "--batch-size", "4", "--no-progress"]
    result = _fit(*args, *extra)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "r" / "best.pt").exists()


def test_pairs_of_one_folder_twice_are_refused(tmp_path, photos_dir):
    result = _fit("--pairs", photos_dir, photos_dir, "--out", tmp_path / "r", "--epochs", "1")
    assert result.exit_code == 2 and "names one folder twice" in result.output


def test_a_scene_of_dim_and_full_range_captures_is_refused_and_pgm_links_are_read(tmp_path):
    from n2n_train.owndata import scan_pairs

    a, b, elsewhere = tmp_path / "a", tmp_path / "b", tmp_path / "elsewhere"
    for d in (a, b, elsewhere):
        d.mkdir()
    img = synthetic_photo(np.random.default_rng(0), 40, 40)[..., 0]
    Image.fromarray(img).save(a / "s.pgm")
    Image.fromarray(img.astype(np.uint16) * 16).save(b / "s.pgm")  # dim: 12-bit counts
    with pytest.raises(Exception, match=r"different pixel ranges in scene 's\.pgm'.*dim"):
        scan_pairs(a, b, 8)
    Image.fromarray(img).save(b / "s.pgm")
    Image.fromarray(img).save(elsewhere / "t.png")
    (a / "linked").symlink_to(elsewhere)
    (b / "linked").symlink_to(elsewhere)
    assert sorted(s.name for s in scan_pairs(a, b, 8)) == ["linked/t.png", "s.pgm"]


def test_a_torn_metrics_line_is_skipped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1, "val_loss": 0.5}\n{"epoch": 2, "val_lo')
    assert read_metrics(path) == [{"epoch": 1, "val_loss": 0.5}]


# --- untrusted checkpoints ----------------------------------------------------------------


def _raw(tmp_path: Path, **changes: object) -> Path:
    path = tmp_path / "c.pt"
    save_checkpoint(path, UNet(UNetConfig(features=(4, 8))), {"epochs": 1})
    raw = torch.load(path, weights_only=True)
    raw.update(changes)
    torch.save(raw, path)
    return path


def test_a_small_checkpoint_asking_for_a_huge_network_is_refused_without_building_it(tmp_path):
    cfg = UNetConfig(features=(4, 8)).to_dict()
    path = _raw(tmp_path, config=dict(cfg, features=[60000, 60000]))  # about 130 GB of weights
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, hard))  # building it would fail here
    try:
        with pytest.raises(
            CheckpointError, match=r"weights do not match the config: .*another shape"
        ):
            load_checkpoint(path)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"state_dict": [1, 2]}, "not a mapping of names to tensors"),
        ({"summary": "x"}, "'summary' is not a mapping"),
        ({"format_version": "1"}, "invalid checkpoint format version '1'"),
    ],
)
def test_malformed_checkpoints_are_refused_by_name(tmp_path, changes, message):
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(_raw(tmp_path, **changes))


def test_an_image_given_as_a_checkpoint_says_so(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    with pytest.raises(CheckpointError, match="not a torch checkpoint file"):
        load_checkpoint(path)


# --- export ---------------------------------------------------------------------------------


def test_export_never_replaces_its_checkpoint_or_a_model_with_an_unchecked_one(tmp_path, tiny_run):
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(tiny_run["checkpoint"].read_bytes())
    runner = CliRunner()
    same = runner.invoke(export_main, ["onnx", str(ckpt), str(ckpt)])
    assert same.exit_code == 2 and "is one of the input files" in same.output
    assert ckpt.read_bytes() == tiny_run["checkpoint"].read_bytes()
    out = tmp_path / "m.onnx"
    out.write_bytes(b"a checked model")
    missing = runner.invoke(
        export_main, ["onnx", str(ckpt), str(out), "--images", str(tmp_path / "none")]
    )
    assert missing.exit_code == 2 and "folder not found" in missing.output
    assert out.read_bytes() == b"a checked model"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".n2n-export")]


# --- sweep specs ----------------------------------------------------------------------------


def _spec(tmp_path: Path, base: str, run: str = "") -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(f'[base]\ncourse = "d.pkl"\n{base}\n[[runs]]\nname = "a"\n{run}\n')
    return path


@pytest.mark.parametrize(
    ("base", "run", "message"),
    [
        ("", 'dihedral = "false"', "'dihedral' is a flag: expected true or false"),
        ("epochs = 0", "", "epochs and batch_size must be at least 1"),
        ("lr = -1.0", "", "'--lr': -1.0 is not in the range x>0"),
        ("minutes = nan", "", "'--minutes': expected a finite number, got 'nan'"),
        ("", "regulariser = inf", "'--regulariser': expected a finite number, got 'inf'"),
        ('features = [8, "x"]', "", "features"),
        ('preset = "huge"', "", "unknown preset"),
    ],
)
def test_spec_values_fit_would_refuse_stop_the_spec(tmp_path, base, run, message):
    with pytest.raises(SweepError, match=message):
        load_spec(_spec(tmp_path, base, run))


def test_a_set_flag_must_be_a_boolean(tmp_path):
    with pytest.raises(SweepError, match="'swap' is a flag"):
        load_spec(_spec(tmp_path, ""), {"swap": "False"})


def test_a_run_started_with_other_options_is_not_scored_or_resumed(tmp_path):
    spec = load_spec(_spec(tmp_path, "epochs = 2\nlr = 0.01"))
    run = spec.runs[0]
    run_dir = tmp_path / "out" / "a"
    run_dir.mkdir(parents=True)
    save_checkpoint(run_dir / "last.pt", UNet(UNetConfig()), {"epochs": 2})
    assert run_state(run, run_dir) == "score"  # no record: a run from before it existed
    started = dict(marker_options(run.options), lr=0.5, optimizer="adam")
    (run_dir / STARTED).write_text(json.dumps({"options": started}))
    with pytest.raises(SweepError, match="was started with other options"):
        run_state(run, run_dir)
    (run_dir / STARTED).write_text(
        json.dumps({"options": dict(marker_options(run.options), epochs=1)})
    )
    assert run_state(run, run_dir) == "score"  # more epochs only: still the same run
