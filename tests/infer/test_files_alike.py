"""Files written back alike, and nothing passed over or lost without a word.

Found by a black-box review of the batch job with crafted files: grey TIFFs
turned by their orientation, white-is-zero 16-bit TIFFs, animations and
multi-page files, suffixes passed over, linked folders, a bad reference, the
resolution and PNG chunks, a JPEG's subsampling, a WebP's losslessness.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image, JpegImagePlugin

from n2n_infer import imageio
from n2n_infer.batch import convert_file, denoise_folder, find_images
from n2n_infer.cli import main
from n2n_infer.errors import ImageError
from n2n_infer.tiling import TileSpec
from tests.conftest import synthetic_photo

ORIENTATION = 274


def _photo(seed: int, h: int = 40, w: int = 56) -> np.ndarray:
    return synthetic_photo(np.random.default_rng(seed), h, w)


def _run(*args: object):
    return CliRunner().invoke(main, ["batch", *(str(a) for a in args), "--device", "cpu"])


# --- reading: orientation, white-is-zero, grey + alpha --------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_uncompressed_grey_tiff_is_turned_upright_not_scrambled(tmp_path, dtype, orientation):
    """Pillow 13 lays such a file out in its stored shape when it maps it from a path."""
    stored = _photo(orientation, 24, 40)[..., 1].astype(dtype)
    path = tmp_path / "g.tif"
    tifffile.imwrite(path, stored, extratags=[(ORIENTATION, "H", 1, orientation, True)])
    expected = {
        5: stored.T,
        6: np.rot90(stored, -1),
        7: stored.T[::-1, ::-1],
        8: np.rot90(stored, 1),
    }
    assert np.array_equal(imageio.read_file(path).pixels, expected[orientation])


def test_white_is_zero_16_bit_tiff_is_read_black_is_zero(tmp_path):
    stored = (np.arange(12 * 20, dtype=np.uint16).reshape(12, 20) * 250).astype(np.uint16)
    path = tmp_path / "w.tif"
    tifffile.imwrite(path, stored, photometric="miniswhite")
    loaded = imageio.read_file(path)
    assert loaded.mode == "I;16" and np.array_equal(loaded.pixels, 65535 - stored)
    out = tmp_path / "out.tif"
    imageio.write_file(out, loaded)
    page = tifffile.TiffFile(out).pages[0]
    assert int(page.photometric) == 1 and np.array_equal(page.asarray(), 65535 - stored)


def test_16_bit_grey_alpha_tiff_is_read_as_16_bit_rgba(tmp_path):
    grey = _photo(1)[..., 0].astype(np.uint16) * 257
    alpha = np.full_like(grey, 40000)
    path = tmp_path / "la.tif"
    tifffile.imwrite(
        path, np.dstack([grey, alpha]), photometric="minisblack", extrasamples=["unassalpha"]
    )
    loaded = imageio.read_file(path)
    assert loaded.mode == "RGBA" and loaded.pixels.dtype == np.uint16
    assert np.array_equal(loaded.pixels, np.dstack([grey, grey, grey, alpha]))
    assert loaded.notes == ["16-bit grey+alpha TIFF: written back as 16-bit RGBA"]


# --- several images in one file ---------------------------------------------------------


def _frames(n: int) -> list[Image.Image]:
    return [Image.fromarray(_photo(i)) for i in range(n)]


@pytest.mark.parametrize(
    ("name", "save", "match"),
    [
        ("anim.png", {"format": "PNG"}, r"animated PNG \(3 frames\)"),
        ("anim.webp", {"format": "WEBP", "lossless": True}, r"image sequence \(3 frames\)"),
        ("pages.tif", {"format": "TIFF"}, r"multi-page TIFF \(3 pages"),
    ],
)
def test_a_file_of_several_images_is_refused_not_cut_to_one(tmp_path, name, save, match):
    first, *rest = _frames(3)
    first.save(tmp_path / name, save_all=True, append_images=rest, **save)
    with pytest.raises(ImageError, match=match + ".*would be lost"):
        imageio.read_file(tmp_path / name)


def test_a_tiff_thumbnail_page_is_dropped_with_a_note(tmp_path):
    path = tmp_path / "t.tif"
    image = _photo(2)
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, photometric="rgb")
        tif.write(image[::4, ::4], photometric="rgb", subfiletype=1)
    loaded = imageio.read_file(path)
    assert np.array_equal(loaded.pixels, image)
    assert loaded.notes == ["1 reduced-resolution page(s) (thumbnails) not kept"]


def test_an_mpo_is_denoised_as_a_jpeg_with_a_note(tmp_path, photo):
    first, second = _frames(2)
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    first.save(src / "s.jpg", format="MPO", save_all=True, append_images=[second])
    report = denoise_folder(photo, src, dst)
    assert report.ok and "MPO" in report.results[0].notes[0]
    with Image.open(dst / "s.jpg") as im:
        assert im.format == "JPEG" and im.size == first.size


# --- which files are listed -------------------------------------------------------------


def test_jpeg_and_pgm_suffixes_are_denoised_and_unread_ones_refused_by_name(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in ("a.jfif", "b.jpe", "c.JPG"):
        Image.fromarray(_photo(3)).save(src / name, format="JPEG")
    Image.fromarray(_photo(4)).save(src / "d.ppm")
    Image.fromarray(_photo(5)[..., 0]).save(src / "e.pgm")
    Image.fromarray(_photo(6)[..., 0].astype(np.uint16) * 200).save(src / "f.pgm")
    for name in ("g.tga", "h.j2k", "i.apng", "j.pbm"):
        (src / name).write_bytes(b"not read")
    (src / "notes.txt").write_text("not an image")
    result = _run(src, out, "--report", tmp_path / "r.json")
    assert result.exit_code == 1, result.output
    files = {f["name"]: f for f in json.loads((tmp_path / "r.json").read_text())["files"]}
    assert sorted(files) == sorted(
        ["a.jfif", "b.jpe", "c.JPG", "d.ppm", "e.pgm", "f.pgm", "g.tga", "h.j2k", "i.apng", "j.pbm"]
    )
    for name in ("a.jfif", "b.jpe", "c.JPG", "d.ppm", "e.pgm", "f.pgm"):
        assert files[name]["status"] == "ok", files[name]
    for name, why in (
        ("g.tga", "TGA"),
        ("h.j2k", "JPEG 2000"),
        ("i.apng", "APNG"),
        ("j.pbm", "PBM"),
    ):
        assert files[name]["status"] == "error" and why in files[name]["error"]
        assert not (out / name).exists()
    with Image.open(out / "a.jfif") as im:
        assert im.format == "JPEG"
    with Image.open(out / "f.pgm") as im:  # 16-bit PGM stays 16-bit
        assert im.format == "PPM" and np.asarray(im).max() > 255


def test_recursive_follows_linked_folders_once_and_reports_broken_links(tmp_path, photo):
    src, elsewhere, out = tmp_path / "in", tmp_path / "elsewhere", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    Image.fromarray(_photo(7)).save(src / "a.png")
    Image.fromarray(_photo(8)).save(elsewhere / "b.png")
    os.symlink(elsewhere, src / "linked")
    os.symlink(src, src / "sub" / "loop")  # back up the tree: not walked again
    os.symlink(tmp_path / "missing.png", src / "broken.png")
    names = [p.relative_to(src).as_posix() for p in find_images(src, recursive=True)]
    assert names == ["a.png", "broken.png", "linked/b.png"]
    report = denoise_folder(photo, src, out, recursive=True)
    status = {r.name: (r.status, r.error) for r in report.results}
    assert status["a.png"][0] == status["linked/b.png"][0] == "ok"
    assert status["broken.png"] == (
        "error",
        f"broken symbolic link (to {tmp_path / 'missing.png'})",
    )
    assert (out / "linked" / "b.png").is_file() and sorted(os.listdir(elsewhere)) == ["b.png"]


def test_an_output_through_a_link_into_a_linked_input_folder_is_refused(tmp_path, photo):
    src, elsewhere, out = tmp_path / "in", tmp_path / "elsewhere", tmp_path / "out"
    src.mkdir()
    elsewhere.mkdir()
    out.mkdir()
    Image.fromarray(_photo(9)).save(elsewhere / "b.png")
    os.symlink(elsewhere, src / "linked")
    os.symlink(elsewhere, out / "linked")  # OUT/linked/b.png would be the input itself
    report = denoise_folder(photo, src, out, recursive=True, overwrite=True)
    assert (
        report.results[0].status == "error"
        and "leads into an input folder" in report.results[0].error
    )
    assert np.array_equal(np.asarray(Image.open(elsewhere / "b.png")), _photo(9))


# --- the reference ---------------------------------------------------------------------


def test_a_bad_reference_fails_the_file_before_anything_is_written(tmp_path, photo):
    src, ref, out = tmp_path / "in", tmp_path / "ref", tmp_path / "out"
    src.mkdir()
    ref.mkdir()
    Image.fromarray(_photo(10)).save(src / "a.png")
    Image.fromarray(_photo(10)).save(src / "b.png")
    Image.fromarray(_photo(11, 10, 10)).save(ref / "a.png")  # another size; b has none
    report = denoise_folder(photo, src, out, reference_dir=ref)
    a, b = report.results
    assert a.status == "error" and "differs from the input's (40, 56); nothing written" in a.error
    assert not (out / "a.png").exists()
    assert b.status == "ok" and b.psnr_noisy is None
    assert b.notes == [f"no reference image {ref / 'b.png'}: PSNR not measured"]


# --- written alike: resolution, PNG chunks, JPEG coding, WebP ----------------------------


def _denoised(photo, path, tmp_path):
    dst = tmp_path / "out" / path.name
    dst.parent.mkdir(exist_ok=True)
    result = convert_file(photo, path, dst, path.name)
    assert result.status == "ok"
    return dst


@pytest.mark.parametrize("suffix", [".jpg", ".tif", ".bmp", ".png"])
def test_resolution_is_kept(tmp_path, photo, suffix):
    path = tmp_path / f"a{suffix}"
    Image.fromarray(_photo(12)).save(path, dpi=(300, 150))
    with Image.open(_denoised(photo, path, tmp_path)) as im:
        assert np.allclose(im.info["dpi"], (300, 150), atol=0.05)


def test_16_bit_tiff_resolution_and_unit_are_kept(tmp_path, photo):
    path = tmp_path / "a.tif"
    px = _photo(13).astype(np.uint16) * 257
    tifffile.imwrite(
        path, px, photometric="rgb", resolution=(118.0, 118.0), resolutionunit="CENTIMETER"
    )
    page = tifffile.TiffFile(_denoised(photo, path, tmp_path)).pages[0]
    assert page.resolution == (118.0, 118.0) and int(page.resolutionunit) == 3


def test_resolution_is_turned_with_the_image(tmp_path):
    path = tmp_path / "a.jpg"
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    Image.fromarray(_photo(14)).save(path, dpi=(300, 100), exif=exif)
    assert imageio.read_file(path).encoder["dpi"] == (100.0, 300.0)


def test_an_8_bit_tiffs_resolution_is_turned_with_the_image(tmp_path, photo):
    """Pillow decodes it; tifffile, which checked its layout, read its resolution."""
    path = tmp_path / "a.tif"
    Image.fromarray(_photo(15)).save(path, dpi=(300, 100), tiffinfo={ORIENTATION: 6})
    assert imageio.read_file(path).encoder["tiff_resolution"] == (100.0, 300.0, 2)
    with Image.open(_denoised(photo, path, tmp_path)) as im:
        assert np.allclose(im.info["dpi"], (100, 300), atol=0.05)


@pytest.mark.parametrize("deep", [False, True])
def test_png_colour_space_resolution_and_text_chunks_are_kept(tmp_path, photo, deep):
    path = tmp_path / "a.png"
    px = _photo(15).astype(np.uint16) * 257 if deep else _photo(15)
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add(b"gAMA", (45455).to_bytes(4, "big"))
    info.add_text("Comment", "keep me")
    if deep:
        data = imageio.png16.encode_png16(
            px, chunks=((b"gAMA", (45455).to_bytes(4, "big")), (b"tEXt", b"Comment\0keep me"))
        )
        path.write_bytes(
            imageio.png16.with_chunks(data, ((b"pHYs", (11811).to_bytes(4, "big") * 2 + b"\1"),))
        )
    else:
        Image.fromarray(px).save(path, pnginfo=info, dpi=(300, 300))
    with Image.open(_denoised(photo, path, tmp_path)) as im:
        assert im.info["gamma"] == pytest.approx(0.45455)
        assert im.info["Comment"] == "keep me"
        assert np.allclose(im.info["dpi"], (300, 300), atol=0.1)
        assert (
            np.asarray(im).dtype == np.uint16 or im.mode == "I;16" or im.mode == "RGB"
        ) and im.size == (56, 40)


@pytest.mark.parametrize(("subsampling", "progressive"), [(0, True), (1, False), (2, False)])
def test_jpeg_subsampling_and_progressive_coding_are_kept(
    tmp_path, photo, subsampling, progressive
):
    path = tmp_path / "a.jpg"
    Image.fromarray(_photo(16)).save(
        path, quality=95, subsampling=subsampling, progressive=progressive
    )
    with Image.open(_denoised(photo, path, tmp_path)) as im:
        assert JpegImagePlugin.get_sampling(im) == subsampling
        assert bool(im.info.get("progressive")) == progressive


@pytest.mark.parametrize("lossless", [True, False])
def test_webp_stays_lossless_or_lossy(tmp_path, photo, lossless):
    path = tmp_path / "a.webp"
    Image.fromarray(_photo(17)).save(path, lossless=lossless, quality=90)
    data = _denoised(photo, path, tmp_path).read_bytes()
    assert (b"VP8L" in data[:64]) == lossless


def test_palette_and_one_bit_images_say_how_they_are_written(tmp_path):
    pal = tmp_path / "p.png"
    Image.fromarray(_photo(18)).quantize(16).save(pal)
    assert imageio.read_file(pal).notes == [imageio._PALETTE_NOTE]
    bits = tmp_path / "b.tif"
    Image.fromarray(_photo(19)[..., 0] > 128).save(bits)
    assert imageio.read_file(bits).notes == ["1-bit image written back as 8-bit grey"]


# --- what the decoders say, and clearer messages --------------------------------------------


def test_decoder_warnings_become_notes_not_stderr(tmp_path, capfd):
    path = tmp_path / "icc.tif"
    buf = io.BytesIO()
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(_photo(20, 96, 128)).save(
        buf, format="TIFF", compression="tiff_adobe_deflate", icc_profile=icc
    )
    path.write_bytes(buf.getvalue()[:-10])  # cut inside the ICC profile, after the pixels
    loaded = imageio.read_file(path)
    assert loaded.icc_profile is None
    assert any("34675" in n for n in loaded.notes), loaded.notes
    assert capfd.readouterr().err == ""


def test_clearer_messages(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    result = _run(tmp_path / "notes.txt", tmp_path / "out")
    assert result.exit_code == 2 and "not an image file name" in result.output
    with pytest.raises(ValueError, match="tile overlap of 112 pixels: use 232 or more"):
        TileSpec(128, 112).check(8)
    from n2n_infer import Denoiser

    x = np.full((8, 8, 3), 0.5, np.float32)
    x[0, 0, 0] = np.float32(1.0000001)
    with pytest.raises(ImageError, match=r"found \[0.5, 1.00000012\]"):
        Denoiser(device="cpu").denoise(x)
