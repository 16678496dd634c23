"""Image formats behind one registry (``imageio.FORMATS``): the suffix tables, the reader a
file's content selects and the writer a name selects all come from its entries, and a new
format is one entry, picked up by read_file, write_file, check_writable and the batch job."""

from __future__ import annotations

import dataclasses
import io
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from n2n_infer import imageio
from n2n_infer.batch import find_images
from n2n_infer.cli import main
from n2n_infer.errors import ImageError
from n2n_infer.formats import ImageFile, ImageFormat, Writer
from n2n_infer.imageio import FORMATS, SUFFIXES, UNSUPPORTED, register
from scripts.fuzz_readers import seed_files
from tests.conftest import synthetic_photo

# --- a toy format: 8-bit grey or RGB samples after a small header -----------------------

MAGIC = b"N2NRAW\n"
HEADER = struct.Struct(">IIB")  # height, width, channels


def _sniff(head: bytes) -> bool:
    return head.startswith(MAGIC)


def _read(path: Path, max_pixels: int) -> ImageFile:
    with open(path, "rb") as f:
        head = f.read(len(MAGIC) + HEADER.size)
        if len(head) < len(MAGIC) + HEADER.size:
            raise ImageError(f"{path}: truncated N2NRAW header")
        h, w, channels = HEADER.unpack(head[len(MAGIC) :])
        if h * w > max_pixels:
            raise ImageError(f"{path}: {w}×{h} pixels exceeds the limit of {max_pixels}")
        if channels not in (1, 3):
            raise ImageError(f"{path}: N2NRAW with {channels} channels")
        data = f.read(h * w * channels)  # what the header declares, no more
    if len(data) < h * w * channels:
        raise ImageError(f"{path}: truncated N2NRAW")
    px = np.frombuffer(data, np.uint8).reshape((h, w) if channels == 1 else (h, w, 3))
    return ImageFile(px.copy(), "N2NRAW", "L" if channels == 1 else "RGB")


def _write(path: Path, loaded: ImageFile, px: np.ndarray, encoder: dict[str, Any]) -> Writer:
    if px.dtype != np.uint8 or not (px.ndim == 2 or px.shape[2] == 3):
        raise ImageError(f"{path}: N2NRAW holds 8-bit grey or RGB, not {px.dtype} {px.shape}")
    data = MAGIC + HEADER.pack(px.shape[0], px.shape[1], 1 if px.ndim == 2 else 3) + px.tobytes()
    return lambda f: f.write(data)


TOY = ImageFormat(
    "N2NRAW",
    (".n2nraw",),
    label="N2N raw",
    sniff=_sniff,
    read=_read,
    write=_write,
    holds=frozenset({"grey", "colour"}),
)


@contextmanager
def registered(fmt: ImageFormat) -> Iterator[None]:
    """``fmt`` registered for the block; the registry as it was afterwards."""
    saved = dict(FORMATS)
    register(fmt)
    try:
        yield
    finally:
        FORMATS.clear()
        FORMATS.update(saved)


def _photo(seed: int, h: int = 24, w: int = 32) -> np.ndarray:
    return synthetic_photo(np.random.default_rng(seed), h, w)


# --- the new format, end to end -----------------------------------------------------------


def test_a_new_format_is_one_entry_read_written_and_checked(tmp_path):
    photo = _photo(0)
    with registered(TOY):
        assert SUFFIXES[".n2nraw"] == "N2NRAW" and ".n2nraw" not in UNSUPPORTED
        imageio.write_file(tmp_path / "a.n2nraw", ImageFile(photo, "PNG", "RGB"))
        assert (tmp_path / "a.n2nraw").read_bytes().startswith(MAGIC)
        loaded = imageio.read_file(tmp_path / "a.n2nraw")
        assert (loaded.format, loaded.mode) == ("N2NRAW", "RGB")
        assert np.array_equal(loaded.pixels, photo)
        with pytest.raises(ImageError, match="exceeds the limit of 10"):
            imageio.read_file(tmp_path / "a.n2nraw", max_pixels=10)
        # by content, as every format: a toy file named .png is read as one
        (tmp_path / "b.png").write_bytes((tmp_path / "a.n2nraw").read_bytes())
        assert imageio.read_file(tmp_path / "b.png").format == "N2NRAW"
        # into another format, and the other way round
        imageio.check_writable(tmp_path / "c.png", loaded)
        imageio.write_file(tmp_path / "c.png", loaded)
        assert np.array_equal(imageio.read_file(tmp_path / "c.png").pixels, photo)
        rgba = ImageFile(np.dstack([photo, photo[..., :1]]), "PNG", "RGBA")
        with pytest.raises(ImageError) as err:
            imageio.check_writable(tmp_path / "d.n2nraw", rgba, tmp_path / "in" / "d.n2nraw")
        assert str(err.value) == (
            f"{tmp_path / 'in' / 'd.n2nraw'}: its content is PNG (8-bit RGBA), which its "
            "name's format, N2NRAW, cannot hold: rename it d.png"
        )
        (tmp_path / "e.jpg").write_bytes(b"neither" * 20)
        with pytest.raises(ImageError, match=r"not a PNG, JPEG, .*PPM/PGM or N2N raw image$"):
            imageio.read_file(tmp_path / "e.jpg")
    assert "N2NRAW" not in FORMATS and ".n2nraw" not in SUFFIXES  # the views follow
    with pytest.raises(ImageError, match=r"cannot write format '\.n2nraw'"):
        imageio.write_file(tmp_path / "f.n2nraw", loaded)


def test_the_batch_job_finds_and_denoises_a_registered_format(tmp_path):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    photo = _photo(1, 48, 64)
    Image.fromarray(photo).save(in_dir / "b.png")
    with registered(TOY):
        imageio.write_file(in_dir / "a.n2nraw", ImageFile(photo, "PNG", "RGB"))
        assert [p.name for p in find_images(in_dir)] == ["a.n2nraw", "b.png"]
        result = CliRunner().invoke(main, ["batch", str(in_dir), str(out_dir), "--device", "cpu"])
        assert result.exit_code == 0, result.output
        assert "2 denoised" in result.output
        assert (out_dir / "a.n2nraw").read_bytes().startswith(MAGIC)
        out = imageio.read_file(out_dir / "a.n2nraw")
    assert out.pixels.shape == photo.shape and not np.array_equal(out.pixels, photo)
    assert [p.name for p in find_images(in_dir)] == ["b.png"]  # unregistered: passed over


def test_a_refused_format_is_an_entry_with_its_refusal(tmp_path):
    why = "XYZ scans are not read: export them as 16-bit TIFF first"
    (tmp_path / "s.xyz").write_bytes(b"anything")
    with registered(ImageFormat("XYZ", (".xyz",), refusal=why)):
        assert UNSUPPORTED[".xyz"] == why and ".xyz" not in SUFFIXES
        assert [p.name for p in find_images(tmp_path)] == ["s.xyz"]  # reported, not passed over
        with pytest.raises(ImageError) as err:
            imageio.read_file(tmp_path / "s.xyz")
        assert str(err.value) == f"{tmp_path / 's.xyz'}: {why}"
    assert find_images(tmp_path) == []


def test_registering_under_a_refused_name_makes_it_read():
    """An entry of the same name replaces the old one, in its place (TGA: refused, then
    read by a reader of its own)."""
    tga = dataclasses.replace(TOY, name="TGA", suffixes=(".tga",), label="")
    where = list(FORMATS).index("TGA")
    assert ".tga" in UNSUPPORTED
    with registered(tga):
        assert SUFFIXES[".tga"] == "TGA" and ".tga" not in UNSUPPORTED
        assert list(FORMATS).index("TGA") == where
    assert ".tga" in UNSUPPORTED and FORMATS["TGA"].refusal


def test_register_refuses_another_format_s_suffix_and_entries_are_checked():
    with pytest.raises(ValueError, match=r"suffixes \['\.png'\] are PNG's"):
        register(dataclasses.replace(TOY, suffixes=(".n2nraw", ".png")))
    assert "N2NRAW" not in FORMATS
    with pytest.raises(ValueError, match="lower case"):
        dataclasses.replace(TOY, suffixes=(".RAW",))
    with pytest.raises(ValueError, match="lower case"):
        dataclasses.replace(TOY, suffixes=("raw",))
    with pytest.raises(ValueError, match="a reader and a writer, or a refusal"):
        ImageFormat("NOPE", (".nope",), read=_read)
    with pytest.raises(ValueError, match="holds"):
        dataclasses.replace(TOY, holds=frozenset({"12-bit"}))


# --- the built-in entries -----------------------------------------------------------------


def test_the_suffix_tables_are_views_of_the_entries():
    read = {s: f.name for f in FORMATS.values() if f.available for s in f.suffixes}
    refused = {s: f.refusal for f in FORMATS.values() if not f.available for s in f.suffixes}
    assert dict(SUFFIXES) == read and dict(UNSUPPORTED) == refused
    assert not set(SUFFIXES) & set(UNSUPPORTED)
    core = {".png", ".jpg", ".jpeg", ".jfif", ".jpe", ".tif", ".tiff", ".webp", ".bmp"}
    assert core | {".ppm", ".pgm", ".pnm"} <= set(SUFFIXES)
    assert (".avif" in SUFFIXES) == imageio.HAS_AVIF and (".heic" in SUFFIXES) == imageio.HAS_HEIF
    assert {".gif", ".dng", ".nef", ".jxl", ".jp2", ".j2k", ".exr", ".psd", ".qoi"} <= set(
        UNSUPPORTED
    )
    for fmt in FORMATS.values():
        assert fmt.available == (fmt.read is not None and fmt.write is not None and not fmt.refusal)


def _heads() -> list[tuple[str, bytes]]:
    """(expected format, first bytes) of one file of every kind read, and of look-alikes."""
    heads = [(SUFFIXES[Path(name).suffix], data[:64]) for name, data in seed_files(0)]
    for major, compatible in ((b"heic", b"mif1"), (b"mif1", b"heic"), (b"avif", b"heic")):
        body = major + bytes(4) + b"mif1" + compatible
        heads.append(("HEIF", ((8 + len(body)).to_bytes(4, "big") + b"ftyp" + body).ljust(64)))
    buf = io.BytesIO()
    Image.fromarray(_photo(2)).save(buf, format="AVIF" if imageio.HAS_AVIF else "PNG")
    heads.append(("AVIF" if imageio.HAS_AVIF else "PNG", buf.getvalue()[:64]))
    return heads


def test_each_file_is_recognised_by_exactly_one_format():
    """The sniffers do not overlap, so the registry's order never decides a reader (a file
    naming both HEVC and AVIF brands is HEIF's)."""
    for expected, head in _heads():
        found = [f.name for f in FORMATS.values() if f.sniff is not None and f.sniff(head)]
        assert found == [expected], head[:16]


_KINDS = {
    "grey": (np.zeros((4, 4), np.uint8), "L"),
    "colour": (np.zeros((4, 4, 3), np.uint8), "RGB"),
    "alpha": (np.zeros((4, 4, 4), np.uint8), "RGBA"),
    "16-bit": (np.zeros((4, 4, 3), np.uint16), "RGB"),
    "float": (np.zeros((4, 4, 3), np.float32), "F"),
}


@pytest.mark.parametrize("name", [f.name for f in FORMATS.values() if f.available])
def test_what_each_format_holds_is_what_check_writable_lets_through(tmp_path, name):
    fmt = FORMATS[name]
    for kind, (px, mode) in _KINDS.items():
        loaded = ImageFile(px, "elsewhere", mode)
        target = tmp_path / f"x{fmt.suffixes[0]}"
        if kind in fmt.holds:
            imageio.check_writable(target, loaded)
        else:
            with pytest.raises(ImageError, match="cannot hold"):
                imageio.check_writable(target, loaded)
