"""TIFF files: layout checks before any decoding, and the images Pillow cannot keep.

Every TIFF's directories are first checked by their entries alone
(:func:`check_directories`): tifffile and Pillow read every tag's values whole,
so a tag declaring gigabytes of values, or far more strip offsets than the
image has strips, is refused before any is read. The file is then opened with
`tifffile <https://pypi.org/project/tifffile/>`_ (BSD, numpy only), which parses
the first image's tags; :func:`read_tiff` then checks the layout before a single
strip or tile is decompressed:

* the pixel count against the caller's limit;
* every strip or tile present (no zero offset or byte count) and inside the file;
* the bytes all strips or tiles decode to, against the image's own size (a
  one-row image whose tiles are 4096 rows tall is refused) and against what the
  file's size can hold at the compression's best ratio (a tiny file declaring a
  huge image is refused).

A file of several full-resolution pages (an image stack or a multi-page scan)
is refused here: only its first page would be denoised and the others lost (the
folder job hands it to :mod:`n2n_infer.stacks`, which denoises it page by page); pages
that are reduced-resolution copies of the first (thumbnails) are dropped with a
note. 16-bit RGB/RGBA images (which Pillow decodes to 8 bits), 16-bit grey
stored white-is-zero or with alpha (which Pillow keeps inverted or cannot
decode) and floating-point grey or RGB images (which Pillow reads as mode ``F``
and cannot convert) are then decoded by tifffile; every other TIFF is decoded
by Pillow. Decompression is tifffile's and imagecodecs' (zlib, LZW,
PackBits, ...), never ours. :func:`encode_tiff` writes 16-bit colour and float
images with tifffile: Deflate with a predictor, the ICC profile kept.

:data:`FORMAT` is TIFF's entry in :data:`n2n_infer.imageio.FORMATS`: it reads and
writes through tifffile what Pillow cannot keep, and the rest through
:mod:`n2n_infer.pillow_formats` (Deflate), keeping the resolution.
"""

from __future__ import annotations

import io
import logging
import math
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import tifffile
from PIL import UnidentifiedImageError

from n2n_infer import pillow_formats
from n2n_infer.errors import ImageError
from n2n_infer.formats import (
    HOLDS,
    ImageFile,
    ImageFormat,
    Writer,
    is_deep,
    orient,
    turned,
    written,
)

__all__ = ["FORMAT", "STRIP_BYTES", "Tiff", "check_directories", "encode_tiff", "read_tiff"]

#: A TIFF's first four bytes (classic or BigTIFF, either byte order).
TIFF_MAGICS = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
ZLIB_LEVEL = 6
#: Pages after the first that are looked at to tell thumbnails from further images.
MAX_PAGES_CHECKED = 64
#: ResolutionUnit values (1 none, 2 inch, 3 centimetre).
RESOLUTION_UNITS = (1, 2, 3)
#: Uncompressed bytes per strip written (whole rows; at least one row per strip).
STRIP_BYTES = 64 << 10
ORIENTATION, ICC_PROFILE = 274, 34675
X_RESOLUTION, Y_RESOLUTION, RESOLUTION_UNIT = 282, 283, 296
#: Strips or tiles may decode to this many times the image's bytes, plus TILE_SLACK
#: (edge tiles are padded: a 1-row image in 16-row tiles decodes 16 rows).
MAX_DECODED_RATIO = 4
TILE_SLACK = 16 << 20
#: Compression -> the largest decoded/stored ratio it can reach (Deflate 1032:1,
#: LZW with a full table about 2700:1, PackBits 64:1); others are not bounded here.
MAX_COMPRESSION_RATIO = {1: 1, 5: 3000, 8: 1032, 32946: 1032, 32773: 64}
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
#: More samples per pixel than this (RGBA plus extra samples) is refused before decoding.
MAX_SAMPLES = 8
#: The values of all tags of the directories read (profiles, text, colour maps...), strip
#: and tile offsets and byte counts aside, may hold at most this many bytes together.
MAX_TAG_BYTES = 64 << 20
#: A directory with more entries than this is refused (tifffile's own limit).
MAX_ENTRIES = 4096
#: TIFF field type -> bytes per value (unknown types are skipped, as tifffile does).
TYPE_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
              16: 8, 17: 8, 18: 8}  # fmt: skip
#: StripOffsets, StripByteCounts, TileOffsets, TileByteCounts.
SEGMENT_TAGS = (273, 279, 324, 325)
#: Strip or tile offsets or byte counts beyond twice what the layout needs, plus this,
#: are refused before they are read.
SEGMENT_SLACK = 1024
#: Tags whose value is a directory read with the image's (EXIF, GPS, interoperability).
SUB_DIRECTORY_TAGS = (34665, 34853, 40965)


@dataclass(frozen=True)
class Tiff:
    """A TIFF decoded by tifffile.

    Attributes:
        pixels: uint16 H×W×3 / H×W×4 (16-bit RGB/RGBA, unassociated alpha), uint16
            H×W / H×W×2 (16-bit grey / grey+alpha, black is 0), or float32/float64
            H×W, H×W×3 (floating-point grey or RGB, values as stored); as stored:
            the orientation is not applied. None: the file passed the checks and
            Pillow decodes it.
        icc_profile: the ICC profile (tag 34675), if any.
        orientation: the Orientation tag as stored (may be missing or invalid: None).
        resolution: (x, y, unit) from the XResolution, YResolution and
            ResolutionUnit tags (unit 1 none, 2 inch, 3 cm), if the file has them.
        notes: what is not kept (thumbnail pages).
    """

    pixels: np.ndarray | None
    icc_profile: bytes | None = None
    orientation: object = None
    resolution: tuple[float, float, int] | None = None
    notes: tuple[str, ...] = ()


class _Collected(logging.Filter):
    """Turns what tifffile logs while this thread reads a file into that file's notes
    (instead of lines on stderr); other records pass."""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        bucket = getattr(self._local, "bucket", None)
        if bucket is None:
            return True
        bucket.append(record.getMessage())
        return False

    @contextmanager
    def collect(self) -> Iterator[list[str]]:
        self._local.bucket = bucket = []
        try:
            yield bucket
        finally:
            self._local.bucket = None


_TIFFFILE_LOG = _Collected()
logging.getLogger("tifffile").addFilter(_TIFFFILE_LOG)


def read_tiff(path: Path, max_pixels: int) -> Tiff:
    """Check the layout of the first image of a TIFF file; decode it if Pillow cannot.

    Returns:
        a :class:`Tiff`, with pixels for a 16-bit RGB/RGBA, 16-bit grey with alpha
        or stored white-is-zero, or floating-point image; without (None) when the
        file passed the checks and Pillow should decode it.

    Raises:
        ImageError: more than ``max_pixels`` pixels, missing or out-of-file strips
            or tiles, strips or tiles that decode to far more bytes than the image
            holds or than the file can hold, unsupported samples, more than one
            full-resolution page; names the file.
        Exception: tifffile's own errors on a malformed file (the caller turns
            them into :class:`ImageError`).
    """
    with _TIFFFILE_LOG.collect() as logged:
        tif = _read_tiff(path, max_pixels)
    # an invalid Orientation is noted where it is read (formats.orient), not twice
    logged = [m for m in dict.fromkeys(logged) if f"TiffTag {ORIENTATION} @" not in m]
    if not logged:
        return tif
    notes = (*tif.notes, *(f"tifffile: {m}" for m in logged))
    return Tiff(tif.pixels, tif.icc_profile, tif.orientation, tif.resolution, notes)


def _read_tiff(path: Path, max_pixels: int) -> Tiff:
    with open(path, "rb") as f:
        check_directories(path, f, os.fstat(f.fileno()).st_size, max_pixels)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        if page.imagewidth * page.imagelength * max(page.imagedepth, 1) > max_pixels:
            raise ImageError(
                f"{path}: {page.imagewidth}×{page.imagelength} pixels exceeds the limit "
                f"of {max_pixels}"
            )
        check_layout(path, page, tif.filehandle.size)
        notes = _other_pages(path, tif)
        resolution = _resolution(page)
        orientation = page.tags.valueof(ORIENTATION)
        kind = _kind(path, page)
        if kind is None:
            return Tiff(None, orientation=orientation, resolution=resolution, notes=notes)
        pixels = page.asarray(maxworkers=1)
        if page.axes.startswith("S"):  # planar: samples first
            pixels = np.moveaxis(pixels, 0, -1)
        icc = page.tags.valueof(ICC_PROFILE)
        white_is_zero = int(page.photometric) == 0
        associated = tuple(page.extrasamples or ()) == (1,)
    if kind == "float":
        _check_float(path, pixels)
    else:
        if kind == "grey16" and pixels.ndim == 3 and pixels.shape[2] == 1:
            pixels = pixels[..., 0]
        if white_is_zero:  # 0 is white: stored the other way round from what is written
            pixels = pixels.copy()
            grey = pixels if pixels.ndim == 2 else pixels[..., 0]
            np.subtract(65535, grey, out=grey)
        if associated and pixels.ndim == 3 and pixels.shape[2] in (2, 4):
            pixels = _unpremultiply(pixels)
    icc = bytes(icc) if isinstance(icc, (bytes, bytearray, np.ndarray)) else None
    return Tiff(np.ascontiguousarray(pixels), icc, orientation, resolution, notes)


def check_directories(path: Path, f: BinaryIO, size: int, max_pixels: int) -> None:
    """Check the directories that are read of a TIFF file (the first
    :data:`MAX_PAGES_CHECKED` + 1 pages and their EXIF/GPS directories) by their
    entries alone, before any tag value is: tifffile and Pillow read every value
    whole, however large its declared count.

    Raises:
        ImageError: a page of more than ``max_pixels`` pixels, more strip or tile
            offsets or byte counts than its size and layout need, tag values of more
            than :data:`MAX_TAG_BYTES` bytes together, or a directory of more than
            :data:`MAX_ENTRIES` entries.
    """
    f.seek(0)
    head = f.read(16)
    big = head[2:4] in (b"+\0", b"\0+")
    layout = _Layout("<" if head[:2] == b"II" else ">", big)
    if len(head) < (16 if big else 8):
        return  # tifffile says what is wrong
    offset = layout.offset(head[8:16] if big else head[4:8])
    budget = [MAX_TAG_BYTES]
    seen: set[int] = set()
    for page in range(MAX_PAGES_CHECKED + 1):
        if not 0 < offset < size or offset in seen:
            return
        seen.add(offset)
        entries, offset = layout.directory(path, f, offset)
        _check_entries(path, page, entries, layout, budget, max_pixels)
        for tag, _, count, value in entries:
            sub = layout.offset(value) if tag in SUB_DIRECTORY_TAGS and count == 1 else 0
            if 0 < sub < size and sub not in seen:
                seen.add(sub)
                sub_entries, _ = layout.directory(path, f, sub)
                _check_entries(path, page, sub_entries, layout, budget, max_pixels)


#: A directory entry: (tag, type, count, the raw value or offset field).
_Entry = tuple[int, int, int, bytes]


@dataclass(frozen=True)
class _Layout:
    """Byte order (``"<"`` or ``">"``) and flavour (BigTIFF or classic) of a TIFF file."""

    order: str
    big: bool

    @property
    def field(self) -> int:
        """Bytes of an offset, and of an entry's value field."""
        return 8 if self.big else 4

    def offset(self, raw: bytes) -> int:
        return int.from_bytes(raw[: self.field], "little" if self.order == "<" else "big")

    def number(self, kind: int, count: int, raw: bytes) -> int | None:
        """The single SHORT, LONG or LONG8 value held in an entry's value field."""
        width = {3: 2, 4: 4, 16: 8}.get(kind)
        if count != 1 or width is None or width > self.field:
            return None
        return int.from_bytes(raw[:width], "little" if self.order == "<" else "big")

    def directory(self, path: Path, f: BinaryIO, offset: int) -> tuple[list[_Entry], int]:
        """The entries of the directory at ``offset``, and the next one's offset (0 at
        the end or when cut off)."""
        f.seek(offset)
        raw = f.read(8 if self.big else 2)
        if len(raw) < (8 if self.big else 2):
            return [], 0
        count = int.from_bytes(raw, "little" if self.order == "<" else "big")
        if count > MAX_ENTRIES:
            raise ImageError(
                f"{path}: TIFF directory at offset {offset} with {count} entries (at most "
                f"{MAX_ENTRIES}): corrupt"
            )
        size = 20 if self.big else 12
        data = f.read(count * size + self.field)
        entries = []
        for i in range(min(count, len(data) // size)):
            tag, kind = struct.unpack_from(self.order + "HH", data, i * size)
            n = self.offset(data[i * size + 4 : i * size + 4 + self.field])
            entries.append((tag, kind, n, data[i * size + 4 + self.field : (i + 1) * size]))
        tail = data[count * size :]
        return entries, self.offset(tail) if len(tail) == self.field else 0


def _check_entries(
    path: Path,
    page: int,
    entries: list[_Entry],
    layout: _Layout,
    budget: list[int],
    max_pixels: int,
) -> None:
    """Refuse a directory whose values are larger than its image can need; ``budget``:
    the tag bytes left (shared by all directories)."""
    segments = 2 * _segments_needed(path, page, entries, layout, max_pixels) + SEGMENT_SLACK
    for tag, kind, count, _ in entries:
        if tag in SEGMENT_TAGS:  # the exact count is checked by check_layout
            if count > segments:
                raise ImageError(
                    f"{path}: TIFF page {page} declares {count} strip or tile offsets or byte "
                    f"counts (tag {tag}), far more than its size and layout need: corrupt"
                )
            continue
        nbytes = count * TYPE_BYTES.get(kind, 0)
        if nbytes > layout.field:  # not held in the entry: read from elsewhere
            budget[0] -= nbytes
            if budget[0] < 0:
                raise ImageError(
                    f"{path}: TIFF tag values of more than {MAX_TAG_BYTES} bytes (tag {tag} of "
                    f"page {page} declares {nbytes} bytes): refused"
                )


def _segments_needed(
    path: Path, page: int, entries: list[_Entry], layout: _Layout, max_pixels: int
) -> int:
    """The most strips or tiles a directory's image can have (as :func:`_layout` counts
    them), from its entries; refuses more than ``max_pixels`` pixels."""
    values = {tag: layout.number(kind, count, raw) for tag, kind, count, raw in entries}
    width, length = values.get(256), values.get(257)
    if not width or not length:
        return 1  # no image: tifffile refuses it
    depth = max(values.get(32997) or 1, 1)
    if width * length * depth > max_pixels:
        which = "" if page == 0 else f"page {page}: "
        raise ImageError(
            f"{path}: {which}{width}×{length} pixels exceeds the limit of {max_pixels}"
        )
    samples = min(max(values.get(277) or 1, 1), MAX_SAMPLES)
    planes = samples if values.get(284) == 2 else 1
    if 322 in values or 323 in values:  # tiled
        tile_w, tile_l = max(values.get(322) or 1, 1), max(values.get(323) or 1, 1)
        tiles = math.ceil(length / tile_l) * math.ceil(width / tile_w)
        return planes * math.ceil(depth / max(values.get(32998) or 1, 1)) * tiles
    rows = max(1, min(values.get(278) or length, length))
    return planes * depth * math.ceil(length / rows)


def _other_pages(path: Path, tif: Any) -> tuple[str, ...]:
    """Notes for thumbnail pages; refuses a file with a second full-resolution page.

    Raises:
        ImageError: the file holds further full-resolution pages (a stack or a
            multi-page document), which would be lost.
    """
    count = len(tif.pages)
    if count <= 1:
        return ()
    for i in range(1, min(count, MAX_PAGES_CHECKED + 1)):
        if not int(tif.pages[i].subfiletype) & 1:  # not a reduced-resolution copy
            raise ImageError(
                f"{path}: multi-page TIFF ({count} pages; an image stack or a multi-page "
                "document): read as one image, only its first page would be denoised and the "
                "other pages would be lost; n2n-infer batch denoises it as a stack, page by "
                "page (n2n_infer.stacks)"
            )
    if count > MAX_PAGES_CHECKED + 1:
        raise ImageError(
            f"{path}: TIFF with {count} pages: only single images (with a thumbnail) are "
            "read as one image; n2n-infer batch denoises stacks page by page (n2n_infer.stacks)"
        )
    return (f"{count - 1} reduced-resolution page(s) (thumbnails) not kept",)


def _resolution(page: Any) -> tuple[float, float, int] | None:
    """(x, y, unit) of a page's resolution tags, or None when absent or invalid."""
    try:
        values = [page.tags.valueof(tag) for tag in (X_RESOLUTION, Y_RESOLUTION)]
        xy = [v[0] / v[1] if isinstance(v, tuple) else float(v) for v in values]
        unit = int(page.tags.valueof(RESOLUTION_UNIT, 2))
    except (TypeError, ValueError, ZeroDivisionError, IndexError):
        return None
    if unit not in RESOLUTION_UNITS or not all(math.isfinite(v) and v > 0 for v in xy):
        return None
    return xy[0], xy[1], unit


def check_layout(path: Path, page: Any, file_size: int) -> None:
    """Refuse missing, short, out-of-file or oversized strips/tiles before decoding any.

    Raises:
        ImageError: see :func:`read_tiff`.
    """
    samples, bits = page.samplesperpixel, page.bitspersample
    if not (1 <= samples <= MAX_SAMPLES and 1 <= bits <= 64 and page.planarconfig in (1, 2)):
        raise ImageError(
            f"{path}: TIFF with {samples} samples per pixel of {bits} bits, planar "
            f"configuration {int(page.planarconfig)} is not supported"
        )
    offsets, counts = page.dataoffsets, page.databytecounts
    what = "tile" if page.is_tiled else "strip"
    expected, image_bytes = _layout(page)
    if len(offsets) != expected or len(counts) != expected:
        raise ImageError(
            f"{path}: TIFF has {len(offsets)} {what} offsets and {len(counts)} byte counts, "
            f"expected {expected} for its size and layout"
        )
    sizes = _segment_bytes(page)
    compression = int(page.compression)
    for i, (offset, count, size) in enumerate(zip(offsets, counts, sizes, strict=True)):
        if offset <= 0 or count <= 0 or offset + count > file_size:
            raise ImageError(
                f"{path}: TIFF {what} {i} (offset {offset}, {count} bytes) is missing or lies "
                f"past the end of the file ({file_size} bytes): truncated TIFF?"
            )
        if compression == 1 and count < size:
            raise ImageError(
                f"{path}: truncated TIFF {what} {i}: {count} of {size} uncompressed bytes"
            )
    decoded = sum(sizes)
    if decoded > MAX_DECODED_RATIO * image_bytes + TILE_SLACK:
        raise ImageError(
            f"{path}: TIFF {what}s decode to {decoded} bytes for an image of {image_bytes} "
            f"bytes (more than {MAX_DECODED_RATIO}× + {TILE_SLACK}): refused"
        )
    ratio = MAX_COMPRESSION_RATIO.get(compression)
    if ratio is not None and decoded > ratio * file_size + 1024:
        raise ImageError(
            f"{path}: TIFF declares {decoded} bytes of pixel data, more than a file of "
            f"{file_size} bytes can hold with compression {compression}: truncated or corrupt"
        )


def _layout(page: Any) -> tuple[int, int]:
    """(number of strips or tiles the image needs, bytes of the image itself)."""
    width, length = page.imagewidth, page.imagelength
    depth, samples, bits = max(page.imagedepth, 1), page.samplesperpixel, page.bitspersample
    planes = samples if page.planarconfig == 2 else 1
    image_bytes = depth * length * math.ceil(width * samples * bits / 8)
    if page.is_tiled:
        count = planes * math.ceil(depth / max(page.tiledepth, 1))
        count *= math.ceil(length / page.tilelength) * math.ceil(width / page.tilewidth)
        return count, image_bytes
    rows = max(1, min(page.rowsperstrip or length, length))
    return planes * depth * math.ceil(length / rows), image_bytes


def _segment_bytes(page: Any) -> list[int]:
    """Bytes each strip or tile decodes to, in file order (call after :func:`_layout`)."""
    width, length = page.imagewidth, page.imagelength
    depth, samples, bits = max(page.imagedepth, 1), page.samplesperpixel, page.bitspersample
    planes = samples if page.planarconfig == 2 else 1
    per_pixel = samples // planes
    if page.is_tiled:
        count, _ = _layout(page)
        row = math.ceil(page.tilewidth * per_pixel * bits / 8)
        return [max(page.tiledepth, 1) * page.tilelength * row] * count
    rows = max(1, min(page.rowsperstrip or length, length))
    row = math.ceil(width * per_pixel * bits / 8)
    strip_rows = [min(rows, length - y) for y in range(0, length, rows)]
    return [n * row for n in strip_rows] * (planes * depth)


def _kind(path: Path, page: Any) -> str | None:
    """ "colour16", "grey16", "float", or None (Pillow decodes it); refuses what neither keeps."""
    fmt, bits, samples = int(page.sampleformat), page.bitspersample, page.samplesperpixel
    photometric, predictor = int(page.photometric), int(page.predictor)
    if predictor not in ((1, 2, 3) if fmt == 3 else (1, 2)):
        raise ImageError(f"{path}: TIFF Predictor {predictor} is not supported for these samples")
    if fmt == 3:  # IEEE floating point
        if bits not in (32, 64) or (photometric, samples) not in ((1, 1), (2, 3)):
            raise ImageError(
                f"{path}: floating-point TIFF with {bits}-bit samples, photometric "
                f"{photometric} and {samples} samples per pixel is not supported "
                "(expected 32- or 64-bit grey or RGB)"
            )
        return "float"
    if fmt not in (1, 0) or bits > 16:
        kind = "signed integer" if fmt == 2 else f"{bits}-bit sample format {fmt}"
        raise ImageError(
            f"{path}: TIFF with {kind} samples is not supported "
            "(expected unsigned 8- or 16-bit integers, or 32/64-bit floats in [0, 1])"
        )
    if bits == 16 and photometric == 2 and samples in (3, 4):
        return "colour16"
    if bits == 16 and photometric in (0, 1) and (photometric == 0 or samples == 2):
        return "grey16"  # Pillow keeps white-is-zero inverted and cannot decode grey+alpha
    return None


def _check_float(path: Path, pixels: np.ndarray) -> None:
    if pixels.dtype not in FLOAT_DTYPES:
        raise ImageError(f"{path}: floating-point TIFF decoded as {pixels.dtype}")
    lo, hi = float(np.min(pixels)), float(np.max(pixels))  # NaN propagates
    if not (lo >= 0.0 and hi <= 1.0):
        raise ImageError(
            f"{path}: floating-point TIFF with values in [{lo:.9g}, {hi:.9g}]: only values "
            "in [0, 1] (finite) can be denoised"
        )


def _unpremultiply(px: np.ndarray) -> np.ndarray:
    """Associated (premultiplied) 16-bit alpha (the last channel) to unassociated,
    rounding; alpha 0 gives 0."""
    alpha = px[..., -1:].astype(np.uint64)
    colour = (px[..., :-1].astype(np.uint64) * 65535 + alpha // 2) // np.maximum(alpha, 1)
    colour = np.where(alpha == 0, 0, np.minimum(colour, 65535))
    return np.concatenate([colour, alpha], axis=2).astype(np.uint16)


def encode_tiff(
    pixels: np.ndarray,
    icc_profile: bytes | None = None,
    resolution: tuple[float, float, int] | None = None,
) -> bytes:
    """Encode 16-bit colour or floating-point pixels as a TIFF file's bytes (tifffile).

    ``pixels``: uint16 H×W×3 / H×W×4 (RGB / RGBA, unassociated alpha), or float32 /
    float64 H×W / H×W×3 (grey / RGB). Little-endian, chunky, Deflate (zlib level
    :data:`ZLIB_LEVEL`) with horizontal (integers) or floating-point predictor,
    strips of about :data:`STRIP_BYTES`, the ICC profile and the ``resolution``
    (x, y, unit as in :class:`Tiff`) when given.

    Raises:
        ImageError: any other dtype or shape, or an empty image.
    """
    colour16 = pixels.dtype == np.uint16 and pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    floats = pixels.dtype in FLOAT_DTYPES and (
        pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)
    )
    if not (colour16 or floats) or pixels.size == 0:
        raise ImageError(
            "TIFF writer expects uint16 H×W×3/H×W×4 or float H×W/H×W×3, got "
            f"{pixels.dtype} {pixels.shape}"
        )
    row_bytes = pixels[0].nbytes
    buf = io.BytesIO()
    tifffile.imwrite(
        buf,
        pixels,
        photometric="minisblack" if pixels.ndim == 2 else "rgb",
        planarconfig="contig",
        extrasamples=("unassalpha",) if pixels.ndim == 3 and pixels.shape[2] == 4 else None,
        compression="zlib",
        compressionargs={"level": ZLIB_LEVEL},
        predictor=True,
        rowsperstrip=max(1, STRIP_BYTES // row_bytes),
        iccprofile=icc_profile or None,
        resolution=resolution[:2] if resolution else None,
        resolutionunit=resolution[2] if resolution else None,
        metadata=None,
        software=False,
    )
    return buf.getvalue()


#: How Pillow decodes the other TIFFs: the pages and their thumbnails are checked by
#: :func:`read_tiff`; Pillow's EXIF data of a TIFF is its image directory (not kept).
_PILLOW = pillow_formats.Decoding("TIFF", several=lambda frames: [], exif=False)


def _load(path: Path, max_pixels: int) -> ImageFile:
    """A TIFF, checked by :func:`read_tiff`, decoded there or by Pillow."""
    tif = read_tiff(path, max_pixels)
    if tif.pixels is not None:
        return _image_file(tif)
    try:
        with open(path, "rb") as raw:
            loaded = pillow_formats.decode(path, raw, max_pixels, _PILLOW)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: a TIFF layout that Pillow cannot decode") from None
    loaded.notes.extend(tif.notes)
    loaded.encoder.update(_settings(tif))  # read once, by tifffile
    return loaded


def _image_file(tif: Tiff) -> ImageFile:
    notes = list(tif.notes)
    assert tif.pixels is not None
    px = np.ascontiguousarray(orient(tif.pixels, tif.orientation, notes))
    if px.dtype.kind == "f":
        mode = "F"
    elif px.ndim == 2:
        mode = "I;16"
    elif px.shape[2] == 2:  # 16-bit grey+alpha: widened, as a PNG's
        px = np.ascontiguousarray(px[..., [0, 0, 0, 1]])
        mode = "RGBA"
        notes.append("16-bit grey+alpha TIFF: written back as 16-bit RGBA")
    else:
        mode = "RGBA" if px.shape[2] == 4 else "RGB"
    return ImageFile(px, "TIFF", mode, tif.icc_profile, None, notes, _settings(tif))


def _settings(tif: Tiff) -> dict[str, Any]:
    """A TIFF's resolution as tifffile read it, (x, y, unit) of the upright image."""
    if tif.resolution is None:
        return {}
    x, y, unit = tif.resolution
    return {"tiff_resolution": (y, x, unit) if turned(tif.orientation) else (x, y, unit)}


def _save(path: Path, loaded: ImageFile, px: np.ndarray, encoder: dict[str, Any]) -> Writer:
    """16-bit colour and float through :func:`encode_tiff`, anything else through Pillow
    (Deflate); the resolution kept."""
    resolution = encoder.get("tiff_resolution")
    if is_deep(px):
        return written(encode_tiff(px, loaded.icc_profile, resolution))
    options: dict[str, Any] = {"compression": "tiff_deflate"}
    if resolution is not None:
        x, y, unit = resolution
        options.update(x_resolution=x, y_resolution=y, resolution_unit=unit)
    return pillow_formats.save("TIFF", loaded, px, options)


FORMAT = ImageFormat(
    "TIFF",
    (".tif", ".tiff"),
    sniff=lambda head: head[:4] in TIFF_MAGICS,
    read=_load,
    write=_save,
    keeps=("tiff_resolution",),
    holds=HOLDS,
)
