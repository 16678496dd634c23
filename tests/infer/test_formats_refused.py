"""Formats beyond the core five: AVIF read and written; RAW, GIF ... refused by name.

HEIF/HEIC (read and written with the heic extra, refused without it): test_heif.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageCms

from n2n_infer.cli import main
from n2n_infer.errors import ImageError
from n2n_infer.imageio import HAS_AVIF, UNSUPPORTED, read_file
from tests.conftest import synthetic_photo


def _photo(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    return synthetic_photo(np.random.default_rng(seed), h, w)


def _batch(*args: object) -> object:
    return CliRunner().invoke(main, ["batch", *[str(a) for a in args], "--device", "cpu"])


def test_image_formats_that_are_not_read_are_reported_by_name_not_passed_over(tmp_path):
    """An animated GIF and a camera's DNG fail with what to do instead (exit 1); a sidecar
    file is no image and is left alone; nothing is written for the refused files."""
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    Image.fromarray(_photo(0)).save(in_dir / "a.png")
    Image.fromarray(_photo(1)).save(in_dir / "b.GIF", format="PNG")  # any bytes: by suffix
    (in_dir / "c.dng").write_bytes(b"II*\0" + bytes(64))
    (in_dir / "c.xmp").write_text("<x:xmpmeta/>")
    report = tmp_path / "report.json"
    result = _batch(in_dir, out_dir, "--report", report)
    assert result.exit_code == 1, result.output
    assert "b.GIF: GIF (a palette, often animated) is not read: convert it" in result.output
    assert "c.dng: camera RAW is not read: develop it to a 16-bit TIFF first" in result.output
    assert "xmp" not in result.output
    assert "1 denoised, 0 skipped, 2 failed" in result.output
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.png"]
    files = {f["name"]: f for f in json.loads(report.read_text())["files"]}
    assert set(files) == {"a.png", "b.GIF", "c.dng"}
    assert files["b.GIF"]["status"] == "error" and "GIF" in files["b.GIF"]["error"]


@pytest.mark.parametrize("suffix", sorted(UNSUPPORTED))
def test_read_file_refuses_each_unsupported_suffix_with_advice(tmp_path, suffix):
    path = tmp_path / f"x{suffix}"
    Image.fromarray(_photo(2)).save(path, format="PNG")
    with pytest.raises(ImageError, match=rf"x\{suffix}: .+ (first|Pillow|\[0, 1\])"):
        read_file(path)


@pytest.mark.skipif(not HAS_AVIF, reason="this Pillow has no AVIF codec")
def test_avif_is_denoised_into_avif_upright_with_its_profile(tmp_path):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    wide = _photo(3, 48, 64)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated: 48 wide, 64 high
    Image.fromarray(wide).save(in_dir / "p.avif", icc_profile=srgb, exif=exif, quality=95)
    result = _batch(in_dir, out_dir)
    assert result.exit_code == 0, result.output
    with Image.open(out_dir / "p.avif") as out:
        assert out.format == "AVIF" and out.size == (48, 64)  # stored upright
        assert out.info.get("icc_profile") == srgb
        assert out.getexif().get(0x0112, 1) == 1


def test_content_that_its_name_cannot_hold_is_refused_before_denoising(tmp_path):
    """A 16-bit PNG or a PNG with alpha named .jpg (JPEG holds neither) fails by name,
    saying what to rename it, and is never denoised; an 8-bit RGB PNG named .jpg, which
    JPEG can hold, is denoised and written as the JPEG its name says."""
    from n2n_infer import png16
    from n2n_infer.batch import convert_file

    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    out_dir.mkdir()
    photo = _photo(4)
    (in_dir / "deep.jpg").write_bytes(png16.encode_png16(photo.astype(np.uint16) * 257))
    Image.fromarray(np.dstack([photo, photo[..., :1]])).save(in_dir / "alpha.jpg", format="PNG")
    Image.fromarray(photo).save(in_dir / "rgb.jpg", format="PNG")

    class NeverCalled:
        def denoise(self, *args, **kwargs):
            raise AssertionError("denoised before the output format was checked")

    for name, what in (("deep", "PNG (16-bit RGB)"), ("alpha", "PNG (8-bit RGBA)")):
        src = in_dir / f"{name}.jpg"
        with pytest.raises(ImageError) as err:
            convert_file(NeverCalled(), src, out_dir / src.name, src.name)
        assert str(err.value) == (
            f"{src}: its content is {what}, which its name's format, JPEG, cannot hold: "
            f"rename it {name}.png"
        )
    result = _batch(in_dir, out_dir)
    assert result.exit_code == 1 and "1 denoised, 0 skipped, 2 failed" in result.output
    assert sorted(p.name for p in out_dir.iterdir()) == ["rgb.jpg"]
    assert (out_dir / "rgb.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
