"""Reading and writing image files: formats, bit depth, orientation, colour profile.

Files are read into numpy arrays that :class:`~n2n_infer.Denoiser` accepts:
H×W uint8 (8-bit grey), H×W uint16 (16-bit grey), H×W×3 uint8 (colour),
H×W×4 uint8 (with alpha), or H×W×3 / H×W×4 uint16 (16-bit colour PNG or TIFF,
which Pillow decodes to 8 bits and cannot write, so :mod:`n2n_infer.png16` and
:mod:`n2n_infer.tiff16` read and write them). EXIF orientation is applied on
reading; the ICC profile and the remaining EXIF data are kept and written back
(16-bit colour TIFFs keep their ICC profile, not their other tags).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from n2n_infer import png16, tiff16
from n2n_infer.errors import ImageError
from n2n_infer.files import TEMP_PREFIX, TEMP_SUFFIX, write_atomic  # noqa: F401 (re-exported)

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
ORIENTATION_TAG = 0x0112


@dataclass
class ImageFile:
    """A decoded image file.

    Attributes:
        pixels: H×W uint8/uint16, H×W×3 or H×W×4 uint8 (orientation applied), or
            H×W×3 / H×W×4 uint16 from a 16-bit colour PNG or TIFF.
        format: Pillow format name (``"PNG"``, ``"JPEG"``, ...).
        mode: Pillow mode to write back (``"LA"`` is read as RGBA and written as LA;
            16-bit colour PNGs and TIFFs have ``"RGB"``/``"RGBA"`` with uint16 pixels).
        icc_profile: the embedded ICC profile bytes, if any.
        exif: EXIF bytes with the orientation reset, if any.
        notes: what could not be kept (e.g. a 16-bit colour PNG named ``.tif``,
            which Pillow reads as 8-bit).
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
        with open(path, "rb") as f:
            head = f.read(32)
        fmt = SUFFIXES.get(path.suffix.lower())
        if png16.is_png16_colour(head) and fmt == "PNG":
            return _read_png16(path, max_pixels)
        if fmt == "TIFF" and _is_tiff16_colour(path):
            return _read_tiff16(path, max_pixels)
        with Image.open(path) as im:
            if im.width * im.height > max_pixels:
                raise ImageError(
                    f"{path}: {im.width}×{im.height} pixels exceeds the limit of {max_pixels}"
                )
            notes = _depth_notes(im)
            im.load()
            fmt, icc = im.format or "", im.info.get("icc_profile")
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


def _read_png16(path: Path, max_pixels: int) -> ImageFile:
    """A 16-bit RGB/RGBA PNG, which Pillow would decode to 8 bits (see :mod:`png16`).

    The EXIF orientation is applied like ``ImageOps.exif_transpose`` does it.
    """
    png = png16.decode_png16(path, path.read_bytes(), max_pixels)
    pixels, exif_bytes = png.pixels, None
    if png.exif:
        exif = Image.Exif()
        exif.load(png.exif)
        pixels = _orient(pixels, exif.pop(ORIENTATION_TAG, 1))
        exif_bytes = exif.tobytes() if exif else None
    mode = "RGBA" if pixels.shape[2] == 4 else "RGB"
    return ImageFile(np.ascontiguousarray(pixels), "PNG", mode, png.icc_profile, exif_bytes)


def _is_tiff16_colour(path: Path) -> bool:
    """True for a 16-bit RGB/RGBA TIFF (reads the header and first IFD, not the whole file)."""
    with open(path, "rb") as f:
        return tiff16.is_tiff16_colour(f)


def _read_tiff16(path: Path, max_pixels: int) -> ImageFile:
    """A 16-bit RGB/RGBA TIFF, which Pillow would decode to 8 bits (see :mod:`tiff16`).

    The Orientation tag is applied like ``ImageOps.exif_transpose`` does it.
    """
    tif = tiff16.decode_tiff16(path, path.read_bytes(), max_pixels)
    pixels = np.ascontiguousarray(_orient(tif.pixels, tif.orientation))
    mode = "RGBA" if pixels.shape[2] == 4 else "RGB"
    return ImageFile(pixels, "TIFF", mode, tif.icc_profile)


def _orient(px: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to H×W×C pixels: the image as it is meant to be seen."""
    if orientation in (5, 6, 7, 8):  # transposed: swap rows and columns first
        px = px.swapaxes(0, 1)
    flip_rows = orientation in (3, 4, 7, 8)
    flip_cols = orientation in (2, 3, 6, 7)
    return px[:: -1 if flip_rows else 1, :: -1 if flip_cols else 1]


def _depth_notes(im: Any) -> list[str]:
    """Pillow decodes 16-bit colour as 8-bit: say so instead of hiding it.

    16-bit colour PNGs and TIFFs are read by :mod:`png16` and :mod:`tiff16`; this
    catches those whose suffix names another format (a 16-bit colour PNG named
    ``.tif``, a TIFF named ``.png``), which Pillow reads. Call before ``im.load()``,
    which empties ``im.tile``.
    """
    if im.mode not in ("RGB", "RGBA"):
        return []
    rawmodes = [t[3] if isinstance(t[3], str) else str(t[3] and t[3][0]) for t in im.tile]
    bits = getattr(im, "tag_v2", {}).get(258, ())
    if any(";16" in r for r in rawmodes) or max(bits, default=8) > 8:
        return [f"16-bit colour {im.format}: Pillow decodes it to 8 bits, written as 8-bit"]
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
    uint16 colour pixels are written as a 16-bit PNG (:mod:`n2n_infer.png16`) or a
    16-bit TIFF (:mod:`n2n_infer.tiff16`, which keeps the ICC profile, not the EXIF).

    Raises:
        ImageError: unknown suffix, or uint16 colour pixels for a format other than
            PNG and TIFF.
    """
    path = Path(path)
    px = loaded.pixels if pixels is None else pixels
    if px.dtype == np.uint16 and px.ndim == 3:
        _write_colour16(path, px, loaded.icc_profile, loaded.exif)
        return
    im = Image.fromarray(px)
    if loaded.mode == "LA":
        im = im.convert("LA")
    options: dict[str, Any] = {}
    if loaded.icc_profile:
        options["icc_profile"] = loaded.icc_profile
    if loaded.exif:
        options["exif"] = loaded.exif
    _save_atomic(Path(path), im, options)


def _write_colour16(path: Path, px: np.ndarray, icc: bytes | None, exif: bytes | None) -> None:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt == "PNG":
        data = png16.encode_png16(px, icc, exif)
    elif fmt == "TIFF":
        data = tiff16.encode_tiff16(px, icc)
    else:
        raise ImageError(
            f"{path}: 16-bit colour can only be written as PNG or TIFF, not {path.suffix!r}"
        )
    _write_atomic(path, lambda f: f.write(data))


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
    _write_atomic(path, lambda f: im.save(f, format=fmt, **options))


def _write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write`` on a temporary file in the same folder, then rename it to ``path``."""
    write_atomic(path, write)


def _format_options(fmt: str, im: Any) -> dict[str, Any]:
    if fmt == "JPEG":
        return {"quality": JPEG_QUALITY}
    if fmt == "WEBP":
        return {"quality": WEBP_QUALITY}
    if fmt == "TIFF":
        return {"compression": "tiff_deflate"}
    return {}
