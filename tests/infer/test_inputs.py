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
    assert out.mode == mode
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


def test_denoise_iter_holds_no_more_images_than_fill_one_model_call():
    # 40×40 images, 1600 pixels: a call takes two of them (max_batch_pixels 3200), so
    # holding a batch of 8 would hold six images no call can take; results are the same
    d = Denoiser("photo", device="cpu", batch_size=8, max_batch_pixels=3200)
    rng = np.random.default_rng(8)
    imgs = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(5)]
    pulled = []

    def source():
        for i, img in enumerate(imgs):
            pulled.append(i)
            yield img

    it = d.denoise_iter(source())
    first = next(it)
    assert len(pulled) == 2
    outs = [first, *it]
    for img, out in zip(imgs, outs, strict=True):
        assert np.array_equal(out, d.denoise(img))


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


# --- PIL modes: each comes back in its own mode with sensible values, or is refused by name ---

ALL_PIL_MODES = "1 L LA La P PA RGB RGBA RGBa RGBX CMYK YCbCr LAB HSV I I;16 I;16B I;16L I;16N F"
REFUSED_PIL_MODES = {"CMYK", "LAB", "PA"}


def _pil_of_mode(mode, rng, h=15, w=21):
    """A PIL image of ``mode`` with random content (16-bit, I and F from grey arrays)."""
    if mode.startswith("I;16"):
        grey = rng.integers(0, 65536, (h, w), dtype=np.uint16)
        order = {"I;16B": ">u2", "I;16N": "=u2"}.get(mode, "<u2")
        return Image.frombytes(mode, (w, h), grey.astype(order).tobytes()), grey
    if mode == "I":
        grey = rng.integers(0, 65536, (h, w), dtype=np.uint16)
        return Image.fromarray(grey.astype(np.int32)), grey
    if mode == "F":
        grey = rng.random((h, w)).astype(np.float32)
        return Image.fromarray(grey), grey
    rgba = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8))
    source = rgba if "A" in mode or "a" in mode else rgba.convert("RGB")
    return source.convert(mode), None


@pytest.mark.parametrize("mode", ALL_PIL_MODES.split())
def test_every_pil_mode_comes_back_in_its_mode_or_is_refused_by_name(photo, mode):
    im, grey = _pil_of_mode(mode, np.random.default_rng(20))
    if mode in REFUSED_PIL_MODES:
        with pytest.raises(ImageError, match=f"image 0: PIL mode {mode} "):
            photo.denoise(im)
        return
    out = photo.denoise(im)
    assert out.mode == mode and out.size == im.size
    if grey is not None:  # 16-bit, I and F: the same numbers as the numpy path
        expected = photo.denoise(grey)
        assert np.array_equal(np.asarray(out).astype(expected.dtype), expected)
        assert np.asarray(out).dtype == np.asarray(im).dtype
    if mode in ("LA", "La", "RGBA", "RGBa"):
        assert np.array_equal(np.asarray(out)[..., -1], np.asarray(im)[..., -1])
    if mode in ("RGB", "RGBX", "YCbCr", "HSV", "RGBa", "La", "P", "L"):  # near the RGB result
        colour = np.asarray((out.convert("LA") if mode == "La" else out).convert("RGB")).astype(int)
        reference = photo.denoise(im.convert("RGB")) if mode in ("RGB", "RGBX", "YCbCr") else None
        if reference is not None:
            assert np.abs(colour - reference).max() <= 6
        assert 40 < colour.mean() < 215  # not all white or all black
    if mode == "P":
        assert out.getpalette() == im.getpalette()


@pytest.mark.parametrize("mode", ["I;16B", "I;16L", "I", "F"])
def test_grey_pil_modes_are_not_white_or_black(photo, mode):
    """Defect 2c: these modes came back as all-white or all-black RGB images."""
    im, _ = _pil_of_mode(mode, np.random.default_rng(21))
    out = np.asarray(photo.denoise(im)).astype(np.float64)
    top = 1.0 if mode == "F" else 65535.0
    assert 0.3 * top < out.mean() < 0.7 * top


def test_pil_mode_i_outside_16_bits_and_f_outside_unit_range_are_refused(photo):
    with pytest.raises(ImageError, match=r"image 0: PIL mode I with values in \[0, 70000\]"):
        photo.denoise(Image.fromarray(np.array([[0, 70000]], np.int32)))
    with pytest.raises(ImageError, match=r"image 0: PIL mode I with values in \[-1, 5\]"):
        photo.denoise(Image.fromarray(np.array([[-1, 5]], np.int32)))
    with pytest.raises(ImageError, match=r"image 0: float values must lie in \[0, 1\]"):
        photo.denoise(Image.fromarray(np.array([[0.5, 2.0]], np.float32)))


def test_palette_image_with_transparency_is_refused(photo):
    im = Image.fromarray(np.zeros((4, 4, 3), np.uint8)).convert("P")
    im.info["transparency"] = 0
    with pytest.raises(ImageError, match="PIL mode P with transparency"):
        photo.denoise(im)


def test_truncated_lazy_and_closed_pil_images_are_image_errors(photo, tmp_path):
    pixels = np.random.default_rng(22).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    good = np.zeros((8, 8, 3), np.uint8)
    lazy = Image.open(tmp_path / "cut.png")
    with lazy, pytest.raises(ImageError, match=r"image 1: cannot read the PIL image .*truncated"):
        photo.denoise_batch([good, lazy])
    closed = Image.open(tmp_path / "a.png")
    closed.load()
    closed.close()
    with pytest.raises(ImageError, match=r"image 0: cannot read the PIL image .*closed"):
        photo.denoise(closed)


# --- memory: a pixel limit, and value checks in bands of rows ---


def test_huge_input_is_refused_by_its_pixel_count(photo):
    """Defect 6: a 100000×100000 view raised MemoryError after trying to allocate gigabytes."""
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.float32), (100000, 100000, 3))
    with pytest.raises(ImageError, match=r"image 0: 100000×100000 is 10000000000 pixels, more"):
        photo.denoise(huge)
    with pytest.raises(ImageError, match="image 0: 100000×100000"):
        photo.denoise_batch(np.broadcast_to(huge, (2, *huge.shape)))


def test_pixel_limit_is_the_file_readers_limit():
    from n2n_infer import arrays, imageio

    assert arrays.MAX_PIXELS == imageio.MAX_PIXELS
    with pytest.raises(ImageError, match="more than the limit of 99"):
        arrays.as_image(np.zeros((10, 10), np.uint8), max_pixels=99)
    arrays.as_image(np.zeros((10, 10), np.uint8), max_pixels=100)


def test_value_and_grey_checks_allocate_a_few_mb_on_a_large_view():
    import tracemalloc

    from n2n_infer.arrays import as_image
    from n2n_infer.grey import is_grey

    view = np.broadcast_to(np.full((1, 1, 3), 0.5, np.float64), (4000, 4000, 3))  # 16 Mpx, 0 B
    tracemalloc.start()
    try:
        img = as_image(view)
        assert is_grey(img)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak / 2**20:.0f} MiB"  # was 48 MiB (isfinite of the whole)


def test_memory_error_while_denoising_is_an_inference_error(photo, monkeypatch):
    from n2n_infer import InferenceError

    def out_of_memory(batch):
        raise MemoryError

    monkeypatch.setattr(photo, "_run", out_of_memory)
    with pytest.raises(InferenceError, match=r"not enough memory to denoise 1 image.* 9×13"):
        photo.denoise(np.zeros((9, 13, 3), np.uint8), tile=False)


# --- odd arrays ---


@pytest.mark.parametrize("dtype", [">u2", ">f4", ">f8", "<u2", "<f4", "<f8"])
def test_either_byte_order_is_accepted_and_given_back(photo, dtype):
    rng = np.random.default_rng(23)
    native = _random(rng, (11, 14, 3), np.dtype(dtype).newbyteorder("="))
    swapped = native.astype(dtype)
    out = photo.denoise(swapped)
    assert out.dtype == np.dtype(dtype) and out.shape == swapped.shape
    assert np.array_equal(out, photo.denoise(native))
    chw = photo.denoise(np.ascontiguousarray(swapped.transpose(2, 0, 1)), layout="chw")
    assert chw.dtype == np.dtype(dtype) and np.array_equal(chw, out.transpose(2, 0, 1))
    batch = photo.denoise_batch(np.stack([swapped, swapped]).astype(dtype))  # stack: native
    assert batch.dtype == np.dtype(dtype) and np.array_equal(batch[1], out)


def test_views_with_any_strides_and_read_only_arrays_are_accepted(photo):
    rng = np.random.default_rng(24)
    big = rng.integers(0, 256, (30, 40, 4), dtype=np.uint8)
    read_only = big.copy()
    read_only.setflags(write=False)
    views = [
        big[::2, ::3],
        big[::-1, ::-1],
        big[3:20, 5:30, :3],
        np.asfortranarray(big),
        read_only,
        big.transpose(1, 0, 2),
    ]
    for view in views:
        assert np.array_equal(photo.denoise(view), photo.denoise(view.copy()))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((4, 4, 3), bool), "image 0: dtype bool is not supported"),
        (np.zeros((4, 4, 3), np.int64), "image 0: dtype int64 is not supported"),
        (np.zeros((4, 4, 3), ">i4"), r"image 0: dtype >i4 is not supported"),
        (np.array(0.5), r"image 0: expected 2 or 3 dimensions .* got shape \(\)"),
        (np.ma.masked_array(np.zeros((4, 4), np.uint8)), "image 0: masked arrays"),
        ([[0, 1], [1, 0]], "image 0: expected a numpy array or PIL image, got list"),
        (None, "image 0: expected a numpy array or PIL image, got NoneType"),
    ],
)
def test_odd_inputs_are_clear_image_errors(photo, bad, message):
    with pytest.raises(ImageError, match=message):
        photo.denoise(bad)


# --- batches and streams ---


def test_empty_batches_give_empty_results(photo):
    """Defect 7: an empty N×H×W×C batch said "need at least one array to stack"."""
    for empty in (np.zeros((0, 8, 8, 3), np.uint8), np.zeros((0, 4, 5, 6), ">f4")):
        layout = "hwc" if empty.shape[-1] == 3 else "chw"
        out = photo.denoise_batch(empty, layout=layout)
        assert isinstance(out, np.ndarray) and out.shape == empty.shape
        assert out.dtype == empty.dtype
    assert photo.denoise_batch([]) == []
    with pytest.raises(ImageError, match="image 0: expected 1, 3 or 4 channels"):
        photo.denoise_batch(np.zeros((0, 8, 8, 7), np.uint8))
    with pytest.raises(ImageError, match="image 0: dtype int16"):
        photo.denoise_batch(np.zeros((0, 8, 8, 3), np.int16))


def test_denoise_iter_gives_back_what_was_read_before_the_source_fails(photo):
    """Defect 7: up to batch_size - 1 images already read were dropped."""
    rng = np.random.default_rng(25)
    imgs = [rng.integers(0, 256, (8, 12, 3), dtype=np.uint8) for _ in range(6)]

    def source():
        yield from imgs
        raise OSError("disk gone")

    outs = []
    with pytest.raises(OSError, match="disk gone"):
        for out in photo.denoise_iter(source()):
            outs.append(out)
    assert len(outs) == 6  # one full batch of 4, then the 2 read before the failure
    for img, out in zip(imgs, outs, strict=True):
        assert np.array_equal(out, photo.denoise(img))


def test_denoise_iter_gives_back_what_was_read_before_a_bad_image(photo):
    good = np.zeros((8, 8, 3), np.uint8)
    outs = []
    with pytest.raises(ImageError, match="image 2: dtype int32"):
        for out in photo.denoise_iter([good, good, good.astype(np.int32), good]):
            outs.append(out)
    assert len(outs) == 2
