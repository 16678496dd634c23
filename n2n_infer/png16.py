"""PNG files through libpng (`imagecodecs <https://pypi.org/project/imagecodecs/>`_).

libpng decodes and encodes the pixels: every bit depth (16-bit colour included,
which Pillow decodes to 8 bits and cannot write), colour type and interlacing;
it refuses image data that holds fewer rows than the header declares. This
module keeps the plumbing around it:

* the chunk walk (CRCs checked, IEND required) that finds IHDR, the ICC profile
  (iCCP), the EXIF data (eXIf), the chunks kept as they are
  (:data:`KEPT_CHUNKS`: colour space, resolution, text) and an animation
  (acTL, refused: all frames but one would be lost);
* the size checks made before decoding: the pixel limit, and whether the IDAT
  chunks can hold the declared image at all (Deflate inflates at most
  :data:`DEFLATE_MAX_RATIO` times), so a tiny file declaring 10000×9999 pixels is
  refused without allocating them;
* on writing 16-bit colour, the iCCP, eXIf and kept chunks inserted after IHDR.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np

from n2n_infer.errors import ImageError

__all__ = [
    "KEPT_CHUNKS",
    "SIGNATURE",
    "Png",
    "decode_png",
    "encode_png16",
    "transposed",
    "with_chunks",
]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour type -> channels.
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: An embedded ICC profile larger than this once inflated is refused.
MAX_ICC_BYTES = 16 << 20
#: Deflate's best case: 258 bytes from about 2 bits.
DEFLATE_MAX_RATIO = 1032
ZLIB_LEVEL = 6
EXIF_HEADER = b"Exif\x00\x00"
#: Chunks copied from a PNG to its denoised version, as they are: they describe the
#: colour space (gamma, primaries, sRGB intent, cICP and HDR mastering / light level),
#: the pixels' physical size and text, none of which denoising changes. Bounded by
#: the file's size; never inflated here.
KEPT_CHUNKS = (
    b"gAMA", b"cHRM", b"sRGB", b"cICP", b"mDCV", b"mDCv", b"cLLI", b"cLLi", b"pHYs",
    b"tEXt", b"zTXt", b"iTXt",
)  # fmt: skip


@dataclass(frozen=True)
class Png:
    """A decoded PNG.

    Attributes:
        pixels: libpng's output: uint8 or uint16 (16-bit files) H×W (grey),
            H×W×2 (grey+alpha), H×W×3 (RGB, palette) or H×W×4 (RGBA, palette or
            colour with a tRNS chunk); bit depths below 8 are scaled to 8 bits.
        colour_type: the IHDR colour type (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA).
        icc_profile: the inflated ICC profile (iCCP chunk), if any.
        exif: the eXIf chunk's TIFF-structured bytes (no ``Exif\\0\\0`` header), if any.
        bit_depth: the IHDR bit depth (1, 2, 4, 8 or 16).
        chunks: (type, body) of the :data:`KEPT_CHUNKS` present, in file order.
    """

    pixels: np.ndarray
    colour_type: int
    icc_profile: bytes | None = None
    exif: bytes | None = None
    bit_depth: int = 8
    chunks: tuple[tuple[bytes, bytes], ...] = ()


def decode_png(path: Path, data: bytes, max_pixels: int) -> Png:
    """Decode the PNG held in ``data`` (read from ``path``, named in errors).

    Raises:
        ImageError: bad signature or CRC, no IEND, a malformed IHDR or iCCP, more
            than ``max_pixels`` pixels, fewer IDAT bytes than the declared image
            needs even at Deflate's best ratio, or anything libpng refuses
            (truncated or short image data, bad filter types, ...).
    """
    chunks = _chunks(path, data)
    if not chunks or chunks[0][0] != b"IHDR" or len(chunks[0][1]) != 13:
        raise ImageError(f"{path}: PNG does not start with a 13-byte IHDR chunk")
    w, h, depth, colour, *_ = struct.unpack(">IIBBBBB", chunks[0][1])
    if w == 0 or h == 0 or colour not in CHANNELS:
        raise ImageError(f"{path}: invalid PNG header (size {w}×{h}, colour type {colour})")
    if w * h > max_pixels:
        raise ImageError(f"{path}: {w}×{h} pixels exceeds the limit of {max_pixels}")
    actl = next((body for kind, body in chunks if kind == b"acTL"), None)
    frames = struct.unpack(">I", actl[:4])[0] if actl is not None and len(actl) >= 4 else 1
    if frames > 1:
        raise ImageError(
            f"{path}: an animated PNG ({frames} frames): only single images are denoised, "
            "and the other frames would be lost; split it into single PNGs first"
        )
    raw = h * (1 + math.ceil(w * CHANNELS[colour] * depth / 8))  # filtered rows
    idat = sum(len(body) for kind, body in chunks if kind == b"IDAT")
    if raw > DEFLATE_MAX_RATIO * idat + 1024:
        raise ImageError(
            f"{path}: PNG declares {w}×{h} pixels ({raw} bytes) but holds {idat} bytes of "
            "image data, which cannot inflate to that: truncated or corrupt"
        )
    try:
        pixels = imagecodecs.png_decode(data)
    except imagecodecs.PngError as exc:
        raise ImageError(f"{path}: corrupt or truncated PNG image data (libpng: {exc})") from None
    if pixels.shape[:2] != (h, w):
        raise ImageError(f"{path}: libpng decoded {pixels.shape}, the header says {w}×{h}")
    icc = next((_icc(path, body) for kind, body in chunks if kind == b"iCCP"), None)
    exif = next((body for kind, body in chunks if kind == b"eXIf"), None)
    kept = tuple((kind, body) for kind, body in chunks if kind in KEPT_CHUNKS)
    return Png(pixels, colour, icc, exif or None, depth, kept)


def transposed(chunk: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    """A kept chunk for the image turned by a quarter (its pHYs x and y swapped)."""
    kind, body = chunk
    if kind == b"pHYs" and len(body) == 9:
        return kind, body[4:8] + body[:4] + body[8:]
    return chunk


def _chunks(path: Path, data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of every chunk up to IEND, CRCs checked."""
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
        chunks.append((kind, body))
        pos = end + 4


def _icc(path: Path, body: bytes) -> bytes:
    """The profile of an iCCP chunk (name, 0, method 0, zlib data), inflated with a bound."""
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


def encode_png16(
    pixels: np.ndarray,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    chunks: tuple[tuple[bytes, bytes], ...] = (),
) -> bytes:
    """Encode uint16 H×W×3 (RGB) or H×W×4 (RGBA) pixels as a 16-bit PNG file's bytes.

    libpng filters and deflates (zlib level :data:`ZLIB_LEVEL`); the iCCP and eXIf
    chunks, and ``chunks`` ((type, body) pairs, e.g. :attr:`Png.chunks`), are
    inserted after IHDR. ``exif`` may start with the ``Exif\\0\\0``
    header of JPEG-style EXIF; it is dropped.

    Raises:
        ImageError: pixels are not uint16 with 3 or 4 channels, or are empty.
    """
    if pixels.dtype != np.uint16 or pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ImageError(
            f"16-bit PNG writer expects uint16 H×W×3 or H×W×4, got {pixels.dtype} {pixels.shape}"
        )
    if pixels.size == 0:
        raise ImageError(f"16-bit PNG writer got an empty image {pixels.shape}")
    data = bytes(imagecodecs.png_encode(np.ascontiguousarray(pixels), level=ZLIB_LEVEL))
    extra = []
    if icc_profile:
        extra.append((b"iCCP", b"ICC profile\0\0" + zlib.compress(icc_profile, ZLIB_LEVEL)))
    if exif:
        extra.append((b"eXIf", exif.removeprefix(EXIF_HEADER)))
    return with_chunks(data, (*extra, *chunks))


def with_chunks(data: bytes, chunks: tuple[tuple[bytes, bytes], ...]) -> bytes:
    """A PNG file's bytes with ``chunks`` ((type, body) pairs) inserted after IHDR."""
    ihdr_end = len(SIGNATURE) + 8 + 13 + 4
    return data[:ihdr_end] + b"".join(_chunk(k, b) for k, b in chunks) + data[ihdr_end:]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
