"""PGM and PPM files (Netpbm), read and written at their own maxval.

A PGM (grey) or PPM (RGB) stores samples of 0..maxval, maxval anything from 1
to 65535: one byte a sample up to 255, two (big-endian) above. Reading keeps
that scale: the samples are spread over the full range of the smallest type
that holds them, uint8 for a maxval up to 255 and uint16 above (a 12-bit 4095 is
65535, 2048 is 32776), so that the denoiser maps the image to [0, 1] by its own
maxval; :func:`encode_pnm` maps them back, exactly (a sample survives the round
trip unchanged), and writes the same maxval and sample width. A maxval of 255 or
65535 is the type's own range: the samples are kept as they are.

Read: binary PGM and PPM (``P5``, ``P6``) and their plain (ASCII) forms (``P2``,
``P3``, written back binary), with ``#`` comments in the header. The header is
parsed strictly (whitespace-separated decimal width, height and maxval, then
exactly one whitespace byte) and the file's size is checked against what it
declares before anything is allocated: only the declared samples are read (a
plain file's at most :data:`MAX_PLAIN_BYTES` bytes a sample), never what
follows them. Refused by name: PBM (1-bit, ``P1``/``P4``), PAM (``P7``) and
PFM (floating point, ``PF``/``Pf``); samples above the maxval; a second image
after the first (a Netpbm stream of several images, all but one would be lost).
:data:`FORMAT` is their entry in :data:`n2n_infer.imageio.FORMATS` (``PPM``, the
maxval kept in :attr:`~n2n_infer.formats.ImageFile.encoder` as ``pnm_maxval``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from n2n_infer.errors import ImageError
from n2n_infer.formats import ImageFile, ImageFormat, Writer, trailing_note, written

__all__ = ["FORMAT", "MAGICS", "Pnm", "encode_pnm", "looks_like_pnm", "read_pnm"]

#: Magic -> (channels, plain), for the kinds read.
MAGICS = {b"P2": (1, True), b"P3": (3, True), b"P5": (1, False), b"P6": (3, False)}
#: Netpbm kinds that are refused, with what to do instead.
REFUSED = {
    b"P1": "PBM (1-bit) is not read: convert it to PNG first",
    b"P4": "PBM (1-bit) is not read: convert it to PNG first",
    b"P7": "PAM is not read: convert it to PNG or 16-bit TIFF first",
    b"PF": "PFM (floating point) is not read: convert it to a float TIFF with values in [0, 1]",
    b"Pf": "PFM (floating point) is not read: convert it to a float TIFF with values in [0, 1]",
}
WHITESPACE = b" \t\n\r\v\f"
#: A header (comments included) longer than this is refused.
MAX_HEADER = 64 << 10
#: Digits of a header number (width, height, maxval).
MAX_DIGITS = 10
MAX_MAXVAL = 65535
#: Bytes a plain (ASCII) file may take per sample on average (digits and whitespace).
MAX_PLAIN_BYTES = 16
#: Bytes after the image data that are looked at (for a second image); the rest is not read.
TRAILING_PEEK = 64
#: Bytes read at a time from a plain file; samples converted at a time.
BLOCK = 1 << 20
_NAMES = {1: "PGM", 3: "PPM"}


@dataclass(frozen=True)
class Pnm:
    """A decoded PGM or PPM.

    Attributes:
        pixels: uint8 (maxval up to 255) or uint16 H×W (PGM) or H×W×3 (PPM), spread
            over the type's full range (:func:`to_full_range`).
        maxval: the file's maxval (1..65535).
        plain: whether the file was plain (ASCII: ``P2``/``P3``).
        comments: whether its header held comments.
        trailing: bytes after the image data (not read), other than a little whitespace.
    """

    pixels: np.ndarray
    maxval: int
    plain: bool = False
    comments: bool = False
    trailing: int = 0


def looks_like_pnm(head: bytes) -> bool:
    """Whether a file's first bytes are a Netpbm magic (``P1``..``P7``, ``PF``, ``Pf``)
    followed by whitespace or a comment."""
    kind = head[:2]
    return (kind in MAGICS or kind in REFUSED) and len(head) > 2 and head[2] in WHITESPACE + b"#"


def read_pnm(path: Path, max_pixels: int) -> Pnm:
    """Read a binary or plain PGM/PPM file at its own maxval (see the module's docstring).

    Raises:
        ImageError: a refused kind (PBM, PAM, PFM), a malformed or oversized header,
            a zero size or more than ``max_pixels`` pixels, a maxval outside
            1..65535, fewer sample bytes than declared, a sample above the maxval,
            a plain file with bad characters or too much whitespace, or a second
            image after the first; the message names the file.
    """
    with open(path, "rb") as f:
        head = f.read(MAX_HEADER)
        magic = head[:2]
        if magic in REFUSED:
            raise ImageError(f"{path}: {REFUSED[magic]}")
        if magic not in MAGICS:
            raise ImageError(f"{path}: not a PGM/PPM file (magic {magic!r})")
        channels, plain = MAGICS[magic]
        name = _NAMES[channels]
        (width, height, maxval), start, comments = _header(path, head, name)
        if width * height > max_pixels:
            raise ImageError(f"{path}: {width}×{height} pixels exceeds the limit of {max_pixels}")
        shape = (height, width) if channels == 1 else (height, width, channels)
        size = os.fstat(f.fileno()).st_size
        f.seek(start)
        if plain:
            samples, end = _plain_samples(path, f, math.prod(shape), maxval, size, name)
        else:
            samples, end = _binary_samples(path, f, math.prod(shape), maxval, size, name)
        trailing = size - end
        if trailing:
            f.seek(end)
            after = f.read(min(trailing, TRAILING_PEEK))
            if looks_like_pnm(after.lstrip(WHITESPACE)):
                raise ImageError(
                    f"{path}: a stream of several {name} images: only single images are "
                    "denoised, and the others would be lost; split it into single files first"
                )
            if trailing <= TRAILING_PEEK and not after.strip(WHITESPACE):
                trailing = 0  # a line break or so after the samples
    pixels = to_full_range(samples, maxval).reshape(shape)
    return Pnm(pixels, maxval, plain, comments, trailing)


def _header(path: Path, head: bytes, name: str) -> tuple[tuple[int, int, int], int, bool]:
    """((width, height, maxval), offset of the first sample, whether comments were seen)."""
    pos, numbers, comments = 2, [], False
    labels = ("width", "height", "maxval")
    for label in labels:
        seen_space = False
        while pos < len(head):
            if head[pos] in WHITESPACE:
                seen_space, pos = True, pos + 1
            elif head[pos] == ord("#"):
                comments, seen_space = True, True
                ends = [i for i in (head.find(b"\n", pos), head.find(b"\r", pos)) if i >= 0]
                if not ends:
                    pos = len(head)
                    break
                pos = min(ends) + 1
            else:
                break
        if pos >= len(head):
            raise _short_header(path, head, name)
        if not seen_space:
            raise ImageError(
                f"{path}: malformed {name} header: expected whitespace before the {label}, "
                f"found {head[pos : pos + 1]!r}"
            )
        end = pos
        while end < len(head) and head[end : end + 1].isdigit():
            end += 1
        if end == pos or end - pos > MAX_DIGITS:
            raise ImageError(
                f"{path}: malformed {name} header: expected the {label} (1 to {MAX_DIGITS} "
                f"decimal digits), found {head[pos : pos + MAX_DIGITS + 1]!r}"
            )
        if end >= len(head):
            raise _short_header(path, head, name)
        numbers.append(int(head[pos:end]))
        pos = end
    if pos >= len(head) or head[pos] not in WHITESPACE:
        raise ImageError(
            f"{path}: malformed {name} header: expected one whitespace byte after the maxval, "
            f"found {head[pos : pos + 1]!r}"
        )
    width, height, maxval = numbers
    if width == 0 or height == 0:
        raise ImageError(f"{path}: invalid {name} size {width}×{height} (expected at least 1×1)")
    if not 1 <= maxval <= MAX_MAXVAL:
        raise ImageError(f"{path}: {name} maxval {maxval} (expected 1 to {MAX_MAXVAL})")
    return (width, height, maxval), pos + 1, comments


def _short_header(path: Path, head: bytes, name: str) -> ImageError:
    if len(head) >= MAX_HEADER:
        return ImageError(f"{path}: {name} header longer than {MAX_HEADER} bytes: refused")
    return ImageError(f"{path}: truncated {name} file (the header ends after {len(head)} bytes)")


def _binary_samples(
    path: Path, f: BinaryIO, count: int, maxval: int, size: int, name: str
) -> tuple[np.ndarray, int]:
    """``count`` binary samples from ``f``'s position (checked against the file size first),
    in native byte order, and the offset where they end."""
    width = 1 if maxval <= 255 else 2
    start = f.tell()
    need = count * width
    if size - start < need:
        raise ImageError(
            f"{path}: truncated {name}: its header declares {count} samples of {width} "
            f"byte(s) ({need} bytes), the file holds {max(size - start, 0)} after the header"
        )
    samples = np.empty(count, np.uint8 if width == 1 else np.uint16)
    got = f.readinto(memoryview(samples).cast("B"))
    if got != need:
        raise ImageError(f"{path}: truncated {name}: read {got} of {need} sample bytes")
    if width == 2 and np.little_endian:  # stored big-endian
        samples.byteswap(inplace=True)
    _check_maxval(path, samples, maxval, name)
    return samples, start + need


def _plain_samples(
    path: Path, f: BinaryIO, count: int, maxval: int, size: int, name: str
) -> tuple[np.ndarray, int]:
    """``count`` plain (decimal) samples from ``f``'s position, read block by block and
    never more than :data:`MAX_PLAIN_BYTES` bytes a sample; and where they end."""
    start = f.tell()
    budget = count * MAX_PLAIN_BYTES + 64
    samples = np.empty(count, np.uint8 if maxval <= 255 else np.uint16)
    filled, pending, read = 0, b"", 0
    while True:
        block = f.read(min(BLOCK, budget - read))
        read += len(block)
        if not block:
            if read >= budget:
                raise ImageError(
                    f"{path}: plain {name} with more than {MAX_PLAIN_BYTES} bytes a sample "
                    f"(read {read} bytes for {filled} of {count} samples): refused"
                )
            raise ImageError(
                f"{path}: truncated plain {name}: {filled} of {count} samples "
                f"({size - start} bytes after the header)"
            )
        text = pending + block
        offset = start + read - len(text)  # of text in the file
        cut = len(text)
        if read < size - start:  # a number may go on in the next block
            while cut and text[cut - 1] not in WHITESPACE:
                cut -= 1
        pending, text = text[cut:], text[:cut]
        if len(pending) > MAX_DIGITS:
            raise _bad_plain(path, name, pending)
        need = count - filled
        parts = text.split(None, need)
        if len(parts) > need:  # the image ends in this block: what follows is not read
            text = text[: len(text) - len(parts[need])]
            parts = parts[:need]
        bad = text.translate(None, b"0123456789" + WHITESPACE)
        if bad:
            raise _bad_plain(path, name, bad)
        if not parts:
            continue
        values = np.array(parts)
        if values.dtype.itemsize > MAX_DIGITS:
            raise _bad_plain(path, name, max(parts, key=len))
        values = values.astype(np.int64)
        _check_maxval(path, values, maxval, name)
        samples[filled : filled + len(values)] = values
        filled += len(values)
        if filled == count:
            return samples, offset + len(text.rstrip(WHITESPACE))


def _bad_plain(path: Path, name: str, found: bytes) -> ImageError:
    return ImageError(
        f"{path}: malformed plain {name}: expected decimal samples of at most {MAX_DIGITS} "
        f"digits separated by whitespace, found {found[:16]!r}"
    )


def _check_maxval(path: Path, samples: np.ndarray, maxval: int, name: str) -> None:
    if np.iinfo(samples.dtype).max <= maxval or not samples.size:
        return
    hi = int(samples.max())
    if hi > maxval:
        raise ImageError(f"{path}: {name} sample {hi} above its maxval {maxval}")


def full_scale(maxval: int) -> int:
    """The full range of the type that holds samples of ``maxval``: 255 or 65535."""
    return 255 if maxval <= 255 else MAX_MAXVAL


def to_full_range(samples: np.ndarray, maxval: int) -> np.ndarray:
    """Samples of 0..``maxval`` spread over 0..:func:`full_scale` (rounded), as uint8 or
    uint16 (in place where the type already fits)."""
    full = full_scale(maxval)
    out = samples.astype(np.uint8 if full == 255 else np.uint16, copy=False)
    if maxval == full:
        return out
    flat = out.reshape(-1)
    for i in range(0, flat.size, BLOCK):
        block = flat[i : i + BLOCK].astype(np.uint32)
        flat[i : i + BLOCK] = (block * full + maxval // 2) // maxval
    return out


def from_full_range(pixels: np.ndarray, maxval: int) -> np.ndarray:
    """The inverse of :func:`to_full_range`: uint8/uint16 over their full range to
    0..``maxval`` (rounded), as big-endian samples of one or two bytes (a new array)."""
    full = 255 if pixels.dtype == np.uint8 else MAX_MAXVAL
    out = np.empty(pixels.shape, ">u2" if maxval > 255 else np.uint8)
    src, dst = pixels.reshape(-1), out.reshape(-1)
    for i in range(0, src.size, BLOCK):
        block = src[i : i + BLOCK].astype(np.uint32)
        dst[i : i + BLOCK] = block if maxval == full else (block * maxval + full // 2) // full
    return out


def encode_pnm(pixels: np.ndarray, maxval: int | None = None) -> bytes:
    """A binary PGM (H×W) or PPM (H×W×3) file's bytes of uint8 or uint16 pixels over
    their type's full range, written with ``maxval`` (default, or when it does not
    fit the type: the type's own, 255 or 65535).

    Raises:
        ImageError: another dtype or shape (alpha, float), or an empty image.
    """
    if pixels.dtype not in (np.uint8, np.uint16) or not (
        pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)
    ):
        raise ImageError(
            "PGM/PPM writer expects uint8 or uint16 H×W (grey) or H×W×3 (RGB), got "
            f"{pixels.dtype} {pixels.shape}: PGM/PPM hold no alpha nor floating point; "
            "write it as PNG or TIFF"
        )
    if pixels.size == 0:
        raise ImageError(f"PGM/PPM writer got an empty image {pixels.shape}")
    full = 255 if pixels.dtype == np.uint8 else MAX_MAXVAL
    if maxval is None or not 1 <= maxval <= full:
        maxval = full
    magic = "P5" if pixels.ndim == 2 else "P6"
    header = f"{magic}\n{pixels.shape[1]} {pixels.shape[0]}\n{maxval}\n".encode("ascii")
    return header + from_full_range(pixels, maxval).tobytes()


def _load(path: Path, max_pixels: int) -> ImageFile:
    """A PGM or PPM at its own maxval, kept in :attr:`ImageFile.encoder` (``pnm_maxval``)
    and written back; the samples are spread over the full range of uint8 or uint16."""
    p = read_pnm(path, max_pixels)
    name = "PGM" if p.pixels.ndim == 2 else "PPM"
    notes = trailing_note(p.trailing, "image data")
    if p.plain:
        notes.append(f"plain (ASCII) {name} written back as a binary {name}")
    if p.comments:
        notes.append(f"{name} header comments not written back")
    mode = "RGB" if p.pixels.ndim == 3 else ("L" if p.pixels.dtype == np.uint8 else "I;16")
    return ImageFile(p.pixels, "PPM", mode, notes=notes, encoder={"pnm_maxval": p.maxval})


def _save(path: Path, loaded: ImageFile, px: np.ndarray, encoder: dict[str, Any]) -> Writer:
    """A binary PGM/PPM at the source's maxval: a 12-bit PGM stays 12-bit."""
    try:
        data = encode_pnm(px, encoder.get("pnm_maxval"))
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from None
    return written(data)


FORMAT = ImageFormat(
    "PPM",
    (".ppm", ".pgm", ".pnm"),
    label="PPM/PGM",
    sniff=looks_like_pnm,
    read=_load,
    write=_save,
    keeps=("pnm_maxval",),
    holds=frozenset({"grey", "colour", "16-bit"}),
)
