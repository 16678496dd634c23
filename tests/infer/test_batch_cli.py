import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from n2n_infer.cli import main
from tests.conftest import synthetic_photo


@pytest.fixture
def in_dir(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(synthetic_photo(rng, 40, 56)).save(folder / "a.png")
    Image.fromarray(synthetic_photo(rng, 33, 47)).save(folder / "b.jpg", quality=95)
    Image.fromarray(synthetic_photo(rng, 20, 20)).save(folder / "c.JPEG")
    (folder / "notes.txt").write_text("not an image")
    return folder


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_batch_writes_every_image_under_the_same_name(in_dir, tmp_path, tiny_onnx):
    out = tmp_path / "out"
    result = _run("batch", in_dir, out, "--model", tiny_onnx, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg", "c.JPEG"]
    for name in ("a.png", "b.jpg", "c.JPEG"):
        with Image.open(in_dir / name) as src, Image.open(out / name) as dst:
            assert (dst.size, dst.format) == (src.size, src.format)
    assert "3 denoised, 0 skipped, 0 failed" in result.output


def test_bad_files_are_reported_and_skipped(in_dir, tmp_path, tiny_onnx):
    (in_dir / "empty.png").write_bytes(b"")
    (in_dir / "garbage.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    good = (in_dir / "a.png").read_bytes()
    (in_dir / "truncated.png").write_bytes(good[: len(good) // 2])
    out = tmp_path / "out"
    result = _run("batch", in_dir, out, "--model", tiny_onnx, "--device", "cpu")
    assert result.exit_code == 1
    for name in ("empty.png", "garbage.jpg", "truncated.png"):
        assert f"FAILED  {name}" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg", "c.JPEG"]


def test_existing_outputs_are_refused_unless_asked(in_dir, tmp_path, tiny_onnx):
    out = tmp_path / "out"
    assert _run("batch", in_dir, out, "--model", tiny_onnx).exit_code == 0
    again = _run("batch", in_dir, out, "--model", tiny_onnx)
    assert again.exit_code == 1 and "exists (use --overwrite or --skip-existing)" in again.output
    skip = _run("batch", in_dir, out, "--model", tiny_onnx, "--skip-existing")
    assert skip.exit_code == 0 and "0 denoised, 3 skipped" in skip.output
    over = _run("batch", in_dir, out, "--model", tiny_onnx, "--overwrite")
    assert over.exit_code == 0 and "3 denoised" in over.output


@pytest.mark.parametrize("where", ["same", "inside"])
def test_output_inside_input_is_refused(in_dir, tiny_onnx, where):
    out = in_dir if where == "same" else in_dir / "sub" / "out"
    before = sorted(p.name for p in in_dir.iterdir())
    result = _run("batch", in_dir, out, "--model", tiny_onnx)
    assert result.exit_code == 2 and "inside input folder" in result.output
    assert sorted(p.name for p in in_dir.iterdir()) == before


def test_missing_model_is_one_clear_line(in_dir, tmp_path):
    result = _run("batch", in_dir, tmp_path / "out", "--model", tmp_path / "none.onnx")
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {tmp_path / 'none.onnx'}: model file not found"


def test_no_partial_files_are_left(in_dir, tmp_path, tiny_onnx):
    out = tmp_path / "out"
    _run("batch", in_dir, out, "--model", tiny_onnx)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_reference_folder_gives_psnr(tmp_path, tiny_onnx):
    rng = np.random.default_rng(5)
    (tmp_path / "clean").mkdir()
    (tmp_path / "noisy").mkdir()
    clean = synthetic_photo(rng, 48, 48)
    noisy = np.clip(np.rint(clean + rng.normal(0, 25, clean.shape)), 0, 255).astype(np.uint8)
    Image.fromarray(clean).save(tmp_path / "clean" / "x.png")
    Image.fromarray(noisy).save(tmp_path / "noisy" / "x.png")
    result = _run(
        "batch",
        tmp_path / "noisy",
        tmp_path / "out",
        "--model",
        tiny_onnx,
        "--reference",
        tmp_path / "clean",
    )
    assert result.exit_code == 0, result.output
    assert "PSNR" in result.output and "mean PSNR gain: " in result.output


def test_info_prints_metadata(tiny_onnx):
    result = _run("info", tiny_onnx, "--json")
    assert result.exit_code == 0, result.output
    meta = json.loads(result.output)
    assert meta["stride"] == 4 and meta["noise"] == "gaussian:25"
    assert meta["sizes"]["grey_auto"] == "phases"
    text = _run("info", tiny_onnx).output
    assert "grey images   phases" in text


def test_doctor_runs_the_default_model_on_cpu():
    result = _run("doctor")
    assert "cpu: ok" in result.output
    assert result.exit_code == 0


def test_examples_folder_is_not_touched(tmp_path, tiny_onnx):
    from tests.conftest import REPO

    src = tmp_path / "noisy"
    shutil.copytree(REPO / "examples" / "noisy", src)
    result = _run(
        "batch",
        src,
        tmp_path / "out",
        "--model",
        tiny_onnx,
        "--reference",
        REPO / "examples" / "clean",
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("PSNR") >= 4
