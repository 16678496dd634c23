"""TIFF: 16-bit colour round trips, every supported layout and compression, layout checks
before decoding, errors."""

import io
import re
import struct
import tempfile
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps

from n2n_infer import Denoiser, imageio, tiff16
from n2n_infer.cli import main
from n2n_infer.errors import ImageError
from tests.conftest import synthetic_photo

SHORT, LONG, UNDEFINED, LONG8 = 3, 4, 7, 16
CODES = {1: "B", SHORT: "H", LONG: "I", UNDEFINED: "B", LONG8: "Q"}


def lzw_encode(data, clear_when_full=True):
    """Reference TIFF LZW: MSB-first 9-12-bit codes, Clear first, early change, EOI last.

    Like libtiff, the table is cleared when its next free code reaches 4094; or,
    without ``clear_when_full``, it is filled up to code 4095 and then kept.
    """
    codes, table = [(256, 9)], {}
    next_code, width, prefix = 258, 9, None

    def added():
        nonlocal next_code, width
        next_code += 1
        if next_code == 4094 and clear_when_full:
            codes.append((256, width))
            table.clear()
            next_code, width = 258, 9
        elif next_code > (1 << width) - 1 and width < 12:
            width += 1

    for byte in data:
        if prefix is None:
            prefix = byte
            continue
        key = prefix << 8 | byte
        if key in table:
            prefix = table[key]
            continue
        codes.append((prefix, width))
        if next_code < 4096:
            table[key] = next_code
            added()
        prefix = byte
    if prefix is not None:
        codes.append((prefix, width))
        added()  # the decoder adds an entry for the last code too: EOI may be wider
    codes.append((257, width))
    out, acc, nbits = bytearray(), 0, 0
    for code, w in codes:
        acc, nbits = acc << w | code, nbits + w
        while nbits >= 8:
            nbits -= 8
            out.append(acc >> nbits & 255)
        acc &= (1 << nbits) - 1
    if nbits:
        out.append(acc << (8 - nbits) & 255)
    return bytes(out)


def packbits_encode(data):
    """PackBits: runs of 2-128 equal bytes, literals of up to 128; a no-op byte (128) first."""
    out, i, n = bytearray([128]), 0, len(data)
    while i < n:
        run = 1
        while i + run < n and run < 128 and data[i + run] == data[i]:
            run += 1
        if run >= 2:
            out += bytes([257 - run, data[i]])
            i += run
            continue
        start = i
        while i < n and i - start < 128 and not (i + 1 < n and data[i] == data[i + 1]):
            i += 1
        out += bytes([i - start - 1]) + data[start:i]
    return bytes(out)


COMPRESS = {
    1: lambda raw: raw,
    5: lzw_encode,
    8: zlib.compress,
    32946: lambda raw: zlib.compress(raw, 9),
    32773: packbits_encode,
}


def ifd_bytes(order, tags, offset, bigtiff=False):
    """An IFD at ``offset``: ``tags`` is {tag: (type, values)}; long values follow it."""
    count_code, entry, inline = ("Q", "HHQ", 8) if bigtiff else ("H", "HHI", 4)
    extra_at = offset + struct.calcsize(count_code) + len(tags) * (4 + 2 * inline) + inline
    entries, extra = [], b""
    for tag in sorted(tags):
        kind, values = tags[tag]
        raw = struct.pack(f"{order}{len(values)}{CODES[kind]}", *values)
        if len(raw) <= inline:
            field = raw.ljust(inline, b"\0")
        else:
            field = struct.pack(order + ("Q" if bigtiff else "I"), extra_at + len(extra))
            extra += raw + b"\0" * (len(raw) & 1)
        entries.append(struct.pack(order + entry, tag, kind, len(values)) + field)
    head = struct.pack(order + count_code, len(tags))
    return head + b"".join(entries) + b"\0" * inline + extra


def tiff_bytes(
    px,
    order="<",
    compression=1,
    predictor=1,
    planar=1,
    tile=None,
    rows_per_strip=None,
    tags=None,
    bigtiff=False,
    segments=None,
    ifd_first=False,
):
    """A TIFF of uint16 H×W×C ``px``, built by hand (Pillow cannot write 16-bit colour).

    ``tile`` is (height, width) for tiles (edge tiles padded), else strips of
    ``rows_per_strip`` rows. ``tags`` adds or, with None, removes IFD entries.
    ``segments`` replaces the compressed strips or tiles. The IFD follows the image
    data (as libtiff writes it) or, with ``ifd_first``, precedes it (as Pillow does).
    """
    h, w, ch = px.shape
    dtype = px.dtype
    planes = [px[..., c : c + 1] for c in range(ch)] if planar == 2 else [px]
    parts = []
    for plane in planes:
        if tile:
            th, tw = tile
            padded = np.zeros((-(-h // th) * th, -(-w // tw) * tw, plane.shape[2]), dtype)
            padded[:h, :w] = plane
            parts += [
                padded[y : y + th, x : x + tw] for y in range(0, h, th) for x in range(0, w, tw)
            ]
        else:
            rps = rows_per_strip or h
            parts += [plane[y : y + rps] for y in range(0, h, rps)]
    encoded = []
    for part in parts:
        if predictor == 2:
            diff = part.copy()
            diff[:, 1:] -= part[:, :-1]
            part = diff
        raw = part.astype(order + dtype.str[1:]).tobytes()
        encoded.append(COMPRESS[compression](raw))
    encoded = segments if segments is not None else encoded
    header_size = 16 if bigtiff else 8
    ifd = _tags(px, compression, predictor, planar, tile, rows_per_strip, encoded, bigtiff, tags)
    data_at = header_size
    if ifd_first:
        data_at += len(ifd_bytes("<", ifd([0] * len(encoded)), header_size, bigtiff))
    offsets, pos = [], data_at
    for seg in encoded:
        offsets.append(pos)
        pos += len(seg)
    pad = b"\0" * (pos & 1)  # the IFD starts on a word boundary
    ifd_at = header_size if ifd_first else pos + len(pad)
    directory = ifd_bytes(order, ifd(offsets), ifd_at, bigtiff)
    if bigtiff:
        header = (b"II+\0" if order == "<" else b"MM\0+") + struct.pack(order + "HHQ", 8, 0, ifd_at)
    else:
        header = (b"II*\0" if order == "<" else b"MM\0*") + struct.pack(order + "I", ifd_at)
    body = b"".join(encoded) + pad
    return header + (directory + body if ifd_first else body + directory)


def _tags(px, compression, predictor, planar, tile, rows_per_strip, encoded, bigtiff, tags):
    """A function of the strip or tile offsets that gives the IFD's {tag: (type, values)}."""
    h, w, ch = px.shape
    off_kind = LONG8 if bigtiff else LONG
    ifd = {
        256: (LONG, [w]),
        257: (LONG, [h]),
        258: (SHORT, [8 * px.dtype.itemsize] * ch),
        259: (SHORT, [compression]),
        262: (SHORT, [2]),
        277: (SHORT, [ch]),
        284: (SHORT, [planar]),
        317: (SHORT, [predictor]),
    }
    if ch == 4:
        ifd[338] = (SHORT, [2])
    if tile:
        ifd |= {322: (LONG, [tile[1]]), 323: (LONG, [tile[0]])}
        ifd[325] = (LONG, [len(s) for s in encoded])
    else:
        ifd |= {278: (LONG, [rows_per_strip or h]), 279: (LONG, [len(s) for s in encoded])}

    def with_offsets(offsets):
        full = ifd | {324 if tile else 273: (off_kind, offsets)}
        for tag, entry in (tags or {}).items():
            if entry is None:
                full.pop(tag, None)
            else:
                full[tag] = entry
        return full

    return with_offsets


def _random16(seed, h, w, ch):
    return np.random.default_rng(seed).integers(0, 65536, (h, w, ch), dtype=np.uint16)


def _photo16(seed, h, w, ch=3):
    """Smooth 16-bit colour with noise in the low bits: compressible, not 8-bit values."""
    rng = np.random.default_rng(seed)
    px = synthetic_photo(rng, h, w).astype(np.uint16) * 256 + rng.integers(0, 256, (h, w, 3))
    if ch == 4:  # alpha 0 in column 0
        px = np.dstack([px, (np.arange(w, dtype=np.uint16) * 997)[None].repeat(h, 0)])
    return px.astype(np.uint16)


def _decode(data, name="t.tif", max_pixels=10**8):
    """``data`` written to a fresh folder as ``name`` and read by :func:`imageio.read_file`."""
    path = Path(tempfile.mkdtemp()) / name
    path.write_bytes(data)
    return imageio.read_file(path, max_pixels)


# -- the codec (tifffile) ----------------------------------------------------------------


@pytest.mark.parametrize("ch", [3, 4])
@pytest.mark.parametrize("hw", [(1, 1), (31, 17), (3, 64), (200, 300)])
def test_round_trip_is_exact_and_keeps_the_icc_profile(ch, hw):
    icc = b"fake icc profile " * 41  # odd length
    for px in (_random16(ch, *hw, ch), _photo16(ch, *hw, ch) if min(hw) >= 9 else None):
        if px is None:
            continue
        tif = _decode(tiff16.encode_tiff(px, icc))
        assert tif.pixels.dtype == np.uint16 and np.array_equal(tif.pixels, px)
        assert tif.icc_profile == icc and tif.notes == []
        assert _decode(tiff16.encode_tiff(px)).icc_profile is None


def test_written_files_are_baseline_tiffs_that_libtiff_reads():
    px = _photo16(1, 300, 200, 4)  # several strips of at most 64 KiB
    data = tiff16.encode_tiff(px, b"icc")
    with Image.open(io.BytesIO(data)) as im:  # Pillow decodes 16-bit colour to 8 bits
        tags = im.tag_v2
        assert (im.format, im.mode, im.size) == ("TIFF", "RGBA", (200, 300))
        assert tags[259] == 8 and tags[317] == 2 and tags[284] == 1 and tags[338] == (2,)
        assert tags[258] == (16, 16, 16, 16) and tags[34675] == b"icc"
        assert len(tags[273]) > 1 and tags[278] * 200 * 8 <= tiff16.STRIP_BYTES
        assert np.array_equal(np.asarray(im), (px >> 8).astype(np.uint8))


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("compression", [1, 5, 8, 32946, 32773])
@pytest.mark.parametrize("predictor", [1, 2])
@pytest.mark.parametrize(
    "layout",
    [
        {"rows_per_strip": 5},
        {"rows_per_strip": 5, "planar": 2, "ifd_first": True},
        {"tile": (16, 16)},
        {"tile": (16, 32), "planar": 2},
    ],
    ids=["strips", "planar-strips", "tiles", "planar-tiles"],
)
def test_every_supported_variant_decodes_exactly(order, compression, predictor, layout):
    if predictor == 2 and compression in (1, 32773):
        pytest.skip("libtiff and tifffile apply Predictor only with LZW and Deflate")
    ch = 4 if layout.get("planar") == 2 else 3
    for px in (_photo16(2, 23, 37, ch), _random16(3, 23, 37, ch)):
        data = tiff_bytes(px, order, compression, predictor, **layout)
        assert np.array_equal(_decode(data).pixels, px)


def test_libtiff_16_bit_lzw_strips_decode_as_rgb():
    """libtiff's LZW of 16-bit grey rows 3·W wide is the LZW of 16-bit RGB rows W wide."""
    px = _photo16(4, 40, 50)
    buf = io.BytesIO()
    Image.fromarray(px.reshape(40, 150)).save(buf, format="TIFF", compression="tiff_lzw")
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        offsets, counts, rows = im.tag_v2[273], im.tag_v2[279], im.tag_v2[278]
    strips = [data[o : o + c] for o, c in zip(offsets, counts, strict=True)]
    tif = tiff_bytes(px, compression=5, rows_per_strip=rows, segments=strips)
    assert np.array_equal(_decode(tif).pixels, px)


def test_lzw_strips_past_a_full_table_decode():
    px = np.random.default_rng(5).integers(0, 7, (50, 100, 3)).astype(np.uint16)
    raw = px.astype("<u2").tobytes()
    data = tiff_bytes(px, compression=5, segments=[lzw_encode(raw)])
    assert np.array_equal(_decode(data).pixels, px)


def test_a_last_strip_holding_whole_strip_rows_is_refused_clearly():
    """tifffile decodes the last strip into the rows left; libtiff would accept more."""
    px = _photo16(6, 10, 12)
    padded = np.concatenate([px, np.full((2, 12, 3), 7, np.uint16)])  # 3 strips of 4 rows
    strips = [zlib.compress(padded[y : y + 4].astype("<u2").tobytes()) for y in (0, 4, 8)]
    data = tiff_bytes(px, compression=8, rows_per_strip=4, segments=strips)
    with pytest.raises(ImageError, match=r"t\.tif: corrupt or truncated image, the decoder failed"):
        _decode(data)


def test_extra_samples_variants_and_icc_profile_are_read():
    px = _photo16(5, 12, 10, 4)
    icc = bytes(range(256)) * 3
    for extra in (None, [2]):
        tags = {338: None if extra is None else (SHORT, extra), 34675: (UNDEFINED, list(icc))}
        tif = _decode(tiff_bytes(px, ">", 8, 2, tags=tags))
        assert np.array_equal(tif.pixels, px) and tif.icc_profile == icc
    premultiplied = px.copy()
    premultiplied[..., :3] = (px[..., :3].astype(np.uint64) * px[..., 3:] // 65535).astype(
        np.uint16
    )
    tif = _decode(tiff_bytes(premultiplied, tags={338: (SHORT, [1])}))  # associated alpha
    alpha = px[..., 3:].astype(int)
    assert np.array_equal(tif.pixels[..., 3], px[..., 3])
    err = np.abs(tif.pixels[..., :3].astype(int) - px[..., :3])
    assert np.all(err * alpha <= 65535 + alpha)  # un-premultiplied to within rounding
    assert np.all(tif.pixels[..., :3][px[..., 3] == 0] == 0)


def test_bigtiff_is_read():
    px = _photo16(7, 9, 13, 3)
    assert np.array_equal(_decode(tiff_bytes(px, bigtiff=True)).pixels, px)


# -- through imageio and the batch CLI ---------------------------------------------------


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_orientation_is_applied_like_pillow(tmp_path, orientation):
    px = _random16(2, 5, 7, 3)
    path = tmp_path / "o.tif"
    path.write_bytes(tiff_bytes(px, compression=8, tags={274: (SHORT, [orientation])}))
    with Image.open(path) as im:  # Pillow decodes the high bytes, and applies the orientation
        expected = np.asarray(ImageOps.exif_transpose(im))
    loaded = imageio.read_file(path)
    assert loaded.pixels.dtype == np.uint16 and loaded.pixels.flags.c_contiguous
    assert np.array_equal(loaded.pixels >> 8, expected)
    assert loaded.pixels.shape[:2] == ((7, 5) if orientation in (6, 8) else (5, 7))
    imageio.write_file(tmp_path / "w.tif", loaded)
    with Image.open(tmp_path / "w.tif") as im:
        assert im.getexif().get(0x0112, 1) == 1
    again = imageio.read_file(tmp_path / "w.tif")
    assert np.array_equal(again.pixels, loaded.pixels)


def test_invalid_orientation_is_ignored_with_a_note(tmp_path):
    px = _random16(2, 5, 7, 3)
    path = tmp_path / "o.tif"
    path.write_bytes(tiff_bytes(px, tags={274: (SHORT, [9])}))
    loaded = imageio.read_file(path)
    assert np.array_equal(loaded.pixels, px)
    assert loaded.notes == ["invalid EXIF orientation 9 ignored (expected 1-8)"]


@pytest.mark.parametrize("name", ["a.tif", "a.TIFF"])
def test_imageio_keeps_16_bit_colour_alpha_and_icc(tmp_path, name):
    px = _photo16(6, 20, 30, 4)
    icc = b"profile bytes" * 10
    (tmp_path / name).write_bytes(tiff_bytes(px, ">", 5, 2, tags={34675: (UNDEFINED, list(icc))}))
    loaded = imageio.read_file(tmp_path / name)
    assert (loaded.format, loaded.mode, loaded.notes) == ("TIFF", "RGBA", [])
    assert loaded.pixels.dtype == np.uint16 and np.array_equal(loaded.pixels, px)
    assert loaded.icc_profile == icc
    imageio.write_file(tmp_path / "b.tiff", loaded)
    again = imageio.read_file(tmp_path / "b.tiff")
    assert np.array_equal(again.pixels, px) and again.icc_profile == icc and again.mode == "RGBA"
    imageio.write_file(tmp_path / "c.png", loaded)  # 16-bit colour can also become a PNG
    assert np.array_equal(imageio.read_file(tmp_path / "c.png").pixels, px)
    with pytest.raises(ImageError, match=re.escape("only be written as PNG or TIFF, not '.jpg'")):
        imageio.write_file(tmp_path / "d.jpg", loaded)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_8_bit_and_grey_tiffs_still_go_through_pillow(tmp_path, monkeypatch):
    rgb = synthetic_photo(np.random.default_rng(0), 16, 24)
    Image.fromarray(rgb).save(tmp_path / "c8.tif", compression="tiff_lzw")
    grey = (np.arange(16 * 24, dtype=np.uint16) * 171).reshape(16, 24)
    Image.fromarray(grey).save(tmp_path / "g16.tif")

    def refuse(*args, **kwargs):
        raise AssertionError("tifffile used to decode or encode an 8-bit or grey TIFF")

    monkeypatch.setattr(tiff16.tifffile.TiffPage, "asarray", refuse)
    monkeypatch.setattr(tiff16, "encode_tiff", refuse)
    loaded = imageio.read_file(tmp_path / "c8.tif")
    assert loaded.pixels.dtype == np.uint8 and np.array_equal(loaded.pixels, rgb)
    imageio.write_file(tmp_path / "out.tif", loaded)
    with Image.open(tmp_path / "out.tif") as im:
        assert im.mode == "RGB" and np.array_equal(np.asarray(im), rgb)
    loaded = imageio.read_file(tmp_path / "g16.tif")
    assert loaded.mode == "I;16" and np.array_equal(loaded.pixels, grey)


def test_misnamed_16_bit_tiff_is_read_as_16_bit(tmp_path):
    px = _random16(4, 6, 8, 3)
    (tmp_path / "tif.png").write_bytes(tiff_bytes(px))  # the content decides the decoder
    loaded = imageio.read_file(tmp_path / "tif.png")
    assert loaded.pixels.dtype == np.uint16 and np.array_equal(loaded.pixels, px)
    assert (loaded.format, loaded.notes) == ("TIFF", [])
    imageio.write_file(tmp_path / "out.png", loaded)  # a 16-bit PNG
    assert np.array_equal(imageio.read_file(tmp_path / "out.png").pixels, px)


def test_batch_keeps_16_bit_colour_tiff_16_bit(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    photo = synthetic_photo(rng, 36, 52).astype(np.uint16) * 257
    noisy = np.clip(photo + rng.normal(0, 15 * 257, photo.shape), 0, 65535).astype(np.uint16)
    (src / "c16.tif").write_bytes(tiff_bytes(noisy, compression=5, predictor=2, rows_per_strip=8))
    result = CliRunner().invoke(main, ["batch", str(src), str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "note" not in result.output
    out = imageio.read_file(tmp_path / "out" / "c16.tif")
    assert out.format == "TIFF" and out.pixels.dtype == np.uint16
    assert out.pixels.shape == noisy.shape and np.any(out.pixels % 257 != 0)
    expected = Denoiser(device="cpu").denoise(noisy)  # the only change is the denoising
    assert np.array_equal(out.pixels, expected) and not np.array_equal(expected, noisy)


# -- refused files -----------------------------------------------------------------------


def _bad_cases():
    px = _random16(1, 6, 8, 3)
    pillow_like = tiff_bytes(px, compression=8, rows_per_strip=3, ifd_first=True)
    big = tiff_bytes(px[:1, :1], tags={256: (LONG, [100_000]), 257: (LONG, [100_000])})
    bomb_strip = zlib.compress(bytes(2 * 8 * 6 * 3 + 10**6))
    bomb = tiff_bytes(px, compression=8, segments=[bomb_strip])
    past_end = tiff_bytes(px, tags={273: (LONG, [10**6]), 279: (LONG, [2 * 8 * 6 * 3])})
    failed = "the decoder failed"
    return {
        "truncated": (pillow_like[: len(pillow_like) - 100], "TIFF strip 1 (offset"),
        "offsets past the end": (past_end, "TIFF strip 0 (offset 1000000, 288 bytes) is missing"),
        "short strip": (tiff_bytes(px, segments=[bytes(287)]), "truncated TIFF strip 0: 287 of"),
        "bad LZW": (tiff_bytes(px, compression=5, segments=[b"\x80\x7f\xff\xff"]), "LZW"),
        "bad Deflate": (tiff_bytes(px, compression=8, segments=[b"nonsense"]), failed),
        "JPEG": (tiff_bytes(px, tags={259: (SHORT, [7])}), failed),
        "float16": (tiff_bytes(px, tags={339: (SHORT, [3, 3, 3])}), "16-bit samples"),
        "predictor 3": (tiff_bytes(px, tags={317: (SHORT, [3])}), "Predictor 3 is not"),
        "5 samples": (tiff_bytes(_random16(1, 6, 8, 5)), "a TIFF layout that Pillow cannot"),
        "counts": (tiff_bytes(px, rows_per_strip=2, tags={278: (LONG, [3])}), "96 of 144"),
        "100000×100000": (big, "100000×100000 pixels exceeds the limit of 1000000"),
        "bomb": (bomb, failed),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_files_are_refused_naming_the_file_and_the_reason(tmp_path, case):
    data, message = _bad_cases()[case]
    path = tmp_path / "bad16.tif"
    path.write_bytes(data)
    with pytest.raises(ImageError, match=re.escape(message)) as info:
        imageio.read_file(path, max_pixels=1_000_000)
    assert str(path) in str(info.value)


def test_huge_header_and_deflate_bomb_are_refused_without_allocating():
    cases = _bad_cases()
    tracemalloc.start()
    try:
        for case in ("100000×100000", "bomb"):
            data, message = cases[case]
            with pytest.raises(ImageError, match=re.escape(message)):
                _decode(data, max_pixels=10**9)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # numpy reports its allocations to tracemalloc


def test_one_row_image_whose_tall_tiles_share_one_blob_is_refused_before_decoding():
    """Defect 5: 1 row, tiles 4096 rows tall all pointing at one Deflate blob: 10 s, 2.3 GB."""
    w, tile = 4096, (4096, 16)
    blob = zlib.compress(bytes(tile[0] * tile[1] * 6), 9)
    segments = [blob] * (w // tile[1])
    data = tiff_bytes(_random16(1, 1, w, 3), compression=8, tile=tile, segments=segments)
    tracemalloc.start()
    try:
        with pytest.raises(
            ImageError, match="tiles decode to 100663296 bytes for an image of 24576"
        ):
            _decode(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_one_row_image_in_16_row_tiles_is_read():
    px = _random16(2, 1, 300, 3)
    assert np.array_equal(_decode(tiff_bytes(px, compression=8, tile=(16, 16))).pixels, px)


def test_tiny_tiff_declaring_a_huge_image_is_refused_before_decoding():
    blob = zlib.compress(bytes(2000 * 2000 * 6), 9)[:1000]  # 24 MB declared, 1000 bytes
    data = tiff_bytes(_random16(1, 2000, 2000, 3), compression=8, segments=[blob])
    with pytest.raises(ImageError, match="more than a file of"):
        _decode(data)


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({284: (SHORT, [8])}, "planar configuration 8 is not supported"),
        ({277: (SHORT, [65535]), 257: (LONG, [32768])}, "65535 samples per pixel"),
    ],
    ids=["planar 8", "65535 samples"],
)
def test_layouts_found_by_the_fuzzer_are_refused_before_decoding(tags, message):
    """scripts/fuzz_readers.py: planar 8 gave planes-first pixels; 65535 samples, 13 s."""
    data = tiff_bytes(_random16(1, 13, 19, 3), rows_per_strip=4, tags=tags)
    with pytest.raises(ImageError, match=message):
        _decode(data)


@pytest.mark.parametrize("photometric", [1, 3, 6])
def test_other_photometric_interpretations_are_refused(photometric):
    data = tiff_bytes(_random16(1, 4, 5, 3), tags={262: (SHORT, [photometric])})
    with pytest.raises(ImageError, match=re.escape("t.tif: ")):
        _decode(data)


def test_truncations_and_corruptions_never_leak_other_errors():
    px = _photo16(8, 9, 11, 4)
    files = [
        tiff_bytes(px, "<", c, p, planar=pl, tile=t, rows_per_strip=3)
        for c in (1, 5, 8, 32773)
        for p in (1, 2)
        for pl, t in ((1, None), (2, (16, 16)))
    ]
    rng = np.random.default_rng(0)
    for data in files:
        cuts = range(0, len(data) - 1, max(1, len(data) // 40))
        corrupt = []
        for _ in range(40):
            bad = bytearray(data)
            for i in rng.integers(0, len(data), 3):
                bad[i] = rng.integers(0, 256)
            corrupt.append(bytes(bad))
        refused = 0
        for bad in [data[:cut] for cut in cuts] + corrupt:
            try:
                tif = _decode(bad, max_pixels=10_000)
            except ImageError as exc:
                refused += 1
                assert "t.tif: " in str(exc)
            else:
                assert tif.pixels.ndim in (2, 3)
        assert refused >= len(cuts) - 1
