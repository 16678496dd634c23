"""What an image format is, to :mod:`n2n_infer.imageio`: one :class:`ImageFormat` entry.

Each format module defines its entry (``png16.FORMAT``, ``tiff16.FORMAT``,
``pnm.FORMAT``, ``heif.FORMAT``, the Pillow-decoded ones in
:mod:`n2n_infer.pillow_formats`); :data:`n2n_infer.imageio.FORMATS` lists them
all, and everything that depends on the set of formats (the suffixes a folder
job reads, the ones it refuses by name, the reader a file's first bytes select,
the writer a name's suffix selects, the refusals of
:func:`~n2n_infer.imageio.check_writable`) is derived from that list. This module
also holds what every reader shares: the decoded :class:`ImageFile`, EXIF
orientation (:func:`orient`), EXIF parsing (:func:`parse_exif`) and the notes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from n2n_infer.errors import ImageError

__all__ = [
    "HOLDS",
    "ORIENTATION_TAG",
    "PALETTE_NOTE",
    "ImageFile",
    "ImageFormat",
    "Writer",
    "deep_refused",
    "is_deep",
    "orient",
    "parse_exif",
    "trailing_note",
    "turned",
    "written",
]

ORIENTATION_TAG = 0x0112
#: What :attr:`ImageFormat.holds` may name: the pixels its writer takes, grey, colour
#: and alpha (8-bit; WebP and AVIF store grey as colour), "16-bit" colour (a format
#: without it may still take 16-bit grey) and "float".
HOLDS = frozenset({"grey", "colour", "alpha", "16-bit", "float"})
PALETTE_NOTE = (
    "palette image written back in full colour: the denoised colours are not in its palette"
)


@dataclass
class ImageFile:
    """A decoded image file.

    Attributes:
        pixels: H×W uint8/uint16, H×W×3 or H×W×4 uint8/uint16, or float32/float64
            H×W / H×W×3 in [0, 1] (a float TIFF); orientation applied.
        format: the file's format (``"PNG"``, ``"JPEG"``, ``"TIFF"``, ...).
        mode: Pillow mode to write back (``"LA"`` is read as RGBA and written as LA;
            16-bit colour has ``"RGB"``/``"RGBA"`` with uint16 pixels, float TIFFs ``"F"``).
        icc_profile: the embedded ICC profile bytes, if any.
        exif: EXIF bytes with the orientation reset, if any.
        notes: what could not be kept or was ignored (e.g. an invalid orientation).
        encoder: format-specific settings to write it back alike (a HEIF's bit depth,
            chroma subsampling, nclx profile and XMP: :func:`n2n_infer.heif.encode_heif`;
            a PGM/PPM's maxval, ``pnm_maxval``, its pixels being spread over the full
            range of their type: :mod:`n2n_infer.pnm`; the keys each format writes back
            are its entry's :attr:`ImageFormat.keeps`).
    """

    pixels: np.ndarray
    format: str
    mode: str
    icc_profile: bytes | None = None
    exif: bytes | None = None
    notes: list[str] = field(default_factory=list)
    encoder: dict[str, Any] = field(default_factory=dict)


#: Writes a file's bytes into an open binary file.
Writer = Callable[[BinaryIO], object]
#: Reads the file at a path, holding at most so many pixels, into an :class:`ImageFile`.
ReadFn = Callable[[Path, int], ImageFile]
#: (path written, the image read, the pixels to write, the :attr:`ImageFormat.keeps`
#: settings of ``loaded.encoder`` where ``loaded`` is of this format, else ``{}``) -> what
#: writes the file; raises :class:`ImageError` (or any exception: ``check_writable``
#: reports it) when the format cannot hold the pixels.
WriteFn = Callable[[Path, ImageFile, np.ndarray, dict[str, Any]], Writer]


@dataclass(frozen=True)
class ImageFormat:
    """One image format: its names, how its files are recognised, read and written.

    A format that is not read here (a camera's RAW, GIF, HEIF without the ``heic``
    extra) is an entry too, with only its suffixes and :attr:`refusal`: files named
    so are refused by name, with what to do instead, rather than passed over.

    Attributes:
        name: the format's name, as :attr:`ImageFile.format` and errors give it.
        suffixes: lower-case suffixes of its files; the first is the one a file of this
            format is told to be renamed to.
        label: the name in the list of formats read (default ``name``).
        sniff: whether a file's first 64 bytes are this format (the content, not the
            name, selects the reader: phones also write HEIF as ``.jpg``); no two
            entries' sniffers accept the same bytes. None: never read by content.
        read: ``(path, max_pixels) -> ImageFile``; it must read only what the file's
            header declares (bounded, never the whole file first), refuse more than
            ``max_pixels`` pixels, apply the orientation and note what is not kept.
        write: the :data:`WriteFn` that writes pixels into this format.
        keeps: the :attr:`ImageFile.encoder` keys its reader sets and its writer
            writes back (besides the ICC profile and EXIF data): only these reach the
            writer, and only from a file of this format.
        holds: the pixels it can hold (words of :data:`HOLDS`).
        aliases: other values of :attr:`ImageFile.format` that are files of this
            format (Pillow reads a JPEG holding further images as ``"MPO"``).
        refusal: why files of this format are not read here (and what to do
            instead, e.g. what to install); empty where it is read and written.
    """

    name: str
    suffixes: tuple[str, ...]
    label: str = ""
    sniff: Callable[[bytes], bool] | None = None
    read: ReadFn | None = None
    write: WriteFn | None = None
    keeps: tuple[str, ...] = ()
    holds: frozenset[str] = frozenset()
    aliases: tuple[str, ...] = ()
    refusal: str = ""

    def __post_init__(self) -> None:
        bad = [s for s in self.suffixes if not s.startswith(".") or s != s.lower()]
        if not self.suffixes or bad:
            raise ValueError(
                f"image format {self.name}: suffixes {self.suffixes!r} (expected one or more, "
                "lower case, each starting with '.')"
            )
        if not self.refusal and (self.read is None or self.write is None):
            raise ValueError(
                f"image format {self.name}: expected a reader and a writer, or a refusal"
            )
        if self.holds - HOLDS:
            raise ValueError(
                f"image format {self.name}: holds {sorted(self.holds - HOLDS)} (expected "
                f"words of {sorted(HOLDS)})"
            )

    @property
    def available(self) -> bool:
        """Whether files of this format are read and written here."""
        return not self.refusal

    @property
    def title(self) -> str:
        """:attr:`label`, or the name."""
        return self.label or self.name


def is_deep(px: np.ndarray) -> bool:
    """Whether pixels are float or 16-bit colour (which few formats hold)."""
    return px.dtype.kind == "f" or (px.dtype == np.uint16 and px.ndim == 3)


def deep_refused(path: Path, px: np.ndarray) -> ImageError:
    """The refusal of float or 16-bit colour pixels for a format that holds neither."""
    kind = "floating-point pixels can only be written as TIFF"
    if px.dtype == np.uint16:
        kind = "16-bit colour can only be written as PNG or TIFF"
    return ImageError(f"{path}: {kind}, not {path.suffix!r}")


def trailing_note(trailing: int, what: str) -> list[str]:
    """The note on bytes after the image that were not read (none for 0)."""
    return [f"{trailing} bytes after the {what} ignored (not read)"] if trailing else []


def written(data: bytes) -> Writer:
    """What writes ``data`` as it is."""
    return lambda f: f.write(data)


def parse_exif(source: Any, notes: list[str], keep: bool = True) -> tuple[bytes | None, object]:
    """(EXIF bytes without the orientation, the orientation as stored) of the EXIF
    data of a Pillow image or of eXIf chunk bytes; with ``keep=False`` no bytes.

    EXIF that cannot be parsed or written back is dropped with a note, never fatal.
    """
    try:
        if isinstance(source, bytes):
            exif = Image.Exif()
            exif.load(source)
        else:
            exif = source.getexif()
        orientation = exif.pop(ORIENTATION_TAG, None)
        return (exif.tobytes() if exif and keep else None), orientation
    except Exception as exc:
        notes.append(f"EXIF data unreadable ({type(exc).__name__}: {exc}): not kept")
        return None, None


def turned(orientation: object) -> bool:
    """Whether an EXIF orientation swaps rows and columns (5-8)."""
    if isinstance(orientation, tuple) and len(orientation) == 1:
        orientation = orientation[0]
    if isinstance(orientation, bool) or not isinstance(orientation, int):
        return False
    return 5 <= orientation <= 8


def orient(px: np.ndarray, orientation: object, notes: list[str]) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to H×W(×C) pixels, as ``ImageOps.exif_transpose`` does.

    An orientation that is not an integer 1-8 is ignored with a note.
    """
    if orientation is None:
        return px
    if isinstance(orientation, tuple) and len(orientation) == 1:
        orientation = orientation[0]
    if (
        isinstance(orientation, bool)
        or not isinstance(orientation, int)
        or not 1 <= orientation <= 8
    ):
        notes.append(f"invalid EXIF orientation {orientation!r} ignored (expected 1-8)")
        return px
    orientation = int(orientation)  # tifffile gives an IntEnum
    if orientation in (5, 6, 7, 8):  # transposed: swap rows and columns first
        px = px.swapaxes(0, 1)
    flip_rows = orientation in (3, 4, 7, 8)
    flip_cols = orientation in (2, 3, 6, 7)
    return px[:: -1 if flip_rows else 1, :: -1 if flip_cols else 1]
