"""Hardening of the runtime: what stands at a write's target, jobs sharing an output folder,
text that reaches the terminal, constructor arguments, and tile progress.

- ``n2n_infer.files.write_atomic`` never renames over anything that is not a regular file
  (a FIFO, a device, a folder): it refuses it, or with ``stream_ok`` writes into it; a
  symbolic link is followed (its target written, the link kept); ``/dev/stdout``, ``-``
  and ``/dev/fd/N`` go to the open descriptor; no ``.part`` file is ever left.
- A job's cleanup deletes only provably stale temporary files: one that a live writer
  (another job, another process) holds is kept.
- File names, model metadata and error messages are printed escaped
  (``n2n_infer.errors.printable``): they cannot drive the terminal or forge a line.
- ``Denoiser`` checks every argument's type and range before loading anything; a folder
  given as the model says it is a folder.
- A tiled image reports each tile (``on_tile``), and ``batch``'s bar shows it.

The models are the bundled ``seedlike`` (small and fast) and copies of it with altered
metadata. FIFOs and devices need a POSIX system.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys
import threading
import unicodedata
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from n2n_infer import Denoiser, ModelLoadError, N2NError
from n2n_infer import batch as batch_module
from n2n_infer.cli import PrintableFormatter, main
from n2n_infer.errors import UNPRINTABLE, ArgumentError, NotRegularFileError, printable
from n2n_infer.files import (
    is_temp_name,
    remove_stale_temp,
    resolve_target,
    temp_name,
    write_atomic,
    write_text_atomic,
)
from n2n_infer.registry import available_models, resolve_model
from n2n_infer.tiling import tile_count
from tests.conftest import REPO, synthetic_photo

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")

#: A tile edge the seedlike model accepts (stride 4, overlap 64): a 150×200 image has 4 tiles.
TILE = 132
#: A file name that would retitle a terminal, ring its bell and forge a FAILED line.
HOSTILE = "a\x1b]0;pwned\x07\nFAILED x.png"
SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def _save(path: Path, seed: int = 0, size: tuple[int, int] = (24, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(synthetic_photo(np.random.default_rng(seed), *size)).save(path, format="PNG")


def _parts(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if is_temp_name(p.name)]


def _kind(path: Path) -> str:
    mode = os.lstat(path).st_mode
    for test, word in ((stat.S_ISLNK, "link"), (stat.S_ISFIFO, "fifo"), (stat.S_ISDIR, "dir")):
        if test(mode):
            return word
    return "char" if stat.S_ISCHR(mode) else "file"


class FifoReader:
    """A thread reading everything written into a FIFO, until its writer closes it."""

    def __init__(self, path: Path) -> None:
        self.path, self.data = path, b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with open(self.path, "rb") as f:
            self.data = f.read()

    def join(self) -> bytes:
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "nothing was written into the FIFO"
        return self.data


# -- 1. atomic writes and what stands at the target ----------------------------------------


def test_a_fifo_target_is_written_into_with_stream_ok_and_stays_a_fifo(tmp_path):
    fifo = tmp_path / "report.json"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    write_text_atomic(fifo, '{"ok": 1}\n', stream_ok=True)
    assert reader.join() == b'{"ok": 1}\n'
    assert _kind(fifo) == "fifo" and _parts(tmp_path) == []


@pytest.mark.parametrize("stream_ok", [False, True])
def test_a_folder_target_is_refused_and_kept(tmp_path, stream_ok):
    folder = tmp_path / "out.json"
    folder.mkdir()
    (folder / "inside.txt").write_text("kept")
    with pytest.raises(NotRegularFileError, match=r"out\.json: is a folder, not a regular file"):
        write_text_atomic(folder, "x", stream_ok=stream_ok)
    assert (folder / "inside.txt").read_text() == "kept" and _parts(tmp_path) == []


def test_a_fifo_target_without_stream_ok_is_refused_by_name_and_kept(tmp_path):
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFileError, match=r"model\.onnx: is a FIFO, not a regular file"):
        write_atomic(fifo, lambda f: f.write(b"bytes"))
    assert _kind(fifo) == "fifo" and _parts(tmp_path) == []


def test_the_error_is_an_oserror_and_an_n2n_error(tmp_path):
    os.mkfifo(tmp_path / "f")
    with pytest.raises(OSError) as caught:
        write_text_atomic(tmp_path / "f", "x")
    assert isinstance(caught.value, N2NError)
    assert str(caught.value).count("\n") == 0


def test_a_link_to_a_regular_file_is_followed_and_kept(tmp_path):
    target = tmp_path / "real" / "r.json"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "r.json"
    link.symlink_to(target)
    write_text_atomic(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new" and _parts(tmp_path) == []


def test_a_link_to_a_device_is_kept_and_the_device_never_replaced(tmp_path):
    """As root, the old rename replaced what the path named: here the link, not /dev/null."""
    link = tmp_path / "null.onnx"
    link.symlink_to("/dev/null")
    with pytest.raises(NotRegularFileError, match="is a character device"):
        write_atomic(link, lambda f: f.write(b"model"))
    write_atomic(link, lambda f: f.write(b"model"), stream_ok=True)  # like > /dev/null
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and _parts(tmp_path) == []


def test_a_link_to_a_fifo_is_written_into_with_stream_ok(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "r.json"
    link.symlink_to(fifo)
    with pytest.raises(NotRegularFileError, match="FIFO"):
        write_text_atomic(link, "x")
    reader = FifoReader(fifo)
    write_text_atomic(link, "through the link", stream_ok=True)
    assert reader.join() == b"through the link"
    assert _kind(link) == "link" and _kind(fifo) == "fifo"


def test_links_are_resolved_as_the_kernel_resolves_them(tmp_path):
    """A relative link inside a linked folder, a chain of links, a broken link."""
    (tmp_path / "x" / "y").mkdir(parents=True)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b").symlink_to("../x/y")
    (tmp_path / "x" / "y" / "link").symlink_to("../z")
    (tmp_path / "chain").symlink_to("a/b/link")
    (tmp_path / "x" / "z").write_text("z")
    for path in ("a/b/link", "chain", "a/b/missing", "x/y/link"):
        target, fd = resolve_target(tmp_path / path)
        assert fd is None and target == Path(os.path.realpath(tmp_path / path)), path
    write_text_atomic(tmp_path / "chain", "new")
    assert (tmp_path / "x" / "z").read_text() == "new" and (tmp_path / "chain").is_symlink()


def test_dev_stdout_is_refused_without_stream_ok(tmp_path):
    with pytest.raises(NotRegularFileError, match="/dev/stdout: is an open descriptor"):
        write_text_atomic("/dev/stdout", "x")


def test_a_failing_writer_into_a_stream_writes_nothing(tmp_path):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)

    def fails(f):
        f.write(b"half")
        raise RuntimeError("encoder failed")

    with pytest.raises(RuntimeError):
        write_atomic(fifo, fails, stream_ok=True)  # never opened: no reader is needed
    assert _kind(fifo) == "fifo" and _parts(tmp_path) == []


def test_a_socket_target_is_refused(tmp_path):
    path = tmp_path / "s.json"
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.bind(str(path))
        except OSError as exc:
            pytest.skip(f"no unix socket here: {exc}")
        with pytest.raises(NotRegularFileError, match="is a socket"):
            write_text_atomic(path, "x", stream_ok=True)
        assert stat.S_ISSOCK(os.lstat(path).st_mode)


TARGETS = ["missing", "file", "link_file", "link_missing", "fifo", "link_fifo", "dir", "link_dir"]


@SETTINGS
@given(kind=st.sampled_from(TARGETS), stream_ok=st.booleans(), data=st.binary(max_size=64))
def test_property_no_target_is_ever_replaced_unless_a_regular_file(
    tmp_path_factory, kind, stream_ok, data
):
    """For every kind of target: a regular file (or nothing) ends up holding ``data``;
    anything else keeps its kind, and is written into (FIFO, with stream_ok) or refused;
    links are kept; no temporary file is left."""
    tmp = tmp_path_factory.mktemp("t")
    real = tmp / "real"
    if kind.endswith("file"):
        real.write_bytes(b"old")
    elif kind.endswith("fifo"):
        os.mkfifo(real)
    elif kind.endswith("dir"):
        real.mkdir()
    path = real
    if kind.startswith("link"):
        path = tmp / "link"
        path.symlink_to(real)
    reader = FifoReader(real) if kind.endswith("fifo") and stream_ok else None
    try:
        write_atomic(path, lambda f: f.write(data), stream_ok=stream_ok)
        wrote = True
    except NotRegularFileError as exc:
        wrote = False
        assert str(path) in str(exc) and "not a regular file" in str(exc)
    if kind.endswith(("file", "missing")):
        assert wrote and real.read_bytes() == data and _kind(real) == "file"
    elif kind.endswith("fifo"):
        assert wrote == stream_ok and _kind(real) == "fifo"
        if reader is not None:
            assert reader.join() == data
    else:
        assert not wrote and _kind(real) == "dir"
    if kind.startswith("link"):
        assert _kind(path) == "link"
    assert _parts(tmp) == []


INPUTS = ["good", "bad", "fifo", "link_zero", "link_fifo", "broken_link", "link_loop", "link_good"]


@SETTINGS
@given(kinds=st.lists(st.sampled_from(INPUTS), min_size=1, max_size=5))
def test_property_special_inputs_fail_by_name_and_never_stop_the_job(tmp_path_factory, kinds):
    """Whatever mix of regular files, FIFOs, devices and links IN holds: nothing hangs or
    is read endlessly, each special file fails by its name, every good image is written."""
    tmp = tmp_path_factory.mktemp("i")
    src, out = tmp / "in", tmp / "out"
    src.mkdir()
    _save(tmp / "other" / "elsewhere.png")  # not beside OUT: that folder holds an input
    os.mkfifo(tmp / "fifo")
    expected = {}
    for i, kind in enumerate(kinds):
        path = src / f"{i}-{kind}.png"
        if kind == "good":
            _save(path, i)
        elif kind == "bad":
            path.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "link_loop":
            path.symlink_to(path.name)
        else:
            target = {
                "link_zero": "/dev/zero",
                "link_fifo": tmp / "fifo",
                "broken_link": tmp / "missing.png",
                "link_good": tmp / "other" / "elsewhere.png",
            }[kind]
            path.symlink_to(target)
        expected[path.name] = "ok" if kind in ("good", "link_good") else "error"
    d = Denoiser("seedlike", device="cpu")
    report = batch_module.denoise_folder(d, src, out)
    assert {r.name: r.status for r in report.results} == expected
    for r in report.failed:
        assert r.error and "\n" not in r.error
        if "fifo" in r.name or "zero" in r.name:
            assert "not a regular file" in r.error, r
    written = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert written == sorted(n for n, status in expected.items() if status == "ok")
    assert _parts(tmp) == []


def _stdout_report(tmp_path: Path, report: str) -> str:
    """``n2n-infer batch ... --report REPORT > run.log`` in a new process; run.log's text."""
    src = tmp_path / "in"
    _save(src / "a.png")
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        args = ["batch", src, tmp_path / "out", "--model", "seedlike", "--device", "cpu"]
        done = subprocess.run(
            [sys.executable, "-m", "n2n_infer.cli", *map(str, args), "--report", report],
            stdout=out,
            stderr=subprocess.PIPE,
            cwd=REPO,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr.decode()
    return log.read_text()


@pytest.mark.parametrize("report", ["/dev/stdout", "-"])
def test_report_to_standard_output_redirected_to_a_file_keeps_the_result_lines(tmp_path, report):
    text = _stdout_report(tmp_path, report)
    lines = text.splitlines()
    assert lines[0].startswith("ok      a.png") and lines[1].startswith("1 denoised")
    doc = json.loads("\n".join(lines[2:]))
    assert doc["totals"]["ok"] == 1 and doc["files"][0]["name"] == "a.png"
    assert _parts(tmp_path) == []


def test_report_into_a_fifo_is_read_by_its_reader_and_the_fifo_kept(tmp_path):
    src, fifo = tmp_path / "in", tmp_path / "report.fifo"
    _save(src / "a.png")
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    result = _run("batch", src, tmp_path / "out", "--model", "seedlike", "--report", fifo)
    assert result.exit_code == 0, result.output
    assert json.loads(reader.join())["totals"]["ok"] == 1
    assert _kind(fifo) == "fifo" and _parts(tmp_path) == []


def test_an_output_that_is_a_fifo_fails_by_name_and_is_kept(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    _save(src / "a.png")
    _save(src / "b.png", 1)
    out.mkdir()
    os.mkfifo(out / "a.png")
    result = _run("batch", src, out, "--model", "seedlike", "--overwrite")
    assert result.exit_code == 1, result.output
    assert "FAILED  a.png: " in result.output and "is a FIFO, not a regular file" in result.output
    assert _kind(out / "a.png") == "fifo" and (out / "b.png").is_file()


def test_an_output_link_to_an_input_file_is_refused(tmp_path):
    """Links are followed to the end now, so an output link into IN is caught by name."""
    src, out = tmp_path / "in", tmp_path / "out"
    _save(src / "a.png")
    before = (src / "a.png").read_bytes()
    out.mkdir()
    (out / "a.png").symlink_to(src / "a.png")
    result = _run("batch", src, out, "--model", "seedlike", "--overwrite")
    assert result.exit_code == 1 and "refused to write" in result.output
    assert (src / "a.png").read_bytes() == before and (out / "a.png").is_symlink()


# -- 2. two jobs on one output folder --------------------------------------------------------


def test_a_live_writers_temporary_file_survives_another_jobs_start(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    _save(src / "a.png")
    out.mkdir()
    stale = out / temp_name("b.png")
    stale.write_bytes(b"left by kill -9")
    writing, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def slow(f):
        f.write(b"first job's bytes")
        writing.set()
        release.wait(30)

    def first_job():
        try:
            write_atomic(out / "c.png", slow)
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=first_job)
    thread.start()
    assert writing.wait(30)
    live = [p for p in _parts(out) if p != stale.name]
    batch_module.start_job(src, out)  # the second job's start: its cleanup
    assert sorted(_parts(out)) == sorted(live) and not stale.exists()
    release.set()
    thread.join(30)
    assert errors == [] and (out / "c.png").read_bytes() == b"first job's bytes"
    assert _parts(out) == []


def test_a_temporary_file_of_another_live_process_is_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    code = (
        "import sys; from n2n_infer.files import write_atomic\n"
        "def w(f):\n    f.write(b'x'); print('ready', flush=True); sys.stdin.readline()\n"
        "write_atomic(sys.argv[1], w)\n"
    )
    other = subprocess.Popen(
        [sys.executable, "-c", code, str(out / "a.png")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=REPO,
        text=True,
    )
    try:
        assert other.stdout.readline().strip() == "ready"
        (live,) = _parts(out)
        assert batch_module.remove_stale_temp_files(out, tmp_path / "in") == []
        assert _parts(out) == [live]
        other.stdin.write("\n")
        other.stdin.flush()
        assert other.wait(60) == 0
    finally:
        other.kill()
    assert (out / "a.png").read_bytes() == b"x" and _parts(out) == []


def test_a_killed_writers_temporary_file_is_stale(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    code = (
        "import os, sys; from n2n_infer.files import write_atomic\n"
        "write_atomic(sys.argv[1], lambda f: os._exit(9))\n"  # dies mid-write, lock held
    )
    done = subprocess.run([sys.executable, "-c", code, str(out / "a.png")], cwd=REPO)
    assert done.returncode == 9
    (left,) = _parts(out)
    assert batch_module.remove_stale_temp_files(out, tmp_path / "in") == [out / left]
    assert _parts(out) == []


def test_only_regular_temporary_files_are_removed(tmp_path):
    fifo, link = tmp_path / temp_name("a.png"), tmp_path / temp_name("b.png")
    os.mkfifo(fifo)
    link.symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").write_text("kept")
    assert not remove_stale_temp(fifo) and not remove_stale_temp(link)
    assert _kind(fifo) == "fifo" and link.is_symlink()


# -- 9. terminal injection ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a\x1b]0;pwned\x07b", "a\\x1b]0;pwned\\x07b"),
        ("x\nFAILED y", "x\\nFAILED y"),
        ("tab\there\r", "tab\\there\\r"),
        ("\x7f\x9b2J\x85", "\\x7f\\x9b2J\\x85"),
        ("exe.\u202egnp", "exe.\\u202egnp"),
        ("\u2028\u2029\u2066\u2069\u200f", "\\u2028\\u2029\\u2066\\u2069\\u200f"),
        ("bad byte \udcff", "bad byte \\udcff"),
        ("é 日本 \\x1b ✓", "é 日本 \\x1b ✓"),
    ],
)
def test_printable_escapes_what_drives_a_terminal(text, shown):
    assert printable(text) == shown


def _has_control(text: str) -> bool:
    return any(
        unicodedata.category(c) in ("Cc", "Cs") or c in "\u2028\u2029\u061c\u200e\u200f"
        or "\u202a" <= c <= "\u202e" or "\u2066" <= c <= "\u2069"
        for c in text
    )  # fmt: skip


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.text())
def test_property_printable_leaves_no_control_character(text):
    shown = printable(text)
    assert not _has_control(shown)
    assert printable(shown) == shown
    if not UNPRINTABLE.search(text):
        assert shown == text  # printable text round-trips unchanged


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Cf"))))
def test_property_printable_text_is_unchanged(text):
    assert printable(text) == text


def _hostile_tree(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "in"
    _save(src / f"{HOSTILE}", size=(150, 200))  # a good image under the hostile name
    (src / "b\x1b[2J\u202e.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # fails
    return src, tmp_path / "out"


def test_batch_prints_hostile_names_escaped_and_forges_no_line(tmp_path):
    src, out = _hostile_tree(tmp_path)
    report = tmp_path / "r.json"
    result = _run("batch", src, out, "--model", "seedlike", "--report", report, "--tile", TILE)
    assert result.exit_code == 1, result.output
    assert not _has_control(result.stdout.replace("\n", ""))
    assert not _has_control(result.stderr.replace("\n", "").replace("\r", ""))  # tqdm's \r
    assert "a\\x1b]0;pwned\\x07\\nFAILED x.png: tile 4/4" in result.stderr  # the bar's text
    lines = result.stdout.splitlines()
    failed = [line for line in lines if line.startswith("FAILED")]
    assert len(failed) == 1 and failed[0].startswith("FAILED  b\\x1b[2J\\u202e.png: ")
    assert any(line.startswith("ok      a\\x1b]0;pwned\\x07\\nFAILED x.png") for line in lines)
    names = sorted(e["name"] for e in json.loads(report.read_text())["files"])
    assert names == sorted([HOSTILE, "b\x1b[2J\u202e.png"])  # the report keeps them exact


def test_a_hostile_folder_name_in_an_error_is_escaped(tmp_path):
    result = _run("batch", tmp_path / "no\x1b]0;x\x07such", tmp_path / "out")
    assert result.exit_code == 2
    assert "\x1b" not in result.output and "no\\x1b]0;x\\x07such" in result.output


@SETTINGS
@given(
    name=st.text(
        alphabet=st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=40,
    )
)
def test_property_any_file_name_prints_as_one_escaped_line(tmp_path_factory, name):
    assume(not name.startswith("."))  # hidden files are not inputs
    tmp = tmp_path_factory.mktemp("n")
    src = tmp / "in"
    src.mkdir()
    try:
        (src / f"{name}.png").write_bytes(b"not an image")
    except OSError:  # too long in bytes for this file system
        return
    result = _run("batch", src, tmp / "out", "--model", "seedlike", "--quiet")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"FAILED  {printable(name)}.png: ")
    assert not _has_control("".join(lines))


@pytest.fixture(scope="module")
def hostile_model(tmp_path_factory) -> Path:
    """seedlike with a name and noise that hold escape sequences, a newline and a bidi override."""
    model = onnx.load(str(resolve_model("seedlike")))
    for prop in model.metadata_props:
        if prop.key == "n2n.name":
            prop.value = "seed\x1b]0;pwned\x07\nFAILED x\u202egnp.exe"
        if prop.key in ("n2n.noise", "n2n.noise_description"):  # format 1 shows the first
            prop.value = "gaussian:25\x1b[2J"
    path = tmp_path_factory.mktemp("m") / "hostile.onnx"
    onnx.save(model, str(path))
    return path


def test_info_prints_hostile_metadata_escaped(hostile_model):
    result = _run("info", hostile_model)
    assert result.exit_code == 0, result.output
    assert not _has_control(result.output.replace("\n", ""))
    assert "seed\\x1b]0;pwned\\x07\\nFAILED x\\u202egnp.exe" in result.output
    assert "25\\x1b[2J" in result.output
    as_json = _run("info", hostile_model, "--json")
    assert json.loads(as_json.output)["name"].startswith("seed\x1b]0;pwned")
    assert not _has_control(as_json.output.replace("\n", ""))


def test_load_errors_quoting_node_names_are_escaped(tmp_path):
    model = onnx.load(str(resolve_model("seedlike")))
    evil = "noisy\x1b]0;pwned\x07\nFAILED y"
    model.graph.input[0].name = evil
    for node in model.graph.node:
        node.input[:] = [evil if i == "noisy" else i for i in node.input]
    path = tmp_path / "nodes.onnx"
    onnx.save(model, str(path))
    for args in (("info", path), ("doctor", "--model", path)):
        result = _run(*args)
        assert result.exit_code in (1, 2)
        assert not _has_control(result.output.replace("\n", "")), args


def test_doctor_prints_a_hostile_model_path_escaped(tmp_path):
    result = _run("doctor", "--model", tmp_path / "m\x1b]0;pwned\x07\nFAILED.onnx")
    assert result.exit_code == 1
    assert not _has_control(result.output.replace("\n", ""))
    last = result.output.splitlines()[-1]
    assert last.startswith("model: not usable: ") and "m\\x1b]0;pwned\\x07\\nFAILED.onnx" in last


def test_log_lines_are_escaped():
    record = logging.LogRecord("n2n", logging.INFO, __file__, 1, "%s: %s", (HOSTILE, "x"), None)
    line = PrintableFormatter("%(levelname)s %(message)s").format(record)
    assert line == "INFO a\\x1b]0;pwned\\x07\\nFAILED x.png: x"


# -- 11. clear errors for unusable arguments -------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"batch_size": 1.5}, "batch_size: expected an integer >= 1, got 1.5 (float)"),
        ({"batch_size": True}, "batch_size: expected an integer >= 1, got True (bool)"),
        ({"batch_size": "8"}, "batch_size: expected an integer >= 1, got '8' (str)"),
        ({"batch_size": 0}, "batch_size: expected an integer >= 1, got 0"),
        ({"intra_op_threads": -1}, "intra_op_threads: expected an integer >= 0, got -1"),
        ({"intra_op_threads": 2.0}, "intra_op_threads: expected an integer >= 0, got 2.0"),
        ({"tile_size": 256.0}, "tile_size: expected an integer >= 1 or None, got 256.0"),
        ({"tile_size": 0}, "tile_size: expected an integer >= 1 or None, got 0"),
        ({"tile_overlap": 1.5}, "tile_overlap: expected an integer >= 0 or None, got 1.5"),
        ({"max_untiled_pixels": 1e6}, "max_untiled_pixels: expected an integer >= 0"),
        ({"max_batch_pixels": 0}, "max_batch_pixels: expected an integer >= 1, got 0"),
        ({"device": None}, "device: expected a string, got None"),
        ({"grey": 1}, "grey: expected a string, got 1 (int)"),
        ({"levels": None}, "levels: expected a string, got None"),
        ({"session_config": {}}, "session_config: expected a SessionConfig or None, got {}"),
        ({"model": 3}, "model: expected a bundled model's name, a path to an .onnx file"),
    ],
)
def test_unusable_constructor_arguments_are_named_up_front(kwargs, words):
    kwargs = {"model": "seedlike", "device": "cpu", **kwargs}
    with pytest.raises(ArgumentError) as caught:
        Denoiser(**kwargs)
    message = str(caught.value)
    assert message.startswith(words) and "\n" not in message
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, TypeError)


def test_numpy_integers_are_accepted():
    d = Denoiser(
        "seedlike",
        device="cpu",
        batch_size=np.int64(2),
        tile_size=np.int32(TILE),
        intra_op_threads=np.uint8(1),
    )
    assert type(d.batch_size) is int and d.tiles.size == TILE
    img = synthetic_photo(np.random.default_rng(0), 40, 50)
    assert d.denoise(img, tile=True).shape == img.shape


def test_a_folder_as_the_model_says_it_is_a_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="is a folder, not a model") as caught:
        Denoiser(tmp_path)
    for name in available_models():
        assert name in str(caught.value)
    src = tmp_path / "in"
    _save(src / "a.png")
    for args in (
        ("batch", src, tmp_path / "out", "--model", tmp_path),
        ("info", tmp_path),
        ("doctor", "--model", tmp_path),
    ):
        result = _run(*args)
        assert result.exit_code in (1, 2), args
        last = result.output.splitlines()[-1]
        assert "is a folder, not a model: expected an .onnx file" in last, args
        assert "not found" not in last


def test_a_bundled_name_still_wins_over_a_folder_of_that_name(tmp_path, monkeypatch):
    (tmp_path / "seedlike").mkdir()
    monkeypatch.chdir(tmp_path)
    assert Denoiser("seedlike", device="cpu").path == resolve_model("seedlike")


# -- tile progress ---------------------------------------------------------------------------------


def test_every_tile_of_a_tiled_image_is_reported(tmp_path):
    src = tmp_path / "in"
    _save(src / "big.png", size=(150, 200))
    _save(src / "small.png", size=(20, 20))
    d = Denoiser("seedlike", device="cpu", tile_size=TILE)
    seen: list[tuple[str, int, int]] = []
    report = batch_module.denoise_folder(
        d, src, tmp_path / "out", tile=None, on_tile=lambda *a: seen.append(a)
    )
    assert report.ok and seen == []  # neither is tiled by default
    d.max_untiled_pixels = 1000  # big.png is tiled now, small.png is not
    batch_module.denoise_folder(d, src, tmp_path / "out2", on_tile=lambda *a: seen.append(a))
    total = tile_count((150, 200), d.tiles, d.stride)
    assert total == 4
    assert seen == [("big.png", k, total) for k in range(1, total + 1)]


def test_a_grey_image_counts_its_phase_images_tiles():
    d = Denoiser("seedlike", device="cpu", tile_size=TILE, grey="phases")
    grey = synthetic_photo(np.random.default_rng(1), 300, 400)[:, :, 0]
    seen: list[tuple[int, int]] = []
    d.denoise(grey, tile=True, on_tile=lambda *a: seen.append(a))
    total = 4 * tile_count((150, 200), d.tiles, d.stride)
    assert seen == [(k, total) for k in range(1, total + 1)]


def test_the_batch_bar_shows_each_tile(tmp_path):
    src = tmp_path / "in"
    _save(src / "big.png", size=(150, 200))
    result = _run("batch", src, tmp_path / "out", "--model", "seedlike", "--tile", TILE)
    assert result.exit_code == 0, result.output
    for k in range(1, 5):
        assert f"big.png: tile {k}/4" in result.stderr
