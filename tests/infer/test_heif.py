"""HEIF/HEIC: read and written with the heic extra (pillow-heif), refused by name without it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageCms

from n2n_infer import heif
from n2n_infer.cli import main
from n2n_infer.errors import ImageError
from n2n_infer.imageio import SUFFIXES, UNSUPPORTED, read_file, write_file
from n2n_infer.metrics import psnr
from tests.conftest import synthetic_photo

needs_heif = pytest.mark.skipif(
    not heif.HAS_HEIF, reason='pillow-heif missing: pip install "n2n[heic]"'
)
MAKE = 0x010F
ORIENTATION = 0x0112


def _noisy(seed: int, h: int = 96, w: int = 128) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    clean = synthetic_photo(rng, h, w)
    noisy = np.clip(clean + rng.normal(0, 25, clean.shape), 0, 255).astype(np.uint8)
    return clean, noisy


def _batch(*args: object) -> object:
    return CliRunner().invoke(main, ["batch", *[str(a) for a in args], "--device", "cpu"])


def _encode(path, px: np.ndarray, mode: str, **options) -> None:
    import pillow_heif

    pillow_heif.encode(mode, (px.shape[1], px.shape[0]), px.tobytes(), str(path), **options)


@needs_heif
def test_a_phone_heic_is_denoised_into_heic_upright_with_its_profile_exif_and_chroma(tmp_path):
    """A phone's HEIC, stored sideways with its rotation in the file: the output is a HEIC
    of the upright picture, denoised like the same pixels from a PNG, with the same ICC
    profile, the other EXIF tags and 4:2:0 chroma, and no rotation left to apply."""
    import pillow_heif

    clean, noisy = _noisy(0)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # shown turned clockwise: 96 wide, 128 high
    exif[MAKE] = "Phone"
    heic_in, png_in, out = tmp_path / "heic", tmp_path / "png", tmp_path / "out"
    heic_in.mkdir()
    png_in.mkdir()
    _encode(heic_in / "p.heic", noisy, "RGB", quality=100, exif=exif.tobytes(), icc_profile=srgb)
    upright = read_file(heic_in / "p.heic").pixels
    assert upright.shape == (128, 96, 3)
    turned = [psnr(upright, np.rot90(noisy, k)) for k in (-1, 1)]  # clockwise, or the reverse
    assert turned[0] > turned[1] + 5  # the file's own rotation, applied once
    Image.fromarray(upright).save(png_in / "p.png")

    assert _batch(heic_in, out).exit_code == 0
    assert _batch(png_in, out).exit_code == 0
    written = pillow_heif.open_heif(out / "p.heic")
    assert written.size == (96, 128) and written.info["chroma"] == 420
    assert written.info["bit_depth"] == 8 and written.info["icc_profile"] == srgb
    tags = Image.Exif()
    tags.load(written.info["exif"])
    assert tags.get(MAKE) == "Phone" and tags.get(ORIENTATION, 1) == 1
    denoised = read_file(out / "p.heic").pixels
    via_png = np.asarray(Image.open(out / "p.png"))
    assert psnr(denoised, via_png) > 38  # only the HEVC coding differs
    truth = np.rot90(clean, -1)
    assert psnr(denoised, truth) > psnr(upright, truth) + 4


@needs_heif
@pytest.mark.parametrize("bit_depth", [10, 12])
def test_a_10_or_12_bit_heif_keeps_its_depth_and_444_chroma(tmp_path, bit_depth):
    clean, noisy = _noisy(1, 64, 80)
    wide = noisy.astype(np.uint16) * 257 + np.random.default_rng(2).integers(0, 257, noisy.shape)
    path = tmp_path / "in" / "c.HIF"
    path.parent.mkdir()
    _encode(path, wide.astype(np.uint16), "RGB;16", quality=-1, chroma=444, bit_depth=bit_depth)
    loaded = read_file(path)
    assert loaded.pixels.dtype == np.uint16 and loaded.mode == "RGB"
    assert loaded.encoder["bit_depth"] == bit_depth and loaded.encoder["chroma"] == 444
    assert len(np.unique(loaded.pixels)) > 512  # more than 8 bits
    result = _batch(path.parent, tmp_path / "out")
    assert result.exit_code == 0, result.output
    again = read_file(tmp_path / "out" / "c.HIF")
    assert again.pixels.dtype == np.uint16 and again.encoder["bit_depth"] == bit_depth
    assert again.encoder["chroma"] == 444
    truth = clean / 255.0
    assert psnr(again.pixels / 65535.0, truth) > psnr(loaded.pixels / 65535.0, truth) + 4


@pytest.mark.parametrize("bit_depth", [10, 12])
def test_deep_values_are_spread_over_16_bits_and_back_exactly(bit_depth):
    top = (1 << bit_depth) - 1
    stored = (np.arange(top + 1, dtype=np.uint16) << (16 - bit_depth)).astype(np.uint16)
    full = heif._to_full_range(stored, bit_depth)
    assert full[0] == 0 and full[-1] == 65535 and np.all(np.diff(full.astype(int)) > 0)
    assert np.array_equal(heif._from_full_range(full, bit_depth), stored)


@needs_heif
def test_grey_and_alpha_heifs_are_written_back_in_their_modes(tmp_path):
    _, noisy = _noisy(3, 40, 56)
    rgba = np.dstack([noisy, np.linspace(0, 255, 56, dtype=np.uint8)[None].repeat(40, 0)])
    cases = {"l.heic": (noisy[..., 0], "L"), "a.heic": (rgba, "RGBA")}
    for name, (px, mode) in cases.items():
        _encode(tmp_path / name, px, mode, quality=-1)
        loaded = read_file(tmp_path / name)
        assert loaded.mode == mode and loaded.pixels.shape == px.shape
        write_file(tmp_path / f"out_{name}", loaded)
        again = read_file(tmp_path / f"out_{name}")
        assert again.mode == mode and again.pixels.shape == px.shape
        assert psnr(again.pixels, loaded.pixels) > 35


@needs_heif
def test_a_heic_under_another_name_is_read_by_its_content(tmp_path):
    """Phones' exports sometimes name a HEIC ".jpg": it is read as HEIF and written
    as what its name says."""
    _, noisy = _noisy(4, 48, 64)
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    _encode(in_dir / "m.jpg", noisy, "RGB", quality=90)
    assert read_file(in_dir / "m.jpg").format == "HEIF"
    result = _batch(in_dir, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "m.jpg").read_bytes()[:3] == b"\xff\xd8\xff"


@needs_heif
def test_what_is_not_written_back_is_noted_in_the_report(tmp_path):
    import pillow_heif

    _, noisy = _noisy(5, 32, 48)
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    two = pillow_heif.from_bytes("RGB", (48, 32), noisy.tobytes())
    two.add_frombytes("RGB", (48, 32), noisy[::-1].copy().tobytes())
    two.save(in_dir / "burst.heic", quality=90)
    assert "holds 2 images" in read_file(in_dir / "burst.heic").notes[0]
    report = tmp_path / "r.json"
    assert _batch(in_dir, tmp_path / "out", "--report", report).exit_code == 0
    (entry,) = json.loads(report.read_text())["files"]
    assert any("only the primary one is denoised" in n for n in entry["notes"])


@needs_heif
def test_truncated_and_oversized_heics_are_image_errors_naming_the_file(tmp_path):
    _, noisy = _noisy(6, 64, 64)
    path = tmp_path / "t.heic"
    _encode(path, noisy, "RGB", quality=90)
    with pytest.raises(ImageError, match=r"t\.heic: 64×64 pixels exceeds the limit of 100"):
        read_file(path, max_pixels=100)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageError, match=r"t\.heic: "):
        read_file(path)


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\0\0\0\0" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + bytes(32)


def test_heif_is_told_from_avif_and_others_by_its_brands():
    assert heif.looks_like_heif(_ftyp(b"heic", b"mif1", b"heic"))
    assert heif.looks_like_heif(_ftyp(b"mif1", b"mif1", b"heic"))
    assert heif.looks_like_heif(_ftyp(b"mif1", b"mif1"))  # generic HEIF, not AVIF
    assert not heif.looks_like_heif(_ftyp(b"avif", b"mif1", b"avif"))
    assert not heif.looks_like_heif(_ftyp(b"mif1", b"mif1", b"avif"))
    assert not heif.looks_like_heif(_ftyp(b"isom", b"mp41"))  # an MP4 video
    assert not heif.looks_like_heif(b"\x89PNG\r\n\x1a\n" + bytes(56))
    assert not heif.looks_like_heif(b"\0\0")


def test_suffixes_follow_the_extra():
    for suffix in heif.SUFFIXES:
        assert (suffix in SUFFIXES) == heif.HAS_HEIF and (suffix in UNSUPPORTED) != heif.HAS_HEIF


def test_without_the_extra_a_heic_of_any_name_is_refused_with_the_install_line(tmp_path):
    """pillow-heif blocked: HEIF suffixes are refused by name, a HEIF file named .jpg too,
    and `n2n-infer doctor` says what is missing."""
    fake = tmp_path / "x.jpg"
    fake.write_bytes(_ftyp(b"heic", b"mif1", b"heic") + bytes(100))
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["pillow_heif"] = None  # as if not installed
        from n2n_infer import imageio
        from n2n_infer.doctor import image_formats
        from n2n_infer.errors import ImageError
        assert not imageio.HAS_HEIF and ".heic" in imageio.UNSUPPORTED
        assert ".heic" not in imageio.SUFFIXES
        assert 'pip install "n2n[heic]"' in imageio.UNSUPPORTED[".hif"]
        try:
            imageio.read_file({str(fake)!r})
        except ImageError as exc:
            print(exc)
        print(image_formats())
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    error, formats = out.stdout.strip().splitlines()
    assert error.startswith(f"{fake}: HEIF/HEIC (a phone's default format) needs the heic extra")
    assert 'pip install "n2n[heic]"' in error
    assert 'not here: HEIF/HEIC (pip install "n2n[heic]")' in formats


@needs_heif
def test_an_xmp_orientation_is_not_applied_again_when_written_back(tmp_path):
    """An XMP tiff:Orientation repeats the file's rotation like the EXIF one: kept out
    of the output's XMP (pillow-heif's encoder would rotate the output by it)."""
    import pillow_heif

    _, noisy = _noisy(7, 48, 64)
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
        b'02/22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
        b'tiff:Orientation="6" tiff:Make="Phone"/></rdf:RDF></x:xmpmeta>'
    )
    _encode(tmp_path / "x.heic", noisy, "RGB", quality=95, xmp=xmp)
    loaded = read_file(tmp_path / "x.heic")
    assert loaded.pixels.shape == (64, 48, 3)  # turned once, by libheif
    write_file(tmp_path / "y.heic", loaded)
    written = pillow_heif.open_heif(tmp_path / "y.heic")
    assert written.size == (48, 64)  # stored upright, no rotation to apply
    assert b"tiff:Make" in written.info["xmp"] and b"Orientation" not in written.info["xmp"]
    assert psnr(read_file(tmp_path / "y.heic").pixels, loaded.pixels) > 35


@needs_heif
def test_grey_with_alpha_stays_grey_with_alpha(tmp_path):
    """pillow-heif gives a monochrome + alpha HEIF as RGBA: it is written back as grey
    + alpha (no chroma), not as a colour 4:2:0 image."""
    import pillow_heif

    _, noisy = _noisy(8, 48, 64)
    la = np.dstack([noisy[..., 0], np.full((48, 64), 200, np.uint8)])
    _encode(tmp_path / "la.heic", la, "LA", quality=-1)
    loaded = read_file(tmp_path / "la.heic")
    assert loaded.mode == "LA" and loaded.pixels.shape == (48, 64, 4)
    write_file(tmp_path / "out.heic", loaded)
    written = pillow_heif.open_heif(tmp_path / "out.heic")
    assert "chroma" not in written.info and written.mode == "RGBA"  # monochrome, with alpha
    again = read_file(tmp_path / "out.heic")
    assert again.mode == "LA" and psnr(again.pixels, loaded.pixels) > 35


@needs_heif
def test_aspect_ratio_hdr_metadata_and_thumbnails_are_written_back(tmp_path):
    import pillow_heif

    _, noisy = _noisy(9, 40, 56)
    light = {"max_content_light_level": 1000, "max_pic_average_light_level": 400}
    deep = (noisy.astype(np.uint16) * 257).astype(np.uint16)
    _encode(
        tmp_path / "hdr.heic", deep, "RGB;16", quality=90, bit_depth=10,
        pixel_aspect_ratio=(4, 3), content_light_level=light, thumbnails=[32],
    )  # fmt: skip
    write_file(tmp_path / "out.heic", read_file(tmp_path / "hdr.heic"))
    info = pillow_heif.open_heif(tmp_path / "out.heic", convert_hdr_to_8bit=False).info
    assert info["pixel_aspect_ratio"] == (4, 3) and info["content_light_level"] == light
    assert info["thumbnails"] == [32] and info["bit_depth"] == 10


@needs_heif
def test_an_nclx_box_beside_an_icc_profile_is_noted(tmp_path):
    """pillow-heif reports (and writes) one colour box: the ICC profile wins, and the
    nclx box that a file may carry beside it is said to be left out."""
    _, noisy = _noisy(10, 32, 32)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    _encode(tmp_path / "icc.heic", noisy, "RGB", quality=90, icc_profile=srgb)
    assert not any("nclx" in n for n in read_file(tmp_path / "icc.heic").notes)
    with open(tmp_path / "icc.heic", "ab") as f:  # a colr/nclx box after the image data
        f.write(b"\0\0\0\x13colrnclx\0\x09\0\x0d\0\x01\0")
    notes = read_file(tmp_path / "icc.heic").notes
    assert "HEIF nclx colour box beside the ICC profile not written back" in notes
