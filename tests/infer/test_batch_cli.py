import json
import re
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
    assert re.search(r"^grey images +phases ", text, re.MULTILINE), text


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


# -- a single image file as IN --------------------------------------------------------------


def _one(tmp_path, name="noisy.png", seed=3, size=(40, 56)):
    """One noisy image in its own folder ``tmp_path/src``; its bytes."""
    src = tmp_path / "src" / name
    src.parent.mkdir(exist_ok=True)
    Image.fromarray(synthetic_photo(np.random.default_rng(seed), *size)).save(src)
    return src


@pytest.mark.parametrize("out_name", ["out", "out/", "new/deeper/out"])
def test_a_single_file_goes_into_a_folder_under_its_own_name(tmp_path, tiny_onnx, out_name):
    src = _one(tmp_path)
    before = src.read_bytes()
    out = str(tmp_path / out_name)
    result = _run("batch", src, out, "--model", tiny_onnx, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "ok      noisy.png" in result.stdout
    assert "1 denoised, 0 skipped, 0 failed" in result.stdout
    written = tmp_path / out_name.rstrip("/") / "noisy.png"
    assert [p.name for p in written.parent.iterdir()] == ["noisy.png"]
    with Image.open(written) as dst:
        assert (dst.size, dst.format) == ((56, 40), "PNG")
    assert src.read_bytes() == before and [p.name for p in src.parent.iterdir()] == ["noisy.png"]


@pytest.mark.parametrize(("name", "out_name"), [("noisy.png", "clean.png"), ("a.jpg", "b.JPEG")])
def test_a_single_file_onto_a_file_name_of_its_format(tmp_path, tiny_onnx, name, out_name):
    src = _one(tmp_path, name)
    out = tmp_path / "out" / out_name
    result = _run("batch", src, out, "--model", tiny_onnx)
    assert result.exit_code == 0, result.output
    assert [p.name for p in out.parent.iterdir()] == [out_name]
    with Image.open(src) as a, Image.open(out) as b:
        assert (a.size, a.format) == (b.size, b.format)
    assert f"-> {out} (" in result.stdout


def test_a_single_file_onto_a_name_of_another_format_is_refused(tmp_path, tiny_onnx):
    src = _one(tmp_path)
    result = _run("batch", src, tmp_path / "out" / "clean.jpg", "--model", tiny_onnx)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: output {tmp_path / 'out' / 'clean.jpg'}: the input noisy.png is written as "
        "PNG (an output keeps its input's format): name it clean.png, or give a folder\n"
    )
    assert not (tmp_path / "out").exists()


def test_a_single_file_onto_an_existing_non_image_file_is_refused(tmp_path, tiny_onnx):
    src = _one(tmp_path)
    blocker = tmp_path / "notes"
    blocker.write_text("mine")
    result = _run("batch", src, blocker, "--model", tiny_onnx)
    assert result.exit_code == 2 and "is an existing file" in result.stderr
    assert blocker.read_text() == "mine"


@pytest.mark.parametrize("where", ["folder", "file", "file_in_link", "onto_itself"])
def test_a_single_file_is_never_written_into_its_folder(tmp_path, tiny_onnx, where):
    src = _one(tmp_path)
    (tmp_path / "link").symlink_to(src.parent)
    out = {
        "folder": src.parent,
        "file": src.parent / "clean.png",
        "file_in_link": tmp_path / "link" / "clean.png",
        "onto_itself": src,
    }[where]
    before = src.read_bytes()
    result = _run("batch", src, out, "--model", tiny_onnx, "--overwrite")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: refused to write ") and "the folder of input" in (
        result.stderr
    )
    assert [p.name for p in src.parent.iterdir()] == ["noisy.png"]
    assert src.read_bytes() == before


def test_a_single_file_may_go_to_a_subfolder_beside_it(tmp_path, tiny_onnx):
    src = _one(tmp_path)
    result = _run("batch", src, src.parent / "denoised", "--model", tiny_onnx)
    assert result.exit_code == 0, result.output
    assert (src.parent / "denoised" / "noisy.png").is_file()


def test_a_single_files_output_follows_the_folder_rules(tmp_path, tiny_onnx):
    src = _one(tmp_path)
    out = tmp_path / "out"
    assert _run("batch", src, out, "--model", tiny_onnx).exit_code == 0
    again = _run("batch", src, out, "--model", tiny_onnx)
    assert again.exit_code == 1
    assert "FAILED  noisy.png: " in again.stdout and "exists (use --overwrite" in again.stdout
    skip = _run("batch", src, out, "--model", tiny_onnx, "--skip-existing")
    assert skip.exit_code == 0 and "0 denoised, 1 skipped, 0 failed" in skip.stdout
    over = _run("batch", src, out, "--model", tiny_onnx, "--overwrite")
    assert over.exit_code == 0 and "1 denoised" in over.stdout
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # written atomically
    both = _run("batch", src, out, "--model", tiny_onnx, "--overwrite", "--skip-existing")
    assert both.exit_code == 2 and "contradict" in both.stderr


@pytest.mark.parametrize("kind", ["fifo", "device", "broken_link", "text"])
def test_an_input_that_is_no_image_file_is_refused_by_name(tmp_path, tiny_onnx, kind):
    import os

    src = tmp_path / ("notes.txt" if kind == "text" else "in.png")
    if kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("needs FIFOs (POSIX)")
        os.mkfifo(src)
    elif kind == "device":
        if not os.path.exists("/dev/null"):
            pytest.skip("needs /dev/null")
        src.symlink_to("/dev/null")
    elif kind == "broken_link":
        src.symlink_to(tmp_path / "gone.png")
    else:
        src.write_text("not an image")
    result = _run("batch", src, tmp_path / "out", "--model", tiny_onnx)
    assert result.exit_code == 2, result.output
    words = {
        "fifo": "is a FIFO, not an image file or a folder of images",
        "device": "is a character device, not an image file or a folder of images",
        "broken_link": "a symbolic link to nothing",
        "text": "not an image file name",
    }[kind]
    assert result.stderr.startswith(f"error: {src}: {words}"), result.stderr
    assert len(result.stderr.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_single_file_of_a_format_not_read_fails_by_name(tmp_path, tiny_onnx):
    src = tmp_path / "src" / "anim.gif"
    src.parent.mkdir()
    Image.fromarray(synthetic_photo(np.random.default_rng(1), 16, 16)).save(src)
    result = _run("batch", src, tmp_path / "out", "--model", tiny_onnx)
    assert result.exit_code == 1
    assert "FAILED  anim.gif: GIF" in result.stdout


@pytest.mark.parametrize("as_folder", [True, False])
def test_a_single_files_reference_is_a_clean_image_or_a_folder_holding_it(
    tmp_path, tiny_onnx, as_folder
):
    rng = np.random.default_rng(5)
    clean = synthetic_photo(rng, 48, 48)
    noisy = np.clip(np.rint(clean + rng.normal(0, 25, clean.shape)), 0, 255).astype(np.uint8)
    (tmp_path / "clean").mkdir()
    (tmp_path / "noisy").mkdir()
    Image.fromarray(clean).save(tmp_path / "clean" / "x.png")
    Image.fromarray(noisy).save(tmp_path / "noisy" / "x.png")
    reference = tmp_path / "clean" if as_folder else tmp_path / "clean" / "x.png"
    result = _run(
        "batch", tmp_path / "noisy" / "x.png", tmp_path / "out", "--model", tiny_onnx,
        "--reference", reference,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "PSNR" in result.stdout and "mean PSNR gain: " in result.stdout


def test_a_single_files_missing_reference(tmp_path, tiny_onnx):
    src = _one(tmp_path)
    (tmp_path / "clean").mkdir()
    in_folder = _run(
        "batch", src, tmp_path / "out", "--model", tiny_onnx, "--reference", tmp_path / "clean"
    )
    assert in_folder.exit_code == 0 and "note    noisy.png: no reference image" in in_folder.stderr
    gone = tmp_path / "clean" / "gone.png"
    missing = _run("batch", src, tmp_path / "o2", "--model", tiny_onnx, "--reference", gone)
    assert missing.exit_code == 2 and f"reference {gone} not found" in missing.stderr
    assert not (tmp_path / "o2").exists()


def test_a_folder_in_takes_no_reference_file(in_dir, tmp_path, tiny_onnx):
    ref = in_dir / "a.png"
    result = _run("batch", in_dir, tmp_path / "out", "--model", tiny_onnx, "--reference", ref)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: reference folder {ref} is a file")


def test_a_single_files_report(tmp_path, tiny_onnx):
    src = _one(tmp_path)
    report = tmp_path / "r" / "report.json"
    result = _run("batch", src, tmp_path / "out", "--model", tiny_onnx, "--report", report)
    assert result.exit_code == 0, result.output
    doc = json.loads(report.read_text())
    assert doc["totals"] == {"ok": 1, "skipped": 0, "error": 0}
    assert [f["name"] for f in doc["files"]] == ["noisy.png"]
    beside = _run(
        "batch", src, tmp_path / "o2", "--model", tiny_onnx, "--report", src.parent / "r.json"
    )
    assert beside.exit_code == 2 and "the folder of input file" in beside.stderr
    assert not (tmp_path / "o2").exists() and not (src.parent / "r.json").exists()


def test_folder_only_options_are_refused_for_a_single_file(tmp_path, tiny_onnx):
    src = _one(tmp_path)
    result = _run("batch", src, tmp_path / "out", "--model", tiny_onnx, "--recursive")
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: --recursive: IN {src} is a file; --recursive is for a folder\n"
    )
    ray = _run("batch", src, tmp_path / "out", "--model", tiny_onnx, "--engine", "ray")
    assert ray.exit_code == 2 and ray.stderr == (
        f"error: --engine ray: IN {src} is a file; one file runs on the local engine "
        "(leave out --engine ray)\n"
    )
    workers = _run("batch", src, tmp_path / "out", "--model", tiny_onnx, "--workers", "2")
    assert workers.exit_code == 2 and workers.stderr == "error: --workers: only with --engine ray\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("name", "what"), [("nope", "folder"), ("nope.png", "file")])
def test_a_missing_input_is_one_line(tmp_path, tiny_onnx, name, what):
    result = _run("batch", tmp_path / name, tmp_path / "out", "--model", tiny_onnx)
    assert result.exit_code == 2 and result.stderr == (
        f"error: {tmp_path / name}: input {what} not found\n"
    )
    assert not (tmp_path / "out").exists()


def test_a_single_files_output_is_checked_again_just_before_the_write(tmp_path):
    from n2n_infer import batch as batch_module
    from n2n_infer.errors import N2NError

    src = _one(tmp_path)
    (tmp_path / "link").symlink_to(src.parent)
    root = src.parent.resolve()
    with pytest.raises(N2NError, match="leads into an input folder"):
        batch_module.check_destination(tmp_path / "link" / "x.png", root, src, single=True)
    batch_module.check_destination(src.parent / "sub" / "x.png", root, src, single=True)
    with pytest.raises(N2NError, match="leads into an input folder"):  # a folder job's rule
        batch_module.check_destination(src.parent / "sub" / "x.png", root, src)
