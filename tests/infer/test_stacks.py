"""TIFF stacks through the runtime (n2n_infer.stacks): OME-TIFF, ImageJ hyperstacks,
multi-page TIFF; levels per channel over the stack; the denoise_axes API; the batch
job; streaming. Small synthetic files made with tifffile, the bundled model on the CPU."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image

from n2n_infer import Denoiser, stacks
from n2n_infer.batch import denoise_folder
from n2n_infer.cli import main
from n2n_infer.errors import ImageError, InferenceError
from n2n_infer.imageio import read_file

H, W = 32, 48


class Spy:
    """A Denoiser stand-in: gives every image back as it came, and keeps what it got."""

    def __init__(self, levels="auto", fail_after=None):
        self.levels = levels
        self.fail_after = fail_after
        self.seen = []

    def denoise_iter(self, images, layout="hwc", tile=None, levels=None):
        self.called_with = levels
        for image in images:
            if self.fail_after is not None and len(self.seen) == self.fail_after:
                raise InferenceError("out of memory (test)")
            self.seen.append(np.array(image))
            yield np.array(image)


def _smooth(rng, n, h=H, w=W):
    """n smooth planes in [0, 1] (gradients, waves and a bright block)."""
    yy, xx = np.mgrid[0:h, 0:w]
    planes = []
    for i in range(n):
        plane = 0.35 + 0.25 * np.sin(xx / (4 + i) + rng.uniform(0, 3)) * np.cos(yy / 6)
        plane[h // 4 : h // 2, w // 3 : w // 2] = 0.85
        planes.append(plane)
    return np.stack(planes)


def _psnr(a, b, peak):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(peak**2 / mse)


def _ome(tmp_path, data, name="s.ome.tif", **kw):
    path = tmp_path / name
    metadata = {
        "axes": "ZCYX",
        "PhysicalSizeX": 0.25,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": 0.25,
        "PhysicalSizeYUnit": "µm",
        "PhysicalSizeZ": 1.5,
        "PhysicalSizeZUnit": "µm",
        "Channel": {"Name": ["DAPI", "GFP"]},
    }
    metadata.update(kw.pop("metadata", {}))
    tifffile.imwrite(
        path, data, ome=True, metadata=metadata, compression="zlib", predictor=True,
        resolution=(40000, 40000), resolutionunit="CENTIMETER", **kw,
    )  # fmt: skip
    return path


def _pixels_meta(path):
    with tifffile.TiffFile(path) as tif:
        ome = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
    return ome


# --- the stack kinds, with the bundled model ---------------------------------------------


def test_dim_ome_zcyx_uint16_is_denoised_and_keeps_its_metadata(tmp_path, photo):
    rng = np.random.default_rng(0)
    clean = np.rint(100 + 1100 * _smooth(rng, 6)).astype(np.uint16).reshape(3, 2, H, W)
    noisy = np.clip(np.rint(clean + rng.normal(0, 110, clean.shape)), 100, 1200).astype(np.uint16)
    src = _ome(tmp_path, noisy)
    dst = tmp_path / "out" / "s.ome.tif"
    dst.parent.mkdir()

    result = stacks.denoise_stack_file(photo, src, dst)

    assert result.info.axes == "ZCYX" and result.info.planes == 6 and result.size_hw == (H, W)
    with tifffile.TiffFile(src) as a, tifffile.TiffFile(dst) as b:
        sb = b.series[0]
        assert (sb.kind, sb.axes, sb.shape, sb.dtype) == ("ome", "ZCYX", (3, 2, H, W), np.uint16)
        assert len(b.pages) == 6
        pa, pb = a.pages[0], b.pages[0]
        assert (pb.compression, pb.predictor) == (pa.compression, pa.predictor)
        assert pb.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert pb.tags.valueof(282) == pa.tags.valueof(282) == (40000, 1)
        assert pb.tags.valueof(296) == 3  # centimetre
        assert b.ome_metadata == a.ome_metadata  # the input's OME-XML, as written
        out = sb.asarray()
    pixels = _pixels_meta(dst)
    assert (pixels["PhysicalSizeX"], pixels["PhysicalSizeZ"]) == (0.25, 1.5)
    assert pixels["PhysicalSizeXUnit"] == "µm"
    assert [c["Name"] for c in pixels["Channel"]] == ["DAPI", "GFP"]
    assert out.min() >= 100 and out.max() <= 1200  # mapped back into the stack's range
    before, after = _psnr(noisy, clean, 1100), _psnr(out, clean, 1100)
    assert after > before + 4, (before, after)
    assert any("not per plane" in note for note in result.notes)


def test_imagej_tzyx_uint8_keeps_spacing_unit_finterval_and_resolution(tmp_path, photo):
    rng = np.random.default_rng(1)
    data = np.rint(255 * _smooth(rng, 6)).astype(np.uint8).reshape(2, 3, H, W)
    src = tmp_path / "ij.tif"
    tifffile.imwrite(
        src, data, imagej=True, resolution=(1 / 0.2, 1 / 0.2),
        metadata={"axes": "TZYX", "spacing": 2.5, "unit": "um", "finterval": 0.5,
                  "Labels": [f"plane {i}" for i in range(6)]},
    )  # fmt: skip
    dst = tmp_path / "out.tif"

    stacks.denoise_stack_file(photo, src, dst)

    with tifffile.TiffFile(src) as a, tifffile.TiffFile(dst) as b:
        sb = b.series[0]
        assert (sb.kind, sb.axes, sb.shape, sb.dtype) == ("imagej", "TZYX", (2, 3, H, W), np.uint8)
        meta = b.imagej_metadata
        assert (meta["spacing"], meta["unit"], meta["finterval"]) == (2.5, "um", 0.5)
        assert (meta["frames"], meta["slices"]) == (2, 3)
        assert meta["Labels"] == [f"plane {i}" for i in range(6)]
        assert b.pages[0].tags.valueof(282) == a.pages[0].tags.valueof(282)
        assert b.pages[0].compression == tifffile.COMPRESSION.NONE
        assert not np.array_equal(sb.asarray(), data)  # denoised, not copied


def test_multi_page_rgb_scan_is_denoised_page_by_page_in_colour(tmp_path, photo):
    rng = np.random.default_rng(2)
    pages = [
        Image.fromarray(np.rint(255 * rng.uniform(0, 1, (H, W, 3))).astype(np.uint8))
        for _ in range(3)
    ]
    src = tmp_path / "scan.tif"
    pages[0].save(src, save_all=True, append_images=pages[1:], compression="tiff_deflate",
                  dpi=(300, 300))  # fmt: skip
    dst = tmp_path / "out" / "scan.tif"
    dst.parent.mkdir()

    result = stacks.denoise_stack_file(photo, src, dst)

    assert result.info.samples == 3 and result.info.planes == 3
    with tifffile.TiffFile(src) as a, tifffile.TiffFile(dst) as b:
        sb = b.series[0]
        assert (sb.axes, sb.shape, sb.dtype) == ("IYXS", (3, H, W, 3), np.uint8)
        pa, pb = a.pages[0], b.pages[0]
        assert pb.photometric == tifffile.PHOTOMETRIC.RGB
        assert pb.compression == pa.compression
        assert pb.tags.valueof(282) == pa.tags.valueof(282)
        out = sb.asarray()
    expected = [photo.denoise(np.asarray(p)) for p in pages]  # each page a colour image
    assert np.array_equal(out, np.stack(expected))


def test_five_dimensional_ome_tczyx(tmp_path, photo):
    rng = np.random.default_rng(3)
    data = np.rint(50000 * _smooth(rng, 8, 16, 24)).astype(np.uint16).reshape(2, 2, 2, 16, 24)
    src = _ome(tmp_path, data, "t.ome.tif", metadata={"axes": "TCZYX", "TimeIncrement": 3.0})
    dst = tmp_path / "o" / "t.ome.tif"
    dst.parent.mkdir()

    result = stacks.denoise_stack_file(photo, src, dst)

    assert result.info.shape == (2, 2, 2, 16, 24)
    with tifffile.TiffFile(dst) as b:
        sb = b.series[0]
        assert (sb.kind, sb.axes, sb.shape, sb.dtype) == ("ome", "TCZYX", data.shape, np.uint16)
    pixels = _pixels_meta(dst)
    assert pixels["TimeIncrement"] == 3.0
    assert [c["Name"] for c in pixels["Channel"]] == ["DAPI", "GFP"]
    assert not any("not per plane" in n for n in result.notes)  # bright: not dim


def test_five_dimensional_imagej_tzcyx_with_channels(tmp_path):
    data = np.arange(2 * 3 * 2 * 8 * 16, dtype=np.uint16).reshape(2, 3, 2, 8, 16) * 7
    src = tmp_path / "h.tif"
    tifffile.imwrite(src, data, imagej=True, metadata={"axes": "TZCYX", "mode": "composite"})
    dst = tmp_path / "o" / "h.tif"
    dst.parent.mkdir()
    stacks.denoise_stack_file(Spy(), src, dst)
    with tifffile.TiffFile(dst) as b:
        assert b.series[0].axes == "TZCYX" and b.imagej_metadata["mode"] == "composite"
        assert np.array_equal(b.series[0].asarray(), data)  # an identity model: bit-exact


@pytest.mark.parametrize(
    ("data", "options"),
    [
        (np.zeros((3, 3, H, W), np.uint8), {"photometric": "rgb", "planarconfig": "separate"}),
        (
            np.zeros((5, 40, 70), np.uint16),
            {
                "photometric": "minisblack",
                "tile": (16, 32),
                "compression": "lzw",
                "predictor": True,
            },
        ),
        (
            np.zeros((3, H, W), np.uint8),
            {"photometric": "miniswhite", "extratags": [(274, 3, 1, 6, False)], "rowsperstrip": 5},
        ),
        (np.zeros((3, H, W, 4), np.uint16), {"photometric": "rgb", "extrasamples": ["unassalpha"]}),
        (np.zeros((3, H, W), np.float32), {"photometric": "minisblack", "compression": "zstd"}),
    ],
    ids=["planar-rgb", "tiled-lzw", "miniswhite-orientation", "rgba16", "float-zstd"],
)
def test_page_layouts_are_written_back_alike(tmp_path, data, options):
    rng = np.random.default_rng(8)
    top = 1.0 if data.dtype == np.float32 else 200
    data = (rng.uniform(0, 1, data.shape) * top).astype(data.dtype)
    src, dst = tmp_path / "s.tif", tmp_path / "o" / "s.tif"
    dst.parent.mkdir()
    tifffile.imwrite(src, data, metadata=None, **options)
    stacks.denoise_stack_file(Spy(), src, dst)
    with tifffile.TiffFile(src) as a, tifffile.TiffFile(dst) as b:
        pa, pb = a.pages[0], b.pages[0]
        for attr in ("photometric", "planarconfig", "compression", "predictor", "is_tiled",
                     "extrasamples", "rowsperstrip", "tilewidth", "tilelength"):  # fmt: skip
            assert getattr(pb, attr) == getattr(pa, attr), attr
        assert pb.tags.valueof(274) == pa.tags.valueof(274)
        assert np.array_equal(b.series[0].asarray(), data)


# --- levels ------------------------------------------------------------------------------


def _two_channel_stack():
    """Z=2, C=2: channel 0 has a plane of 100..1200 and a constant plane of 500; channel 1
    lies in 5000..6000 (not dim: it is mapped by 65535)."""
    ramp = np.linspace(100, 1200, H * W).reshape(H, W)
    data = np.empty((2, 2, H, W), np.uint16)
    data[0, 0] = np.rint(ramp)
    data[1, 0] = 500
    data[:, 1] = np.rint(np.linspace(5000, 16000, H * W).reshape(H, W))
    data[1, 1, 0, 0] = 30000  # channel 1 is not dim
    return data


def test_levels_are_per_channel_over_the_whole_stack(tmp_path):
    data = _two_channel_stack()
    src = _ome(tmp_path, data, metadata={"Channel": {"Name": ["a", "b"]}})
    spy = Spy()
    dst = tmp_path / "o" / "s.ome.tif"
    dst.parent.mkdir()
    stacks.denoise_stack_file(spy, src, dst)
    # planes in ZC order: (z0 c0), (z0 c1), (z1 c0), (z1 c1)
    assert all(p.dtype == np.float32 for p in spy.seen)
    assert np.allclose(spy.seen[0], (data[0, 0] - 100) / 1100)
    assert np.allclose(spy.seen[2], (500 - 100) / 1100)  # the channel's mapping, not its own
    assert np.allclose(spy.seen[1], data[0, 1] / 65535)
    assert np.array_equal(tifffile.imread(dst), data)  # mapped there and back exactly


def test_a_constant_plane_stays_flat_near_its_value_and_in_range(photo):
    data = _two_channel_stack()
    out = stacks.denoise_axes(photo, data, "ZCYX")
    constant = out[1, 0].astype(np.int64)
    assert constant.min() >= 100 and constant.max() <= 1200  # the channel's range
    assert np.ptp(constant) <= 0.02 * 1100 and abs(constant.mean() - 500) < 10


def test_levels_full_maps_every_plane_by_the_full_scale(tmp_path):
    data = _two_channel_stack()
    spy = Spy(levels="full")
    out = stacks.denoise_axes(spy, data, "ZCYX")
    assert np.allclose(spy.seen[2], 500 / 65535)
    assert np.array_equal(out, data)


def test_dim_float_channels_are_mapped_by_their_range_over_the_stack(tmp_path):
    """A float32 stack's dim channel (no value above 0.25) is mapped by its extremes over
    every plane, as a dim 16-bit channel is; a bright one is taken as it is; the mapped
    planes go to the Denoiser with levels="full" and come back unrounded."""
    data = _two_channel_stack().astype(np.float32) / np.float32(65535)
    data[:, 1] = np.clip(data[:, 1] * 8, 0, 1)  # channel 1: past 0.25, taken as it is
    src = _ome(tmp_path, data)
    spy = Spy()
    dst = tmp_path / "o" / "f.ome.tif"
    dst.parent.mkdir()
    stacks.denoise_stack_file(spy, src, dst)
    assert spy.called_with == "full"
    lo, hi = data[:, 0].min(), data[:, 0].max()
    assert np.allclose(spy.seen[0], (data[0, 0] - lo) / (hi - lo), atol=1e-6)
    assert np.allclose(spy.seen[2], (data[1, 0] - lo) / (hi - lo), atol=1e-6)  # not its own
    assert np.allclose(spy.seen[1], data[0, 1])
    out = tifffile.imread(dst)
    assert out.dtype == np.float32 and np.allclose(out, data, rtol=0, atol=1e-7)


def test_a_dim_plane_of_a_bright_channel_is_not_stretched_by_the_denoiser(photo):
    """Regression: the planes are mapped by their channel's levels before the Denoiser
    sees them; its own rule for 2-D images (a dim float image by its range) must not map
    a dark plane of a full-scale channel again."""
    rng = np.random.default_rng(6)
    bright = np.clip(rng.normal(0.6, 0.1, (H, W)), 0, 1).astype(np.float32)
    dark = np.clip(rng.normal(0.05, 0.01, (H, W)), 0, 1).astype(np.float32)
    full = Denoiser("photo", device="cpu", batch_size=4, tile_size=240, levels="full")
    out = stacks.denoise_axes(photo, np.stack([bright, dark]), "ZYX")
    assert np.allclose(out[1], full.denoise(dark), atol=1e-6)
    counts = np.stack([np.rint(p * 65535) for p in (bright, dark)]).astype(np.uint16)
    out16 = stacks.denoise_axes(photo, counts, "ZYX")
    want = full.denoise(counts[1]).astype(np.int64)
    assert np.abs(out16[1].astype(np.int64) - want).max() <= 1  # float32 rounding


def test_float_stacks_outside_unit_range_are_refused_before_writing(tmp_path):
    data = np.full((3, H, W), 0.5, np.float32)
    data[2, 1, 1] = 1.5
    src = tmp_path / "f.tif"
    tifffile.imwrite(src, data, photometric="minisblack")
    dst = tmp_path / "o" / "f.tif"
    called = []
    with pytest.raises(ImageError, match=r"f\.tif: plane 2 holds values in \[0\.5, 1\.5\]"):
        stacks.denoise_stack_file(Spy(), src, dst, before_write=lambda: called.append(1))
    assert not called and not dst.parent.exists()


# --- denoise_axes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("axes", "shape", "dtype", "planes", "plane_shape"),
    [
        ("YX", (H, W), np.uint8, 1, (H, W)),
        ("ZYX", (3, H, W), np.uint8, 3, (H, W)),
        ("XY", (W, H), np.uint8, 1, (H, W)),
        ("YXZ", (H, W, 2), np.float32, 2, (H, W)),
        ("TZYXS", (2, 2, H, W, 1), np.uint8, 4, (H, W)),
        ("ZYXS", (2, H, W, 3), np.uint8, 2, (H, W, 3)),
        ("QCYXS", (2, 2, H, W, 4), np.uint8, 4, (H, W, 4)),
        ("tcyx", (2, 3, H, W), np.uint16, 6, (H, W)),
    ],
)
def test_denoise_axes_gives_every_plane_and_the_same_array_back(
    axes, shape, dtype, planes, plane_shape
):
    rng = np.random.default_rng(4)
    top = 1.0 if dtype == np.float32 else np.iinfo(dtype).max
    data = (rng.uniform(0, 1, shape) * top).astype(dtype)
    spy = Spy()
    out = stacks.denoise_axes(spy, data, axes)
    assert out.shape == data.shape and out.dtype == data.dtype
    assert len(spy.seen) == planes
    assert all(p.shape == plane_shape for p in spy.seen)
    assert np.array_equal(out, data)


def test_denoise_axes_matches_denoising_each_plane(photo):
    rng = np.random.default_rng(5)
    data = np.rint(255 * _smooth(rng, 3)).astype(np.uint8)
    out = stacks.denoise_axes(photo, data, "ZYX")
    assert np.array_equal(out, np.stack([photo.denoise(p) for p in data]))
    moved = stacks.denoise_axes(photo, np.moveaxis(data, 0, -1), "YXZ")
    assert np.array_equal(np.moveaxis(moved, -1, 0), out)


@pytest.mark.parametrize(
    ("array", "axes", "match"),
    [
        (np.zeros((2, H, W), np.uint8), "YX", r"names 2 axes, but the array has 3 dimensions"),
        (np.zeros((2, H, W), np.uint8), "KYX", r"unknown letter\(s\) 'K'"),
        (np.zeros((2, H, W), np.uint8), "YYX", r"'Y' named more than once"),
        (np.zeros((2, H, W), np.uint8), "ZCY", r"Y and X are required"),
        (np.zeros((3, H, W), np.uint8), "SYX", r"S \(samples per pixel\) must be the last axis"),
        (np.zeros((H, W, 2), np.uint8), "YXS", r"S of size 2"),
        (np.zeros((2, H, W), np.uint8), 3, r"axes: expected a string"),
        (np.zeros((2, H, W), np.int16), "ZYX", r"dtype int16 is not supported"),
        (np.zeros((2, 0, W), np.uint8), "ZYX", r"empty planes"),
        ([[1, 2], [3, 4]], "YX", r"expected a numpy array"),
    ],
)
def test_denoise_axes_refuses_what_it_cannot_take(array, axes, match):
    with pytest.raises(ImageError, match=match):
        stacks.denoise_axes(Spy(), array, axes)


def test_denoise_axes_with_no_planes_gives_an_empty_array():
    out = stacks.denoise_axes(Spy(), np.zeros((0, H, W), np.uint16), "ZYX")
    assert out.shape == (0, H, W) and out.dtype == np.uint16


# --- files refused, by name ----------------------------------------------------------------


def _pages_of_sizes(path, sizes):
    with tifffile.TiffWriter(path) as tw:
        for h, w in sizes:
            tw.write(np.zeros((h, w), np.uint8), metadata=None)


def test_what_is_and_is_not_a_stack(tmp_path):
    single, thumb, multi = tmp_path / "1.tif", tmp_path / "t.tif", tmp_path / "m.tif"
    tifffile.imwrite(single, np.zeros((H, W), np.uint8))
    with tifffile.TiffWriter(thumb) as tw:
        tw.write(np.zeros((H, W, 3), np.uint8), photometric="rgb")
        tw.write(np.zeros((8, 12, 3), np.uint8), photometric="rgb", subfiletype=1)
    _pages_of_sizes(multi, [(H, W)] * 2)
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert not stacks.is_stack(single) and not stacks.is_stack(thumb)
    assert not stacks.is_stack(tmp_path / "x.png") and not stacks.is_stack(tmp_path / "none.tif")
    assert stacks.is_stack(multi)


def _int16(path):
    tifffile.imwrite(path, np.zeros((3, H, W), np.int16), photometric="minisblack")


def _palette(path):
    colormap = np.zeros((3, 256), np.uint16)
    data = np.zeros((3, H, W), np.uint8)
    tifffile.imwrite(path, data, photometric="palette", colormap=colormap, metadata=None)


def _pyramid(path):
    data = np.zeros((2, H, W), np.uint8)
    with tifffile.TiffWriter(path) as tw:
        tw.write(data, subifds=1, metadata={"axes": "ZYX"})
        tw.write(data[:, ::2, ::2], subfiletype=1)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: _pages_of_sizes(p, [(H, W), (H, W + 1), (H, W + 2)]), r"3 image series"),
        (_int16, r"int16 samples: only uint8, uint16 and float32"),
        (_palette, r"palette \(indexed colour\) pages"),
        (_pyramid, r"SubIFDs \(a pyramid"),
    ],
)
def test_stacks_that_cannot_be_written_back_are_refused_by_name(tmp_path, make, match):
    src = tmp_path / "bad.tif"
    make(src)
    with pytest.raises(ImageError, match=r"bad\.tif: .*" + match):
        stacks.denoise_stack_file(Spy(), src, tmp_path / "out.tif")
    assert not (tmp_path / "out.tif").exists()


def test_a_plane_over_the_pixel_limit_is_refused_before_reading(tmp_path, monkeypatch):
    src = tmp_path / "big.tif"
    _pages_of_sizes(src, [(H, W)] * 2)
    monkeypatch.setattr(stacks, "MAX_PIXELS", H * W - 1)
    with pytest.raises(ImageError, match=r"big\.tif: .*pixels exceeds the limit"):
        stacks.read_stack_info(src)


OTHER_FILE_OME = """<?xml version="1.0" encoding="UTF-8"?>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" UUID="urn:uuid:1">
<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="16"
 SizeY="8" SizeC="1" SizeZ="3" SizeT="1"><Channel ID="Channel:0:0" SamplesPerPixel="1"/>
<TiffData IFD="0" FirstZ="0" PlaneCount="2"><UUID FileName="a.ome.tif">urn:uuid:1</UUID>
</TiffData><TiffData IFD="0" FirstZ="2" PlaneCount="1"><UUID FileName="b.ome.tif">urn:uuid:2
</UUID></TiffData></Pixels></Image></OME>"""


def test_an_ome_tiff_of_several_files_is_refused_before_opening_them(tmp_path, monkeypatch):
    for name in ("a.ome.tif", "b.ome.tif"):
        tifffile.imwrite(
            tmp_path / name, np.zeros((3, 8, 16), np.uint8), description=OTHER_FILE_OME,
            metadata=None, photometric="minisblack",
        )  # fmt: skip
    opened = []
    monkeypatch.setattr(tifffile, "TiffFile", lambda *a, **k: opened.append(a))
    with pytest.raises(ImageError, match=r"a\.ome\.tif: OME-TIFF whose planes are .*'b\.ome\.tif'"):
        stacks.denoise_stack_file(Spy(), tmp_path / "a.ome.tif", tmp_path / "o" / "a.ome.tif")
    assert not opened


def test_ome_xml_declaring_more_planes_than_the_file_holds_is_refused_before_tifffile(
    tmp_path, monkeypatch
):
    xml = OTHER_FILE_OME.replace('SizeZ="3"', 'SizeZ="1000000000"').replace(
        'FileName="b.ome.tif">urn:uuid:2', 'FileName="a.ome.tif">urn:uuid:1'
    )
    src = tmp_path / "a.ome.tif"
    data = np.zeros((2, 8, 16), np.uint8)
    tifffile.imwrite(src, data, description=xml, metadata=None, photometric="minisblack")
    monkeypatch.setattr(tifffile, "TiffFile", lambda *a, **k: pytest.fail("tifffile opened it"))
    with pytest.raises(ImageError, match=r"declares 1000000000 planes .* holds 2 pages"):
        stacks.read_stack_info(src)


def test_a_hyperstack_declaring_more_planes_than_its_file_holds_is_refused(tmp_path):
    src = tmp_path / "v.tif"
    data = np.arange(2 * 3 * 8 * 16, dtype=np.uint8).reshape(2, 3, 8, 16)
    tifffile.imwrite(src, data, imagej=True, metadata={"axes": "TZYX"})
    raw = bytearray(src.read_bytes())
    with tifffile.TiffFile(src) as tif:  # one directory: data stored one plane after another
        page = tif.pages[0]
        end = page.dataoffsets[0] + data.nbytes
        struct.pack_into("<I", raw, page.offset + 2 + 12 * len(page.tags), 0)
    src.write_bytes(bytes(raw))
    assert stacks.is_stack(src)
    ok = tmp_path / "o" / "v.tif"
    ok.parent.mkdir()
    stacks.denoise_stack_file(Spy(), src, ok)  # one directory, all planes there: read by offset
    assert np.array_equal(tifffile.imread(ok), data)
    src.write_bytes(bytes(raw[: end - 100]))
    with pytest.raises(
        ImageError, match=r"v\.tif: not a stack: tifffile reads one plane \(.*ImageJ"
    ):
        stacks.denoise_stack_file(Spy(), src, tmp_path / "o" / "w.tif")


def test_read_file_still_refuses_a_stack_and_points_to_the_batch_job(tmp_path):
    src = tmp_path / "m.tif"
    _pages_of_sizes(src, [(H, W)] * 3)
    with pytest.raises(ImageError, match=r"multi-page TIFF \(3 pages.*n2n-infer batch"):
        read_file(src)


# --- writing: atomic, streamed --------------------------------------------------------------


def test_a_failure_midway_leaves_no_output_and_no_temporary_file(tmp_path):
    src = tmp_path / "s.tif"
    tifffile.imwrite(src, np.zeros((5, H, W), np.uint8), photometric="minisblack")
    out = tmp_path / "out"
    out.mkdir()
    (out / "s.tif").write_bytes(b"before")
    with pytest.raises(InferenceError):
        stacks.denoise_stack_file(Spy(fail_after=3), src, out / "s.tif")
    assert [p.name for p in out.iterdir()] == ["s.tif"]
    assert (out / "s.tif").read_bytes() == b"before"


def test_planes_stream_one_at_a_time_never_the_whole_series(tmp_path, monkeypatch):
    planes = 24
    data = np.arange(planes * 64 * 64, dtype=np.uint16).reshape(planes, 64, 64) % 4000
    src = tmp_path / "s.tif"
    tifffile.imwrite(src, data, photometric="minisblack", compression="zlib")

    def whole(*args, **kwargs):
        raise AssertionError("the whole series was read at once")

    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", whole)
    monkeypatch.setattr(tifffile.TiffFile, "asarray", whole)
    read, held = [0], []
    plane = stacks._Stack.plane

    def counted(self, i):
        read[0] += 1
        return plane(self, i)

    monkeypatch.setattr(stacks._Stack, "plane", counted)

    class Counting(Spy):
        def denoise_iter(self, images, layout="hwc", tile=None, levels=None):
            for done, image in enumerate(super().denoise_iter(images, layout, tile, levels)):
                held.append(read[0] - planes - done)  # read in the second pass, not yet out
                yield image

    dst = tmp_path / "o.tif"
    stacks.denoise_stack_file(Counting(), src, dst)
    assert read[0] == 2 * planes  # levels pass, then the denoising pass
    assert max(held) == 1
    monkeypatch.undo()
    assert np.array_equal(tifffile.imread(dst), data)


# --- the batch job -------------------------------------------------------------------------


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_batch_denoises_a_stack_and_keeps_going_past_a_bad_file(tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    rng = np.random.default_rng(6)
    data = np.rint(100 + 1100 * _smooth(rng, 4)).astype(np.uint16).reshape(2, 2, H, W)
    _ome(folder, data, "stack.ome.tif")
    _pages_of_sizes(folder / "mixed.tif", [(H, W), (H, W + 4)])
    (folder / "broken.tif").write_bytes(b"II*\0" + b"\xff" * 40)

    result = _run("batch", folder, out, "--device", "cpu")

    assert result.exit_code == 1, result.output
    assert "FAILED  broken.tif" in result.output
    assert "FAILED  mixed.tif" in result.output and "2 image series" in result.output
    assert "1 denoised, 0 skipped, 2 failed" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["stack.ome.tif"]  # no temporary files
    with tifffile.TiffFile(out / "stack.ome.tif") as tif:
        assert tif.series[0].axes == "ZCYX" and tif.series[0].shape == data.shape


def test_batch_on_one_stack_file_and_the_report(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    src = folder / "ij.tif"
    data = np.rint(255 * _smooth(np.random.default_rng(7), 4)).astype(np.uint8)
    tifffile.imwrite(src, data, imagej=True, metadata={"axes": "ZYX", "spacing": 3.0})
    out = tmp_path / "out"
    result = _run("batch", src, out, "--device", "cpu", "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(out / "ij.tif") as tif:
        assert tif.imagej_metadata["spacing"] == 3.0 and tif.series[0].shape == data.shape
    report = (tmp_path / "r.json").read_text()
    assert "ImageJ hyperstack of 4 planes" in report


def test_the_folder_job_never_writes_a_stack_into_the_input_folder(tmp_path, photo):
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "s.tif", np.zeros((2, H, W), np.uint8), photometric="minisblack")
    out = tmp_path / "out"
    out.mkdir()
    (out / "s.tif").symlink_to(folder / "s2.tif")  # the output leads into the input folder
    report = denoise_folder(photo, folder, out, overwrite=True)
    assert report.results[0].status == "error" and "leads into an input folder" in (
        report.results[0].error
    )
    assert sorted(p.name for p in folder.iterdir()) == ["s.tif"]


def test_denoiser_denoise_with_axes_is_denoise_axes() -> None:
    """``Denoiser.denoise(array, axes=...)`` is the stack path; without ``axes`` a 3-D array
    stays one (colour) image."""
    from n2n_infer import Denoiser
    from n2n_infer.stacks import denoise_axes

    d = Denoiser("photo", device="cpu")
    rng = np.random.default_rng(7)
    volume = rng.integers(0, 256, (3, 24, 32), dtype=np.uint8)
    via_api = d.denoise(volume, axes="ZYX")
    np.testing.assert_array_equal(via_api, denoise_axes(d, volume, "ZYX"))
    assert via_api.shape == volume.shape and via_api.dtype == volume.dtype
