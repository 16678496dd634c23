"""Reading and writing image files: formats, bit depth, orientation, colour profile.

Files are read into numpy arrays that :class:`~n2n_infer.Denoiser` accepts:
H×W uint8 (8-bit grey), H×W uint16 (16-bit grey), H×W×3 uint8 (colour) or
H×W×4 uint8 (with alpha). EXIF orientation is applied on reading; the ICC
profile and the remaining EXIF data are kept and written back.
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from n2n_infer.errors import ImageError

#: Suffixes the batch job reads, and the format each is written back in.
SUFFIXES = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}
#: Images above this many pixels are refused (decompression bombs).
MAX_PIXELS = 100_000_000
JPEG_QUALITY = 95
WEBP_QUALITY = 95
#: Pillow modes read as they are; others are converted to RGB, or RGBA when they carry alpha.
NATIVE_MODES = {"L", "RGB", "RGBA", "I;16"}
#: Temporary files of atomic writes: ``.n2n-<name>.<random>.part`` beside the target.
TEMP_PREFIX = ".n2n-"
TEMP_SUFFIX = ".part"


@dataclass
class ImageFile:
    """A decoded image file.

    Attributes:
        pixels: H×W uint8/uint16, H×W×3 or H×W×4 uint8 (orientation applied).
        format: Pillow format name (``"PNG"``, ``"JPEG"``, ...).
        mode: Pillow mode to write back (``"LA"`` is read as RGBA and written as LA).
        icc_profile: the embedded ICC profile bytes, if any.
        exif: EXIF bytes with the orientation reset, if any.
        notes: what could not be kept (e.g. 16-bit colour read as 8-bit).
    """

    pixels: np.ndarray
    format: str
    mode: str
    icc_profile: bytes | None = None
    exif: bytes | None = None
    notes: list[str] = field(default_factory=list)


def read_file(path: str | Path, max_pixels: int | None = None) -> ImageFile:
    """Decode an image file, keeping its bit depth, alpha, ICC profile and EXIF.

    ``max_pixels`` defaults to :data:`MAX_PIXELS`.

    Raises:
        ImageError: the file is missing, empty, truncated, not an image, has more
            than ``max_pixels`` pixels, or a pixel mode that cannot be denoised;
            the message names the file.
    """
    path = Path(path)
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    try:
        if path.stat().st_size == 0:
            raise ImageError(f"{path}: empty file (0 bytes)")
        with Image.open(path) as im:
            if im.width * im.height > max_pixels:
                raise ImageError(
                    f"{path}: {im.width}×{im.height} pixels exceeds the limit of {max_pixels}"
                )
            im.load()
            fmt, icc = im.format or "", im.info.get("icc_profile")
            notes = _depth_notes(path, im)
            im = ImageOps.exif_transpose(im)
            exif = im.getexif()
            pixels, mode = _pixels(path, im)
            return ImageFile(pixels, fmt, mode, icc, exif.tobytes() if exif else None, notes)
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, ImageError):
            raise
        raise ImageError(f"{path}: corrupt or truncated image ({exc})") from None


def _pixels(path: Path, im: Any) -> tuple[np.ndarray, str]:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(im).astype(np.uint16), "I;16"
    if mode == "I":  # 16-bit grey from some decoders, as 32-bit integers
        arr = np.asarray(im)
        if arr.min() < 0 or arr.max() > 65535:
            raise ImageError(f"{path}: 32-bit integer pixels are not supported")
        return arr.astype(np.uint16), "I;16"
    if mode == "LA":
        return np.asarray(im.convert("RGBA")).copy(), "LA"
    if mode not in NATIVE_MODES:
        has_alpha = "A" in im.getbands() or "transparency" in im.info
        mode = "RGBA" if has_alpha else "RGB"
        im = im.convert(mode)
    return np.asarray(im).copy(), mode


def _depth_notes(path: Path, im: Any) -> list[str]:
    """Pillow decodes 16-bit colour PNGs as 8-bit: say so instead of hiding it."""
    if im.format != "PNG" or path.suffix.lower() != ".png":
        return []
    with open(path, "rb") as f:
        head = f.read(29)
    if len(head) == 29 and head[12:16] == b"IHDR":
        depth, colour = struct.unpack(">BB", head[24:26])
        if depth == 16 and colour in (2, 6):
            return ["16-bit colour PNG: Pillow decodes it to 8 bits, written as 8-bit"]
    return []


def read_image(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as uint8 H×W×3 RGB (EXIF orientation applied).

    Raises:
        ImageError: as :func:`read_file`.
    """
    return as_rgb_u8(read_file(path, max_pixels).pixels)


def as_rgb_u8(px: np.ndarray) -> np.ndarray:
    """Pixels as :func:`read_file` gives them to uint8 H×W×3 (16-bit rounded, alpha dropped)."""
    if px.dtype == np.uint16:
        px = np.rint(px / 257.0).astype(np.uint8)
    if px.ndim == 2:
        px = np.repeat(px[:, :, None], 3, axis=2)
    return np.ascontiguousarray(px[:, :, :3])


def write_file(path: str | Path, loaded: ImageFile, pixels: np.ndarray | None = None) -> None:
    """Write ``pixels`` (default ``loaded.pixels``) like ``loaded``: format, mode, ICC, EXIF.

    The format comes from the suffix of ``path``. The file is written atomically.

    Raises:
        ImageError: unknown suffix.
    """
    px = loaded.pixels if pixels is None else pixels
    im = Image.fromarray(px)
    if loaded.mode == "LA":
        im = im.convert("LA")
    options: dict[str, Any] = {}
    if loaded.icc_profile:
        options["icc_profile"] = loaded.icc_profile
    if loaded.exif:
        options["exif"] = loaded.exif
    _save_atomic(Path(path), im, options)


def write_image(path: str | Path, img_hwc_u8: np.ndarray) -> None:
    """Write a uint8 H×W×3 image to ``path`` (format from the suffix) atomically."""
    _save_atomic(Path(path), Image.fromarray(img_hwc_u8), {})


def _save_atomic(path: Path, im: Any, options: dict[str, Any]) -> None:
    """Save to a temporary file in the same folder, then rename over ``path``.

    An interrupted write never leaves a half-written ``path``.
    """
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: cannot write format {path.suffix!r} (known: {sorted(SUFFIXES)})")
    options = {**_format_options(fmt, im), **options}
    if fmt == "BMP":
        options.pop("exif", None)
    fd, tmp = tempfile.mkstemp(
        prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent
    )
    try:
        with os.fdopen(fd, "wb") as f:
            im.save(f, format=fmt, **options)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _format_options(fmt: str, im: Any) -> dict[str, Any]:
    if fmt == "JPEG":
        return {"quality": JPEG_QUALITY}
    if fmt == "WEBP":
        return {"quality": WEBP_QUALITY}
    if fmt == "TIFF":
        return {"compression": "tiff_deflate"}
    return {}
