"""Properties of what ``denoise``/``denoise_batch`` accept, over random inputs (bounded runs).

For random shapes (1×1 to 40×40), channels, dtypes (either byte order),
layouts, strides and PIL modes: the result has the input's shape, dtype (byte
order included) or PIL mode; alpha is untouched; values are in range;
``denoise_batch`` equals ``denoise`` image by image. Anything unusable raises
``ImageError`` and nothing else.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFilter

from n2n_infer import ImageError

DTYPES = ["u1", "<u2", ">u2", "<f4", ">f4", "<f8", ">f8"]
#: PIL modes given back in their own mode, and the index of their alpha band (None: no alpha).
PIL_ALPHA = {
    "1": None,
    "L": None,
    "LA": 1,
    "La": 1,
    "P": None,
    "RGB": None,
    "RGBA": 3,
    "RGBa": 3,
    "RGBX": None,
    "YCbCr": None,
    "HSV": None,
    "I": None,
    "F": None,
    "I;16": None,
    "I;16L": None,
    "I;16B": None,
    "I;16N": None,
}
SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _pixels(rng, shape, dtype):
    dtype = np.dtype(dtype)
    native = dtype.newbyteorder("=")
    if native.kind == "f":
        values = rng.random(shape).astype(native)
        values.flat[:: max(1, values.size // 3)] = rng.choice([0.0, 1.0])  # the ends of the range
    else:
        values = rng.integers(0, np.iinfo(native).max + 1, shape, dtype=native)
    return values.astype(dtype)


@st.composite
def arrays(draw, h=None, w=None, channels=None):
    """(array, layout): random size, channels, dtype, layout and strides (a view or a copy)."""
    h = h or draw(st.integers(1, 40))
    w = w or draw(st.integers(1, 40))
    channels = channels or draw(st.sampled_from([0, 1, 3, 4]))  # 0: H×W
    dtype = draw(st.sampled_from(DTYPES))
    layout = draw(st.sampled_from(["hwc", "chw"])) if channels else "hwc"
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    view = draw(st.sampled_from(["copy", "reversed", "strided", "read-only"]))
    big = _pixels(rng, (2 * h, 2 * w) + ((channels,) if channels else ()), dtype)
    hwc = {
        "copy": big[:h, :w].copy(),
        "reversed": big[h - 1 :: -1, w - 1 :: -1] if h > 0 else big,
        "strided": big[::2, ::2],
        "read-only": big[:h, :w],
    }[view]
    if view == "read-only":
        hwc.setflags(write=False)
    if layout == "chw":
        hwc = hwc.transpose(2, 0, 1)  # a non-contiguous C×H×W view
    return hwc, layout


def _check_array_result(img, out, layout):
    assert isinstance(out, np.ndarray)
    assert out.shape == img.shape and out.dtype == img.dtype
    if img.dtype.kind == "f":
        assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    if img.ndim == 3 and img.shape[2 if layout == "hwc" else 0] == 4:
        alpha = (lambda a: a[..., 3]) if layout == "hwc" else (lambda a: a[3])
        assert np.array_equal(alpha(out), alpha(img))


@SETTINGS
@given(arrays(), st.sampled_from([None, True]))
def test_arrays_keep_shape_dtype_alpha_and_range(photo, case, tile):
    img, layout = case
    out = photo.denoise(img, layout=layout, tile=tile)
    _check_array_result(img, out, layout)


@SETTINGS
@given(st.lists(arrays(), min_size=1, max_size=5))
def test_batch_equals_denoise_image_by_image(photo, cases):
    """Images of any kinds and sizes (some sharing a size, so batched together)."""
    imgs = [img if layout == "hwc" else img.transpose(1, 2, 0) for img, layout in cases]
    imgs += [img.copy() for img in imgs[:2]]  # some of the same size
    outs = photo.denoise_batch(imgs)
    assert isinstance(outs, list) and len(outs) == len(imgs)
    for img, out in zip(imgs, outs, strict=True):
        _check_array_result(img, out, "hwc")
        assert np.array_equal(out, photo.denoise(img))


@SETTINGS
@given(st.integers(1, 5), arrays())
def test_array_batch_equals_denoise_image_by_image(photo, n, case):
    img, layout = case
    if img.ndim == 2:
        img = img[..., None] if layout == "hwc" else img[None]
    batch = np.stack([img] * n).astype(img.dtype)  # np.stack gives native byte order
    out = photo.denoise_batch(batch, layout=layout)
    assert isinstance(out, np.ndarray) and out.shape == batch.shape and out.dtype == batch.dtype
    single = photo.denoise(img, layout=layout)
    for k in range(n):
        assert np.array_equal(out[k], single)


@st.composite
def pil_images(draw):
    """A PIL image of a mode given back in its own mode, random size and content."""
    mode = draw(st.sampled_from(sorted(PIL_ALPHA)))
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if mode.startswith("I;16") or mode == "I":
        grey = rng.integers(0, 65536, (h, w), dtype=np.uint16)
        if mode == "I":
            return Image.fromarray(grey.astype(np.int32))
        order = {"I;16B": ">u2", "I;16N": "=u2"}.get(mode, "<u2")
        return Image.frombytes(mode, (w, h), grey.astype(order).tobytes())
    if mode == "F":
        return Image.fromarray(rng.random((h, w)).astype(np.float32))
    rgba = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8))
    return (rgba if PIL_ALPHA[mode] is not None else rgba.convert("RGB")).convert(mode)


@SETTINGS
@given(pil_images())
def test_pil_images_keep_mode_size_alpha_and_range(photo, im):
    out = photo.denoise(im)
    assert out.mode == im.mode and out.size == im.size
    pixels, before = np.asarray(out), np.asarray(im)
    assert pixels.shape == before.shape and pixels.dtype == before.dtype
    band = PIL_ALPHA[im.mode]
    if band is not None:
        assert np.array_equal(pixels[..., band], before[..., band])
    if im.mode == "F":
        assert np.isfinite(pixels).all() and pixels.min() >= 0.0 and pixels.max() <= 1.0
    if im.mode == "I":
        assert pixels.min() >= 0 and pixels.max() <= 65535
    if im.mode == "P":
        assert out.getpalette() == im.getpalette()


@SETTINGS
@given(st.lists(pil_images(), min_size=1, max_size=4))
def test_pil_batch_equals_denoise_image_by_image(photo, ims):
    outs = photo.denoise_batch(ims)
    for im, out in zip(ims, outs, strict=True):
        assert out.mode == im.mode
        assert np.array_equal(np.asarray(out), np.asarray(photo.denoise(im)))


def _closed_image():
    im = Image.new("RGB", (4, 4))
    im.close()
    return im


def _p_with_transparency():
    im = Image.new("P", (4, 4))
    im.info["transparency"] = 0
    return im


@st.composite
def bad_inputs(draw):
    """Something that is not a usable image, of many kinds."""
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    kind = draw(
        st.sampled_from(
            [
                "object",
                "dtype",
                "ndim",
                "channels",
                "empty",
                "nan",
                "range",
                "masked",
                "huge",
                "pil-mode",
                "pil-range",
                "pil-closed",
                "pil-transparent",
            ]
        )
    )
    if kind == "object":
        blur = ImageFilter.GaussianBlur()  # a PIL object that is not an image
        return draw(st.sampled_from([None, 3, 0.5, "a.png", b"\x89PNG", [[0, 1]], {}, (), blur]))
    if kind == "dtype":
        dtype = draw(
            st.sampled_from(
                ["i1", "i2", "<i4", ">i4", "i8", "u4", ">u8", "f2", ">f2", "c8", "?", "O", "U1"]
            )
        )
        return np.zeros((h, w, 3), dtype)
    if kind == "ndim":
        return np.zeros(draw(st.sampled_from([(), (h,), (1, h, w, 3), (1, 1, h, w, 3)])), "u1")
    if kind == "channels":
        return np.zeros((h, w, draw(st.sampled_from([2, 5, 6, 64]))), np.uint8)
    if kind == "empty":
        return np.zeros(draw(st.sampled_from([(0, w), (h, 0, 3), (0, 0, 1)])), np.uint8)
    if kind in ("nan", "range"):
        img = np.zeros((h, w, 3), draw(st.sampled_from(["<f4", ">f4", "<f8", ">f8"])))
        bad = [np.nan, np.inf, -np.inf] if kind == "nan" else [-1e-3, 1.001, 255.0]
        img[draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1)), 1] = draw(
            st.sampled_from(bad)
        )
        return img
    if kind == "masked":
        return np.ma.masked_array(np.zeros((h, w), np.uint8))
    if kind == "huge":
        side = draw(st.sampled_from([10001, 100000, 2**31]))
        return np.broadcast_to(np.zeros((1, 1, 3), np.float32), (side, side, 3))
    if kind == "pil-mode":
        return Image.new(draw(st.sampled_from(["CMYK", "LAB", "PA"])), (w, h))
    if kind == "pil-range":
        if draw(st.booleans()):
            return Image.fromarray(np.full((h, w), draw(st.sampled_from([-1, 65536])), np.int32))
        return Image.fromarray(np.full((h, w), draw(st.sampled_from([-0.1, 1.5])), np.float32))
    return _closed_image() if kind == "pil-closed" else _p_with_transparency()


@settings(max_examples=80, deadline=None, derandomize=True)
@given(bad_inputs(), st.sampled_from(["denoise", "batch", "iter"]))
def test_bad_inputs_raise_image_error_only(photo, bad, how):
    with pytest.raises(ImageError, match=r"^image (0|1)\b"):
        if how == "denoise":
            photo.denoise(bad)
        elif how == "batch":
            photo.denoise_batch([np.zeros((3, 3), np.uint8), bad])
        else:
            list(photo.denoise_iter([bad]))
