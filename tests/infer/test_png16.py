"""PNG through libpng: 16-bit colour round trips, every filter type, every colour type,
short or corrupt files, batch CLI."""

import io
import struct
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps

from n2n_infer import Denoiser, imageio, png16
from n2n_infer.cli import main
from n2n_infer.errors import ImageError
from tests.conftest import synthetic_photo


def _chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _filter_rows(px16, ftypes):
    """Reference PNG filtering (spec section 9): row y of uint16 H×W×C uses ftypes[y]."""
    h, w, ch = px16.shape
    raw = px16.astype(">u2").view(np.uint8).reshape(h, w * 2 * ch).astype(np.int32)
    bpp = 2 * ch
    a = np.zeros_like(raw)
    a[:, bpp:] = raw[:, :-bpp]
    b = np.zeros_like(raw)
    b[1:] = raw[:-1]
    c = np.zeros_like(raw)
    c[1:, bpp:] = raw[:-1, :-bpp]
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    preds = [np.zeros_like(raw), a, b, (a + b) // 2, paeth]
    out = np.stack([preds[f][y] for y, f in enumerate(ftypes)])
    filtered = ((raw - out) % 256).astype(np.uint8)
    return np.concatenate([np.asarray(ftypes, np.uint8)[:, None], filtered], axis=1)


def png_bytes(px16, ftypes=None, interlace=0, idat_parts=1, extra=b""):
    """A 16-bit RGB/RGBA PNG whose rows use ``ftypes`` (default: cycling 0-4)."""
    h, w, ch = px16.shape
    ftypes = [y % 5 for y in range(h)] if ftypes is None else ftypes
    data = zlib.compress(_filter_rows(px16, ftypes).tobytes())
    step = -(-len(data) // idat_parts)
    idats = b"".join(_chunk(b"IDAT", data[i : i + step]) for i in range(0, len(data), step))
    header = struct.pack(">IIBBBBB", w, h, 16, {3: 2, 4: 6}[ch], 0, 0, interlace)
    return png16.SIGNATURE + _chunk(b"IHDR", header) + extra + idats + _chunk(b"IEND", b"")


def _random16(seed, h, w, ch):
    return np.random.default_rng(seed).integers(0, 65536, (h, w, ch), dtype=np.uint16)


@pytest.mark.parametrize("ch", [3, 4])
@pytest.mark.parametrize("hw", [(1, 1), (31, 17), (3, 64)])
def test_round_trip_is_exact(tmp_path, ch, hw):
    px = _random16(ch, *hw, ch)
    smooth = (np.cumsum(px // 512, axis=1) % 65536).astype(np.uint16)  # exercises Sub rows
    for arr in (px, smooth):
        png = png16.decode_png(tmp_path / "x.png", png16.encode_png16(arr), 10**8)
        assert png.pixels.dtype == np.uint16 and np.array_equal(png.pixels, arr)
        assert png.icc_profile is None and png.exif is None


@pytest.mark.parametrize("ftype", [0, 1, 2, 3, 4, "mixed"])
@pytest.mark.parametrize("ch", [3, 4])
def test_every_filter_type_decodes(tmp_path, ftype, ch):
    px = _random16(7, 23, 19, ch) // 7  # not only full-range noise: small differences too
    px[5:9] = px[4]
    ftypes = None if ftype == "mixed" else [ftype] * 23
    png = png16.decode_png(tmp_path / "f.png", png_bytes(px, ftypes), 10**8)
    assert np.array_equal(png.pixels, px)


def test_split_idat_and_icc_profile_are_read(tmp_path):
    px = _random16(3, 12, 10, 3)
    icc = b"fake icc profile " * 50
    iccp = _chunk(b"iCCP", b"name\0\0" + zlib.compress(icc))
    png = png16.decode_png(tmp_path / "s.png", png_bytes(px, None, 0, 3, iccp), 10**8)
    assert np.array_equal(png.pixels, px) and png.icc_profile == icc
    again = png16.decode_png(tmp_path / "s.png", png16.encode_png16(px, icc), 10**8)
    assert np.array_equal(again.pixels, px) and again.icc_profile == icc


def _corrupt_cases(good):
    ihdr_crc = 8 + 8 + 13  # offset of IHDR's CRC
    bad_crc = good[:ihdr_crc] + bytes([good[ihdr_crc] ^ 1]) + good[ihdr_crc + 1 :]
    big = struct.pack(">IIBBBBB", 100_000, 100_000, 16, 2, 0, 0, 0)
    oversize = png16.SIGNATURE + _chunk(b"IHDR", big) + good[33:]
    bomb_rows = zlib.compress(bytes(3 * (1 + 4 * 6) + 1000))
    bomb = good[:33] + _chunk(b"IDAT", bomb_rows) + _chunk(b"IEND", b"")
    short = good[:33] + _chunk(b"IDAT", zlib.compress(bytes(3 * 25 - 1))) + _chunk(b"IEND", b"")
    bad_rows = b"".join(b"\x07" + bytes(24) for _ in range(3))
    bad_filter = good[:33] + _chunk(b"IDAT", zlib.compress(bad_rows)) + _chunk(b"IEND", b"")
    return {
        "truncated": (good[: len(good) // 2], "truncated"),
        "bad CRC": (bad_crc, "CRC mismatch"),
        "oversize IHDR": (oversize, "exceeds the limit of 1000000"),
        "too little data": (short, "libpng: Not enough image data"),
        "bad filter type": (bad_filter, "libpng: bad adaptive filter value"),
        "extra data": (bomb, None),  # the declared rows are all there: decoded
    }


@pytest.mark.parametrize(
    "case",
    ["truncated", "bad CRC", "oversize IHDR", "too little data", "bad filter type", "extra data"],
)
def test_corrupt_files_are_refused_naming_the_file(tmp_path, case):
    data, message = _corrupt_cases(png_bytes(_random16(1, 3, 4, 3)))[case]
    path = tmp_path / "bad16.png"
    path.write_bytes(data)
    if message is None:
        assert imageio.read_file(path, max_pixels=1_000_000).pixels.shape == (3, 4, 3)
        return
    with pytest.raises(ImageError, match=message) as info:
        imageio.read_file(path, max_pixels=1_000_000)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("ch", [3, 4])
def test_interlaced_16_bit_colour_is_decoded(tmp_path, ch):
    px = _random16(11, 13, 9, ch)
    adam7 = _adam7_png16(px)
    assert np.array_equal(png16.decode_png(tmp_path / "i.png", adam7, 10**8).pixels, px)


def _adam7_png16(px16):
    """An interlaced (Adam7) 16-bit PNG, every pass filtered with None."""
    h, w, ch = px16.shape
    passes = [(0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2)]
    passes += [(0, 1, 2, 2), (1, 0, 2, 1)]
    raw = b""
    for y0, x0, dy, dx in passes:
        sub = px16[y0::dy, x0::dx]
        if sub.size:
            rows = sub.astype(">u2").view(np.uint8).reshape(sub.shape[0], -1)
            raw += np.concatenate([np.zeros((len(rows), 1), np.uint8), rows], axis=1).tobytes()
    header = struct.pack(">IIBBBBB", w, h, 16, {3: 2, 4: 6}[ch], 0, 0, 1)
    return (
        png16.SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def test_one_row_paeth_png_of_200000_pixels_decodes_exactly(tmp_path):
    """Defect 5: the hand-written unfilter was quadratic on 1×W Paeth rows (25 s at 6 kB);
    libpng's is linear. Checked for correctness only; bench timing lives in scripts/."""
    px = _random16(12, 1, 200_000, 3)
    data = png_bytes(px, ftypes=[4])
    path = tmp_path / "paeth.png"
    path.write_bytes(data)
    assert np.array_equal(imageio.read_file(path).pixels, px)


def _png8(w, h, colour, rows):
    """An 8-bit PNG of ``h``×``w`` whose one IDAT holds the complete zlib stream of ``rows``."""
    header = struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)
    return (
        png16.SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("colour", [0, 2])
def test_8_bit_png_with_fewer_rows_than_declared_is_refused(tmp_path, colour):
    """Defect 2a: Pillow reads the rows that are there and leaves the rest black."""
    ch = {0: 1, 2: 3}[colour]
    rows = b"".join(b"\0" + bytes([200]) * (10 * ch) for _ in range(5))
    path = tmp_path / "short.png"
    path.write_bytes(_png8(10, 10, colour, rows))
    with pytest.raises(ImageError, match="Not enough image data") as info:
        imageio.read_file(path)
    assert str(path) in str(info.value)


def test_tiny_png_declaring_10000_by_9999_pixels_is_refused_before_decoding(tmp_path):
    """Defect 2a: 100 rows of data for a 10000×9999 header "decoded" and then denoised."""
    rows = b"".join(b"\0" + bytes(10000) for _ in range(100))
    path = tmp_path / "huge.png"
    path.write_bytes(_png8(10000, 9999, 0, rows))
    with pytest.raises(ImageError, match="which cannot inflate to that") as info:
        imageio.read_file(path)
    assert str(path) in str(info.value) and "10000×9999" in str(info.value)


def test_imageio_keeps_16_bit_colour_and_icc(tmp_path):
    px = _random16(5, 20, 30, 4)
    icc = b"profile bytes" * 10
    iccp = _chunk(b"iCCP", b"icc\0\0" + zlib.compress(icc))
    (tmp_path / "a.png").write_bytes(png_bytes(px, extra=iccp))
    loaded = imageio.read_file(tmp_path / "a.png")
    assert loaded.pixels.dtype == np.uint16 and loaded.pixels.shape == (20, 30, 4)
    assert np.array_equal(loaded.pixels, px) and loaded.icc_profile == icc and not loaded.notes
    imageio.write_file(tmp_path / "b.png", loaded)
    again = imageio.read_file(tmp_path / "b.png")
    assert np.array_equal(again.pixels, px) and again.icc_profile == icc and again.mode == "RGBA"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow(tmp_path, orientation):
    px = _random16(2, 5, 7, 3)
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "n2n test camera"  # Make: kept
    path = tmp_path / "o.png"
    path.write_bytes(png_bytes(px, extra=_chunk(b"eXIf", exif.tobytes()[6:])))
    with Image.open(path) as im:  # Pillow decodes the high bytes, and applies the orientation
        expected = np.asarray(ImageOps.exif_transpose(im))
    loaded = imageio.read_file(path)
    assert np.array_equal(loaded.pixels >> 8, expected) and loaded.pixels.flags.c_contiguous
    imageio.write_file(tmp_path / "w.png", loaded)
    with Image.open(tmp_path / "w.png") as im:
        written = im.getexif()
        assert written.get(0x0112, 1) == 1 and written[0x010F] == "n2n test camera"


def test_misnamed_16_bit_png_is_read_as_16_bit_and_written_as_its_suffix_says(tmp_path):
    px = _random16(4, 6, 8, 3)
    (tmp_path / "png.tif").write_bytes(png_bytes(px))  # the content decides the decoder
    loaded = imageio.read_file(tmp_path / "png.tif")
    assert loaded.pixels.dtype == np.uint16 and np.array_equal(loaded.pixels, px)
    assert (loaded.format, loaded.notes) == ("PNG", [])
    imageio.write_file(tmp_path / "out.tif", loaded)  # a 16-bit TIFF
    assert np.array_equal(imageio.read_file(tmp_path / "out.tif").pixels, px)


def _pillow_png(im, **options):
    buf = io.BytesIO()
    im.save(buf, format="PNG", **options)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("mode", "options", "expected_mode"),
    [
        ("L", {}, "L"),
        ("LA", {}, "LA"),
        ("RGB", {}, "RGB"),
        ("RGBA", {}, "RGBA"),
        ("P", {}, "RGB"),
        ("P", {"transparency": 3}, "RGBA"),
        ("1", {}, "L"),
        ("I;16", {}, "I;16"),
    ],
)
def test_every_8_bit_and_grey_png_mode_reads_like_pillow(tmp_path, mode, options, expected_mode):
    rgb = synthetic_photo(np.random.default_rng(0), 16, 24)
    im = Image.fromarray(rgb).convert(mode) if mode != "I;16" else None
    if mode == "I;16":
        im = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257 + 3)
    path = tmp_path / "c.png"
    path.write_bytes(_pillow_png(im, **options))
    loaded = imageio.read_file(path)
    with Image.open(path) as ref:  # what Pillow decodes, in the mode read_file returns
        want = {"LA": "RGBA", "I;16": "I;16"}.get(expected_mode, expected_mode)
        expected = np.asarray(ref if ref.mode == want else ref.convert(want))
    assert loaded.mode == expected_mode and np.array_equal(loaded.pixels, expected)
    imageio.write_file(tmp_path / "out.png", loaded)
    with Image.open(tmp_path / "out.png") as im:
        assert im.mode == expected_mode


def test_batch_keeps_16_bit_rgb_png_16_bit(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    photo = synthetic_photo(rng, 36, 52).astype(np.uint16) * 257
    noisy = np.clip(photo + rng.normal(0, 15 * 257, photo.shape), 0, 65535).astype(np.uint16)
    (src / "c16.png").write_bytes(png_bytes(noisy))
    result = CliRunner().invoke(main, ["batch", str(src), str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "note" not in result.output
    out = imageio.read_file(tmp_path / "out" / "c16.png")
    assert out.pixels.dtype == np.uint16 and out.pixels.shape == noisy.shape
    assert np.any(out.pixels % 257 != 0)  # not 8-bit values scaled up
    expected = Denoiser(device="cpu").denoise(noisy)  # the only change is the denoising
    assert np.array_equal(out.pixels, expected) and not np.array_equal(expected, noisy)


# --- reads bounded by the header (hardening issue, defect 12) --------------------------------


def test_a_png_is_read_chunk_by_chunk_never_whole(tmp_path, monkeypatch):
    """The reader took path.read_bytes() of any file before looking at it."""
    px = _random16(20, 5, 6, 3)
    path = tmp_path / "p.png"
    path.write_bytes(png16.encode_png16(px))

    def whole(self):
        raise AssertionError(f"{self} read whole")

    monkeypatch.setattr(type(path), "read_bytes", whole)
    assert np.array_equal(imageio.read_file(path).pixels, px)


def test_a_chunk_longer_than_the_image_can_need_is_refused_before_it_is_read(tmp_path):
    good = png_bytes(_random16(21, 3, 4, 3))
    ihdr = good[: len(png16.SIGNATURE) + 25]
    path = tmp_path / "long.png"
    path.write_bytes(ihdr + struct.pack(">I4s", 0x7FFFFFF0, b"IDAT") + bytes(100))
    with pytest.raises(ImageError, match="more than its 4×3 image can need") as info:
        imageio.read_file(path)
    assert str(path) in str(info.value)
    many = b"".join(_chunk(b"IDAT", bytes(60000)) for _ in range(20))  # 1.2 MB for 4×3
    path.write_bytes(ihdr + many + _chunk(b"IEND", b""))
    with pytest.raises(ImageError, match="more than its 4×3 image can need"):
        imageio.read_file(path)


def test_chunks_other_than_image_data_are_bounded(tmp_path, monkeypatch):
    good = png_bytes(_random16(22, 3, 4, 3))
    path = tmp_path / "text.png"
    path.write_bytes(png_bytes(_random16(22, 3, 4, 3), extra=_chunk(b"tEXt", b"k\0" + bytes(5000))))
    assert imageio.read_file(path).pixels.shape == (3, 4, 3)
    monkeypatch.setattr(png16, "MAX_OTHER_BYTES", 4000)
    with pytest.raises(ImageError, match="other than image data hold more than 4000 bytes"):
        imageio.read_file(path)
    path.write_bytes(good)
    assert imageio.read_file(path).pixels.shape == (3, 4, 3)


def test_an_invalid_chunk_type_is_refused_and_data_after_iend_left_unread(tmp_path):
    good = png_bytes(_random16(23, 3, 4, 3))
    path = tmp_path / "z.png"
    path.write_bytes(good[: len(png16.SIGNATURE) + 25] + bytes(64))
    with pytest.raises(
        ImageError, match=r"invalid chunk type b'\\x00\\x00\\x00\\x00' at offset 33"
    ):
        imageio.read_file(path)
    path.write_bytes(good + b"appended by some tool")
    loaded = imageio.read_file(path)
    assert loaded.notes == ["21 bytes after the IEND chunk ignored (not read)"]
