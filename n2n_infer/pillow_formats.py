"""JPEG, WebP, AVIF and BMP through Pillow; the Pillow half of TIFF and 8-bit PNG.

Reading (:func:`read_bounded`): a file is given to Pillow through
:class:`containers.Bounded`: a JPEG, a WebP or an AVIF only as far as its header
declares (see :mod:`n2n_infer.containers`), a BMP :data:`OPEN_BYTES` while Pillow
reads its header, then no more than its declared samples can need; only the Pillow
plugin of the format its first bytes name may decode it. A TIFF, whose layout
:mod:`n2n_infer.tiff16` has checked and which libtiff reads from its descriptor,
goes to :func:`decode` directly. An animation is refused (a JPEG's further MPO
images are noted), and so are pixel modes that cannot be written back faithfully
(:data:`PILLOW_MODES`); the EXIF orientation is applied; what writes the file back
alike (a JPEG's chroma subsampling and progressive coding, a WebP's losslessness,
the dpi) goes to :attr:`ImageFile.encoder`, by the format's :class:`Decoding`.

Writing (:func:`save`, :func:`writer`): 8-bit pixels and 16-bit grey through
Pillow's writers, with the ICC profile, the EXIF data and what the format keeps.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, JpegImagePlugin, features

from n2n_infer import containers, heif
from n2n_infer.errors import ImageError
from n2n_infer.formats import (
    PALETTE_NOTE,
    ImageFile,
    ImageFormat,
    WriteFn,
    Writer,
    deep_refused,
    is_deep,
    orient,
    parse_exif,
    trailing_note,
    turned,
)

__all__ = ["AVIF", "BMP", "HAS_AVIF", "JPEG", "WEBP", "Decoding", "decode", "save", "writer"]


def _pillow_has(feature: str) -> bool:
    try:
        return bool(features.check(feature))
    except (ValueError, OSError):  # an older Pillow that does not know the feature
        return False


#: Whether this Pillow reads and writes AVIF (wheels of Pillow >= 11.3 do).
HAS_AVIF = _pillow_has("avif")
JPEG_QUALITY = 95
WEBP_QUALITY = 95  # and AVIF's
#: Bytes Pillow may read of a BMP (a format without a container bound) while it parses
#: the header: then its limit becomes what the declared image can need.
OPEN_BYTES = containers.MAX_METADATA_BYTES
#: Pillow mode -> (mode to convert to before reading, mode written back).
PILLOW_MODES = {
    "L": ("L", "L"),
    "RGB": ("RGB", "RGB"),
    "RGBA": ("RGBA", "RGBA"),
    "I;16": ("I;16", "I;16"),
    "I;16L": ("I;16L", "I;16"),  # read as they are (convert() clips them), then to uint16
    "I;16B": ("I;16B", "I;16"),
    "I;16N": ("I;16N", "I;16"),
    "LA": ("RGBA", "LA"),
    "La": ("RGBA", "LA"),
    "PA": ("RGBA", "RGBA"),
    "RGBa": ("RGBA", "RGBA"),
    "RGBX": ("RGB", "RGB"),
    "YCbCr": ("RGB", "RGB"),
    "1": ("L", "L"),
    "P": ("RGB", "RGB"),  # "RGBA" when the palette has transparency
}
#: (path, open file, its size, max_pixels) -> how far a decoder may read it.
ExtentFn = Callable[[Path, BinaryIO, int, int], containers.Extent]
#: (image, its file, whether the orientation turns it) -> :attr:`ImageFile.encoder`.
SettingsFn = Callable[[Image.Image, BinaryIO, bool], dict[str, Any]]


def _no_settings(im: Image.Image, fh: BinaryIO, turned: bool) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Decoding:
    """How Pillow decodes one format's files.

    Attributes:
        name: Pillow's name of the format: the only plugin allowed to decode the file.
        extent: how far the file may be read; None: :data:`OPEN_BYTES` while Pillow
            reads the header, then what the declared image can need.
        settings: what writes the image back alike (:attr:`ImageFile.encoder`).
        several: the notes on a file of several images (``n_frames``); None: refused.
        exif: whether Pillow's EXIF data is the file's (a TIFF's is its image
            directory: not kept).
    """

    name: str
    extent: ExtentFn | None = None
    settings: SettingsFn = _no_settings
    several: Callable[[int], list[str]] | None = None
    exif: bool = True


def read_bounded(path: Path, max_pixels: int, how: Decoding) -> ImageFile:
    """Decode the file at ``path`` with Pillow, bounded as the module's docstring says."""
    # from an open file, not the path: from a path Pillow maps an uncompressed file
    # into memory, and (Pillow 13) lays a grey TIFF that it turns upright (orientation
    # 5-8) out in its stored shape, scrambled
    with open(path, "rb") as raw:
        size = os.fstat(raw.fileno()).st_size
        extent = how.extent(path, raw, size, max_pixels) if how.extent else None
        fh = containers.Bounded(raw, extent.end if extent else min(size, OPEN_BYTES))
        try:
            notes = trailing_note(extent.trailing, "image data") if extent else []
            return decode(path, fh, max_pixels, how, None if extent else fh, notes)
        except ImageError:
            raise
        except Exception:
            if fh.cut:
                raise ImageError(
                    f"{path}: corrupt or not an image: the decoder asked for more than the "
                    f"{fh.limit} bytes that its header allows; refused unread"
                ) from None
            raise


def decode(
    path: Path,
    fh: BinaryIO,
    max_pixels: int,
    how: Decoding,
    bounded: containers.Bounded | None = None,
    notes: list[str] | None = None,
) -> ImageFile:
    """Decode with Pillow from ``fh``; ``bounded``: ``fh`` itself, whose limit is set to
    what the declared image can need once Pillow has read the header."""
    notes = [] if notes is None else notes
    fh.seek(0)
    with Image.open(fh, formats=(how.name,)) as im:
        _check(path, im, max_pixels, how, bounded, notes)
        im.load()
        fmt, icc, mode = im.format or "", im.info.get("icc_profile"), im.mode
        exif, orientation = parse_exif(im, notes, keep=how.exif)
        encoder = how.settings(im, fh, turned(orientation))
        read_as, write_as = _modes(im, notes)
        pixels = np.asarray(im if read_as == mode else im.convert(read_as))
    if read_as.startswith("I;16"):
        pixels = pixels.astype(np.uint16)
    px = np.ascontiguousarray(orient(pixels, orientation, notes))
    return ImageFile(px, fmt, write_as, icc or None, exif, notes, encoder)


def _check(
    path: Path,
    im: Image.Image,
    max_pixels: int,
    how: Decoding,
    bounded: containers.Bounded | None,
    notes: list[str],
) -> None:
    """Refuse, before decoding, too many pixels, several images, a mode not kept; bound
    ``bounded`` to what the declared image can need."""
    if im.width * im.height > max_pixels:
        raise ImageError(f"{path}: {im.width}×{im.height} pixels exceeds the limit of {max_pixels}")
    if bounded is not None:
        bands = len(im.getbands())
        bounded.limit = max(bounded.tell(), *(t[2] for t in im.tile)) + (
            containers.sample_bound(im.width * im.height, bands)
        )
    frames = getattr(im, "n_frames", 1)
    if frames > 1 and how.several is None:
        raise ImageError(
            f"{path}: an animation or image sequence ({frames} frames): only single "
            "images are denoised, and the other frames would be lost; split it into "
            "single images first"
        )
    if frames > 1 and how.several is not None:
        notes.extend(how.several(frames))
    if im.mode not in PILLOW_MODES:
        raise ImageError(
            f"{path}: pixel mode {im.mode} is not supported (expected grey, grey+alpha, "
            "RGB, RGBA, palette or 16-bit grey; CMYK, 32-bit integer and other modes "
            "cannot be written back faithfully)"
        )


def _modes(im: Image.Image, notes: list[str]) -> tuple[str, str]:
    """(mode to convert to before reading, mode written back), noting what is not kept."""
    read_as, write_as = PILLOW_MODES[im.mode]
    if im.mode == "P" and "transparency" in im.info:
        read_as = write_as = "RGBA"
    if im.mode == "P":
        notes.append(PALETTE_NOTE)
    elif im.mode == "1":
        notes.append("1-bit image written back as 8-bit grey")
    return read_as, write_as


def _dpi(im: Image.Image, fh: BinaryIO, turned: bool) -> dict[str, Any]:
    """The resolution (dpi) of the upright image, if plausible."""
    if "dpi" not in im.info:
        return {}
    dpi = tuple(float(v) for v in im.info["dpi"])
    if len(dpi) == 2 and all(0 < v < 1e6 for v in dpi):
        return {"dpi": dpi[::-1] if turned else dpi}
    return {}


def _jpeg_settings(im: Image.Image, fh: BinaryIO, turned: bool) -> dict[str, Any]:
    """A JPEG's chroma subsampling, progressive coding and dpi."""
    enc: dict[str, Any] = {}
    sampling = JpegImagePlugin.get_sampling(im)
    if sampling >= 0:
        enc["subsampling"] = sampling
    if im.info.get("progressive") or im.info.get("progression"):
        enc["progressive"] = True
    return {**enc, **_dpi(im, fh, turned)}


def _webp_settings(im: Image.Image, fh: BinaryIO, turned: bool) -> dict[str, Any]:
    """Whether a WebP file's image is lossless (a VP8L chunk before any VP8 chunk)."""
    fh.seek(12)
    for _ in range(64):  # VP8X, ICCP, ANIM... come before the image chunk
        head = fh.read(8)
        if len(head) < 8:
            return {}
        kind, size = head[:4], int.from_bytes(head[4:], "little")
        if kind in (b"VP8L", b"VP8 "):
            return {"lossless": True} if kind == b"VP8L" else {}
        fh.seek(size + (size & 1), io.SEEK_CUR)
    return {}


def _mpo_note(frames: int) -> list[str]:
    return [
        f"the {frames - 1} further image(s) of this MPO JPEG (a stereo view, a depth "
        "or HDR gain map) not kept"
    ]


def save(
    name: str, loaded: ImageFile, px: np.ndarray, options: dict[str, Any], exif: bool = True
) -> Writer:
    """What writes ``px`` like ``loaded`` (grey+alpha as LA, its ICC profile and, with
    ``exif``, its EXIF data) with Pillow's ``name`` writer and ``options``."""
    im = Image.fromarray(px)
    if loaded.mode == "LA":
        im = im.convert("LA")
    options = dict(options)
    if loaded.icc_profile:
        options["icc_profile"] = loaded.icc_profile
    if loaded.exif and exif:
        options["exif"] = loaded.exif
    return lambda f: im.save(f, format=name, **options)


def writer(name: str, options: dict[str, Any], exif: bool = True) -> WriteFn:
    """The writer of a format that Pillow writes with ``options`` and the kept
    settings of a file of the same format, and that holds no float or 16-bit colour."""

    def write(path: Path, loaded: ImageFile, px: np.ndarray, encoder: dict[str, Any]) -> Writer:
        if is_deep(px):
            raise deep_refused(path, px)
        return save(name, loaded, px, {**options, **encoder}, exif)

    return write


def _is_avif(head: bytes) -> bool:
    """An AVIF's ``ftyp`` (a file that also names an HEVC brand is HEIF's)."""
    return containers.looks_like_avif(head) and not heif.looks_like_heif(head)


_8_BIT = frozenset({"grey", "colour", "alpha"})
JPEG = ImageFormat(
    "JPEG",
    (".jpg", ".jpeg", ".jfif", ".jpe"),
    sniff=lambda head: head[:3] == b"\xff\xd8\xff",
    read=partial(
        read_bounded,
        how=Decoding("JPEG", containers.jpeg_extent, _jpeg_settings, several=_mpo_note),
    ),
    write=writer("JPEG", {"quality": JPEG_QUALITY}),
    keeps=("subsampling", "progressive", "dpi"),
    holds=frozenset({"grey", "colour"}),
    aliases=("MPO",),  # a JPEG holding further images: its first is written as a JPEG
)
WEBP = ImageFormat(
    "WEBP",
    (".webp",),
    label="WebP",
    sniff=lambda head: head[:4] == b"RIFF" and head[8:12] == b"WEBP",
    read=partial(read_bounded, how=Decoding("WEBP", containers.webp_extent, _webp_settings)),
    write=writer("WEBP", {"quality": WEBP_QUALITY}),
    keeps=("lossless",),
    holds=_8_BIT,
)
BMP = ImageFormat(
    "BMP",
    (".bmp",),
    sniff=lambda head: head[:2] == b"BM",
    read=partial(read_bounded, how=Decoding("BMP", settings=_dpi)),
    write=writer("BMP", {}, exif=False),
    keeps=("dpi",),
    holds=_8_BIT,
)
AVIF = ImageFormat(
    "AVIF",
    (".avif",),
    sniff=_is_avif,
    read=partial(
        read_bounded,
        how=Decoding("AVIF", partial(containers.isobmff_extent, kind="AVIF")),
    ),
    write=writer("AVIF", {"quality": WEBP_QUALITY}),
    holds=_8_BIT,
    refusal="" if HAS_AVIF else "AVIF is not read by this Pillow: install Pillow >= 11.3",
)
