"""16-bit colour PNG (bit depth 16, colour type 2 RGB or 6 RGBA), which Pillow cannot keep.

Pillow decodes these files to 8 bits and cannot write them; this codec uses only
numpy, zlib and struct. Non-interlaced files only. The ICC profile (iCCP chunk)
and EXIF data (eXIf chunk) are read and written; other ancillary chunks are skipped.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from n2n_infer.errors import ImageError

__all__ = ["COLOUR_TYPES", "Png16", "decode_png16", "encode_png16", "is_png16_colour"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour type -> channels, for the colour types this module handles.
COLOUR_TYPES = {2: 3, 6: 4}
#: An embedded ICC profile larger than this once inflated is refused.
MAX_ICC_BYTES = 16 << 20
ZLIB_LEVEL = 6
EXIF_HEADER = b"Exif\x00\x00"


@dataclass(frozen=True)
class Png16:
    """A decoded 16-bit colour PNG.

    Attributes:
        pixels: uint16 H×W×3 (colour type 2) or H×W×4 (type 6), in [0, 65535].
        icc_profile: the inflated ICC profile (iCCP chunk), if any.
        exif: the eXIf chunk's TIFF-structured bytes (no ``Exif\\0\\0`` header), if any.
    """

    pixels: np.ndarray
    icc_profile: bytes | None = None
    exif: bytes | None = None


def is_png16_colour(head: bytes) -> bool:
    """True when ``head`` (the first 26+ bytes of a file) is a 16-bit RGB or RGBA PNG."""
    if len(head) < 26 or not head.startswith(SIGNATURE) or head[12:16] != b"IHDR":
        return False
    depth, colour = head[24], head[25]
    return depth == 16 and colour in COLOUR_TYPES


def decode_png16(path: Path, data: bytes, max_pixels: int) -> Png16:
    """Decode a 16-bit colour PNG held in ``data`` (read from ``path``, named in errors).

    Raises:
        ImageError: bad signature or CRC, truncated data, missing chunks, interlacing,
            another bit depth or colour type, more than ``max_pixels`` pixels, or
            image data that inflates to more or fewer bytes than the header implies.
    """
    chunks = _chunks(path, data)
    if not chunks or chunks[0][0] != b"IHDR" or len(chunks[0][1]) != 13:
        raise ImageError(f"{path}: PNG does not start with a 13-byte IHDR chunk")
    w, h, depth, colour, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    if depth != 16 or colour not in COLOUR_TYPES or comp != 0 or filt != 0:
        raise ImageError(
            f"{path}: expected a 16-bit RGB/RGBA PNG, found bit depth {depth}, colour type "
            f"{colour}, compression {comp}, filter method {filt}"
        )
    if interlace != 0:
        raise ImageError(f"{path}: interlaced (Adam7) 16-bit colour PNGs are not supported")
    if w == 0 or h == 0 or w > 2**31 - 1 or h > 2**31 - 1:
        raise ImageError(f"{path}: invalid PNG size {w}×{h}")
    if w * h > max_pixels:
        raise ImageError(f"{path}: {w}×{h} pixels exceeds the limit of {max_pixels}")
    bpp = 2 * COLOUR_TYPES[colour]
    idat = b"".join(body for kind, body in chunks if kind == b"IDAT")
    raw = _inflate(path, idat, h * (1 + w * bpp), "image data")
    rows = np.frombuffer(raw, np.uint8).reshape(h, 1 + w * bpp)
    bad = rows[:, 0] > 4
    if bad.any():
        y = int(np.argmax(bad))
        raise ImageError(f"{path}: row {y} has unknown PNG filter type {rows[y, 0]}")
    recon = unfilter(rows[:, 0], rows[:, 1:].reshape(h, w, bpp))
    pixels = recon.view(">u2").reshape(h, w, bpp // 2).astype(np.uint16)
    icc = next((_icc(path, body) for kind, body in chunks if kind == b"iCCP"), None)
    exif = next((body for kind, body in chunks if kind == b"eXIf"), None)
    return Png16(pixels, icc, exif)


def _chunks(path: Path, data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of every chunk up to IEND, CRCs checked; unknown critical chunks refused."""
    if not data.startswith(SIGNATURE):
        raise ImageError(f"{path}: not a PNG file (bad signature)")
    chunks, pos = [], len(SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise ImageError(f"{path}: truncated PNG (no IEND chunk)")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 8 + length
        if end + 4 > len(data):
            raise ImageError(f"{path}: truncated PNG ({kind!r} chunk cut off)")
        body = data[pos + 8 : end]
        (crc,) = struct.unpack(">I", data[end : end + 4])
        if zlib.crc32(kind + body) != crc:
            raise ImageError(f"{path}: CRC mismatch in PNG chunk {kind!r} (corrupt file)")
        if kind == b"IEND":
            return chunks
        if kind[0] & 0x20 == 0 and kind not in (b"IHDR", b"IDAT", b"PLTE"):
            raise ImageError(f"{path}: unknown critical PNG chunk {kind!r}")
        chunks.append((kind, body))
        pos = end + 4


def bounded_inflate(compressed: bytes, expected: int) -> tuple[bytes, bool]:
    """Inflate at most ``expected`` bytes; also say whether the stream holds more
    (a decompression bomb never allocates past ``expected``).

    Raises:
        zlib.error: the data is not a valid zlib stream.
    """
    d = zlib.decompressobj()
    out = d.decompress(compressed, expected)
    overflow = bool(d.unconsumed_tail) or (not d.eof and bool(d.decompress(b"", 1)))
    return out, overflow


def _inflate(path: Path, compressed: bytes, expected: int, what: str) -> bytes:
    """Inflate at most ``expected`` bytes; more (a decompression bomb) or fewer is an error."""
    try:
        out, overflow = bounded_inflate(compressed, expected)
    except zlib.error as exc:
        raise ImageError(f"{path}: corrupt PNG {what} ({exc})") from None
    if overflow:
        raise ImageError(f"{path}: PNG {what} inflates to more than the {expected} bytes expected")
    if len(out) != expected:
        raise ImageError(
            f"{path}: truncated PNG {what} ({len(out)} of {expected} bytes after inflating)"
        )
    return out


def _icc(path: Path, body: bytes) -> bytes:
    name_end = body.find(b"\0")
    if name_end < 0 or name_end + 2 > len(body) or body[name_end + 1] != 0:
        raise ImageError(f"{path}: malformed iCCP chunk")
    d = zlib.decompressobj()
    try:
        profile = d.decompress(body[name_end + 2 :], MAX_ICC_BYTES)
    except zlib.error as exc:
        raise ImageError(f"{path}: corrupt ICC profile ({exc})") from None
    if d.unconsumed_tail:
        raise ImageError(f"{path}: ICC profile larger than {MAX_ICC_BYTES} bytes")
    return profile


def unfilter(ftype: np.ndarray, filtered: np.ndarray) -> np.ndarray:
    """Undo PNG filtering.

    Args:
        ftype: uint8 (H,) filter type of each row, 0-4 (None, Sub, Up, Average, Paeth).
        filtered: uint8 H×W×bpp filtered bytes (the row's filter byte removed).

    Returns:
        uint8 H×W×bpp reconstructed bytes.
    """
    if np.any(ftype >= 3):
        return _unfilter_wavefront(ftype, filtered)
    recon = np.empty_like(filtered)
    prev = np.zeros_like(filtered[0])
    for y in range(filtered.shape[0]):
        row = filtered[y]
        if ftype[y] == 1:
            row = np.cumsum(row, axis=0, dtype=np.uint8)  # wraps mod 256 per byte lane
        elif ftype[y] == 2:
            row = row + prev
        recon[y] = row
        prev = recon[y]
    return recon


def _unfilter_wavefront(ftype: np.ndarray, filtered: np.ndarray) -> np.ndarray:
    """Any mix of filter types, one anti-diagonal (x + y = t) of pixels at a time.

    Pixel (y, x) needs its left (y, x-1) and upper (y-1, x) neighbours, both on
    diagonal t-1, and the upper-left one (y-1, x-1) on diagonal t-2. Diagonals
    are kept indexed by y + 1 (index 0 is the zero row above the image).
    """
    h, w, bpp = filtered.shape
    flat_in = filtered.reshape(h * w, bpp)
    recon = np.empty_like(flat_in)
    base = np.arange(h, dtype=np.intp) * (w - 1)  # flat index of (y, t - y) is base[y] + t
    onehot = [(ftype == k).astype(np.int16)[:, None] for k in range(5)]
    d2, d1 = np.zeros((h + 1, bpp), np.int16), np.zeros((h + 1, bpp), np.int16)
    for t in range(h + w - 1):
        lo, hi = max(0, t - w + 1), min(h - 1, t) + 1
        a, b, c = d1[lo + 1 : hi + 1], d1[lo:hi], d2[lo:hi]
        pred = onehot[1][lo:hi] * a + onehot[2][lo:hi] * b
        pred += onehot[3][lo:hi] * ((a + b) >> 1)
        pred += onehot[4][lo:hi] * _paeth(a, b, c)
        idx = base[lo:hi] + t
        new = (flat_in[idx] + pred) & 0xFF
        recon[idx] = new
        d0 = d2  # reuse the oldest diagonal's buffer
        d0[lo + 1 : hi + 1] = new
        d2, d1 = d1, d0
    return recon.reshape(h, w, bpp)


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The Paeth predictor of int16 arrays (PNG spec, section 9.4)."""
    bc, ac = b - c, a - c
    pa, pb, pc = np.abs(bc), np.abs(ac), np.abs(bc + ac)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def encode_png16(
    pixels: np.ndarray, icc_profile: bytes | None = None, exif: bytes | None = None
) -> bytes:
    """Encode uint16 H×W×3 (RGB) or H×W×4 (RGBA) pixels as a 16-bit PNG file's bytes.

    ``exif`` may start with the ``Exif\\0\\0`` header of JPEG-style EXIF; it is dropped.

    Each row is filtered with None or Sub, whichever gives the smaller sum of
    absolute byte values; the data is deflated at level :data:`ZLIB_LEVEL`.

    Raises:
        ImageError: pixels are not uint16 with 3 or 4 channels, or are empty.
    """
    if pixels.dtype != np.uint16 or pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ImageError(
            f"16-bit PNG writer expects uint16 H×W×3 or H×W×4, got {pixels.dtype} {pixels.shape}"
        )
    h, w, ch = pixels.shape
    if h == 0 or w == 0:
        raise ImageError(f"16-bit PNG writer got an empty image {pixels.shape}")
    rows = np.ascontiguousarray(pixels, dtype=">u2").view(np.uint8).reshape(h, w, 2 * ch)
    sub = rows.copy()
    sub[:, 1:] -= rows[:, :-1]  # uint8 arithmetic wraps mod 256
    cost_none = np.abs(rows.reshape(h, -1).view(np.int8).astype(np.int32)).sum(axis=1)
    cost_sub = np.abs(sub.reshape(h, -1).view(np.int8).astype(np.int32)).sum(axis=1)
    use_sub = cost_sub < cost_none
    body = np.where(use_sub[:, None, None], sub, rows).reshape(h, -1)
    raw = np.concatenate([use_sub.astype(np.uint8)[:, None], body], axis=1)
    colour = {3: 2, 4: 6}[ch]
    out = [SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0))]
    if icc_profile:
        out.append(_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc_profile, ZLIB_LEVEL)))
    if exif:
        out.append(_chunk(b"eXIf", exif.removeprefix(EXIF_HEADER)))
    out += [_chunk(b"IDAT", zlib.compress(raw.tobytes(), ZLIB_LEVEL)), _chunk(b"IEND", b"")]
    return b"".join(out)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
