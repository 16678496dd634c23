"""Reading and writing image files: dtype, range and layout conversions at the edge."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from n2n_infer.errors import ImageError

#: Suffixes the batch job reads (and writes, in the same format).
SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
#: Images above this many pixels are refused (decompression bombs).
MAX_PIXELS = 100_000_000
JPEG_QUALITY = 95


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as uint8 H×W×3 RGB (EXIF orientation applied).

    Raises:
        ImageError: the file is missing, empty, truncated, not an image, or has
            more than ``max_pixels`` pixels; the message names the file.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageError(f"{path}: empty file (0 bytes)")
        with Image.open(path) as im:
            if im.width * im.height > max_pixels:
                raise ImageError(
                    f"{path}: {im.width}×{im.height} pixels exceeds the limit of {max_pixels}"
                )
            im.load()
            rgb = ImageOps.exif_transpose(im).convert("RGB")
            return np.asarray(rgb).copy()
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path}: corrupt or truncated image ({exc})") from None


def write_image(path: str | Path, img_hwc_u8: np.ndarray) -> None:
    """Write uint8 H×W×3 to ``path`` (format from the suffix) atomically.

    The image is written to a temporary file in the same folder and renamed,
    so an interrupted write never leaves a half-written ``path``.
    """
    path = Path(path)
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: cannot write format {path.suffix!r} (known: {sorted(SUFFIXES)})")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            options = {"quality": JPEG_QUALITY} if fmt == "JPEG" else {}
            Image.fromarray(img_hwc_u8).save(f, format=fmt, **options)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
