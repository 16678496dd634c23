"""The Ray Data engine: same files, report and exit status as the local engine.

One in-process Ray cluster of 2 CPUs serves the whole module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from n2n_infer import workers
from n2n_infer.cli import main
from n2n_infer.registry import resolve_model
from tests.conftest import REPO, synthetic_photo

ray = pytest.importorskip("ray")
n2n_ray = pytest.importorskip("n2n_infer.ray")


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """A local Ray cluster of 2 CPUs, started once for the module."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled photo model copied to a path of its own (so it is shipped as a file)."""
    path = tmp_path_factory.mktemp("model") / "copied.onnx"
    shutil.copyfile(resolve_model("photo"), path)
    return path


@pytest.fixture(scope="module")
def in_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small images of mixed sizes, formats and depths, one bad file, one subfolder."""
    folder = tmp_path_factory.mktemp("in")
    rng = np.random.default_rng(19)
    Image.fromarray(synthetic_photo(rng, 24, 40)).save(folder / "a.png")
    Image.fromarray(synthetic_photo(rng, 33, 47)).save(folder / "b.jpg", quality=90)
    rgba = np.dstack([synthetic_photo(rng, 17, 31), rng.integers(0, 256, (17, 31), np.uint8)])
    Image.fromarray(rgba).save(folder / "c.png")
    grey16 = rng.integers(0, 65536, (20, 28), dtype=np.uint16)
    Image.fromarray(grey16).save(folder / "d16.png")
    Image.fromarray(synthetic_photo(rng, 26, 18)).save(folder / "e.tif")
    (folder / "sub").mkdir()
    Image.fromarray(synthetic_photo(rng, 16, 16)).save(folder / "sub" / "f.webp", quality=80)
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return folder


@pytest.fixture(scope="module")
def ref_dir(tmp_path_factory: pytest.TempPathFactory, in_dir: Path) -> Path:
    """A clean reference for a.png only."""
    folder = tmp_path_factory.mktemp("ref")
    shutil.copyfile(in_dir / "a.png", folder / "a.png")
    return folder


def _batch(in_dir: Path, out: Path, model: Path, *extra: object) -> Result:
    args = ["batch", in_dir, out, "--model", model, "--device", "cpu", "--recursive", *extra]
    return CliRunner().invoke(main, [str(a) for a in args])


def _tree(folder: Path) -> dict[str, str]:
    """Relative name -> sha256 of every file under ``folder``."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _files(report: Path) -> list[dict]:
    entries = json.loads(report.read_text())["files"]
    return [{k: v for k, v in e.items() if k != "seconds"} for e in entries]


@pytest.fixture(scope="module")
def both(
    cluster: None, tmp_path_factory: pytest.TempPathFactory, in_dir, ref_dir, model_path
) -> dict[str, tuple[Result, Path, Path]]:
    """The local and the Ray engine (2 workers) on ``in_dir``: (result, out folder, report)."""
    before = _tree(in_dir)
    runs = {}
    for engine, extra in (("local", ()), ("ray", ("--engine", "ray", "--workers", 2))):
        tmp = tmp_path_factory.mktemp(engine)
        out, report = tmp / "out", tmp / "report.json"
        result = _batch(in_dir, out, model_path, "--reference", ref_dir, "--report", report, *extra)
        runs[engine] = (result, out, report)
    assert _tree(in_dir) == before, "the input folder changed"
    return runs


def test_ray_outputs_are_byte_identical_to_the_local_engine(both):
    (_, local_out, _), (_, ray_out, _) = both["local"], both["ray"]
    local, remote = _tree(local_out), _tree(ray_out)
    assert sorted(local) == ["a.png", "b.jpg", "c.png", "d16.png", "e.tif", "sub/f.webp"]
    assert remote == local


def test_the_levels_option_reaches_the_workers(cluster, tmp_path, model_path):
    """A dim 16-bit image (a microscope's) with --levels full and auto on both engines: the
    same bytes for each setting, and not the same bytes for the two."""
    only = tmp_path / "in"
    only.mkdir()
    dim16 = np.random.default_rng(20).integers(100, 450, (22, 30), dtype=np.uint16)
    Image.fromarray(dim16).save(only / "dim16.png")
    outs = {}
    for name, extra in (("local", ()), ("ray", ("--engine", "ray"))):
        for levels in ("auto", "full"):
            out = tmp_path / f"{name}-{levels}"
            assert _batch(only, out, model_path, "--levels", levels, *extra).exit_code == 0
            outs[name, levels] = _tree(out)
    assert outs["ray", "full"] == outs["local", "full"] != outs["local", "auto"]
    assert outs["ray", "auto"] == outs["local", "auto"]


def test_ray_report_and_exit_status_match_the_local_engine(both):
    (local, _, local_report), (remote, _, ray_report) = both["local"], both["ray"]
    assert local.exit_code == remote.exit_code == 1, remote.output
    assert _files(ray_report) == _files(local_report)
    failed = [e for e in _files(ray_report) if e["status"] == "error"]
    assert [e["name"] for e in failed] == ["bad.png"]
    assert "FAILED  bad.png: " in remote.output
    assert "6 denoised, 0 skipped, 1 failed" in remote.output
    assert "mean PSNR gain" in remote.output  # a.png's reference went to a worker


def test_skip_existing_rerun_redoes_only_what_is_missing(both, in_dir, model_path):
    _, out, _ = both["ray"]
    (out / "b.jpg").unlink()
    (out / "sub" / "f.webp").unlink()
    kept = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    rerun = _batch(in_dir, out, model_path, "--engine", "ray", "--skip-existing", "--quiet")
    assert rerun.exit_code == 1, rerun.output  # bad.png still fails
    assert "2 denoised, 4 skipped, 1 failed" in rerun.output
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert _tree(out) == _tree(both["local"][1])
    again = _batch(in_dir, out, model_path, "--engine", "ray", "--skip-existing", "--quiet")
    assert "0 denoised, 6 skipped, 1 failed" in again.output


def test_existing_outputs_are_refused_as_by_the_local_engine(both, in_dir, model_path):
    _, out, _ = both["ray"]
    before = _tree(out)
    again = _batch(in_dir, out, model_path, "--engine", "ray", "--quiet")
    assert again.exit_code == 1
    assert "a.png exists (use --overwrite or --skip-existing)" in again.output
    assert _tree(out) == before


def test_an_output_folder_inside_the_input_is_refused(cluster, in_dir, model_path):
    result = _batch(in_dir, in_dir / "out", model_path, "--engine", "ray")
    assert result.exit_code == 2
    assert "is inside input folder" in result.output
    assert not (in_dir / "out").exists()


def _denoise_workers() -> list[int]:
    """PIDs of this test's DenoiseFiles actors (children of the raylet this process started)."""

    def parent(pid: str) -> int:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[1])

    found = []
    for entry in Path("/proc").iterdir():
        try:
            ours = b"MapBatches(DenoiseFiles)" in (entry / "cmdline").read_bytes()
            if ours and parent(str(parent(entry.name))) == os.getpid():
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("N2N_TEST_RAY_RESTART") != "1",
    reason="a Ray actor restart took 5-36 s on 2 shared CPUs; set N2N_TEST_RAY_RESTART=1",
)
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs /proc")
def test_a_worker_killed_mid_job_is_restarted_and_the_job_finishes(cluster, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(5)
    for i in range(8):
        Image.fromarray(synthetic_photo(rng, 24, 24 + i)).save(src / f"{i}.png")
    killed: list[int] = []

    def kill_once(_: object) -> None:
        if not killed:
            killed.extend(_denoise_workers())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    spec = n2n_ray.DenoiserSpec("photo", device="cpu")
    report, _ = n2n_ray.denoise_folder_ray(spec, src, tmp_path / "out", on_file=kill_once)
    assert len(killed) == 1
    assert report.count("ok") == 8, [r.error for r in report.failed]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{i}.png" for i in range(8)]


def test_an_output_link_into_the_input_folder_is_refused_per_file(cluster, tmp_path, model_path):
    src, out = tmp_path / "in", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(7)
    Image.fromarray(synthetic_photo(rng, 16, 24)).save(src / "top.png")
    Image.fromarray(synthetic_photo(rng, 16, 24)).save(src / "sub" / "x.png")
    out.mkdir()
    (out / "sub").symlink_to(src / "sub")  # OUT/sub/x.png would overwrite IN/sub/x.png
    before = _tree(src)
    result = _batch(src, out, model_path, "--engine", "ray", "--overwrite", "--quiet")
    assert result.exit_code == 1
    assert "FAILED  sub/x.png: refused to write" in result.output
    assert _tree(src) == before and (out / "top.png").is_file()


def test_denoise_images_runs_in_a_ray_pipeline(cluster):
    rng = np.random.default_rng(1)
    images = [synthetic_photo(rng, 20, 36), synthetic_photo(rng, 9, 13)]
    ds = ray.data.from_items([{"id": i, "image": img} for i, img in enumerate(images)])
    ds = ds.map_batches(
        workers.DenoiseImages,
        fn_constructor_kwargs={"spec": workers.DenoiserSpec("photo", device="cpu")},
        compute=ray.data.ActorPoolStrategy(size=1),
        batch_size=2,
        batch_format="numpy",
    )
    rows = sorted(ds.take_all(), key=lambda r: r["id"])
    local = workers.DenoiseImages(workers.DenoiserSpec("photo", device="cpu")).denoiser
    for row, img in zip(rows, images, strict=True):
        np.testing.assert_array_equal(row["denoised"], local.denoise(img))


def test_a_file_the_driver_cannot_read_becomes_that_files_error(tmp_path):
    good, ref = tmp_path / "a.png", tmp_path / "ref.png"
    good.write_bytes(b"png bytes")
    ref.write_bytes(b"ref bytes")
    batch = {
        "name": workers.object_column(["a.png", "dir.png"]),
        "src": workers.object_column([str(good), str(tmp_path)]),  # a folder cannot be read
        "ref": workers.object_column([str(ref), ""]),
    }
    out = n2n_ray._read_files(batch)
    assert [bytes(d) for d in out["data"]] == [b"png bytes", b""]
    assert [bytes(r) for r in out["ref"]] == [b"ref bytes", b""]
    assert list(out["has_ref"]) == [True, False]
    assert out["read_error"][0] == ""
    assert out["read_error"][1].startswith("not a regular file (a folder)")


class _FifoWriter:
    """A thread that writes a few bytes into a FIFO once a reader opens it (so that a
    reader that waits for a writer would get them, and never hangs)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.thread = threading.Thread(target=self._write, daemon=True)
        self.thread.start()

    def _write(self) -> None:
        with contextlib.suppress(OSError), open(self.path, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n from a FIFO")

    def finish(self) -> None:
        """Open the FIFO for reading once, so that the writer's open returns."""
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self.thread.join(timeout=30)
        os.close(fd)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_the_read_task_reads_only_regular_files(tmp_path):
    """A FIFO would hang the read task (or be read as bytes), /dev/zero would exhaust memory:
    both are refused by name without reading; so is a folder."""
    fifo, zero, good = tmp_path / "f.png", tmp_path / "z.png", tmp_path / "a.png"
    os.mkfifo(fifo)
    zero.symlink_to("/dev/zero")
    good.write_bytes(b"png bytes")
    writer = _FifoWriter(fifo)
    names = ["f.png", "z.png", "a.png", "d.png"]
    batch = {
        "name": workers.object_column(names),
        "src": workers.object_column([str(fifo), str(zero), str(good), str(tmp_path)]),
        "ref": workers.object_column(["", "", str(zero), ""]),
    }
    try:
        out = n2n_ray._read_files(batch)
    finally:
        writer.finish()
    assert [bytes(d) for d in out["data"]] == [b"", b"", b"png bytes", b""]
    assert list(out["read_error"]) == [
        "not a regular file (a FIFO): only image files are read",
        "not a regular file (a character device): only image files are read",
        f"reference {zero}: not a regular file (a character device): only image files are read",
        "not a regular file (a folder): only image files are read",
    ]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@settings(max_examples=30, deadline=None, derandomize=True)
@given(kind=st.sampled_from(["file", "empty", "fifo", "zero", "dir", "broken", "loop", "link"]))
def test_property_the_read_task_never_reads_what_is_not_a_regular_file(kind):
    """Every kind of input path: a regular file's bytes (a link followed), or b"" and why."""
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        path, real = tmp / "x.png", tmp / "real.png"
        real.write_bytes(b"bytes")
        if kind == "file":
            path.write_bytes(b"bytes")
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "dir":
            path.mkdir()
        else:
            target = {"zero": "/dev/zero", "broken": tmp / "no", "loop": path, "link": real}
            path.symlink_to(target[kind])
        data, error = n2n_ray._read_bytes(path, "")
        if kind in ("file", "link"):
            assert (data, error) == (b"bytes", "")
        elif kind == "empty":
            assert (data, error) == (b"", "")  # the worker's reader says it is empty
        else:
            assert data == b"" and error and "\n" not in error
            special = kind in ("fifo", "zero", "dir")
            assert error.startswith("not a regular file" if special else "cannot read: ")


def test_a_file_larger_than_any_image_is_not_read(tmp_path, monkeypatch):
    big = tmp_path / "big.png"
    big.write_bytes(b"x" * 1000)
    monkeypatch.setattr(n2n_ray, "MAX_FILE_BYTES", 999)
    data, error = n2n_ray._read_bytes(big, "")
    assert data == b"" and error.startswith("1000 bytes, more than any image file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifos_and_devices_in_the_input_fail_by_name_and_the_rest_is_written(
    cluster, tmp_path, model_path
):
    """The driver refuses them before any task is made, as the local engine does."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(synthetic_photo(np.random.default_rng(3), 16, 24)).save(src / "a.png")
    os.mkfifo(src / "fifo.png")
    (src / "zero.png").symlink_to("/dev/zero")
    writer = _FifoWriter(src / "fifo.png")
    try:
        result = _batch(src, out, model_path, "--engine", "ray", "--quiet")
    finally:
        writer.finish()
    assert result.exit_code == 1, result.output
    assert "FAILED  fifo.png: not a regular file (a FIFO)" in result.output
    assert "FAILED  zero.png: not a regular file (a character device)" in result.output
    assert "1 denoised, 0 skipped, 2 failed" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]


@pytest.mark.slow
def test_a_successful_ray_run_prints_no_line_of_rays_own(tmp_path):
    """Ray's warnings (token authentication, progress bars disabled, an operator's
    concurrency), its Ray Data INFO lines and its core worker's error lines stay off
    the terminal of a run without -v: stderr holds the progress bar only."""
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(synthetic_photo(np.random.default_rng(4), 16, 24)).save(src / "a.png")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # a fresh cluster
    args = ["batch", src, tmp_path / "out", "--engine", "ray", "--model", "seedlike"]
    done = subprocess.run(
        [sys.executable, "-m", "n2n_infer.cli", *map(str, args), "--device", "cpu"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("1 denoised, 0 skipped, 0 failed")
    pieces = [p for p in re.split(r"[\r\n]+", done.stderr) if p.strip()]
    assert pieces and [p for p in pieces if not re.match(r"\s*\d+%\|", p)] == []
