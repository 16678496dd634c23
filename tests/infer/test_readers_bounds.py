"""No reader reads a file whole before checking its header (hardening issue, defect 12).

A small valid image followed by 3 GB of sparse zeros was read whole (PNG: 3 GB
resident, then "ok"; WebP and AVIF 6 GB, HEIF 3 GB); a header declaring a 2 GB PNG
chunk or TIFF tag was read to its end; a JPEG whose scan ran into zeros took five
minutes. Each case of ``scripts/fuzz_readers.py``'s bomb list is read in one child
process whose peak resident memory is measured; special files are refused by name.
"""

from __future__ import annotations

import io
import os
import struct

import numpy as np
import pytest
from PIL import Image

from n2n_infer import containers, imageio
from n2n_infer.errors import ImageError
from scripts.fuzz_readers import BOMB_BYTES, BOMB_MAX_RSS_MB, bomb_cases, run_bombs

#: Seconds a bomb case's read may take (each takes a few milliseconds).
MAX_SECONDS = 5.0


@pytest.fixture(scope="module")
def bomb_results(tmp_path_factory):
    """Every bomb case read once, in one child process: {name: result}."""
    folder = tmp_path_factory.mktemp("bombs")
    return {r.bomb.name: r for r in run_bombs(bomb_cases(), folder)}


@pytest.mark.parametrize("name", [b.name for b in bomb_cases()])
def test_huge_and_sparse_files_are_read_only_as_far_as_their_header_declares(bomb_results, name):
    r = bomb_results.get(name)
    if r is None:
        pytest.skip("FIFOs are not available here")
    assert r.bomb.special or r.bomb.size >= BOMB_BYTES or name == "declared.ppm"
    assert r.rss_mb <= BOMB_MAX_RSS_MB, f"{name}: {r.rss_mb} MB resident: read whole?"
    if r.bomb.expect == "ok":
        assert r.outcome == "ok", f"{name}: {r.outcome}: {r.message}"
    else:
        assert r.outcome == "ImageError", f"{name}: {r.outcome}: {r.message}"
        assert r.bomb.expect in r.message and name in r.message
    assert r.seconds < MAX_SECONDS, f"{name}: {r.seconds} s"


def test_a_valid_image_with_a_sparse_tail_says_what_was_left_unread(bomb_results):
    for name, what in [("tail.png", "IEND chunk"), ("tail.ppm", "image data")]:
        r = bomb_results[name]
        unread = BOMB_BYTES - len(r.bomb.data)
        assert f"{unread} bytes after the {what} ignored (not read)" in r.message, r.message


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_special_files_are_refused_by_name_without_waiting_or_reading(tmp_path):
    """A FIFO without a writer would block an open(); a device would be read forever."""
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "folder.jpg").mkdir()
    cases = {"pipe.png": "a FIFO", "folder.jpg": "a folder"}
    if os.path.exists("/dev/zero"):
        (tmp_path / "zero.png").symlink_to("/dev/zero")
        cases["zero.png"] = "a character device"
    for name, kind in cases.items():
        with pytest.raises(ImageError) as info:
            imageio.read_file(tmp_path / name)
        assert str(info.value) == (
            f"{tmp_path / name}: not a regular file ({kind}): only image files are read"
        )


# --- the bounds themselves, on small files ---------------------------------------------------


def _jpeg(app_segments: int) -> bytes:
    """A small JPEG with ``app_segments`` extra APP15 segments of 60000 bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(buf, format="JPEG")
    data = buf.getvalue()
    segment = b"\xff\xef" + struct.pack(">H", 60002) + bytes(60000)
    return data[:2] + segment * app_segments + data[2:]


def test_jpeg_marker_segments_are_bounded_before_pillow_reads_them(tmp_path, monkeypatch):
    """Pillow keeps every marker segment before the scan: their total is bounded first."""
    path = tmp_path / "app.jpg"
    path.write_bytes(_jpeg(3))
    assert imageio.read_file(path).pixels.shape == (8, 8, 3)
    monkeypatch.setattr(containers, "MAX_METADATA_BYTES", 100_000)
    with pytest.raises(ImageError, match="marker segments before the image data longer than"):
        imageio.read_file(path)


def test_a_jpeg_is_given_to_pillow_only_as_far_as_its_frame_can_need(tmp_path, monkeypatch):
    """Progressive scans that run on: refused once the frame's bound is read."""
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(buf, format="JPEG", progressive=True)
    data = buf.getvalue()
    path = tmp_path / "long.jpg"
    path.write_bytes(data[: data.index(b"\xff\xda") + 30] + bytes(300_000))
    monkeypatch.setattr(containers, "SLACK", 1000)
    with pytest.raises(ImageError, match=r"more than the \d+ bytes that its header allows"):
        imageio.read_file(path)


@pytest.mark.skipif(not imageio.HAS_HEIF, reason="needs the heic extra")
def test_an_isobmff_file_without_an_image_size_is_refused(tmp_path):
    ftyp = struct.pack(">I4s4sI4s", 20, b"ftyp", b"heic", 0, b"mif1")
    meta = struct.pack(">I4sI", 12, b"meta", 0)
    path = tmp_path / "x.heic"
    path.write_bytes(ftyp + meta + struct.pack(">I4s", 8, b"mdat"))
    with pytest.raises(ImageError, match=r"no image size \(ispe\) in its meta box"):
        imageio.read_file(path)


def test_bounded_reads_end_at_the_limit_and_say_so():
    raw = io.BytesIO(bytes(range(100)))
    view = containers.Bounded(raw, 10)
    assert view.read(4) == bytes(range(4)) and not view.cut
    assert view.read() == bytes(range(4, 10)) and view.cut
    view.seek(95)
    assert view.read(3) == b""
    view.limit = 100
    assert view.read() == bytes(range(95, 100))
    with pytest.raises(OSError):
        view.fileno()  # no descriptor for a decoder to go around it
