"""read_file on every pixel mode, float TIFFs, and decoder failures of any kind.

Each mode is either kept faithfully or refused with an ImageError naming the file
(issue 20, defects 2b and 3); never written back silently wrong.
"""

import io
import struct
import warnings

import numpy as np
import pytest
from PIL import Image

from n2n_infer import Denoiser, imageio, png16
from n2n_infer.errors import ImageError
from tests.conftest import synthetic_photo


def _photo(seed=0, h=12, w=16):
    return synthetic_photo(np.random.default_rng(seed), h, w)


def _saved(im, fmt, **options):
    buf = io.BytesIO()
    im.save(buf, format=fmt, **options)
    return buf.getvalue()


# -- floating-point TIFF (defect 2b) -------------------------------------------------------


def test_float_tiff_is_read_as_float_and_written_back_as_float(tmp_path):
    """Defect 2b: a mode-F TIFF was written back as an all-black 8-bit RGB file."""
    grey = (_photo(1)[..., 0] / 255.0).astype(np.float32)
    Image.fromarray(grey, "F").save(tmp_path / "f.tif")
    loaded = imageio.read_file(tmp_path / "f.tif")
    assert (loaded.format, loaded.mode, loaded.pixels.dtype) == ("TIFF", "F", np.float32)
    assert np.array_equal(loaded.pixels, grey)
    denoised = Denoiser(device="cpu").denoise(loaded.pixels)
    imageio.write_file(tmp_path / "out.tif", loaded, denoised)
    with Image.open(tmp_path / "out.tif") as im:
        assert im.mode == "F" and im.size == (16, 12)
        out = np.asarray(im)
    assert np.allclose(out, denoised) and out.mean() > 0.1  # not black
    with pytest.raises(ImageError, match=r"only be written as TIFF, not '\.png'"):
        imageio.write_file(tmp_path / "out.png", loaded, denoised)


def test_float_rgb_tiff_round_trips(tmp_path):
    import tifffile

    rgb = (_photo(2) / 255.0).astype(np.float32)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    loaded = imageio.read_file(tmp_path / "rgb.tif")
    assert loaded.pixels.dtype == np.float32 and np.array_equal(loaded.pixels, rgb)
    imageio.write_file(tmp_path / "again.tif", loaded)
    assert np.array_equal(imageio.read_file(tmp_path / "again.tif").pixels, rgb)


@pytest.mark.parametrize("bad", [2.5, -0.1, np.nan, np.inf])
def test_float_tiff_outside_0_1_is_refused(tmp_path, bad):
    grey = np.full((4, 5), 0.5, np.float32)
    grey[1, 2] = bad
    Image.fromarray(grey, "F").save(tmp_path / "f.tif")
    with pytest.raises(ImageError, match=r"only values in \[0, 1\]") as info:
        imageio.read_file(tmp_path / "f.tif")
    assert "f.tif" in str(info.value)


# -- every Pillow mode: kept or refused ------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "fmt", "read_as", "written_as"),
    [
        ("1", "TIFF", "L", "L"),
        ("1", "BMP", "L", "L"),
        ("P", "TIFF", "RGB", "RGB"),
        ("P", "BMP", "RGB", "RGB"),
        ("PA", "TIFF", "RGBA", "RGBA"),
        ("LA", "TIFF", "RGBA", "LA"),
        ("L", "JPEG", "L", "L"),
    ],
)
def test_other_modes_are_read_in_a_mode_that_is_written_back(
    tmp_path, mode, fmt, read_as, written_as
):
    src = Image.fromarray(_photo(3)).convert(mode)
    path = tmp_path / f"m.{fmt.lower()}"
    path.write_bytes(_saved(src, fmt))
    loaded = imageio.read_file(path)
    with Image.open(path) as ref:
        expected = np.asarray(ref.convert(read_as))
    assert loaded.mode == written_as and np.array_equal(loaded.pixels, expected)
    imageio.write_file(tmp_path / f"out.{fmt.lower()}", loaded)
    with Image.open(tmp_path / f"out.{fmt.lower()}") as out:
        assert out.mode == written_as


def test_big_endian_16_bit_grey_tiff_keeps_its_values(tmp_path):
    grey = (np.arange(12 * 16, dtype=np.uint16) * 331).reshape(12, 16)
    Image.fromarray(grey.astype(">u2")).save(tmp_path / "b.tif")
    with Image.open(tmp_path / "b.tif") as im:
        assert im.mode == "I;16B"
    loaded = imageio.read_file(tmp_path / "b.tif")
    assert loaded.mode == "I;16" and loaded.pixels.dtype == np.uint16
    assert np.array_equal(loaded.pixels, grey)


@pytest.mark.parametrize(("mode", "fmt"), [("CMYK", "JPEG"), ("CMYK", "TIFF"), ("I", "TIFF")])
def test_modes_that_cannot_be_kept_are_refused_naming_the_file(tmp_path, mode, fmt):
    src = Image.fromarray(_photo(4)).convert(mode)
    path = tmp_path / f"m.{fmt.lower()}"
    path.write_bytes(_saved(src, fmt))
    with pytest.raises(ImageError, match="not supported") as info:
        imageio.read_file(path)
    assert str(path) in str(info.value)


# -- decoder failures of any kind (defect 3) -----------------------------------------------


def _retype_tag(data, tag, new_type):
    """A little-endian TIFF with the type field of ``tag``'s IFD entry replaced."""
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    out = bytearray(data)
    for i in range(count):
        at = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, at)[0] == tag:
            struct.pack_into("<H", out, at + 2, new_type)
            return bytes(out)
    raise AssertionError(f"tag {tag} not found")


@pytest.mark.parametrize("new_type", [2, 5, 11, 12])  # ASCII, RATIONAL, FLOAT, DOUBLE
def test_tiff_with_wrongly_typed_strip_offsets_is_an_image_error(tmp_path, new_type):
    """Defect 3: Pillow raised TypeError, which crashed the batch job."""
    data = _saved(Image.fromarray(_photo(5)), "TIFF")
    path = tmp_path / "t.tif"
    path.write_bytes(_retype_tag(data, 273, new_type))
    with pytest.raises(ImageError) as info:
        imageio.read_file(path)
    assert str(path) in str(info.value)


def _exif_bytes(orientation_entry):
    """JPEG EXIF (``Exif\\0\\0`` + little-endian TIFF) with Make "camera" and the given
    Orientation entry (type, count, 4 value bytes), written by hand: Pillow refuses to."""
    kind, count, value = orientation_entry
    entries = struct.pack("<HHI4s", 0x010F, 2, 7, struct.pack("<I", 8 + 30))  # after the IFD
    entries += struct.pack("<HHI4s", 0x0112, kind, count, value)
    ifd = struct.pack("<H", 2) + entries + struct.pack("<I", 0)
    return b"Exif\0\0" + b"II*\0" + struct.pack("<I", 8) + ifd + b"camera\0\0"


ORIENTATIONS = {
    "ascii '6'": (2, 2, b"6\0\0\0"),
    "float 6.0": (11, 1, struct.pack("<f", 6.0)),
    "0": (3, 1, struct.pack("<HH", 0, 0)),
    "9": (3, 1, struct.pack("<HH", 9, 0)),
    "signed long -6": (9, 1, struct.pack("<i", -6)),
}


@pytest.mark.parametrize("entry", list(ORIENTATIONS))
def test_jpeg_with_a_wrongly_typed_orientation_is_read_with_a_note(tmp_path, entry):
    """Defect 3: an Orientation that is not an int 1-8 is ignored with a note, not fatal."""
    path = tmp_path / "o.jpg"
    exif = _exif_bytes(ORIENTATIONS[entry])
    Image.fromarray(_photo(6)).save(path, exif=exif, quality=95)
    loaded = imageio.read_file(path)
    assert loaded.pixels.shape == (12, 16, 3)
    assert any("orientation" in note for note in loaded.notes)
    imageio.write_file(tmp_path / "w.jpg", loaded)
    with Image.open(tmp_path / "w.jpg") as im:
        assert im.getexif().get(0x010F) == "camera"


@pytest.mark.parametrize("fmt", ["TIFF", "JPEG", "PNG", "WEBP", "BMP"])
def test_truncated_files_under_warnings_as_errors_are_image_errors(tmp_path, fmt):
    """Defect 3: with PYTHONWARNINGS=error, Pillow's warnings became raw exceptions."""
    data = _saved(Image.fromarray(_photo(7, 40, 50)), fmt)
    path = tmp_path / f"t.{fmt.lower()}"
    for cut in (len(data) // 3, len(data) - 7):
        path.write_bytes(data[:cut])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(ImageError) as info:
                imageio.read_file(path)
        assert str(path) in str(info.value)


def test_memory_error_becomes_an_image_error_and_interrupts_pass(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    Image.fromarray(_photo(8)).save(path)

    def out_of_memory(data):
        raise MemoryError

    monkeypatch.setattr(png16.imagecodecs, "png_decode", out_of_memory)
    with pytest.raises(ImageError, match="too large to decode") as info:
        imageio.read_file(path)
    assert str(path) in str(info.value)

    def interrupted(data):
        raise KeyboardInterrupt

    monkeypatch.setattr(png16.imagecodecs, "png_decode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        imageio.read_file(path)


def test_any_decoder_exception_is_an_image_error_naming_its_type(tmp_path, monkeypatch):
    path = tmp_path / "a.jpg"
    Image.fromarray(_photo(9)).save(path)

    def broken(self):
        raise IndexError("list index out of range")

    monkeypatch.setattr(Image.Image, "load", broken)
    with pytest.raises(ImageError, match="IndexError: list index out of range") as info:
        imageio.read_file(path)
    assert str(path) in str(info.value)


def test_formats_outside_the_list_are_refused(tmp_path):
    path = tmp_path / "a.img"  # a GIF by its bytes (a .gif is refused by its suffix first)
    Image.fromarray(_photo(10)).save(path, format="GIF")
    with pytest.raises(ImageError, match=r"not a PNG, JPEG, TIFF, WebP, BMP.* or PPM/PGM image"):
        imageio.read_file(path)
