"""``n2n-export onnx``: parity by default (built-in patterns), --no-parity, OUT that is not a
regular file, and figures labelled when their reference images are noisy."""

import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from n2n_export.cli import main as export_cli
from n2n_export.data import CASE_SHAPES, PATTERN_SHAPES, builtin_patterns, parity_cases
from n2n_infer import Denoiser
from n2n_train.checkpoint import save_checkpoint
from n2n_train.config import UNetConfig
from n2n_train.unet import UNet
from tests.conftest import synthetic_photo


def _export(*args):
    return CliRunner().invoke(export_cli, ["onnx", *map(str, args)])


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    """A small untrained model (parity needs no training)."""
    folder = tmp_path_factory.mktemp("small")
    return save_checkpoint(folder / "small.pt", UNet(UNetConfig(features=(8, 16))), {})


@pytest.fixture(scope="module")
def own_data_ckpt(tmp_path_factory):
    """A checkpoint whose summary says it was fine-tuned on the user's own noisy pairs."""
    folder = tmp_path_factory.mktemp("own")
    summary = {
        "data": {"source": "pairs", "name": "a", "name_b": "b", "files": 6, "scenes": 3},
        "noise": "own noise (pairs)",
        "epochs": 1,
        "best_epoch": 1,
        "best_val_loss": 0.004,
    }
    return save_checkpoint(folder / "best.pt", UNet(UNetConfig(features=(8, 16))), summary)


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    """Noisy 'captures' (what docs/own_data.md passes as --images)."""
    folder = tmp_path_factory.mktemp("captures") / "a"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(2):
        clean = synthetic_photo(rng, 48, 64).astype(np.float64)
        noisy = np.clip(np.rint(clean + rng.normal(0, 20, clean.shape)), 0, 255)
        Image.fromarray(noisy.astype(np.uint8)).save(folder / f"img_{i}.png")
    return folder


# --- OUT that is not a regular file ---------------------------------------------------------


def test_an_out_that_is_a_named_pipe_is_refused_before_any_work(small_ckpt, tmp_path):
    fifo = tmp_path / "m.onnx"
    os.mkfifo(fifo)  # never opened: opening a FIFO without a reader would block
    result = _export(small_ckpt, fifo)
    assert result.exit_code == 2, result.output
    assert f"{fifo}: exists and is a named pipe (FIFO), not a regular file" in result.output
    assert fifo.is_fifo()  # not renamed over
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no card, no temp folder


def test_a_symlink_to_a_named_pipe_is_refused(small_ckpt, tmp_path):
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "m.onnx").symlink_to(tmp_path / "pipe")
    result = _export(small_ckpt, tmp_path / "m.onnx", "--no-card")
    assert result.exit_code == 2 and "named pipe (FIFO)" in result.output
    assert (tmp_path / "m.onnx").is_symlink()


def test_an_out_or_card_that_is_a_folder_is_refused_before_any_work(small_ckpt, tmp_path):
    (tmp_path / "dir.onnx").mkdir()
    result = _export(small_ckpt, tmp_path / "dir.onnx")
    assert result.exit_code == 2 and "dir.onnx" in result.output  # click's own check
    assert "is a directory" in result.output and (tmp_path / "dir.onnx").is_dir()
    (tmp_path / "m.md").mkdir()  # the card's path
    result = _export(small_ckpt, tmp_path / "m.onnx")
    assert result.exit_code == 2, result.output
    assert "m.md: exists and is a folder, not a regular file" in result.output
    assert not (tmp_path / "m.onnx").exists()  # refused before the model was written
    assert _export(small_ckpt, tmp_path / "m.onnx", "--no-card").exit_code == 0


def test_a_regular_file_or_a_symlink_to_one_is_replaced(small_ckpt, tmp_path):
    (tmp_path / "old.onnx").write_bytes(b"an old model")
    (tmp_path / "link.onnx").symlink_to(tmp_path / "old.onnx")
    for out in ("old.onnx", "link.onnx"):
        result = _export(small_ckpt, tmp_path / out, "--no-card")
        assert result.exit_code == 0, result.output
        assert Denoiser(tmp_path / out, device="cpu").stride == 2


# --- parity by default ----------------------------------------------------------------------


def test_builtin_patterns_are_clean_deterministic_and_cover_every_case():
    first, again = builtin_patterns(), builtin_patterns()
    assert [p.shape[:2] for p in first] == list(PATTERN_SHAPES)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert all(p.dtype == np.uint8 and p.std() > 30 for p in first)  # not flat
    cases = parity_cases(first, "gaussian:25")
    assert len(cases) == len(CASE_SHAPES) + 1
    assert [p[0].shape[1:] for p in cases[-1].pairs] == list(PATTERN_SHAPES)


def test_export_checks_parity_on_builtin_patterns_by_default(small_ckpt, tmp_path):
    out = tmp_path / "m.onnx"
    result = _export(small_ckpt, out)
    assert result.exit_code == 0, result.output
    assert "parity: PASSED" in result.output
    assert "3 images at their own sizes (built-in test patterns + gaussian:25)" in result.output
    psnr = Denoiser(out, device="cpu").metadata["psnr"]
    assert psnr["eval_set"] == "3 images at their own sizes (built-in test patterns + gaussian:25)"
    assert psnr["reference"] == "clean" and psnr["images"] == 3
    assert psnr["psnr_onnx"] == pytest.approx(psnr["psnr_torch"], abs=0.01)
    assert "built-in test patterns" in (tmp_path / "m.md").read_text()
    assert "note:" not in result.output


def test_no_parity_writes_an_unchecked_model_with_a_warning(small_ckpt, tmp_path):
    out = tmp_path / "m.onnx"
    result = _export(small_ckpt, out, "--no-parity")
    assert result.exit_code == 0, result.output
    assert "parity: PASSED" not in result.output and "case " not in result.output
    assert f"warning: --no-parity: {out} was not checked against torch" in result.output
    assert "psnr_torch" not in Denoiser(out, device="cpu").metadata["psnr"]
    both = _export(small_ckpt, out, "--no-parity", "--images", tmp_path)
    assert both.exit_code == 2 and "--no-parity skips the check" in both.output


def test_parity_command_defaults_to_builtin_patterns(small_ckpt, tmp_path):
    out = tmp_path / "m.onnx"
    assert _export(small_ckpt, out, "--no-parity", "--no-card").exit_code == 0
    result = CliRunner().invoke(export_cli, ["parity", str(small_ckpt), str(out)])
    assert result.exit_code == 0, result.output
    assert "built-in test patterns + gaussian:25" in result.output
    assert "parity: PASSED" in result.output


# --- what the figures measure ---------------------------------------------------------------


def test_own_data_figures_are_labelled_as_against_noisy_references(
    own_data_ckpt, captures, tmp_path
):
    out = tmp_path / "mine.onnx"
    result = _export(own_data_ckpt, out, "--images", captures)
    assert result.exit_code == 0, result.output
    assert "(a + gaussian:25, PSNR vs noisy a)" in result.output
    assert "note: the parity PSNR figures are measured against your --images" in result.output
    assert "capped by the reference's own noise" in result.output
    assert "not what the model gains" in result.output
    psnr = Denoiser(out, device="cpu").metadata["psnr"]
    assert psnr["reference"] == "noisy images"
    assert psnr["eval_set"] == "2 images at their own sizes (a + gaussian:25, PSNR vs noisy a)"
    card = (tmp_path / "mine.md").read_text()
    assert "PSNR vs noisy a" in card
    assert "Note: The parity PSNR figures are measured against your --images" in card
    assert "not what the model gains" in card
    parity = CliRunner().invoke(
        export_cli, ["parity", str(own_data_ckpt), str(out), "--images", str(captures)]
    )
    assert parity.exit_code == 0 and "note: the parity PSNR figures" in parity.output


def test_figures_of_a_photo_model_or_of_builtin_patterns_carry_no_noisy_note(
    small_ckpt, own_data_ckpt, captures, tmp_path
):
    result = _export(small_ckpt, tmp_path / "photo.onnx", "--images", captures)
    assert result.exit_code == 0 and "note:" not in result.output
    psnr = Denoiser(tmp_path / "photo.onnx", device="cpu").metadata["psnr"]
    assert psnr["reference"] == "given images" and "vs noisy" not in psnr["eval_set"]
    assert "Note:" not in (tmp_path / "photo.md").read_text()
    result = _export(own_data_ckpt, tmp_path / "own.onnx")  # built-in patterns: clean
    assert result.exit_code == 0 and "note:" not in result.output
    assert Denoiser(tmp_path / "own.onnx", device="cpu").metadata["psnr"]["reference"] == "clean"


def test_int8_is_checked_on_its_calibration_photos_by_default(tiny_run, photos_dir, tmp_path):
    """The built-in patterns' flat areas and saturated edges cost int8 more than the photos its
    thresholds were measured on: int8 is checked on the --calibration photos instead."""
    out = tmp_path / "m.onnx"
    int8 = ["--precision", "int8", "--calibration", photos_dir]
    result = _export(tiny_run["checkpoint"], out, *int8)
    assert result.exit_code == 0, result.output
    assert f"6 images at their own sizes ({photos_dir.name} + gaussian:25)" in result.output
    assert "built-in" not in result.output and "parity: PASSED" in result.output
    assert Denoiser(out, device="cpu").metadata["psnr"]["reference"] == "clean"
