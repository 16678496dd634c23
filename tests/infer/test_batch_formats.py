"""The batch CLI: formats, bit depth, orientation, ICC, subfolders, report, resume, exit codes."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from n2n_infer import Denoiser, imageio
from n2n_infer.batch import denoise_folder
from n2n_infer.cli import main
from n2n_infer.files import temp_name
from tests.conftest import synthetic_photo

FORMATS = {"a.png": "PNG", "b.jpg": "JPEG", "c.tif": "TIFF", "d.webp": "WEBP", "e.bmp": "BMP"}


def _run(*args):
    return CliRunner().invoke(main, ["batch", *(str(a) for a in args), "--device", "cpu"])


def _photo(seed, h=36, w=52):
    return synthetic_photo(np.random.default_rng(seed), h, w)


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "in"
    (src / "sub" / "deeper").mkdir(parents=True)
    for i, (name, fmt) in enumerate(FORMATS.items()):
        Image.fromarray(_photo(i)).save(src / name, format=fmt)
    Image.fromarray(_photo(9)).save(src / "sub" / "f.png")
    Image.fromarray(_photo(10)).save(src / "sub" / "deeper" / "g.jpeg")
    return src


def test_every_format_is_written_in_its_own_format(tree, tmp_path):
    out = tmp_path / "out"
    result = _run(tree, out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(FORMATS)  # no subfolders by default
    for name, fmt in FORMATS.items():
        with Image.open(out / name) as im:
            assert (im.format, im.size, im.mode) == (fmt, (52, 36), "RGB")


def test_recursive_mirrors_subfolders(tree, tmp_path):
    out = tmp_path / "out"
    result = _run(tree, out, "--recursive")
    assert result.exit_code == 0, result.output
    assert (out / "sub" / "f.png").is_file() and (out / "sub" / "deeper" / "g.jpeg").is_file()
    assert "7 denoised" in result.output and "sub/deeper/g.jpeg" in result.output


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_grey_stays_16_bit(tmp_path, suffix):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    grey = (_photo(1)[..., 0].astype(np.uint16) * 257 + rng.integers(0, 200, (36, 52))).astype(
        np.uint16
    )
    Image.fromarray(grey).save(src / f"g{suffix}")
    result = _run(src, tmp_path / "out")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / f"g{suffix}") as im:
        assert im.mode == "I;16"
        out = np.asarray(im)
    assert out.dtype == np.uint16 and np.any(out % 257 != 0)


def test_alpha_and_grey_modes_are_kept(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rgba = np.dstack([_photo(2), np.tile(np.arange(52, dtype=np.uint8) * 4, (36, 1))])
    Image.fromarray(rgba).save(src / "rgba.png")
    Image.fromarray(_photo(3)).convert("L").save(src / "grey.png")
    Image.fromarray(_photo(4)).convert("LA").save(src / "la.png")
    assert _run(src, tmp_path / "out").exit_code == 0
    with Image.open(tmp_path / "out" / "rgba.png") as im:
        assert im.mode == "RGBA" and np.array_equal(np.asarray(im)[..., 3], rgba[..., 3])
    for name, mode in (("grey.png", "L"), ("la.png", "LA")):
        with Image.open(tmp_path / "out" / name) as im:
            assert im.mode == mode


def test_exif_orientation_is_applied_and_icc_profile_kept(tmp_path):
    from PIL import ImageCms

    src = tmp_path / "in"
    src.mkdir()
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    Image.fromarray(_photo(5, 30, 50)).save(src / "r.jpg", exif=exif, icc_profile=icc, quality=95)
    assert _run(src, tmp_path / "out").exit_code == 0
    with Image.open(tmp_path / "out" / "r.jpg") as im:
        assert im.size == (30, 50)  # width×height after rotation
        assert im.info.get("icc_profile") == icc
        assert im.getexif().get(0x0112, 1) == 1


def test_report_lists_every_file(tree, tmp_path):
    (tree / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    report = tmp_path / "rep" / "report.json"
    result = _run(tree, tmp_path / "out", "--report", report)
    assert result.exit_code == 1
    data = json.loads(report.read_text())
    assert data["totals"] == {"ok": 5, "skipped": 0, "error": 1}
    files = {f["name"]: f for f in data["files"]}
    assert files["a.png"]["status"] == "ok" and files["a.png"]["size_hw"] == [36, 52]
    assert files["a.png"]["seconds"] > 0
    assert files["broken.png"]["status"] == "error" and "no IEND" in files["broken.png"]["error"]
    assert data["providers"] == ["CPUExecutionProvider"]


def test_report_inside_input_is_refused(tree, tmp_path):
    result = _run(tree, tmp_path / "out", "--report", tree / "r.json")
    assert result.exit_code == 2 and "inside input folder" in result.output
    assert not (tree / "r.json").exists()


def test_interrupted_write_leaves_no_file_and_rerun_resumes(tree, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real = Image.Image.save
    calls = {"n": 0}

    def dying_save(self, fp, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            fp.write(b"half")
            raise KeyboardInterrupt  # the user pressed Ctrl-C mid-write
        return real(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        denoise_folder(Denoiser(device="cpu"), tree, out)
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg"]
    (out / temp_name("c.tif")).write_bytes(b"left by kill -9")
    result = _run(tree, out, "--skip-existing")
    assert result.exit_code == 0 and "3 denoised, 2 skipped" in result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(FORMATS)


def test_pixel_limit_refuses_decompression_bombs(tree, tmp_path, monkeypatch):
    monkeypatch.setattr(imageio, "MAX_PIXELS", 1000)
    result = _run(tree, tmp_path / "out")
    assert result.exit_code == 1 and "exceeds the limit of 1000" in result.output


def test_tile_option_and_quiet(tree, tmp_path):
    big = np.kron(_photo(6, 50, 60), np.ones((6, 6, 1), np.uint8))  # 300×360
    Image.fromarray(big).save(tree / "big.png")
    tiled = _run(tree, tmp_path / "t", "--tile", "240", "--quiet")  # > 2 × overlap 112
    whole = _run(tree, tmp_path / "w", "--tile", "0")
    assert tiled.exit_code == whole.exit_code == 0
    assert tiled.output.splitlines()[0].startswith("6 denoised")  # quiet: summary only
    a = np.asarray(Image.open(tmp_path / "t" / "big.png")).astype(int)
    b = np.asarray(Image.open(tmp_path / "w" / "big.png")).astype(int)
    assert np.abs(a - b).max() <= 1
    bad = _run(tree, tmp_path / "x", "--tile", "250")
    assert bad.exit_code == 2 and "multiple of stride 4" in bad.output


def test_contradictory_flags_are_refused(tree, tmp_path):
    result = _run(tree, tmp_path / "out", "--overwrite", "--skip-existing")
    assert result.exit_code == 2 and "contradict" in result.output


def test_info_prints_stride_noise_psnr_and_sizes():
    result = CliRunner().invoke(main, ["info", "--json"])
    assert result.exit_code == 0, result.output
    meta = json.loads(result.output)
    assert meta["stride"] == 4 and meta["noise"] == "gaussian:0-50"
    assert meta["sizes"]["file_bytes"] > 100_000 and meta["sizes"]["tile_overlap"] == 112
    text = CliRunner().invoke(main, ["info"]).output
    assert "PSNR" in text and "tiles" in text and "MB)" in text  # the card: test_info.py


def test_info_on_a_corrupt_model_is_one_line(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    result = CliRunner().invoke(main, ["info", str(tmp_path / "bad.onnx")])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "bad.onnx: onnxruntime cannot load" in result.output
    assert "Traceback" not in result.output


def test_doctor_reports_versions_and_usable_providers():
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "onnxruntime" in result.output and "numpy" in result.output
    assert "cpu: ok" in result.output and "usable providers: CPUExecutionProvider" in result.output


def _tiff_rgb16(path, rgb16):
    """An uncompressed little-endian 16-bit RGB TIFF (Pillow cannot write one)."""
    import struct

    h, w, _ = rgb16.shape
    data = rgb16.astype("<u2").tobytes()
    tags = [(256, w), (257, h), (258, 8 + 2 + 9 * 12 + 4), (259, 1), (262, 2)]
    tags += [(273, 8 + 2 + 9 * 12 + 4 + 6), (277, 3), (278, h), (279, len(data))]
    ifd = struct.pack("<H", len(tags))
    for tag, value in tags:
        count = 3 if tag == 258 else 1
        ifd += struct.pack("<HHII", tag, 4 if tag in (258, 273, 279) else 3, count, value)
    ifd = ifd.replace(
        struct.pack("<HHII", 258, 4, 3, tags[2][1]), struct.pack("<HHII", 258, 3, 3, tags[2][1])
    )
    path.write_bytes(
        b"II*\x00"
        + struct.pack("<I", 8)
        + ifd
        + b"\0\0\0\0"
        + struct.pack("<3H", 16, 16, 16)
        + data
    )


def test_16_bit_colour_tiff_stays_16_bit(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rgb16 = _photo(7).astype(np.uint16) * 257 + np.arange(52, dtype=np.uint16)[:, None]
    _tiff_rgb16(src / "c16.tif", rgb16)
    loaded = imageio.read_file(src / "c16.tif")
    assert (loaded.format, loaded.mode, loaded.notes) == ("TIFF", "RGB", [])
    assert loaded.pixels.dtype == np.uint16 and np.array_equal(loaded.pixels, rgb16)
    result = _run(src, tmp_path / "out", "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    assert "note" not in result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["files"][0]["notes"] == []
    out = imageio.read_file(tmp_path / "out" / "c16.tif")
    assert out.format == "TIFF" and out.pixels.dtype == np.uint16
    assert out.pixels.shape == (36, 52, 3)
    assert np.any(out.pixels % 257 != 0)  # not 8-bit values scaled up
    with Image.open(tmp_path / "out" / "c16.tif") as im:  # a TIFF that libtiff reads too
        assert (im.format, im.mode, im.size) == ("TIFF", "RGB", (52, 36))


def test_float_tiff_is_denoised_and_written_back_as_float(tmp_path):
    """Issue 20, defect 2b: a mode-F TIFF came out as an all-black 8-bit RGB file."""
    src = tmp_path / "in"
    src.mkdir()
    grey = (_photo(8)[..., 1] / 255.0).astype(np.float32)
    Image.fromarray(grey, "F").save(src / "f.tif")
    result = _run(src, tmp_path / "out")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "f.tif") as im:
        assert (im.mode, im.size) == ("F", (52, 36))
        out = np.asarray(im)
    assert abs(float(out.mean()) - float(grey.mean())) < 0.05  # not black
    expected = Denoiser(device="cpu").denoise(grey)
    assert np.array_equal(out, expected)


def test_a_short_png_is_reported_and_the_others_are_denoised(tmp_path):
    """Issue 20, defect 2a: an 8-bit PNG with rows missing was reported ok, rows black."""
    import struct
    import zlib

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_photo(1)).save(src / "good.png")
    rows = b"".join(b"\0" + bytes([200]) * 30 for _ in range(5))  # 5 of 10 rows
    ihdr = struct.pack(">IIBBBBB", 30, 10, 8, 0, 0, 0, 0)

    def chunk(kind, body):
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    (src / "short.png").write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    result = _run(src, tmp_path / "out", "--report", tmp_path / "r.json")
    assert result.exit_code == 1
    files = {f["name"]: f for f in json.loads((tmp_path / "r.json").read_text())["files"]}
    assert files["good.png"]["status"] == "ok" and files["short.png"]["status"] == "error"
    assert "Not enough image data" in files["short.png"]["error"]
    assert not (tmp_path / "out" / "short.png").exists()
