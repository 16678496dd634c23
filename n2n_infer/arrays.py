"""Checking caller arrays and converting them to and from the model's RGB float view.

Inside the runtime an image is float32 RGB in [0, 1]. Callers hand in numpy
arrays of many shapes and dtypes (and PIL images); :func:`as_image` checks one
and describes it as an :class:`ImageArray` whose ``rgb`` attribute is an
H×W×3 *view* (no copy of the pixels, even for grey images); :func:`restore`
(or :func:`new_output`, :func:`write_rows` and :func:`finish`, band by band)
turns the model's float32 H×W×3 output back into the caller's shape, dtype and
layout (grey averaged back to one channel, alpha copied through).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from n2n_infer.errors import ImageError

#: Integer dtypes accepted, with the value that maps to 1.0.
INT_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
LAYOUTS = ("hwc", "chw")
#: PIL modes returned in their own mode; any other mode is converted to RGB(A) first.
PIL_MODES = {"L", "RGB", "RGBA", "I;16", "LA"}


@dataclass(frozen=True)
class ImageArray:
    """One checked input image.

    Attributes:
        rgb: H×W×3 view of the colour channels in the input's dtype (grey
            broadcast to three channels, alpha left out).
        original: the input as an H×W, H×W×1, H×W×3 or H×W×4 array (HWC).
        layout: ``"hwc"`` or ``"chw"`` (how to give the result back).
        pil_mode: the PIL mode to give back, or ``""`` for a numpy result.
    """

    rgb: np.ndarray
    original: np.ndarray
    layout: str = "hwc"
    pil_mode: str = ""

    @property
    def size_hw(self) -> tuple[int, int]:
        """Height and width in pixels."""
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])


def as_image(image: Any, index: int = 0, layout: str = "hwc") -> ImageArray:
    """Check one input image and describe it as an :class:`ImageArray`.

    Accepted: numpy H×W, H×W×1, H×W×3 or H×W×4 (``layout="chw"``: C×H×W with
    C in 1, 3, 4) of dtype uint8, uint16, float32 or float64 (floats in
    [0, 1], finite); or a PIL image.

    Raises:
        ImageError: anything else (wrong type, number of dimensions or channels,
            empty, unsupported dtype, NaN/inf or floats outside [0, 1]); the
            message starts with ``image {index}``.
    """
    if layout not in LAYOUTS:
        raise ImageError(f"layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    pil_mode = ""
    if _is_pil(image):
        image, pil_mode = _from_pil(image), image.mode if image.mode in PIL_MODES else ""
        pil_mode = pil_mode or ("RGBA" if image.ndim == 3 and image.shape[2] == 4 else "RGB")
        layout = "hwc"
    if not isinstance(image, np.ndarray):
        raise ImageError(f"image {index}: expected a numpy array or PIL image, got {type(image)}")
    hwc = _to_hwc(image, index, layout)
    _check_values(hwc, index)
    return ImageArray(_rgb_view(hwc), hwc, layout, pil_mode)


def _to_hwc(image: np.ndarray, index: int, layout: str) -> np.ndarray:
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
    if image.dtype not in INT_SCALE and image.dtype not in FLOAT_DTYPES:
        raise ImageError(
            f"image {index}: dtype {image.dtype} is not supported "
            "(expected uint8, uint16, float32 or float64 in [0, 1])"
        )
    return image


def _check_values(hwc: np.ndarray, index: int) -> None:
    if hwc.dtype in INT_SCALE:
        return
    if not np.isfinite(hwc).all():
        raise ImageError(f"image {index}: contains NaN or infinite values")
    lo, hi = float(hwc.min()), float(hwc.max())
    if lo < 0.0 or hi > 1.0:
        raise ImageError(
            f"image {index}: float values must lie in [0, 1], found [{lo:.4g}, {hi:.4g}]"
        )


def _rgb_view(hwc: np.ndarray) -> np.ndarray:
    if hwc.ndim == 2:
        hwc = hwc[:, :, None]
    if hwc.shape[2] == 1:
        return np.broadcast_to(hwc, (*hwc.shape[:2], 3))
    return hwc[:, :, :3]


def to_unit(pixels: np.ndarray) -> np.ndarray:
    """Any accepted dtype to float32 in [0, 1] (a new array)."""
    scale = INT_SCALE.get(pixels.dtype)
    out = pixels.astype(np.float32)
    if scale is not None:
        out /= np.float32(scale)
    return out


def from_unit(unit: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float in [0, 1] (clipped first) to ``dtype``; integers are rounded."""
    clipped = np.clip(unit, 0.0, 1.0)
    scale = INT_SCALE.get(np.dtype(dtype))
    if scale is None:
        return clipped.astype(dtype)
    return np.rint(clipped * scale).astype(dtype)


def new_output(img: ImageArray) -> np.ndarray:
    """An array for the result in the input's HWC shape and dtype, alpha already copied."""
    out = np.empty_like(img.original)
    if out.ndim == 3 and out.shape[2] == 4:
        out[:, :, 3] = img.original[:, :, 3]
    return out


def write_rows(img: ImageArray, out: np.ndarray, y0: int, denoised_hwc: np.ndarray) -> None:
    """Write float32 h×W×3 model output rows into ``out`` from row ``y0``.

    Grey outputs get the mean of the three channels; alpha is left as copied.
    """
    rows = slice(y0, y0 + denoised_hwc.shape[0])
    if out.ndim == 2:
        out[rows] = from_unit(denoised_hwc.mean(axis=2), out.dtype)
    elif out.shape[2] == 1:
        out[rows, :, 0] = from_unit(denoised_hwc.mean(axis=2), out.dtype)
    else:
        out[rows, :, :3] = from_unit(denoised_hwc, out.dtype)


def finish(img: ImageArray, out: np.ndarray) -> Any:
    """The filled HWC result in the caller's layout (CHW) or as a PIL image of the input's mode."""
    if img.pil_mode:
        return _to_pil(out, img.pil_mode)
    if img.layout == "chw" and out.ndim == 3:
        return np.ascontiguousarray(out.transpose(2, 0, 1))
    return out


def restore(img: ImageArray, denoised_hwc: np.ndarray) -> Any:
    """The model's float32 H×W×3 output in the input's shape, dtype and layout."""
    out = new_output(img)
    write_rows(img, out, 0, denoised_hwc)
    return finish(img, out)


def _is_pil(obj: object) -> bool:
    return type(obj).__module__.startswith("PIL.")


def _from_pil(im: Any) -> np.ndarray:
    if im.mode == "LA":
        im = im.convert("RGBA")  # grey + alpha: run as colour, given back as LA
    elif im.mode not in PIL_MODES:
        im = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")
    return np.asarray(im)


def _to_pil(out: np.ndarray, mode: str) -> Any:
    from PIL import Image

    im = Image.fromarray(out)  # uint8 H×W → L, H×W×3 → RGB, H×W×4 → RGBA; uint16 H×W → I;16
    return im.convert("LA") if mode == "LA" else im
