"""PGM and PPM at their own maxval: read exactly, denoised by their own scale, written
back with the same maxval and sample width (hardening issue, defect 10).

Pillow read a 16-bit PPM as 8 bits, and a 12-bit PGM (maxval 4095) came back with
maxval 65535 and its counts scrambled; n2n_infer.pnm reads them instead."""

from __future__ import annotations

import json
import re
import tracemalloc

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from n2n_infer import imageio, pnm
from n2n_infer.cli import main
from n2n_infer.errors import ImageError
from tests.conftest import synthetic_photo

MAXVALS = [1, 255, 256, 4095, 65535]


def _netpbm(samples: np.ndarray, maxval: int, magic: str | None = None) -> bytes:
    """A PGM (H×W) or PPM (H×W×3) of ``samples`` in 0..maxval, with the header this
    project writes (binary), or plain (``magic`` P2/P3) with odd whitespace."""
    h, w = samples.shape[:2]
    binary = "P5" if samples.ndim == 2 else "P6"
    magic = magic or binary
    header = f"{magic}\n{w} {h}\n{maxval}\n".encode()
    if magic in ("P2", "P3"):
        rows = ("  ".join(str(int(v)) for v in row.reshape(-1)) for row in samples)
        return header + "\r\n".join(rows).encode() + b"\n"
    return header + samples.astype(">u2" if maxval > 255 else np.uint8).tobytes()


def _parse(data: bytes) -> tuple[str, int, int, np.ndarray]:
    """(magic, maxval, (width, height) as read from a written file, samples H×W(×3))."""
    m = re.match(rb"(P[56])\n(\d+) (\d+)\n(\d+)\n", data)
    assert m, data[:40]
    magic, w, h, maxval = m.group(1).decode(), *(int(g) for g in m.groups()[1:])
    dtype = ">u2" if maxval > 255 else np.uint8
    shape = (h, w) if magic == "P5" else (h, w, 3)
    samples = np.frombuffer(data[m.end() :], dtype).reshape(shape).astype(np.int64)
    return magic, maxval, (w, h), samples


def _samples(seed: int, maxval: int, channels: int, h: int = 24, w: int = 32) -> np.ndarray:
    """A smooth photo-like image in 0..maxval (grey: its first channel)."""
    photo = synthetic_photo(np.random.default_rng(seed), h, w).astype(np.float64) / 255
    px = photo if channels == 3 else photo[..., 0]
    return np.rint(px * maxval).astype(np.int64)


# --- read and written back exactly ---------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("maxval", MAXVALS)
def test_pgm_and_ppm_round_trip_exactly_at_their_own_maxval(tmp_path, maxval, channels):
    samples = _samples(maxval, maxval, channels)
    src = tmp_path / "in.pgm"
    src.write_bytes(_netpbm(samples, maxval))
    loaded = imageio.read_file(src)
    full = 255 if maxval <= 255 else 65535
    assert loaded.format == "PPM" and loaded.encoder["pnm_maxval"] == maxval
    assert loaded.pixels.dtype == (np.uint8 if full == 255 else np.uint16)
    assert loaded.mode == ("RGB" if channels == 3 else "L" if full == 255 else "I;16")
    # the samples spread over the type's full range: the image is scaled by its own maxval
    np.testing.assert_array_equal(loaded.pixels, (samples * full + maxval // 2) // maxval)
    assert np.abs(loaded.pixels / full - samples / maxval).max() <= 0.5 / full
    out = tmp_path / "out.pgm"
    imageio.write_file(out, loaded)
    assert out.read_bytes() == src.read_bytes()  # same maxval, sample width and samples


def test_a_12_bit_pgm_keeps_its_counts_and_a_16_bit_ppm_its_16_bits(tmp_path):
    """The issue's two files: counts not multiplied by 16, 16 bits not cut to 8."""
    counts = np.arange(12 * 20).reshape(12, 20) * 17  # 0..4063: 12-bit counts
    (tmp_path / "g.pgm").write_bytes(_netpbm(counts, 4095))
    rgb16 = np.random.default_rng(1).integers(0, 65536, (5, 7, 3))
    (tmp_path / "c.ppm").write_bytes(_netpbm(rgb16, 65535))
    grey, colour = imageio.read_file(tmp_path / "g.pgm"), imageio.read_file(tmp_path / "c.ppm")
    assert colour.pixels.dtype == np.uint16
    np.testing.assert_array_equal(colour.pixels, rgb16)
    imageio.write_file(tmp_path / "g2.pgm", grey)
    imageio.write_file(tmp_path / "c2.ppm", colour)
    assert _parse((tmp_path / "g2.pgm").read_bytes())[1] == 4095
    np.testing.assert_array_equal(_parse((tmp_path / "g2.pgm").read_bytes())[3], counts)
    assert _parse((tmp_path / "c2.ppm").read_bytes())[1] == 65535


def test_batch_writes_every_pgm_and_ppm_back_at_its_own_maxval_and_width(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    inputs = {}
    for i, maxval in enumerate(MAXVALS):
        for channels, suffix in ((1, "pgm"), (3, "ppm")):
            samples = _samples(10 + i, maxval, channels, 40, 56)
            name = f"m{maxval}.{suffix}"
            (src / name).write_bytes(_netpbm(samples, maxval))
            inputs[name] = (samples, maxval)
    plain = _samples(20, 1000, 3, 40, 56)
    (src / "plain.ppm").write_bytes(_netpbm(plain, 1000, "P3"))
    inputs["plain.ppm"] = (plain, 1000)
    result = CliRunner().invoke(
        main, ["batch", str(src), str(out), "--device", "cpu", "--report", str(tmp_path / "r")]
    )
    assert result.exit_code == 0, result.output
    report = {f["name"]: f for f in json.loads((tmp_path / "r").read_text())["files"]}
    assert "plain (ASCII) PPM written back as a binary PPM" in report["plain.ppm"]["notes"]
    for name, (samples, maxval) in inputs.items():
        magic, written_maxval, size, denoised = _parse((out / name).read_bytes())
        assert magic == ("P5" if samples.ndim == 2 else "P6"), name
        assert (written_maxval, size) == (maxval, (56, 40)), name
        assert denoised.min() >= 0 and denoised.max() <= maxval, name
        # denoised at its own scale: a clean smooth image stays close to itself
        assert np.abs(denoised - samples).mean() / maxval < 0.08, name


# --- plain files, comments, whitespace ------------------------------------------------------


@pytest.mark.parametrize("maxval", [1, 255, 4095, 65535])
def test_plain_pgm_and_ppm_read_like_binary_and_are_written_back_binary(tmp_path, maxval):
    for channels, magic in ((1, "P2"), (3, "P3")):
        samples = _samples(3, maxval, channels, 9, 11)
        (tmp_path / "b.pgm").write_bytes(_netpbm(samples, maxval))
        (tmp_path / "p.pgm").write_bytes(_netpbm(samples, maxval, magic))
        binary, plain = imageio.read_file(tmp_path / "b.pgm"), imageio.read_file(tmp_path / "p.pgm")
        np.testing.assert_array_equal(plain.pixels, binary.pixels)
        assert plain.encoder == binary.encoder and plain.mode == binary.mode
        assert any("plain (ASCII)" in n for n in plain.notes) and not binary.notes
        imageio.write_file(tmp_path / "w.pgm", plain)
        assert (tmp_path / "w.pgm").read_bytes() == (tmp_path / "b.pgm").read_bytes()


def test_comments_and_any_whitespace_in_the_header_are_read(tmp_path):
    data = b"P5 # a comment right after the magic\r\n\t4 # width\n# a line\n2\x0b# maxval next\n7\n"
    path = tmp_path / "c.pgm"
    path.write_bytes(data + bytes([0, 1, 2, 3, 4, 5, 6, 7]))
    loaded = imageio.read_file(path)
    np.testing.assert_array_equal(loaded.pixels, [[0, 36, 73, 109], [146, 182, 219, 255]])
    assert loaded.notes == ["PGM header comments not written back"]


def test_a_plain_file_with_far_more_whitespace_than_samples_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(pnm, "MAX_PLAIN_BYTES", 4)
    path = tmp_path / "p.pgm"
    path.write_bytes(b"P2\n3 1\n255\n1" + b" " * 100 + b"2 3\n")
    with pytest.raises(ImageError, match="plain PGM with more than 4 bytes a sample") as info:
        imageio.read_file(path)
    assert str(path) in str(info.value)


# --- refused, naming the file, what was expected and what was found ------------------------

BAD_HEADERS = {
    "P5\n4 3 255\n\0\0\0\0\0": "truncated PGM: its header declares 12 samples of 1 byte(s) "
    "(12 bytes), the file holds 5 after the header",
    "P5\n4 3\n": "truncated PGM file (the header ends",
    "P5\n4x 3\n255\n": "expected whitespace before the height, found b'x'",
    "P5\n-4 3\n255\n": "expected the width (1 to 10 decimal digits), found b'-4",
    "P5\n99999999999 3\n255\n": "expected the width (1 to 10 decimal digits)",
    "P5\n0 3\n255\n": "invalid PGM size 0×3 (expected at least 1×1)",
    "P6\n4 3\n0\n": "PPM maxval 0 (expected 1 to 65535)",
    "P6\n4 3\n65536\n": "PPM maxval 65536 (expected 1 to 65535)",
    "P5\n4 3\n255#x\n": "expected one whitespace byte after the maxval, found b'#'",
    "P5\n4\n# unterminated": "truncated PGM file (the header ends after",
}


@pytest.mark.parametrize("header", list(BAD_HEADERS))
def test_malformed_headers_are_refused_naming_file_expected_and_found(tmp_path, header):
    path = tmp_path / "bad.pgm"
    path.write_bytes(header.encode())
    with pytest.raises(ImageError, match=re.escape(BAD_HEADERS[header])) as info:
        imageio.read_file(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_an_endless_header_is_refused(tmp_path):
    path = tmp_path / "long.pgm"
    path.write_bytes(b"P5\n" + b"#" * (pnm.MAX_HEADER + 10))
    with pytest.raises(ImageError, match=f"PGM header longer than {pnm.MAX_HEADER} bytes"):
        imageio.read_file(path)


def test_the_declared_size_is_checked_against_the_file_before_allocating(tmp_path):
    """20000×5000 16-bit RGB (600 MB) declared by an 80-byte file: refused unallocated."""
    path = tmp_path / "big.ppm"
    path.write_bytes(b"P6\n20000 5000\n65535\n" + bytes(64))
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match=r"declares 300000000 samples .* holds 64 after"):
            imageio.read_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_absurd_dimensions_are_refused_by_the_pixel_limit(tmp_path):
    path = tmp_path / "huge.pgm"
    path.write_bytes(b"P5\n4000000000 4000000000\n255\n")
    with pytest.raises(ImageError, match=r"4000000000×4000000000 pixels exceeds the limit of"):
        imageio.read_file(path)
    path.write_bytes(_netpbm(np.zeros((13, 19), np.int64), 255))
    with pytest.raises(ImageError, match="19×13 pixels exceeds the limit of 100"):
        imageio.read_file(path, max_pixels=100)


@pytest.mark.parametrize("plain", [False, True])
def test_samples_above_the_maxval_are_refused(tmp_path, plain):
    samples = np.array([[1, 2], [3, 1001]])
    path = tmp_path / "over.pgm"
    path.write_bytes(_netpbm(samples, 1000, "P2" if plain else None))
    with pytest.raises(ImageError, match="PGM sample 1001 above its maxval 1000"):
        imageio.read_file(path)


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"P4\n8 1\n\xaa", "PBM (1-bit) is not read"),
        (b"P1\n2 1\n0 1\n", "PBM (1-bit) is not read"),
        (b"P7\nWIDTH 1\nHEIGHT 1\nDEPTH 1\nMAXVAL 255\nTUPLTYPE GRAYSCALE\nENDHDR\n\0", "PAM"),
        (b"PF\n1 1\n-1.0\n" + bytes(12), "PFM (floating point) is not read"),
        (b"Pf\n1 1\n-1.0\n" + bytes(4), "PFM (floating point) is not read"),
    ],
)
def test_other_netpbm_kinds_are_refused_by_name_whatever_the_suffix(tmp_path, content, what):
    path = tmp_path / "x.pgm"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=re.escape(what)) as info:
        imageio.read_file(path)
    assert str(path) in str(info.value)


def test_a_stream_of_several_images_is_refused_and_other_trailing_data_noted(tmp_path):
    one = _netpbm(np.zeros((2, 3), np.int64), 255)
    path = tmp_path / "s.pgm"
    path.write_bytes(one + one)
    with pytest.raises(ImageError, match="a stream of several PGM images"):
        imageio.read_file(path)
    path.write_bytes(one + b"\n")  # a line break after the samples: nothing to say
    assert imageio.read_file(path).notes == []
    path.write_bytes(one + b"trailing data")
    assert imageio.read_file(path).notes == ["13 bytes after the image data ignored (not read)"]


# --- written as other formats, and other formats written as PGM/PPM ------------------------


def test_a_12_bit_pgm_written_as_png_is_a_full_range_16_bit_png(tmp_path):
    counts = np.array([[0, 1, 2048, 4095]])
    (tmp_path / "g.pgm").write_bytes(_netpbm(counts, 4095))
    loaded = imageio.read_file(tmp_path / "g.pgm")
    imageio.check_writable(tmp_path / "g.png", loaded)
    imageio.write_file(tmp_path / "g.png", loaded)
    with Image.open(tmp_path / "g.png") as im:
        np.testing.assert_array_equal(np.asarray(im), [[0, 16, 32776, 65535]])


def test_16_bit_colour_and_grey_are_written_as_16_bit_ppm_and_pgm(tmp_path):
    rgb16 = np.random.default_rng(2).integers(0, 65536, (3, 5, 3)).astype(np.uint16)
    imageio.write_file(tmp_path / "c.ppm", imageio.ImageFile(rgb16, "PNG", "RGB"))
    assert _parse((tmp_path / "c.ppm").read_bytes())[:2] == ("P6", 65535)
    np.testing.assert_array_equal(_parse((tmp_path / "c.ppm").read_bytes())[3], rgb16)
    grey8 = rgb16[..., 0] >> 8
    imageio.write_file(tmp_path / "g.pgm", imageio.ImageFile(grey8.astype(np.uint8), "PNG", "L"))
    assert _parse((tmp_path / "g.pgm").read_bytes())[:2] == ("P5", 255)


@pytest.mark.parametrize(
    "pixels",
    [np.zeros((2, 2, 4), np.uint8), np.zeros((2, 2), np.float32)],
    ids=["alpha", "float"],
)
def test_what_pgm_and_ppm_cannot_hold_is_refused_naming_the_file(tmp_path, pixels):
    loaded = imageio.ImageFile(pixels, "PNG", "RGBA" if pixels.ndim == 3 else "F")
    with pytest.raises(ImageError, match="PGM/PPM hold no alpha nor floating point") as info:
        imageio.write_file(tmp_path / "x.ppm", loaded)
    assert str(tmp_path / "x.ppm") in str(info.value)
    assert not (tmp_path / "x.ppm").exists()
