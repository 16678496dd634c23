"""PNG files through libpng (`imagecodecs <https://pypi.org/project/imagecodecs/>`_).

libpng decodes and encodes the pixels: every bit depth (16-bit colour included,
which Pillow decodes to 8 bits and cannot write), colour type and interlacing;
it refuses image data that holds fewer rows than the header declares. This
module keeps the plumbing around it:

* the chunk walk (CRCs checked, IEND required, nothing after it read) that finds
  IHDR, the ICC profile (iCCP), the EXIF data (eXIf), the chunks kept as they are
  (:data:`KEPT_CHUNKS`: colour space, resolution, text) and an animation
  (acTL, refused: all frames but one would be lost);
* the size checks made before decoding: the pixel limit, and whether the IDAT
  chunks can hold the declared image at all (Deflate inflates at most
  :data:`DEFLATE_MAX_RATIO` times), so a tiny file declaring 10000×9999 pixels is
  refused without allocating them;
* the bounds on what is read, checked on each chunk's length before its bytes are
  read (:func:`read_png` reads the file chunk by chunk): the image data at most
  :data:`MAX_IDAT_RATIO` times the declared image's rows, the other chunks at most
  :data:`MAX_OTHER_BYTES` together, so that a huge or sparse file is refused after
  reading its header, never read whole;
* on writing 16-bit colour, the iCCP, eXIf and kept chunks inserted after IHDR.

:data:`FORMAT` is PNG's entry in :data:`n2n_infer.imageio.FORMATS`: any PNG is read
here (the EXIF orientation applied, what is not kept noted); 16-bit colour is written
by :func:`encode_png16`, anything else by Pillow, the kept chunks added to its file.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import imagecodecs
import numpy as np

from n2n_infer import pillow_formats
from n2n_infer.errors import ImageError
from n2n_infer.formats import (
    PALETTE_NOTE,
    ImageFile,
    ImageFormat,
    Writer,
    deep_refused,
    is_deep,
    orient,
    parse_exif,
    trailing_note,
    turned,
    written,
)

__all__ = [
    "FORMAT",
    "KEPT_CHUNKS",
    "SIGNATURE",
    "Png",
    "decode_png",
    "encode_png16",
    "read_png",
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
#: The image data (IDAT) may hold at most this many times the declared image's filtered
#: rows, plus IDAT_SLACK: interlacing adds at most about twice the rows' filter bytes,
#: and Deflate's worst case (stored or fixed-code blocks) adds about an eighth.
MAX_IDAT_RATIO = 4
IDAT_SLACK = 1 << 20
#: All other chunks (text, profile, EXIF, unknown ones) together may hold at most this.
MAX_OTHER_BYTES = 64 << 20
#: The largest chunk length the PNG specification allows.
MAX_CHUNK_LENGTH = (1 << 31) - 1
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
#: libpng's channel count -> mode written back (uint8; uint16 grey is "I;16").
PNG_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


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
        trailing: bytes after the IEND chunk (not read).
    """

    pixels: np.ndarray
    colour_type: int
    icc_profile: bytes | None = None
    exif: bytes | None = None
    bit_depth: int = 8
    chunks: tuple[tuple[bytes, bytes], ...] = ()
    trailing: int = 0


def read_png(path: Path, max_pixels: int) -> Png:
    """Read and decode the PNG file at ``path``, chunk by chunk (see :func:`decode_png`).

    Only what the header allows is read: each chunk's length is checked against the
    bounds before its bytes are (:data:`MAX_IDAT_RATIO`, :data:`MAX_OTHER_BYTES`), and
    nothing after IEND is read.

    Raises:
        ImageError: as :func:`decode_png`.
    """
    with open(path, "rb") as f:
        return _decode(path, f, max_pixels)


def decode_png(path: Path, data: bytes, max_pixels: int) -> Png:
    """Decode the PNG held in ``data`` (read from ``path``, named in errors).

    Raises:
        ImageError: bad signature or CRC, an invalid chunk type or length, no IEND, a
            malformed IHDR or iCCP, more than ``max_pixels`` pixels, more image data
            than the declared image can need (or fewer bytes than it needs even at
            Deflate's best ratio), more than :data:`MAX_OTHER_BYTES` of other chunks,
            or anything libpng refuses (truncated or short image data, bad filter
            types, ...).
    """
    return _decode(path, io.BytesIO(data), max_pixels)


def _decode(path: Path, f: BinaryIO, max_pixels: int) -> Png:
    walked = _walk(path, f, max_pixels)
    chunks, (w, h, depth, colour) = walked.chunks, walked.header
    actl = next((body for kind, body in chunks if kind == b"acTL"), None)
    frames = struct.unpack(">I", actl[:4])[0] if actl is not None and len(actl) >= 4 else 1
    if frames > 1:
        raise ImageError(
            f"{path}: an animated PNG ({frames} frames): only single images are denoised, "
            "and the other frames would be lost; split it into single PNGs first"
        )
    raw = _filtered_bytes(w, h, depth, colour)
    if raw > DEFLATE_MAX_RATIO * walked.idat + 1024:
        raise ImageError(
            f"{path}: PNG declares {w}×{h} pixels ({raw} bytes) but holds {walked.idat} bytes "
            "of image data, which cannot inflate to that: truncated or corrupt"
        )
    try:
        pixels = imagecodecs.png_decode(walked.data)
    except imagecodecs.PngError as exc:
        raise ImageError(f"{path}: corrupt or truncated PNG image data (libpng: {exc})") from None
    if pixels.shape[:2] != (h, w):
        raise ImageError(f"{path}: libpng decoded {pixels.shape}, the header says {w}×{h}")
    icc = next((_icc(path, body) for kind, body in chunks if kind == b"iCCP"), None)
    exif = next((body for kind, body in chunks if kind == b"eXIf"), None)
    kept = tuple((kind, body) for kind, body in chunks if kind in KEPT_CHUNKS)
    trailing = f.seek(0, io.SEEK_END) - len(walked.data)
    return Png(pixels, colour, icc, exif or None, depth, kept, trailing)


def _filtered_bytes(w: int, h: int, depth: int, colour: int) -> int:
    """Bytes of the declared image's filtered rows (not interlaced)."""
    return h * (1 + math.ceil(w * CHANNELS[colour] * depth / 8))


def transposed(chunk: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    """A kept chunk for the image turned by a quarter (its pHYs x and y swapped)."""
    kind, body = chunk
    if kind == b"pHYs" and len(body) == 9:
        return kind, body[4:8] + body[:4] + body[8:]
    return chunk


@dataclass(frozen=True)
class _Walked:
    """What :func:`_walk` found: the file's bytes up to IEND (for libpng), the IHDR fields
    (width, height, bit depth, colour type), (type, body) of every chunk but IHDR, IDAT
    and IEND, and the IDAT bytes."""

    data: bytearray
    header: tuple[int, int, int, int]
    chunks: list[tuple[bytes, bytes]]
    idat: int


def _walk(path: Path, f: BinaryIO, max_pixels: int) -> _Walked:
    """Read a PNG up to IEND: first its chunk headers alone, each length checked against
    the bounds before the chunk is passed over, then the bytes up to IEND at once (into
    one buffer, for libpng), their CRCs checked."""
    if f.read(len(SIGNATURE)) != SIGNATURE:
        raise ImageError(f"{path}: not a PNG file (bad signature)")
    size = f.seek(0, io.SEEK_END)
    pos, header, idat, other, idat_max = len(SIGNATURE), None, 0, 0, 0
    while True:  # the chunk headers; each chunk's 12 bytes of framing count too
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            raise ImageError(f"{path}: truncated PNG (no IEND chunk)")
        length, kind = struct.unpack(">I4s", head)
        if not kind.isalpha():  # four ASCII letters
            raise ImageError(f"{path}: corrupt PNG: invalid chunk type {kind!r} at offset {pos}")
        if length > MAX_CHUNK_LENGTH:
            raise ImageError(
                f"{path}: corrupt PNG: {kind!r} chunk of {length} bytes (at most "
                f"{MAX_CHUNK_LENGTH})"
            )
        if header is None:
            header = _ihdr(path, kind, length, f.read(17), max_pixels)
            idat_max = MAX_IDAT_RATIO * _filtered_bytes(*header) + IDAT_SLACK
        if kind == b"IDAT":
            idat += length + 12
            if idat > idat_max:
                raise ImageError(
                    f"{path}: PNG holds more than {idat_max} bytes of image data, more than "
                    f"its {header[0]}×{header[1]} image can need: corrupt"
                )
        else:
            other += length + 12
            if other > MAX_OTHER_BYTES:
                raise ImageError(
                    f"{path}: PNG chunks other than image data hold more than "
                    f"{MAX_OTHER_BYTES} bytes (at the {kind!r} chunk): refused"
                )
        pos += 12 + length
        if pos > size:
            raise ImageError(f"{path}: truncated PNG ({kind!r} chunk cut off)")
        if kind == b"IEND":
            break
    data = bytearray(pos)
    f.seek(0)
    if f.readinto(data) != pos:
        raise ImageError(f"{path}: truncated PNG (the file changed while it was read)")
    view, chunks, idat, at = memoryview(data), [], 0, len(SIGNATURE)
    while at < pos:  # the CRCs, and the chunks other than the image data
        length, kind = struct.unpack_from(">I4s", data, at)
        body = view[at + 8 : at + 8 + length]
        (crc,) = struct.unpack_from(">I", data, at + 8 + length)
        if zlib.crc32(body, zlib.crc32(kind)) != crc:
            raise ImageError(f"{path}: CRC mismatch in PNG chunk {kind!r} (corrupt file)")
        if kind == b"IDAT":
            idat += length
        elif kind != b"IEND":
            chunks.append((kind, bytes(body)))
        at += 12 + length
    return _Walked(data, header, chunks[1:], idat)


def _ihdr(
    path: Path, kind: bytes, length: int, rest: bytes, max_pixels: int
) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) of the first chunk, which must be a
    13-byte IHDR (``rest``: its body and CRC), checked."""
    if kind != b"IHDR" or length != 13 or len(rest) < 17:
        raise ImageError(f"{path}: PNG does not start with a 13-byte IHDR chunk")
    if zlib.crc32(rest[:13], zlib.crc32(kind)) != struct.unpack(">I", rest[13:])[0]:
        raise ImageError(f"{path}: CRC mismatch in PNG chunk {kind!r} (corrupt file)")
    w, h, depth, colour, *_ = struct.unpack(">IIBBBBB", rest[:13])
    if w == 0 or h == 0 or colour not in CHANNELS or depth not in (1, 2, 4, 8, 16):
        raise ImageError(
            f"{path}: invalid PNG header (size {w}×{h}, colour type {colour}, bit depth {depth})"
        )
    if w * h > max_pixels:
        raise ImageError(f"{path}: {w}×{h} pixels exceeds the limit of {max_pixels}")
    return w, h, depth, colour


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


def _load(path: Path, max_pixels: int) -> ImageFile:
    """Any PNG, through libpng; 16-bit grey+alpha is widened to 16-bit RGBA (with a note)."""
    png = read_png(path, max_pixels)
    notes = trailing_note(png.trailing, "IEND chunk")
    if png.colour_type == 3:
        notes.append(PALETTE_NOTE)
    elif png.bit_depth < 8:
        notes.append(f"{png.bit_depth}-bit grey written back as 8-bit grey")
    exif, orientation = parse_exif(png.exif, notes) if png.exif else (None, None)
    px = orient(png.pixels, orientation, notes)
    encoder: dict[str, Any] = {"png_chunks": png.chunks} if png.chunks else {}
    if png.chunks and turned(orientation):
        encoder["png_chunks"] = tuple(transposed(c) for c in png.chunks)
    px, mode = _widened(px, notes)
    return ImageFile(np.ascontiguousarray(px), "PNG", mode, png.icc_profile, exif, notes, encoder)


def _widened(px: np.ndarray, notes: list[str]) -> tuple[np.ndarray, str]:
    """libpng's pixels as :class:`ImageFile` holds them, and the mode written back:
    grey+alpha as RGBA (8-bit written back as LA, 16-bit as 16-bit RGBA)."""
    channels = 1 if px.ndim == 2 else px.shape[2]
    if channels == 2 and px.dtype == np.uint16:
        notes.append("16-bit grey+alpha PNG: written back as 16-bit RGBA")
        return px[..., [0, 0, 0, 1]], "RGBA"
    if channels == 2:
        return px[..., [0, 0, 0, 1]], "LA"  # read as RGBA, written as LA
    if channels == 1 and px.dtype == np.uint16:
        return px, "I;16"
    return px, PNG_MODES[channels]


def _save(path: Path, loaded: ImageFile, px: np.ndarray, encoder: dict[str, Any]) -> Writer:
    """16-bit colour through libpng, anything else but floats through Pillow; the
    profile, EXIF data and kept chunks of ``loaded`` with it."""
    chunks = encoder.get("png_chunks", ())
    if px.dtype.kind == "f":
        raise deep_refused(path, px)
    if is_deep(px):
        return written(encode_png16(px, loaded.icc_profile, loaded.exif, chunks))
    save = pillow_formats.save("PNG", loaded, px, {})
    if not chunks:
        return save
    buf = io.BytesIO()  # Pillow writes only some of them: added to its file after IHDR
    save(buf)
    return written(with_chunks(buf.getvalue(), chunks))


FORMAT = ImageFormat(
    "PNG",
    (".png",),
    sniff=lambda head: head.startswith(SIGNATURE),
    read=_load,
    write=_save,
    keeps=("png_chunks",),
    holds=frozenset({"grey", "colour", "alpha", "16-bit"}),
)
