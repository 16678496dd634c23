"""16-bit colour TIFF (RGB or RGBA, 16 bits per sample), which Pillow cannot keep.

Pillow decodes these files to 8 bits and cannot write them; this small baseline
TIFF codec uses only numpy, zlib and struct.

Reading (the first image of the file only):

* classic TIFF, little- (``II``) or big-endian (``MM``); BigTIFF is refused;
* PhotometricInterpretation 2 (RGB) with SamplesPerPixel 3, or 4 where the fourth
  sample is alpha (ExtraSamples 2 unassociated, or absent; 1 associated, which is
  un-premultiplied on reading);
* BitsPerSample 16 for every sample, SampleFormat absent or 1 (unsigned integer);
* PlanarConfiguration 1 (chunky) or 2 (planar); strips or tiles (edge tiles padded);
* Compression 1 (none), 5 (LZW, MSB-first codes with early change as libtiff
  writes it), 8 and 32946 (Deflate), 32773 (PackBits); Predictor 1 (none) or
  2 (horizontal differencing of 16-bit samples);
* the ICC profile (tag 34675) and the Orientation (tag 274) are returned; the
  other tags (EXIF IFD, XMP, resolution, descriptions) are ignored.

Anything else (JPEG or other compression, 1/8/32-bit or floating-point samples,
palette, YCbCr, CMYK or grey images, the floating-point predictor, data past the
end of the file, inconsistent counts) raises :class:`~n2n_infer.errors.ImageError`.
The pixel count is checked before any pixel data is allocated, and every strip or
tile is decompressed to at most the size its header implies.

Writing: little-endian, chunky, Deflate (zlib level :data:`ZLIB_LEVEL`) with
horizontal differencing, strips of about :data:`STRIP_BYTES` uncompressed bytes,
unassociated alpha, and the ICC profile when one is given.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from n2n_infer.errors import ImageError
from n2n_infer.png16 import bounded_inflate

__all__ = ["Tiff16", "decode_tiff16", "encode_tiff16", "is_tiff16_colour"]

ZLIB_LEVEL = 6
#: Uncompressed bytes per strip written (whole rows; at least one row per strip).
STRIP_BYTES = 64 << 10

IMAGE_WIDTH, IMAGE_LENGTH, BITS_PER_SAMPLE, COMPRESSION = 256, 257, 258, 259
PHOTOMETRIC, FILL_ORDER, STRIP_OFFSETS, ORIENTATION = 262, 266, 273, 274
SAMPLES_PER_PIXEL, ROWS_PER_STRIP, STRIP_BYTE_COUNTS = 277, 278, 279
PLANAR_CONFIGURATION, PREDICTOR = 284, 317
TILE_WIDTH, TILE_LENGTH, TILE_OFFSETS, TILE_BYTE_COUNTS = 322, 323, 324, 325
EXTRA_SAMPLES, SAMPLE_FORMAT, ICC_PROFILE = 338, 339, 34675

TAG_NAMES = {
    IMAGE_WIDTH: "ImageWidth",
    IMAGE_LENGTH: "ImageLength",
    BITS_PER_SAMPLE: "BitsPerSample",
    COMPRESSION: "Compression",
    PHOTOMETRIC: "PhotometricInterpretation",
    FILL_ORDER: "FillOrder",
    STRIP_OFFSETS: "StripOffsets",
    ORIENTATION: "Orientation",
    SAMPLES_PER_PIXEL: "SamplesPerPixel",
    ROWS_PER_STRIP: "RowsPerStrip",
    STRIP_BYTE_COUNTS: "StripByteCounts",
    PLANAR_CONFIGURATION: "PlanarConfiguration",
    PREDICTOR: "Predictor",
    TILE_WIDTH: "TileWidth",
    TILE_LENGTH: "TileLength",
    TILE_OFFSETS: "TileOffsets",
    TILE_BYTE_COUNTS: "TileByteCounts",
    EXTRA_SAMPLES: "ExtraSamples",
    SAMPLE_FORMAT: "SampleFormat",
    ICC_PROFILE: "ICCProfile",
}
#: Compression -> name, for the compressions this module decodes.
COMPRESSIONS = {1: "none", 5: "LZW", 8: "Deflate", 32946: "Deflate", 32773: "PackBits"}
PHOTOMETRIC_NAMES = {
    0: "WhiteIsZero grey",
    1: "BlackIsZero grey",
    2: "RGB",
    3: "palette",
    4: "transparency mask",
    5: "CMYK",
    6: "YCbCr",
    8: "CIELab",
}
#: Field type -> size in bytes (TIFF 6.0 types 1-13, BigTIFF's 16-18).
TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
TYPE_SIZES |= {16: 8, 17: 8, 18: 8}
#: Integer field types -> struct code.
INT_CODES = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 13: "I", 16: "Q", 17: "q", 18: "Q"}
UNDEFINED, SHORT, LONG = 7, 3, 4
LZW_CLEAR, LZW_EOI = 256, 257
#: 12-bit LZW codes are cut out of the bit stream this many at a time.
LZW_CHUNK = 1024
#: An LZW string table: the 256 single bytes, then Clear and EndOfInformation.
_LZW_ROOTS = [bytes([i]) for i in range(256)] + [b"", b""]


class _Malformed(ImageError):
    """Why a TIFF cannot be decoded; :func:`decode_tiff16` puts the file's path in front."""


@dataclass(frozen=True)
class Tiff16:
    """A decoded 16-bit colour TIFF.

    Attributes:
        pixels: uint16 H×W×3 (RGB) or H×W×4 (RGBA, unassociated alpha), as stored:
            the orientation is not applied.
        icc_profile: the ICC profile (tag 34675), if any.
        orientation: the Orientation tag (1-8; 1 when absent or invalid).
    """

    pixels: np.ndarray
    icc_profile: bytes | None = None
    orientation: int = 1


class _Source:
    """Bounds-checked reads from file bytes or from a seekable binary file."""

    def __init__(self, source: bytes | bytearray | memoryview | BinaryIO) -> None:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = source
            self.size = len(data)
            self._read: Callable[[int, int], bytes] = lambda off, n: bytes(data[off : off + n])
        else:
            f = source
            self.size = f.seek(0, 2)

            def read(off: int, n: int) -> bytes:
                f.seek(off)
                return f.read(n)

            self._read = read

    def read(self, offset: int, n: int, what: str) -> bytes:
        if offset + n > self.size:
            raise _Malformed(
                f"{what} (offset {offset}, {n} bytes) lies past the end of the file "
                f"({self.size} bytes): truncated TIFF?"
            )
        data = self._read(offset, n)
        if len(data) != n:
            raise _Malformed(f"{what}: truncated TIFF ({len(data)} of {n} bytes read)")
        return data


@dataclass
class _Ifd:
    """The first image file directory: tag -> (type, count, inline bytes or offset)."""

    source: _Source
    order: str  # struct byte order: "<" or ">"
    bigtiff: bool
    entries: dict[int, tuple[int, int, bytes | int]]

    def values(self, tag: int, default: tuple[int, ...] | None = None) -> tuple[int, ...]:
        """The integer values of ``tag``; ``default`` when absent (None: required)."""
        name = TAG_NAMES.get(tag, f"tag {tag}")
        if tag not in self.entries:
            if default is None:
                raise _Malformed(f"required TIFF tag {name} ({tag}) is missing")
            return default
        kind, count, where = self.entries[tag]
        code = INT_CODES.get(kind)
        if code is None:
            raise _Malformed(f"TIFF tag {name} ({tag}) has field type {kind}, not an integer")
        raw = self.bytes_of(tag, where, count * TYPE_SIZES[kind])
        return struct.unpack(f"{self.order}{count}{code}", raw)

    def value(self, tag: int, default: int | None = None) -> int:
        """The single integer value of ``tag``; ``default`` when absent (None: required)."""
        values = self.values(tag, None if default is None else (default,))
        if len(values) != 1:
            name = TAG_NAMES.get(tag, f"tag {tag}")
            raise _Malformed(f"TIFF tag {name} ({tag}) has {len(values)} values, expected 1")
        return values[0]

    def bytes_of(self, tag: int, where: bytes | int, n: int) -> bytes:
        if isinstance(where, bytes):
            return where[:n]
        return self.source.read(where, n, f"the values of TIFF tag {TAG_NAMES.get(tag, tag)}")


def _read_ifd(source: _Source, bigtiff_ok: bool = True) -> _Ifd:
    """Parse the header and the first IFD (classic TIFF, or BigTIFF if ``bigtiff_ok``)."""
    if source.size < 8:
        raise _Malformed(f"not a TIFF file (only {source.size} bytes)")
    head = source.read(0, 8, "the TIFF header")
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    (magic,) = struct.unpack(f"{order or '<'}H", head[2:4])
    if order is None or magic not in (42, 43):
        raise _Malformed(f"not a TIFF file (header {head[:4]!r})")
    bigtiff = magic == 43
    if bigtiff and not bigtiff_ok:
        raise _Malformed("BigTIFF is not supported (only classic TIFF)")
    if bigtiff:
        offset_size, zero, first = struct.unpack(
            f"{order}HHQ", source.read(4, 12, "BigTIFF header")
        )
        if offset_size != 8 or zero != 0:
            raise _Malformed(f"malformed BigTIFF header (offset size {offset_size})")
        count_code, entry_size, value_code, value_size = "Q", 20, "Q", 8
    else:
        (first,) = struct.unpack(f"{order}I", head[4:8])
        count_code, entry_size, value_code, value_size = "H", 12, "I", 4
    if first < 8:
        raise _Malformed(f"the first IFD offset {first} points into the TIFF header")
    count_bytes = struct.calcsize(count_code)
    (n,) = struct.unpack(f"{order}{count_code}", source.read(first, count_bytes, "the first IFD"))
    if n == 0:
        raise _Malformed("the first IFD has no entries")
    block = source.read(first + count_bytes, n * entry_size, f"the first IFD's {n} entries")
    entries: dict[int, tuple[int, int, bytes | int]] = {}
    layout = f"{order}HH{count_code if bigtiff else 'I'}"
    for pos in range(0, n * entry_size, entry_size):
        tag, kind, count = struct.unpack_from(layout, block, pos)
        field = block[pos + entry_size - value_size : pos + entry_size]
        size = TYPE_SIZES.get(kind)
        if size is None or tag in entries:  # unknown field types are skipped (TIFF 6.0)
            continue
        if size * count <= value_size:
            entries[tag] = (kind, count, field[: size * count])
        else:
            entries[tag] = (kind, count, struct.unpack(f"{order}{value_code}", field)[0])
    return _Ifd(source, order, bigtiff, entries)


def is_tiff16_colour(source: bytes | bytearray | memoryview | BinaryIO) -> bool:
    """True when ``source`` (a TIFF file's bytes, or the seekable file) is a 16-bit RGB TIFF.

    That is: its first image has PhotometricInterpretation 2 (RGB) and 16 bits in
    every sample. Such files are for :func:`decode_tiff16` (which may still refuse
    them, e.g. BigTIFF or JPEG compression, rather than losing 8 bits); other files,
    and anything that is not a readable TIFF, give False.
    """
    try:
        ifd = _read_ifd(_Source(source))
        return ifd.value(PHOTOMETRIC) == 2 and set(ifd.values(BITS_PER_SAMPLE, (1,))) == {16}
    except _Malformed:
        return False


def decode_tiff16(path: Path, data: bytes, max_pixels: int) -> Tiff16:
    """Decode the first image of a 16-bit colour TIFF held in ``data`` (read from ``path``).

    Raises:
        ImageError: naming ``path`` and the reason: not a classic TIFF, another
            photometric interpretation, sample size, sample format or compression
            (see the module's docstring), more than ``max_pixels`` pixels, data
            past the end of the file, truncated or oversized strips or tiles.
    """
    try:
        return _decode(_Source(data), max_pixels)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from None
    except (struct.error, IndexError, ValueError, OverflowError) as exc:  # a missed check
        raise ImageError(f"{path}: malformed TIFF ({type(exc).__name__}: {exc})") from None


def _decode(source: _Source, max_pixels: int) -> Tiff16:
    ifd = _read_ifd(source, bigtiff_ok=False)
    photometric = ifd.value(PHOTOMETRIC)
    if photometric != 2:
        kind = PHOTOMETRIC_NAMES.get(photometric, "unknown")
        raise _Malformed(
            f"TIFF PhotometricInterpretation {photometric} ({kind}) is not supported, only 2 (RGB)"
        )
    spp = ifd.value(SAMPLES_PER_PIXEL, 1)
    if spp not in (3, 4):
        raise _Malformed(f"TIFF SamplesPerPixel {spp} is not supported, only 3 (RGB) or 4 (RGBA)")
    bits = ifd.values(BITS_PER_SAMPLE, (1,))
    if len(bits) not in (1, spp) or set(bits) != {16}:
        raise _Malformed(f"TIFF BitsPerSample {bits} is not supported, only 16 for every sample")
    formats = ifd.values(SAMPLE_FORMAT, (1,))
    if len(formats) not in (1, spp) or set(formats) != {1}:
        raise _Malformed(
            f"TIFF SampleFormat {formats} is not supported, only 1 (unsigned integer); "
            "2 is signed, 3 floating point"
        )
    extra = ifd.values(EXTRA_SAMPLES, (2,) if spp == 4 else ())  # absent: alpha
    if len(extra) != spp - 3 or (extra and extra[0] not in (1, 2)):
        raise _Malformed(
            f"TIFF ExtraSamples {extra} with {spp} samples per pixel is not supported "
            "(only a fourth sample that is alpha: 1 associated or 2 unassociated)"
        )
    compression = ifd.value(COMPRESSION, 1)
    if compression not in COMPRESSIONS:
        raise _Malformed(
            f"TIFF Compression {compression} is not supported "
            "(only 1 none, 5 LZW, 8/32946 Deflate, 32773 PackBits)"
        )
    predictor = ifd.value(PREDICTOR, 1)
    if predictor not in (1, 2):
        raise _Malformed(
            f"TIFF Predictor {predictor} is not supported (only 1 none, 2 horizontal differencing)"
        )
    planar = ifd.value(PLANAR_CONFIGURATION, 1)
    if planar not in (1, 2):
        raise _Malformed(f"TIFF PlanarConfiguration {planar} is invalid (1 chunky, 2 planar)")
    if ifd.value(FILL_ORDER, 1) != 1:
        raise _Malformed("TIFF FillOrder 2 (least significant bit first) is not supported")
    w, h = ifd.value(IMAGE_WIDTH), ifd.value(IMAGE_LENGTH)
    if w <= 0 or h <= 0:
        raise _Malformed(f"invalid TIFF size {w}×{h}")
    if w * h > max_pixels:
        raise _Malformed(f"{w}×{h} pixels exceeds the limit of {max_pixels}")
    pixels = _read_pixels(ifd, w, h, spp, planar, compression, predictor, max_pixels)
    if spp == 4 and extra[0] == 1:
        pixels = _unpremultiply(pixels)
    icc = None
    if ICC_PROFILE in ifd.entries:
        kind, count, where = ifd.entries[ICC_PROFILE]
        if kind not in (1, 7):
            raise _Malformed(f"TIFF ICC profile tag has field type {kind}, not bytes")
        icc = ifd.bytes_of(ICC_PROFILE, where, count) or None
    try:
        orientation = ifd.value(ORIENTATION, 1)
    except _Malformed:
        orientation = 1
    return Tiff16(pixels, icc, orientation if 1 <= orientation <= 8 else 1)


def _read_pixels(
    ifd: _Ifd,
    w: int,
    h: int,
    spp: int,
    planar: int,
    compression: int,
    predictor: int,
    max_pixels: int,
) -> np.ndarray:
    """Decode every strip or tile into a uint16 H×W×spp array."""
    planes = spp if planar == 2 else 1
    chans = spp // planes  # samples per pixel within one strip or tile
    if TILE_WIDTH in ifd.entries or TILE_OFFSETS in ifd.entries:
        kind, offsets_tag, counts_tag = "tile", TILE_OFFSETS, TILE_BYTE_COUNTS
        seg_w, seg_h = ifd.value(TILE_WIDTH), ifd.value(TILE_LENGTH)
        if seg_w <= 0 or seg_h <= 0:
            raise _Malformed(f"invalid TIFF tile size {seg_w}×{seg_h}")
        if seg_w * seg_h > max_pixels:
            raise _Malformed(
                f"TIFF tiles of {seg_w}×{seg_h} exceed the limit of {max_pixels} pixels"
            )
    else:
        kind, offsets_tag, counts_tag = "strip", STRIP_OFFSETS, STRIP_BYTE_COUNTS
        seg_w, seg_h = w, min(ifd.value(ROWS_PER_STRIP, 2**32 - 1), h)
        if seg_h <= 0:
            raise _Malformed("invalid TIFF RowsPerStrip 0")
    across, down = -(-w // seg_w), -(-h // seg_h)
    expected_n = across * down * planes
    offsets, counts = ifd.values(offsets_tag), ifd.values(counts_tag)
    if len(offsets) != expected_n or len(counts) != expected_n:
        raise _Malformed(
            f"TIFF {TAG_NAMES[offsets_tag]} has {len(offsets)} values and "
            f"{TAG_NAMES[counts_tag]} {len(counts)}, expected {expected_n} "
            f"for {w}×{h} pixels in {kind}s of {seg_w}×{seg_h}, {planes} plane(s)"
        )
    dtype = np.dtype(f"{ifd.order}u2")
    out = np.empty((h, w, spp), np.uint16)
    for i, (offset, count) in enumerate(zip(offsets, counts, strict=True)):
        plane, rest = divmod(i, across * down)
        y0, x0 = (rest // across) * seg_h, (rest % across) * seg_w
        rows = seg_h if kind == "tile" else min(seg_h, h - y0)
        expected, padded = rows * seg_w * chans * 2, seg_h * seg_w * chans * 2
        what = f"TIFF {kind} {i}"
        data = ifd.source.read(offset, count, what)
        raw = _decompress(compression, data, expected, padded, what)
        seg = np.frombuffer(raw, dtype).reshape(rows, seg_w, chans).astype(np.uint16)
        if predictor == 2:  # horizontal differencing, per sample, modulo 2**16
            seg = np.cumsum(seg, axis=1, dtype=np.uint16)
        y1, x1 = min(y0 + rows, h), min(x0 + seg_w, w)
        out[y0:y1, x0:x1, plane : plane + chans] = seg[: y1 - y0, : x1 - x0]
    return out


def _decompress(compression: int, data: bytes, expected: int, limit: int, what: str) -> bytes:
    """Decompress one strip or tile to its ``expected`` bytes.

    A last strip with fewer rows may hold a whole strip's rows (``limit`` bytes):
    the rows past the image are dropped. Deflate data inflating to more than
    ``limit`` bytes is refused; the other decoders stop at ``expected`` bytes.
    """
    if compression == 5:
        out = lzw_decode(data, expected)
    elif compression in (8, 32946):
        out = _inflate(data, limit, what)[:expected]
    elif compression == 32773:
        out = packbits_decode(data, expected)
    else:
        out = data[:expected]
    if len(out) != expected:
        name = COMPRESSIONS[compression]
        raise _Malformed(f"truncated {what}: {len(out)} of {expected} bytes (compression {name})")
    return out


def _inflate(data: bytes, expected: int, what: str) -> bytes:
    """Inflate at most ``expected`` bytes; more (a decompression bomb) is an error."""
    try:
        out, overflow = bounded_inflate(data, expected)
    except zlib.error as exc:
        raise _Malformed(f"corrupt Deflate data in {what} ({exc})") from None
    if overflow:
        raise _Malformed(f"{what} inflates to more than the {expected} bytes expected")
    return out


def lzw_decode(data: bytes, expected: int) -> bytes:
    """Decode TIFF LZW data: MSB-first 9-12-bit codes, Clear 256, EOI 257, early change.

    Decoding stops once ``expected`` bytes are out (the result is cut there), at
    the EndOfInformation code, or at the end of ``data``; the result may be shorter.

    The code width depends only on the table's size, which grows by one entry per
    code after the first since the last Clear: so the codes of one width are cut
    out of the bit stream with numpy, and only the table is built code by code.

    Raises:
        ImageError: old-style (LSB-first) LZW, or a code that is not in the table.
    """
    if len(data) >= 2 and data[0] == 0 and data[1] & 1:
        raise _Malformed("old-style (pre-TIFF 6.0, LSB-first) LZW is not supported")
    buf = np.frombuffer(bytes(data) + b"\0\0\0", np.uint8)
    end_bits, pos = 8 * len(data), 0
    out = bytearray()
    while True:  # one string table: from the start or a Clear code to the next Clear
        table = _LZW_ROOTS[:]
        append = table.append
        prev, width = b"", 9
        while True:  # the codes of one width
            n = len(table)
            count = (1 << width) - 1 - n + (not prev) if width < 12 else LZW_CHUNK
            count = min(count, (end_bits - pos) // width)
            if count <= 0:
                return bytes(out[:expected])
            codes = _lzw_codes(buf, pos, width, count)
            special = np.flatnonzero((codes == LZW_CLEAR) | (codes == LZW_EOI))
            stop = int(special[0]) if special.size else count
            run = codes[:stop].tolist()
            if run and not prev:  # the first code after a Clear adds no entry
                if run[0] > 255:
                    raise _Malformed(f"corrupt LZW data (code {run[0]} after a Clear code)")
                prev = table[run[0]]
                out += prev
                del run[0]
            if n >= 4096:  # the table is full: no entries are added until a Clear
                out += b"".join([table[code] for code in run])
            else:
                n = len(table)
                for code in run:
                    if code < n:
                        entry = table[code]
                        append(prev + entry[:1])
                    elif code == n:  # the KwKwK case: the code being defined
                        entry = prev + prev[:1]
                        append(entry)
                    else:
                        raise _Malformed(f"corrupt LZW data (code {code} with {n} table entries)")
                    n += 1
                    out += entry
                    prev = entry
                    if len(out) >= expected:
                        break
            pos += width * stop
            if len(out) >= expected:
                return bytes(out[:expected])
            if stop < count:  # a Clear or an EndOfInformation code
                pos += width
                if codes[stop] == LZW_EOI:
                    return bytes(out[:expected])
                break
            width = min(width + 1, 12)


def _lzw_codes(buf: np.ndarray, pos: int, width: int, count: int) -> np.ndarray:
    """``count`` MSB-first codes of ``width`` bits from bit ``pos`` of ``buf`` (3 bytes padded)."""
    bits = pos + width * np.arange(count, dtype=np.int64)
    i = bits >> 3
    window = buf[i].astype(np.int64) << 16 | buf[i + 1].astype(np.int64) << 8 | buf[i + 2]
    return (window >> (24 - width - (bits & 7))) & ((1 << width) - 1)


def packbits_decode(data: bytes, expected: int) -> bytes:
    """Decode PackBits data, stopping after ``expected`` bytes (the result may be shorter)."""
    out = bytearray()
    i, n = 0, len(data)
    while len(out) < expected and i < n:
        header = data[i]
        i += 1
        if header < 128:  # a literal run of header + 1 bytes
            out += data[i : i + header + 1]
            i += header + 1
        elif header > 128 and i < n:  # the next byte repeated 257 - header times
            out += data[i : i + 1] * (257 - header)
            i += 1
    return bytes(out[:expected])


def _unpremultiply(px: np.ndarray) -> np.ndarray:
    """Associated (premultiplied) alpha to unassociated, rounded; colour 0 where alpha is 0."""
    alpha = px[..., 3:].astype(np.uint32)
    colour = px[..., :3].astype(np.uint32) * 65535 + alpha // 2
    safe = np.maximum(alpha, 1)
    colour = np.where(alpha > 0, np.minimum(colour // safe, 65535), 0)
    return np.concatenate([colour.astype(np.uint16), px[..., 3:]], axis=2)


def encode_tiff16(pixels: np.ndarray, icc_profile: bytes | None = None) -> bytes:
    """Encode uint16 H×W×3 (RGB) or H×W×4 (RGBA) pixels as a 16-bit TIFF file's bytes.

    Little-endian, chunky, Deflate with horizontal differencing, strips of about
    :data:`STRIP_BYTES` bytes; the alpha of RGBA is unassociated (ExtraSamples 2).

    Raises:
        ImageError: pixels are not uint16 with 3 or 4 channels, are empty, or the
            file would exceed the 4 GiB of classic TIFF.
    """
    if pixels.dtype != np.uint16 or pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ImageError(
            f"16-bit TIFF writer expects uint16 H×W×3 or H×W×4, got {pixels.dtype} {pixels.shape}"
        )
    h, w, ch = pixels.shape
    if h == 0 or w == 0:
        raise ImageError(f"16-bit TIFF writer got an empty image {pixels.shape}")
    diff = np.array(pixels, dtype="<u2")  # a little-endian copy
    diff[:, 1:] -= pixels[:, :-1]  # uint16 arithmetic wraps mod 2**16
    rows_per_strip = max(1, min(h, STRIP_BYTES // (w * ch * 2)))
    strips = [
        zlib.compress(diff[y : y + rows_per_strip].tobytes(), ZLIB_LEVEL)
        for y in range(0, h, rows_per_strip)
    ]
    offsets, pos = [], 8
    for strip in strips:
        offsets.append(pos)
        pos += len(strip)
    pad = b"\0" * (pos & 1)  # the IFD starts on a word boundary
    ifd_offset = pos + len(pad)
    tags = [
        (IMAGE_WIDTH, LONG, [w]),
        (IMAGE_LENGTH, LONG, [h]),
        (BITS_PER_SAMPLE, SHORT, [16] * ch),
        (COMPRESSION, SHORT, [8]),
        (PHOTOMETRIC, SHORT, [2]),
        (STRIP_OFFSETS, LONG, offsets),
        (SAMPLES_PER_PIXEL, SHORT, [ch]),
        (ROWS_PER_STRIP, LONG, [rows_per_strip]),
        (STRIP_BYTE_COUNTS, LONG, [len(s) for s in strips]),
        (PLANAR_CONFIGURATION, SHORT, [1]),
        (PREDICTOR, SHORT, [2]),
        (SAMPLE_FORMAT, SHORT, [1] * ch),
    ]
    if ch == 4:
        tags.append((EXTRA_SAMPLES, SHORT, [2]))  # unassociated alpha
    if icc_profile:
        tags.append((ICC_PROFILE, UNDEFINED, icc_profile))
    ifd = _ifd_bytes(sorted(tags, key=lambda t: t[0]), ifd_offset)
    if ifd_offset + len(ifd) > 2**32 - 1:
        raise ImageError(f"{w}×{h} 16-bit image too large for a classic TIFF file (4 GiB)")
    return b"".join([b"II*\0", struct.pack("<I", ifd_offset), *strips, pad, ifd])


def _ifd_bytes(tags: list[tuple[int, int, list[int] | bytes]], offset: int) -> bytes:
    """A little-endian IFD at ``offset``, its values of more than 4 bytes after it."""
    entries, extra = [], b""
    extra_offset = offset + 2 + 12 * len(tags) + 4
    for tag, kind, values in tags:
        if kind == UNDEFINED:
            raw = bytes(values)
        else:
            raw = struct.pack(f"<{len(values)}{INT_CODES[kind]}", *values)
        if len(raw) <= 4:
            field = raw.ljust(4, b"\0")
        else:
            field = struct.pack("<I", extra_offset + len(extra))
            extra += raw + b"\0" * (len(raw) & 1)
        entries.append(struct.pack("<HHI", tag, kind, len(values)) + field)
    return struct.pack("<H", len(tags)) + b"".join(entries) + b"\0\0\0\0" + extra
