"""Checking caller arrays and converting them to and from the model's RGB float view.

Inside the runtime an image is float32 RGB in [0, 1]. Callers hand in numpy
arrays of many shapes and dtypes (and PIL images); :func:`as_image` checks one
and describes it as an :class:`ImageArray` whose ``rgb`` attribute is an
H×W×3 *view* (no copy of the pixels, even for grey images, unless the input's
byte order or PIL mode needs converting). One conversion goes each way:
:func:`to_unit` maps pixels to the model's floats (written straight into the
model's 3×H×W batch or tile when given one), and :func:`write_rows` maps the
model's float32 3×h×W output rows back into an output array; :func:`restore_chw`
(or :func:`new_output`, :func:`write_rows` and :func:`finish`, band by band)
gives the caller its shape, dtype, byte order and layout, or PIL mode (grey
averaged back to one channel, alpha copied through).

The value checks (finite, in range) and :func:`row_bands` work on bands of
rows, so that checking an image never allocates more than a few MB beyond it.

Levels: a pixel type's full scale maps to 1.0 (255 for uint8, 65535 for
uint16; float values in [0, 1] are taken as they are), except for a *dim*
image: 16-bit with no value above :data:`DIM_16BIT_MAX` (14-bit data or less: a
microscope's or a scientific camera's counts in a 16-bit file), or float with no
value above :data:`DIM_FLOAT_MAX` (the same quarter of the scale: counts
normalised by a larger maximum, a dim channel scaled to [0, 1] by its bit
depth). A dim image is mapped by its own range, min to 0 and max to 1
(:func:`levels_of`), and its result mapped back (floats are not rounded). At full scale
such an image is nearly black to a model trained on photos, whose dark-region
corrections are then large next to its signal: at full scale the photo model
made dim 16-bit grey captures far worse than its noisy input, and by their own
range slightly better (docs/runtime.md, "Dim 16-bit images", measured by
``bench/own_noise_grey16.py``). Training on one's own 16-bit images maps
them by the same rule (:func:`n2n_train.data.read_frame`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from n2n_infer.errors import ImageError

#: Integer dtypes accepted, with the value that maps to 1.0.
INT_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
#: A 16-bit image with no value above this is mapped by its own range (:func:`levels_of`).
DIM_16BIT_MAX = 16383
#: A float image (values in [0, 1]) with no value above this is mapped by its own range:
#: the same fraction of the scale as :data:`DIM_16BIT_MAX`.
DIM_FLOAT_MAX = DIM_16BIT_MAX / 65535.0
#: The span of a flat dim float image (its one value maps to 0): one 16-bit level, as a
#: flat dim 16-bit image's span is one count.
FLAT_FLOAT_SPAN = 1.0 / 65535.0
#: ``levels`` settings: ``"auto"`` (dim 16-bit images by their own range) or ``"full"``.
LEVELS = ("auto", "full")
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
LAYOUTS = ("hwc", "chw")
#: Images (arrays or PIL) with more pixels than this are refused; the file
#: readers' limit (``n2n_infer.imageio.MAX_PIXELS``) is the same 100 megapixels.
MAX_PIXELS = 100_000_000
#: Elements per band of rows in the value checks (about 1 MB of temporaries).
BAND_ELEMENTS = 1 << 20
#: PIL modes accepted, with the conversions that give the array that is denoised
#: (none: the mode's own pixels). Results come back in the input's mode.
PIL_READS: dict[str, tuple[str, ...]] = {
    "1": ("L",),  # given back thresholded at one half
    "L": (),
    "LA": ("RGBA",),  # grey + alpha: run as colour, given back as LA
    "La": ("LA", "RGBA"),  # premultiplied alpha: undone, and redone on the way back
    "P": ("RGB",),  # given back in its own palette (nearest colours)
    "RGB": (),
    "RGBA": (),
    "RGBa": ("RGBA",),
    "RGBX": ("RGB",),
    "YCbCr": ("RGB",),
    "HSV": ("RGB",),
    "I": (),  # 32-bit integers: only 0..65535 (16-bit grey) is accepted
    "F": (),  # 32-bit floats: only [0, 1] is accepted
    "I;16": (),
    "I;16L": (),
    "I;16B": (),
    "I;16N": (),
}
#: PIL modes refused, with what to do instead.
PIL_REFUSED = {
    "CMYK": "Pillow's CMYK conversion is not colour-managed and loses K on the way back; "
    "convert it to RGB first",
    "LAB": "Pillow's LAB conversion does not round-trip; convert it to RGB first",
    "PA": "a palette with alpha cannot be given back faithfully; convert it to RGBA first",
}
#: Byte order of the 16-bit grey PIL modes (how their results are written back).
I16_DTYPES = {"I;16": "<u2", "I;16L": "<u2", "I;16B": ">u2", "I;16N": "=u2"}


@dataclass(frozen=True)
class ImageArray:
    """One checked input image.

    Attributes:
        rgb: H×W×3 view of the colour channels in a native dtype (grey
            broadcast to three channels, alpha left out).
        original: the input as an H×W, H×W×1, H×W×3 or H×W×4 array (HWC,
            native byte order).
        layout: ``"hwc"`` or ``"chw"`` (how to give the result back).
        pil_mode: the PIL mode to give back, or ``""`` for a numpy result.
        dtype: the dtype to give back when it differs from ``original``'s
            (a non-native byte order), else ``None``.
        palette: the input PIL image whose palette a mode ``P`` result uses.
        levels: ``(black, span)``: pixel values map to ``(value - black) / span``
            in the model's [0, 1] (and back); ``None``: the dtype's full scale
            (see :func:`levels_of`).
    """

    rgb: np.ndarray
    original: np.ndarray
    layout: str = "hwc"
    pil_mode: str = ""
    dtype: np.dtype | None = None
    palette: Any = None
    levels: tuple[float, float] | None = None

    @property
    def size_hw(self) -> tuple[int, int]:
        """Height and width in pixels."""
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])


def as_image(
    image: Any,
    index: int = 0,
    layout: str = "hwc",
    max_pixels: int | None = None,
    levels: str = "auto",
) -> ImageArray:
    """Check one input image and describe it as an :class:`ImageArray`.

    Accepted: numpy H×W, H×W×1, H×W×3 or H×W×4 (``layout="chw"``: C×H×W with
    C in 1, 3, 4) of dtype uint8, uint16, float32 or float64 (floats in
    [0, 1], finite; either byte order; any strides); or a PIL image of a mode
    in :data:`PIL_READS`. At most ``max_pixels`` pixels (default
    :data:`MAX_PIXELS`). ``levels="auto"`` maps a dim 16-bit or float image by
    its own range (:func:`levels_of`); ``"full"`` maps every image by its dtype's
    full scale (floats as they are).

    Raises:
        ImageError: anything else (wrong type, a masked array, wrong number of
            dimensions or channels, empty, too many pixels, unsupported dtype
            or PIL mode, NaN/inf or floats outside [0, 1], a PIL image that
            cannot be read, not enough memory to check it); the message starts
            with ``image {index}``.
    """
    if layout not in LAYOUTS:
        raise ImageError(f"layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    if levels not in LEVELS:
        check_levels(levels)
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    try:
        if not isinstance(image, np.ndarray) and _is_pil(image):
            img = _pil_image(image, index, limit)
        else:
            img = _array_image(image, index, layout, limit)
        if levels == "auto" and img.rgb.dtype.kind in "uf" and img.rgb.dtype != np.uint8:
            return replace(img, levels=levels_of(img.rgb))  # 16 bits and floats can be dim
        return img
    except MemoryError as exc:
        raise ImageError(f"image {index}: not enough memory to check and convert it") from exc


def check_levels(levels: str) -> None:
    """Check a ``levels`` setting.

    Raises:
        ValueError: ``levels`` is not one of :data:`LEVELS`.
    """
    if levels not in LEVELS:
        raise ValueError(f"levels: expected one of {', '.join(LEVELS)}, got {levels!r}")


def levels_of(rgb: np.ndarray) -> tuple[float, float] | None:
    """``(black, span)`` for a dim image, else ``None`` (the dtype's full scale).

    Dim: uint16 with no value above :data:`DIM_16BIT_MAX`, or float (already
    checked to lie in [0, 1]) with no value above :data:`DIM_FLOAT_MAX`. Its
    minimum maps to 0 and its maximum to 1 (a flat image: its value to 0, with a
    span of one count, or :data:`FLAT_FLOAT_SPAN`). Computed band by band
    (``rgb``: H×W×C, alpha left out by the caller).
    """
    if rgb.dtype.kind == "f":
        found = finite_range(rgb)  # None: NaN or infinite, which the caller's checks name
        if found is None or found[1] > DIM_FLOAT_MAX:
            return None
        return found[0], (found[1] - found[0]) or FLAT_FLOAT_SPAN
    if rgb.dtype != np.uint16:
        return None
    lo, hi = 65535, 0
    for band in row_bands(rgb):
        lo, hi = min(lo, int(band.min())), max(hi, int(band.max()))
    if hi > DIM_16BIT_MAX:
        return None
    return float(lo), float(max(hi - lo, 1))


def row_bands(hwc: np.ndarray, elements: int = BAND_ELEMENTS) -> Iterator[np.ndarray]:
    """Views of consecutive bands of rows of ``hwc``, each of about ``elements`` values."""
    per_row = max(1, int(np.prod(hwc.shape[1:], dtype=np.int64)))
    step = max(1, elements // per_row)
    for y in range(0, hwc.shape[0], step):
        yield hwc[y : y + step]


def _array_image(image: Any, index: int, layout: str, limit: int) -> ImageArray:
    if isinstance(image, np.ma.MaskedArray):
        raise ImageError(
            f"image {index}: masked arrays are not supported (fill the masked pixels first, "
            "e.g. image.filled(0))"
        )
    if not isinstance(image, np.ndarray):
        raise ImageError(
            f"image {index}: expected a numpy array or PIL image, got {type(image).__name__}"
        )
    hwc = _to_hwc(np.asarray(image), index, layout, limit)
    native = _native(hwc, index)
    if native.dtype not in INT_SCALE:
        _check_values(native, index)
    back = hwc.dtype if native.dtype != hwc.dtype else None
    return ImageArray(_rgb_view(native), native, layout, dtype=back)


def _to_hwc(image: np.ndarray, index: int, layout: str, limit: int) -> np.ndarray:
    if image.ndim not in (2, 3):
        raise ImageError(
            f"image {index}: expected 2 or 3 dimensions (H×W, H×W×C or C×H×W), got shape "
            f"{image.shape}"
        )
    if image.ndim == 3 and layout == "chw":
        image = image.transpose(1, 2, 0)
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        raise ImageError(
            f"image {index}: expected 1, 3 or 4 channels ({layout.upper()}), got "
            f"{image.shape[2]} in shape {image.shape}"
        )
    if image.size == 0:
        raise ImageError(f"image {index}: empty image of shape {image.shape}")
    if image.shape[0] * image.shape[1] > limit:
        _check_pixels(int(image.shape[0]), int(image.shape[1]), index, limit)
    return image


def _check_pixels(h: int, w: int, index: int, limit: int) -> None:
    if h * w > limit:
        raise ImageError(
            f"image {index}: {h}×{w} is {h * w} pixels, more than the limit of {limit} "
            f"({limit / 1e6:g} megapixels)"
        )


def _native(hwc: np.ndarray, index: int) -> np.ndarray:
    """``hwc`` in a supported dtype of native byte order (a copy only if it was swapped)."""
    native = hwc.dtype.newbyteorder("=")
    if native not in INT_SCALE and native not in FLOAT_DTYPES:
        raise ImageError(
            f"image {index}: dtype {hwc.dtype} is not supported "
            "(expected uint8, uint16, float32 or float64 in [0, 1])"
        )
    return hwc if native == hwc.dtype else hwc.astype(native)


def finite_range(values: np.ndarray) -> tuple[float, float] | None:
    """The smallest and largest of ``values``, read band by band of rows (a few MB of
    temporaries); None when any is NaN or infinite."""
    lo, hi = np.inf, -np.inf
    for band in row_bands(values):
        if not np.isfinite(band).all():
            return None
        lo, hi = min(lo, float(band.min())), max(hi, float(band.max()))
    return lo, hi


def _check_values(hwc: np.ndarray, index: int) -> None:
    if hwc.dtype in INT_SCALE:
        return
    found = finite_range(hwc)
    if found is None:
        raise ImageError(f"image {index}: contains NaN or infinite values")
    lo, hi = found
    if lo < 0.0 or hi > 1.0:
        raise ImageError(
            f"image {index}: float values must lie in [0, 1], found [{lo:.9g}, {hi:.9g}]"
        )


def _rgb_view(hwc: np.ndarray) -> np.ndarray:
    if hwc.ndim == 2:
        hwc = hwc[:, :, None]
    if hwc.shape[2] == 1:
        return np.broadcast_to(hwc, (*hwc.shape[:2], 3))
    return hwc[:, :, :3]


def _affine(levels: tuple[float, float] | None, dtype: Any) -> tuple[float, float | None]:
    """``(black, scale)`` of ``value -> (value - black) / scale``: an image's own levels, or
    its dtype's full scale (``None``: float, already in [0, 1])."""
    return levels or (0.0, INT_SCALE.get(np.dtype(dtype)))


def to_unit(
    pixels: np.ndarray, levels: tuple[float, float] | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """Pixels of any accepted dtype as float32 in [0, 1]; ``levels``: see :class:`ImageArray`.

    Without ``out``: a new float32 array of ``pixels``' own shape (H×W or H×W×C). With
    ``out`` (float32 C×H×W, for H×W×C ``pixels``): written there in the model's layout,
    in place, and returned; the cast into ``out`` is the only copy of the pixels (no
    H×W×C float temporary, however large the image or tile).
    """
    # _affine's map, inlined: one call fewer on the short path (tests/infer/test_call_path.py)
    black, scale = levels or (0.0, INT_SCALE.get(pixels.dtype))
    if out is None:
        out = pixels.astype(np.float32)
    else:
        out[...] = pixels.transpose(2, 0, 1)
    if black:
        out -= np.float32(black)
    if scale is not None:
        out /= np.float32(scale)
    return out


def from_unit(
    unit: np.ndarray, dtype: np.dtype, levels: tuple[float, float] | None = None
) -> np.ndarray:
    """Float in [0, 1] (clipped first) to ``dtype``; integers are rounded; ``levels``: see
    :class:`ImageArray`."""
    clipped = np.clip(unit, 0.0, 1.0)
    black, scale = _affine(levels, dtype)
    if scale is None:
        return clipped.astype(dtype)
    values = clipped * np.float32(scale) + np.float32(black)
    return (values if np.dtype(dtype).kind == "f" else np.rint(values)).astype(dtype)


def new_output(img: ImageArray) -> np.ndarray:
    """An array for the result in the input's HWC shape and dtype, alpha already copied."""
    out = np.empty_like(img.original)
    if out.ndim == 3 and out.shape[2] == 4:
        out[:, :, 3] = img.original[:, :, 3]
    return out


def write_rows(img: ImageArray, out: np.ndarray, y0: int, denoised_chw: np.ndarray) -> None:
    """Write float32 3×h×W model output rows into ``out`` (from :func:`new_output`) from
    row ``y0``.

    Converted in the model's own layout and transposed once on the way into ``out``
    (the cast into ``out`` rounds as ``astype`` does). Grey outputs get the mean of
    the three channels; alpha is left as copied; ``denoised_chw`` is not modified.
    """
    rows = slice(y0, y0 + denoised_chw.shape[1])
    if out.ndim == 2 or out.shape[2] == 1:
        grey = from_unit(denoised_chw.mean(axis=0), out.dtype, img.levels)
        (out if out.ndim == 2 else out[:, :, 0])[rows] = grey
        return
    unit = np.clip(denoised_chw, 0.0, 1.0)  # a new array: the caller's rows are left alone
    black, scale = _affine(img.levels, out.dtype)
    if scale is not None:
        unit *= np.float32(scale)
        if black:
            unit += np.float32(black)
        if out.dtype.kind != "f":  # a dim float image's values are mapped back, not rounded
            np.rint(unit, out=unit)
    out[rows, :, :3] = unit.transpose(1, 2, 0)


def finish(img: ImageArray, out: np.ndarray) -> Any:
    """The filled HWC result in the caller's layout, dtype (byte order) or PIL mode."""
    if img.pil_mode:
        return _to_pil(out, img)
    if img.layout == "chw" and out.ndim == 3:
        out = out.transpose(2, 0, 1)
    return np.ascontiguousarray(out, dtype=img.dtype or out.dtype)


def restore_chw(img: ImageArray, denoised_chw: np.ndarray) -> Any:
    """The model's float32 3×H×W output in the input's shape, dtype and layout."""
    out = new_output(img)
    write_rows(img, out, 0, denoised_chw)
    return finish(img, out)


def _is_pil(obj: object) -> bool:
    if not type(obj).__module__.startswith("PIL."):
        return False  # PIL is imported only when a PIL object comes in
    from PIL import Image

    return isinstance(obj, Image.Image)


def _pil_image(im: Any, index: int, limit: int) -> ImageArray:
    mode = im.mode
    _check_pil_mode(im, index)
    w, h = im.size
    _check_pixels(int(h), int(w), index, limit)
    pixels = _to_hwc(_read_pil(im, index), index, "hwc", limit)
    if mode == "I":
        pixels = _int32_as_uint16(pixels, index)
    native = _native(pixels, index)
    _check_values(native, index)
    return ImageArray(_rgb_view(native), native, pil_mode=mode, palette=im if mode == "P" else None)


def _check_pil_mode(im: Any, index: int) -> None:
    mode = im.mode
    if mode in PIL_REFUSED:
        raise ImageError(f"image {index}: PIL mode {mode} is not supported: {PIL_REFUSED[mode]}")
    if mode not in PIL_READS:
        raise ImageError(
            f"image {index}: PIL mode {mode} is not supported (supported: {', '.join(PIL_READS)})"
        )
    if mode == "P" and "transparency" in im.info:
        raise ImageError(
            f"image {index}: PIL mode P with transparency cannot be given back faithfully; "
            "convert it to RGBA first"
        )


def _read_pil(im: Any, index: int) -> np.ndarray:
    """The pixels of a PIL image in the mode that is denoised (Pillow errors as ImageError)."""
    mode = im.mode
    try:
        for step in PIL_READS[mode]:
            im = im.convert(step)
        return np.asarray(im)
    except MemoryError:
        raise
    except Exception as exc:  # Pillow raises OSError, ValueError, SyntaxError, zlib.error, ...
        raise ImageError(
            f"image {index}: cannot read the PIL image (mode {mode}): {type(exc).__name__}: {exc}"
        ) from exc


def _int32_as_uint16(pixels: np.ndarray, index: int) -> np.ndarray:
    lo, hi = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    for band in row_bands(pixels):
        lo, hi = min(lo, int(band.min())), max(hi, int(band.max()))
    if lo < 0 or hi > 65535:
        raise ImageError(
            f"image {index}: PIL mode I with values in [{lo}, {hi}]: only 0..65535 "
            "(16-bit grey) is supported"
        )
    return pixels.astype(np.uint16)


def _to_pil(out: np.ndarray, img: ImageArray) -> Any:
    from PIL import Image

    mode = img.pil_mode
    if mode in I16_DTYPES:
        h, w = out.shape[:2]
        return Image.frombytes(mode, (w, h), np.ascontiguousarray(out, I16_DTYPES[mode]).tobytes())
    if mode == "I":
        return Image.fromarray(out.astype(np.int32))
    im = Image.fromarray(out)  # uint8 H×W → L, H×W×3 → RGB, H×W×4 → RGBA; float32 H×W → F
    if mode == "1":
        return im.convert("1", dither=Image.Dither.NONE)
    if mode == "P":
        return im.quantize(palette=img.palette, dither=Image.Dither.NONE)
    return im if im.mode == mode else im.convert(mode)
