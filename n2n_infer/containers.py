"""Bounds on the bytes a decoder reads, from what a file's header declares.

Some decoders take a whole file at once: Pillow's WebP and AVIF plugins read it
to its end before decoding, pillow-heif reads a HEIF whole, and Pillow's JPEG
reader keeps every marker segment before the image data. A huge or sparse file
(a small image followed by gigabytes of zeros, or a header declaring a box or
chunk of gigabytes) would then be read whole. This module finds, from the
container's own structure and before any decoder sees the file, how many bytes
the image can need:

* JPEG: the marker segments before the first scan, walked by their lengths
  (at most :data:`MAX_METADATA_BYTES`), then what the frame's samples can need
  (:func:`jpeg_extent`);
* WebP (RIFF): the RIFF size, checked against the canvas the first chunk
  declares (:func:`webp_extent`);
* HEIF and AVIF (ISOBMFF): the top-level boxes, walked by their headers only,
  and their total checked against the images the ``meta`` box declares (its
  ``ispe`` sizes and item count: :func:`isobmff_extent`);
* anything Pillow reads (JPEG, BMP, WebP, AVIF): :class:`Bounded`, a file
  that reads as if it ended at a limit, so that a decoder never gets more (a BMP's
  limit is set once Pillow has read its header).

Every limit is :data:`MAX_METADATA_BYTES` for metadata plus at most
:data:`MAX_BYTES_PER_SAMPLE` bytes for each declared sample, and a little slack.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from n2n_infer.errors import ImageError

__all__ = [
    "MAX_BYTES_PER_SAMPLE",
    "MAX_METADATA_BYTES",
    "Bounded",
    "Extent",
    "isobmff_extent",
    "jpeg_extent",
    "looks_like_avif",
    "sample_bound",
    "webp_extent",
]

#: Metadata (profiles, EXIF, XMP, text, marker segments) a file may hold besides its pixels.
MAX_METADATA_BYTES = 64 << 20
#: Compressed bytes a decoder may read per declared sample (8-bit or 16-bit, every
#: codec's worst case, progressive scans and interlacing included, is far below).
MAX_BYTES_PER_SAMPLE = 16
SLACK = 1 << 20
#: Top-level boxes of a HEIF/AVIF file that are walked (ftyp, meta, mdat, free, ...).
MAX_BOXES = 1024
#: Channels a HEIF/AVIF image is counted with (colour and alpha).
ISOBMFF_CHANNELS = 4
#: Bytes between a JPEG's marker segments that are not markers (decoders skip them).
MAX_JUNK = 1 << 20
#: JPEG start-of-frame markers (SOF0-SOF15 but DHT, JPG and DAC).
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def sample_bound(pixels: int, channels: int) -> int:
    """The most bytes a file of ``pixels`` pixels of ``channels`` channels may need."""
    return MAX_METADATA_BYTES + MAX_BYTES_PER_SAMPLE * pixels * channels + SLACK


@dataclass(frozen=True)
class Extent:
    """Where a container's data ends.

    Attributes:
        end: the offset just past its last byte (what a decoder may read).
        trailing: the bytes after it, up to the file's end (not read).
    """

    end: int
    trailing: int


class Bounded(io.RawIOBase):
    """A read-only view of an open binary file that ends at ``limit`` bytes.

    Reads past the limit return nothing, as at the end of a file; :attr:`cut` tells
    whether a read was shortened by the limit (rather than by the file's own end).
    ``limit`` may be raised or lowered between reads. It has no file descriptor, so
    that no decoder goes around it.
    """

    def __init__(self, raw: BinaryIO, limit: int) -> None:
        super().__init__()
        self._raw = raw
        self._pos = raw.tell()
        self._size = raw.seek(0, io.SEEK_END)
        raw.seek(self._pos)
        self.limit = limit
        self.cut = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            offset += min(self.limit, self._size)
        if offset < 0:
            raise ValueError(f"negative seek position {offset}")
        self._pos = offset
        return offset

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self.limit - self._pos))
        if n < min(len(view), self._size - self._pos):  # shortened by the limit
            self.cut = True
        if n == 0:
            return 0
        self._raw.seek(self._pos)
        got = self._raw.readinto(view[:n]) or 0
        self._pos += got
        return got


def jpeg_extent(path: Path, f: BinaryIO, size: int, max_pixels: int) -> Extent:
    """How far a JPEG may be read: its marker segments up to the first scan (at most
    :data:`MAX_METADATA_BYTES`, walked by their lengths), then what the frame header's
    samples can need. Where the image ends is not known here: ``trailing`` is 0.

    Raises:
        ImageError: no SOI, a frame or scan header cut off, no frame header before the
            first scan, more than ``max_pixels`` pixels, marker segments longer than
            :data:`MAX_METADATA_BYTES`, or more than :data:`MAX_JUNK` bytes between
            them that are not markers.
    """
    f.seek(0)
    if f.read(2) != b"\xff\xd8":
        raise ImageError(f"{path}: not a JPEG file (no SOI marker)")
    pos, junk, frame = 2, 0, None
    while True:
        if pos > MAX_METADATA_BYTES:
            raise ImageError(
                f"{path}: JPEG marker segments before the image data longer than "
                f"{MAX_METADATA_BYTES} bytes: refused"
            )
        f.seek(pos)
        head = f.read(4)
        if len(head) < 2:
            raise ImageError(f"{path}: truncated JPEG (no image data after {pos} bytes)")
        if head[0] != 0xFF:  # bytes that are not a marker (decoders skip them)
            skipped = _skip_to(f, pos, b"\xff", MAX_JUNK - junk)
            if skipped is None:
                raise ImageError(
                    f"{path}: corrupt JPEG: more than {MAX_JUNK} bytes that are not markers "
                    f"between its marker segments (from offset {pos})"
                )
            junk, pos = junk + skipped, pos + skipped
            continue
        marker = head[1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:  # fill, standalone
            pos += 1 if marker == 0xFF else 2
            continue
        if marker == 0xD9:
            raise ImageError(f"{path}: corrupt JPEG: it ends (EOI) before any image data")
        if len(head) < 4:
            raise ImageError(f"{path}: truncated JPEG (marker segment cut off at {pos})")
        length = int.from_bytes(head[2:4], "big")
        if marker in SOF_MARKERS:
            body = f.read(6)
            if length < 8 or len(body) < 6:
                raise ImageError(f"{path}: corrupt JPEG: frame header cut off at {pos}")
            h, w = struct.unpack(">HH", body[1:5])
            frame = (w, h, body[5])
        if marker == 0xDA:  # the first scan: the image data follows
            if frame is None:
                raise ImageError(f"{path}: corrupt JPEG: a scan before any frame header")
            w, h, channels = frame
            if w * h > max_pixels:
                raise ImageError(f"{path}: {w}×{h} pixels exceeds the limit of {max_pixels}")
            scans = MAX_BYTES_PER_SAMPLE * w * h * max(channels, 1) + SLACK
            return Extent(pos + 2 + length + scans, 0)
        pos += 2 + length


def _skip_to(f: BinaryIO, pos: int, byte: bytes, most: int) -> int | None:
    """How many bytes from ``pos`` come before the next ``byte`` (at most ``most``,
    else None)."""
    f.seek(pos)
    done = 0
    while done <= most:
        block = f.read(min(1 << 16, most - done + 1))
        if not block:
            return None
        at = block.find(byte)
        if at >= 0:
            return done + at
        done += len(block)
    return None


def webp_extent(path: Path, f: BinaryIO, size: int, max_pixels: int) -> Extent:
    """The extent of a WebP file's RIFF data, checked against its canvas.

    Raises:
        ImageError: no canvas size in the first chunk, more than ``max_pixels``
            pixels, or a RIFF size larger than the canvas can need.
    """
    f.seek(0)
    head = f.read(30)
    if len(head) < 30 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        raise ImageError(f"{path}: not a WebP file (no RIFF/WEBP header)")
    riff = int.from_bytes(head[4:8], "little") + 8
    w, h = _webp_canvas(path, head)
    if w * h > max_pixels:
        raise ImageError(f"{path}: {w}×{h} pixels exceeds the limit of {max_pixels}")
    bound = sample_bound(w * h, 4)
    if riff > bound:
        raise ImageError(
            f"{path}: WebP declares {riff} bytes, more than its {w}×{h} canvas can need "
            f"({bound}): corrupt"
        )
    end = min(riff + (riff & 1), size)
    return Extent(end, size - end)


def _webp_canvas(path: Path, head: bytes) -> tuple[int, int]:
    """(width, height) from the first chunk of a WebP file (VP8X, VP8L or VP8)."""
    kind, payload = head[12:16], head[20:30]
    if kind == b"VP8X":
        w, h = (int.from_bytes(payload[i : i + 3], "little") + 1 for i in (4, 7))
        return w, h
    if kind == b"VP8L" and payload[0] == 0x2F:
        bits = int.from_bytes(payload[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 " and payload[3:6] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", payload[6:10])
        return w & 0x3FFF, h & 0x3FFF
    raise ImageError(f"{path}: corrupt WebP: no canvas size in its first chunk ({kind!r})")


def isobmff_extent(path: Path, f: BinaryIO, size: int, max_pixels: int, kind: str) -> Extent:
    """The extent of a HEIF or AVIF file's top-level boxes (``kind`` names it in errors),
    walked by their headers; bytes after the last box that are not a box are
    ``trailing``.

    Raises:
        ImageError: a box cut off by the end of the file, more than :data:`MAX_BOXES`
            boxes, a ``meta`` box larger than :data:`MAX_METADATA_BYTES` or without
            an image size (``ispe``), an image of more than ``max_pixels`` pixels, or
            boxes that hold more than the declared images can need.
    """
    pos, meta, count = 0, None, 0
    while pos + 8 <= size:
        f.seek(pos)
        header = f.read(16)
        box_size, box_type = int.from_bytes(header[:4], "big"), header[4:8]
        start = 8
        if box_size == 1 and len(header) == 16:
            box_size, start = int.from_bytes(header[8:16], "big"), 16
        elif box_size == 0:  # to the end of the file
            box_size = size - pos
        if not _box_type(box_type) or box_size < start:
            break  # not a box: what follows is not the image's
        if pos + box_size > size:
            raise ImageError(
                f"{path}: truncated {kind}: its {box_type.decode('latin-1')!r} box at offset "
                f"{pos} declares {box_size} bytes, the file ends {size - pos} bytes after it"
            )
        count += 1
        if count > MAX_BOXES:
            raise ImageError(f"{path}: {kind} with more than {MAX_BOXES} top-level boxes: refused")
        if box_type == b"meta" and meta is None:
            if box_size > MAX_METADATA_BYTES:
                raise ImageError(
                    f"{path}: {kind} meta box of {box_size} bytes (at most {MAX_METADATA_BYTES})"
                )
            f.seek(pos + start)
            meta = f.read(box_size - start)
        pos += box_size
    if meta is None:
        raise ImageError(f"{path}: corrupt {kind}: no meta box (its images' description)")
    items, (w, h) = _meta_images(path, meta, kind)
    if w * h > max_pixels:
        raise ImageError(f"{path}: {w}×{h} pixels exceeds the limit of {max_pixels}")
    images = max(items, 1)
    bound = sample_bound(images * w * h, ISOBMFF_CHANNELS)
    if pos > bound:
        raise ImageError(
            f"{path}: {kind} boxes hold {pos} bytes, more than its {images} item(s) of "
            f"at most {w}×{h} pixels can need ({bound}): corrupt"
        )
    return Extent(pos, size - pos)


def looks_like_avif(head: bytes) -> bool:
    """Whether a file's first bytes (64 or more) are an AVIF file's ``ftyp`` box (its
    major or a compatible brand ``avif`` or ``avis``)."""
    if head[4:8] != b"ftyp":
        return False
    size = int.from_bytes(head[:4], "big")
    brands = {head[i : i + 4] for i in range(16, min(size, len(head)) - 3, 4)} | {head[8:12]}
    return bool(brands & {b"avif", b"avis"})


def _box_type(kind: bytes) -> bool:
    return len(kind) == 4 and all(0x20 <= c < 0x7F for c in kind)


def _boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of the boxes in ``data`` (a box's body), until one does not fit."""
    out, pos = [], 0
    while pos + 8 <= len(data):
        box_size, box_type = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        start = 8
        if box_size == 1 and pos + 16 <= len(data):
            box_size, start = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
        elif box_size == 0:
            box_size = len(data) - pos
        if box_size < start or pos + box_size > len(data):
            break
        out.append((box_type, data[pos + start : pos + box_size]))
        pos += box_size
    return out


def _meta_images(path: Path, meta: bytes, kind: str) -> tuple[int, tuple[int, int]]:
    """(item count from ``iinf``, the largest ``ispe`` width and height) of a meta box body."""
    items, largest = 0, (0, 0)
    for box_type, body in _boxes(meta[4:]):  # a full box: version and flags first
        if box_type == b"iinf" and len(body) >= 6:
            items = int.from_bytes(body[4:6] if body[0] == 0 else body[4:8], "big")
        elif box_type == b"iprp":
            for sub_type, sub in _boxes(body):
                if sub_type != b"ipco":
                    continue
                for prop_type, prop in _boxes(sub):
                    if prop_type == b"ispe" and len(prop) >= 12:
                        w, h = struct.unpack(">II", prop[4:12])
                        if w * h > largest[0] * largest[1]:
                            largest = (w, h)
    if largest[0] * largest[1] == 0:
        raise ImageError(f"{path}: corrupt {kind}: no image size (ispe) in its meta box")
    return items, largest
