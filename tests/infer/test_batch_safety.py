"""The folder job never loses data: no output lands in IN, nothing it did not create is deleted,
unusable OUT/--report/--reference paths stop it before any work, and every per-file failure is
reported once and the job goes on."""

import os
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from n2n_infer import batch as batch_module
from n2n_infer.cli import main
from n2n_infer.files import is_temp_name, temp_name
from tests.conftest import synthetic_photo


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _save(path, seed=0, size=(24, 32)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(synthetic_photo(np.random.default_rng(seed), *size)).save(path)
    return path.read_bytes()


def _snapshot(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_input_inside_output_with_recursive_is_refused_and_input_kept(tmp_path, tiny_onnx):
    """The reported loss: IN=t/photos, OUT=t; t/photos/photos/a.png would overwrite IN/a.png."""
    t = tmp_path / "t"
    _save(t / "photos" / "a.png", 0)
    _save(t / "photos" / "photos" / "a.png", 1)
    before = _snapshot(t / "photos")
    result = _run(
        "batch",
        t / "photos",
        t,
        "--recursive",
        "--overwrite",
        "--model",
        tiny_onnx,
        "--device",
        "cpu",
    )
    assert result.exit_code == 2, result.output
    assert "input folder" in result.output and "--recursive" in result.output
    assert _snapshot(t / "photos") == before


def test_input_inside_output_without_recursive_is_allowed(tmp_path, tiny_onnx):
    t = tmp_path / "t"
    _save(t / "photos" / "a.png")
    before = _snapshot(t / "photos")
    result = _run("batch", t / "photos", t, "--model", tiny_onnx, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert (t / "a.png").is_file() and _snapshot(t / "photos") == before


def test_a_symlink_in_out_that_leads_into_in_is_never_written_through(tmp_path, tiny_onnx):
    src, out = tmp_path / "in", tmp_path / "out"
    _save(src / "sub" / "a.png", 0)
    _save(src / "a.png", 1)
    out.mkdir()
    os.symlink(src, out / "sub")  # out/sub/a.png is really in/a.png
    before = _snapshot(src)
    result = _run("batch", src, out, "--recursive", "--overwrite", "--model", tiny_onnx)
    assert result.exit_code == 1, result.output
    assert "FAILED  sub/a.png" in result.output and "input folder" in result.output
    assert _snapshot(src) == before


def test_cleanup_deletes_only_its_own_temporary_files(tmp_path, tiny_onnx):
    src, out = tmp_path / "in", tmp_path / "out"
    _save(src / "a.png")
    mine = src / ".n2n-user.part"
    mine.write_bytes(b"user data in IN")
    (out / "sub").mkdir(parents=True)
    theirs = out / ".n2n-notes.part"
    theirs.write_bytes(b"user data in OUT")
    stale = out / "sub" / temp_name("a.png")
    stale.write_bytes(b"left by a killed run")
    result = _run("batch", src, out, "--recursive", "--model", tiny_onnx)
    assert result.exit_code == 0, result.output
    assert mine.read_bytes() == b"user data in IN"
    assert theirs.read_bytes() == b"user data in OUT"
    assert not stale.exists()


def test_cleanup_never_walks_into_the_input_folder(tmp_path, tiny_onnx):
    t = tmp_path / "t"
    _save(t / "photos" / "a.png")
    ours_in_in = t / "photos" / temp_name("x.png")  # looks like ours, but lies in IN
    ours_in_in.write_bytes(b"keep")
    result = _run("batch", t / "photos", t, "--model", tiny_onnx)
    assert result.exit_code == 0, result.output
    assert ours_in_in.read_bytes() == b"keep"


def test_temp_names_are_recognised_exactly():
    assert is_temp_name(temp_name("a.png"))
    assert is_temp_name(temp_name("é" * 200 + ".png"))
    for name in (".n2n-a.png.part", ".n2n-x.abcdefgh.part", "n2n-a.0123456789abcdef.part"):
        assert not is_temp_name(name)
    assert len(temp_name("x" * 250 + ".png").encode()) < 100


def test_a_240_character_file_name_is_denoised(tmp_path, tiny_onnx):
    src, out = tmp_path / "in", tmp_path / "out"
    name = "n" * 236 + ".png"
    _save(src / name)
    result = _run("batch", src, out, "--model", tiny_onnx)
    assert result.exit_code == 0, result.output
    assert (out / name).is_file()


@pytest.mark.parametrize("case", ["file", "under_file"])
def test_unusable_output_folder_stops_before_any_work(tmp_path, tiny_onnx, case):
    src = tmp_path / "in"
    _save(src / "a.png")
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"a file")
    out = blocker if case == "file" else blocker / "out"
    result = _run("batch", src, out, "--model", tiny_onnx)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and str(out) in result.output
    assert "Traceback" not in result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_parent_of_output_stops_before_any_work(tmp_path, tiny_onnx):
    src, parent = tmp_path / "in", tmp_path / "ro"
    _save(src / "a.png")
    parent.mkdir()
    parent.chmod(0o500)
    try:
        result = _run("batch", src, parent / "out", "--model", tiny_onnx)
    finally:
        parent.chmod(0o700)
    assert result.exit_code == 2 and "not writable" in result.output


@pytest.mark.parametrize("case", ["dir", "under_file", "in_input", "symlink_into_input"])
def test_unusable_report_path_stops_before_any_work(tmp_path, tiny_onnx, case):
    src, out = tmp_path / "in", tmp_path / "out"
    original = _save(src / "a.png")
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "a_file").write_bytes(b"x")
    report = {
        "dir": tmp_path / "a_dir",
        "under_file": tmp_path / "a_file" / "r.json",
        "in_input": src / "r.json",
        "symlink_into_input": tmp_path / "link.json",
    }[case]
    if case == "symlink_into_input":
        os.symlink(src / "a.png", report)
    result = _run("batch", src, out, "--model", tiny_onnx, "--report", report)
    assert result.exit_code == 2, result.output
    assert "report" in result.output and not out.exists()
    assert (src / "a.png").read_bytes() == original
    if case == "symlink_into_input":
        assert report.is_symlink()


def test_report_through_a_symlink_outside_input_keeps_the_link(tmp_path, tiny_onnx):
    src, out = tmp_path / "in", tmp_path / "out"
    _save(src / "a.png")
    target = tmp_path / "reports" / "r.json"
    target.parent.mkdir()
    target.write_text("{}")
    link = tmp_path / "r.json"
    os.symlink(target, link)
    result = _run("batch", src, out, "--model", tiny_onnx, "--report", link)
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and '"ok": 1' in target.read_text()


def test_missing_reference_folder_is_an_error(tmp_path, tiny_onnx):
    src = tmp_path / "in"
    _save(src / "a.png")
    result = _run(
        "batch", src, tmp_path / "out", "--model", tiny_onnx, "--reference", tmp_path / "nope"
    )
    assert result.exit_code == 2 and "reference" in result.output and "nope" in result.output
    assert not (tmp_path / "out").exists()


def test_any_per_file_failure_is_reported_once_and_the_job_goes_on(
    tmp_path, tiny_onnx, monkeypatch
):
    src, out = tmp_path / "in", tmp_path / "out"
    for name in ("a.png", "b.png", "c.png"):
        _save(src / name)
    real = batch_module.read_file

    def flaky(path, *args, **kwargs):
        if path.name == "b.png":
            raise TypeError("unsupported operand type(s) deep inside a decoder")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(batch_module, "read_file", flaky)
    result = _run("batch", src, out, "--model", tiny_onnx)
    assert result.exit_code == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]
    failed = [line for line in result.output.splitlines() if "b.png" in line]
    assert failed == ["FAILED  b.png: TypeError: unsupported operand type(s) deep inside a decoder"]


def test_a_failure_is_printed_once_without_the_path_twice(tmp_path, tiny_onnx):
    src, out = tmp_path / "in", tmp_path / "out"
    _save(src / "a.png")
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    result = _run("batch", src, out, "--model", tiny_onnx)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if "bad.png" in line]
    assert len(lines) == 1 and lines[0].startswith("FAILED  bad.png: ")
    assert str(src) not in lines[0]


def test_warnings_as_errors_do_not_crash_the_job(tmp_path, tiny_onnx):
    src, out = tmp_path / "in", tmp_path / "out"
    good = _save(src / "a.png", size=(64, 64))
    (src / "b.png").write_bytes(good[: len(good) - 30])
    _save(src / "c.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = _run("batch", src, out, "--model", tiny_onnx)
    assert result.exit_code == 1, result.output
    assert "FAILED  b.png" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]


def test_help_states_the_tiling_threshold_the_code_uses():
    from n2n_infer.denoiser import MAX_UNTILED_PIXELS

    text = " ".join(_run("batch", "--help").output.split())
    assert f"above {MAX_UNTILED_PIXELS / 1e6:.1f} megapixels" in text
