"""Every accepted input kind comes back as the same kind; everything else is a clear error."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from n2n_infer import Denoiser, ImageError

DTYPES = [np.uint8, np.uint16, np.float32, np.float64]


def _random(rng, shape, dtype):
    if np.dtype(dtype).kind == "f":
        return rng.random(shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", [None, 1, 3, 4])
def test_shape_and_dtype_are_kept(photo, dtype, channels):
    rng = np.random.default_rng(0)
    shape = (13, 22) if channels is None else (13, 22, channels)
    img = _random(rng, shape, dtype)
    out = photo.denoise(img)
    assert out.shape == img.shape and out.dtype == img.dtype
    if channels == 4:
        assert np.array_equal(out[..., 3], img[..., 3])


def test_dtypes_agree_with_each_other(photo):
    """The same picture as uint8, uint16 and float gives the same result (to rounding)."""
    rng = np.random.default_rng(1)
    u8 = rng.integers(0, 256, (24, 31, 3), dtype=np.uint8)
    ref = photo.denoise(u8).astype(np.float64) / 255
    as_u16 = photo.denoise(u8.astype(np.uint16) * 257).astype(np.float64) / 65535
    as_f32 = photo.denoise(u8.astype(np.float32) / 255)
    as_f64 = photo.denoise(u8.astype(np.float64) / 255)
    for other in (as_u16, as_f32, as_f64):
        assert np.abs(other - ref).max() <= 0.5 / 255 + 1e-6


def test_uint16_keeps_more_than_8_bits(photo):
    rng = np.random.default_rng(2)
    img = rng.integers(0, 65536, (20, 20, 3), dtype=np.uint16)
    out = photo.denoise(img)
    assert np.any(out % 257 != 0)  # not just 8-bit values scaled up


def test_grey_replicate_mode_is_colour_averaged_back():
    photo = Denoiser(device="cpu", grey="replicate")
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (17, 29), dtype=np.uint8)
    raw = photo.denoise_nchw(np.repeat(grey[None, None], 3, 1).astype(np.float32) / 255)
    expected = np.rint(np.clip(raw[0].mean(axis=0), 0, 1) * 255)
    assert np.abs(photo.denoise(grey).astype(np.float64) - expected).max() <= 1
    assert np.array_equal(photo.denoise(grey[:, :, None])[:, :, 0], photo.denoise(grey))


def test_chw_layout_is_the_transpose_of_hwc(photo):
    rng = np.random.default_rng(4)
    hwc = rng.random((18, 26, 3)).astype(np.float32)
    chw = photo.denoise(hwc.transpose(2, 0, 1).copy(), layout="chw")
    assert chw.shape == (3, 18, 26)
    assert np.array_equal(chw, photo.denoise(hwc).transpose(2, 0, 1))
    with pytest.raises(ImageError, match="layout 'nhwc'"):
        photo.denoise(hwc, layout="nhwc")


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "I;16", "P"])
def test_pil_images_come_back_as_pil_images(photo, mode):
    rng = np.random.default_rng(5)
    rgb = Image.fromarray(rng.integers(0, 256, (15, 21, 3), dtype=np.uint8))
    im = (
        rgb.convert(mode)
        if mode != "I;16"
        else Image.fromarray(rng.integers(0, 65536, (15, 21), dtype=np.uint16))
    )
    out = photo.denoise(im)
    assert out.size == im.size
    assert out.mode == (mode if mode != "P" else "RGB")
    if mode == "RGB":
        assert np.array_equal(np.asarray(out), photo.denoise(np.asarray(im)))


def test_batch_of_mixed_kinds_and_an_array_batch(photo):
    rng = np.random.default_rng(6)
    imgs = [
        rng.integers(0, 256, (9, 13, 3), dtype=np.uint8),
        rng.random((9, 13)).astype(np.float32),
        rng.integers(0, 256, (9, 13, 3), dtype=np.uint8),
        rng.integers(0, 65536, (5, 4, 4), dtype=np.uint16),
    ]
    outs = photo.denoise_batch(imgs)
    for img, out in zip(imgs, outs, strict=True):
        assert np.array_equal(out, photo.denoise(img))
    stack = np.stack([imgs[0], imgs[2]])
    out = photo.denoise_batch(stack)
    assert isinstance(out, np.ndarray) and out.shape == stack.shape
    assert np.array_equal(out[1], outs[2])


def test_a_bad_image_in_a_batch_is_named_by_index(photo):
    good = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ImageError, match="image 2: dtype int32"):
        photo.denoise_batch([good, good, good.astype(np.int32)])


def test_denoise_iter_streams_in_order_and_lazily(photo):
    rng = np.random.default_rng(7)
    imgs = [rng.integers(0, 256, (8 + i, 12, 3), dtype=np.uint8) for i in range(7)]
    pulled = []

    def source():
        for i, img in enumerate(imgs):
            pulled.append(i)
            yield img

    it = photo.denoise_iter(source())
    first = next(it)
    assert len(pulled) == photo.batch_size  # one batch read, not the whole source
    outs = [first, *it]
    for img, out in zip(imgs, outs, strict=True):
        assert np.array_equal(out, photo.denoise(img))


@st.composite
def _valid_images(draw):
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    channels = draw(st.sampled_from([None, 1, 3, 4]))
    dtype = draw(st.sampled_from(DTYPES))
    layout = draw(st.sampled_from(["hwc", "chw"])) if channels else "hwc"
    shape = (h, w) if channels is None else (h, w, channels)
    img = _random(np.random.default_rng(draw(st.integers(0, 2**16))), shape, dtype)
    if layout == "chw":
        img = np.ascontiguousarray(img.transpose(2, 0, 1))
    return img, layout


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_valid_images(), st.sampled_from([None, True]))
def test_random_valid_inputs_keep_shape_dtype_and_range(photo, case, tile):
    img, layout = case
    out = photo.denoise(img, layout=layout, tile=tile)
    assert out.shape == img.shape and out.dtype == img.dtype
    if img.dtype.kind == "f":
        assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    if img.ndim == 3 and img.shape[2 if layout == "hwc" else 0] == 4:
        alpha = img[..., 3] if layout == "hwc" else img[3]
        assert np.array_equal(out[..., 3] if layout == "hwc" else out[3], alpha)


@st.composite
def _invalid_images(draw):
    kind = draw(st.sampled_from(["dtype", "ndim", "channels", "empty", "nan", "range"]))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    if kind == "dtype":
        dtype = draw(
            st.sampled_from(
                [np.int8, np.int16, np.int32, np.int64, np.uint32, np.float16, np.complex64, bool]
            )
        )
        return np.zeros((h, w, 3), dtype), "is not supported"
    if kind == "ndim":
        return np.zeros(draw(st.sampled_from([(h,), (1, h, w, 3), (1, 1, h, w, 3)])), np.uint8), (
            "dimensions"
        )
    if kind == "channels":
        return np.zeros((h, w, draw(st.sampled_from([0, 2, 5, 6, 64]))), np.uint8), "channels|empty"
    if kind == "empty":
        return np.zeros(draw(st.sampled_from([(0, w), (h, 0, 3), (0, 0, 1)])), np.uint8), "empty"
    img = np.zeros((h, w, 3), np.float32)
    y, x = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
    if kind == "nan":
        img[y, x, 0] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        return img, "NaN or infinite"
    img[y, x, 1] = draw(st.sampled_from([-1e-3, 1.001, 255.0]))
    return img, r"\[0, 1\]"


@settings(max_examples=60, deadline=None)
@given(_invalid_images())
def test_random_invalid_inputs_raise_a_value_error_naming_the_problem(photo, case):
    img, message = case
    with pytest.raises(ValueError, match=message):
        photo.denoise(img)
