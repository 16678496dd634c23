"""Reading and writing image files: formats, bit depth, orientation, colour profile.

Files are read into numpy arrays that :class:`~n2n_infer.Denoiser` accepts:
H×W uint8 (8-bit grey), H×W uint16 (16-bit grey), H×W×3 uint8 (colour),
H×W×4 uint8 (with alpha), H×W×3 / H×W×4 uint16 (16-bit colour PNG, TIFF or PPM), or
float32/float64 H×W / H×W×3 (floating-point TIFF, values in [0, 1]).

Every format is one entry of :data:`FORMATS` (a :class:`~n2n_infer.formats.ImageFormat`:
suffixes, how its files are recognised, read and written, what it keeps, what it
holds); the suffixes read (:data:`SUFFIXES`) and refused (:data:`UNSUPPORTED`), the
reader of a file and the writer of a name all come from there, and
:func:`register` adds a format. Who decodes what (the format is found from the
file's first bytes, not its name): PNG goes to libpng (:mod:`n2n_infer.png16`),
which refuses image data shorter than the header declares; every TIFF is checked
by :mod:`n2n_infer.tiff16` (tifffile) before any decoding, and its 16-bit colour
and float images are decoded there; HEIF/HEIC goes to libheif through pillow-heif
where the ``heic`` extra is installed (:mod:`n2n_infer.heif`); PGM and PPM (binary
or plain, any maxval from 1 to 65535, kept and written back) go to
:mod:`n2n_infer.pnm`; JPEG, WebP, AVIF (where Pillow has it), BMP and the other
TIFFs go to Pillow (:mod:`n2n_infer.pillow_formats`). No reader reads a file whole
before checking its header: a PNG is read chunk by chunk, a TIFF's directories are
checked before tifffile reads their values, and what the other decoders get is
bounded by what the header declares (:mod:`n2n_infer.containers`), so that a huge
or sparse file is refused, or read without its tail, rather than read whole. Only
regular files are read: a folder, a FIFO or a device is refused by name (a FIFO is
not waited on). Files whose suffix names a format that is not read (camera RAW,
GIF, JPEG XL, HEIF without the extra, ...: :data:`UNSUPPORTED`) are refused by name
with what to do instead, so that a batch job reports them rather than passing them
over. Pixel modes that cannot be kept faithfully (CMYK, 32-bit integers, ...) are
refused. EXIF orientation is applied on reading; the ICC profile and the remaining
EXIF data are kept and written back (TIFFs written by tifffile keep their ICC
profile and resolution, not their other tags), and so are the resolution (dpi), a
PNG's colour and text chunks (:data:`n2n_infer.png16.KEPT_CHUNKS`), a JPEG's chroma
subsampling and progressive coding and a WebP's losslessness. A file of several
images (an animation, a multi-page TIFF) is refused, since all but one would be
lost; what else is not kept (a palette, an MPO's second image, a TIFF's thumbnail)
is named in the notes. Any decoder failure becomes :class:`ImageError` naming the
file.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from n2n_infer import heif, png16, pnm, tiff16
from n2n_infer.arrays import MAX_PIXELS  # one limit for files and arrays
from n2n_infer.errors import ImageError
from n2n_infer.files import TEMP_PREFIX, TEMP_SUFFIX, kind_of, write_atomic
from n2n_infer.formats import PALETTE_NOTE, ImageFile, ImageFormat, Writer
from n2n_infer.pillow_formats import AVIF, BMP, HAS_AVIF, JPEG, WEBP

__all__ = [
    "FORMATS",
    "HAS_AVIF",
    "HAS_HEIF",
    "MAX_PIXELS",
    "SUFFIXES",
    "TEMP_PREFIX",
    "TEMP_SUFFIX",
    "UNSUPPORTED",
    "ImageFile",
    "ImageFormat",
    "as_rgb_u8",
    "check_writable",
    "read_file",
    "read_image",
    "register",
    "write_file",
    "write_image",
]

#: Whether HEIF/HEIC is read and written (pillow-heif: ``pip install "n2n[heic]"``).
HAS_HEIF = heif.HAS_HEIF
_PALETTE_NOTE = PALETTE_NOTE
_RAW = (
    "camera RAW is not read: develop it to a 16-bit TIFF first (e.g. darktable, "
    "RawTherapee or rawpy), then denoise the TIFF"
)
_JPEG_2000 = "JPEG 2000 is not read: convert it to PNG or 16-bit TIFF first"


def _refused(name: str, suffixes: str, refusal: str) -> ImageFormat:
    return ImageFormat(name, tuple(suffixes.split()), refusal=refusal)


#: Every image format, by name: those read and written (in the order errors list
#: them) and those refused by name, with what to do instead. A format that is
#: missing here (AVIF without Pillow's codec, HEIF without the extra) is refused so.
FORMATS: dict[str, ImageFormat] = {
    fmt.name: fmt
    for fmt in (
        png16.FORMAT,
        JPEG,
        tiff16.FORMAT,
        WEBP,
        BMP,
        AVIF,
        heif.FORMAT,
        pnm.FORMAT,
        _refused("RAW", ".dng .cr2 .cr3 .nef .nrw .arw .raf .orf .rw2 .pef", _RAW),
        _refused(
            "GIF", ".gif", "GIF (a palette, often animated) is not read: convert it to PNG first"
        ),
        _refused("JPEG XL", ".jxl", "JPEG XL is not read: convert it to PNG or 16-bit TIFF first"),
        _refused("JPEG 2000", ".jp2 .j2k .j2c .jpc .jpf .jpx", _JPEG_2000),
        _refused(
            "OpenEXR",
            ".exr",
            "OpenEXR (HDR) is not read: convert it to a float TIFF with values in [0, 1]",
        ),
        _refused(
            "PSD", ".psd", "Photoshop documents are not read: export a PNG or 16-bit TIFF first"
        ),
        _refused(
            "APNG", ".apng", "APNG (an animated PNG) is not read: split it into single PNGs first"
        ),
        _refused("PBM", ".pbm", "PBM (1-bit) is not read: convert it to PNG first"),
        _refused("TGA", ".tga", "TGA is not read: convert it to PNG first"),
        _refused("ICO", ".ico", "icons are not read: convert them to PNG first"),
        _refused("PCX", ".pcx", "PCX is not read: convert it to PNG first"),
        _refused("QOI", ".qoi", "QOI is not read: convert it to PNG first"),
    )
}


def register(fmt: ImageFormat) -> None:
    """Add an image format to :data:`FORMATS`, or replace the entry of the same name (a
    refused format that becomes read, say). From then on a folder job finds its files,
    :func:`read_file` reads them by their content, :func:`write_file` writes names with
    its suffixes and :func:`check_writable` checks them, with no other change. Register
    it in every process that uses it (a worker process imports this module afresh);
    ``FORMATS.pop(name)`` takes it out again.

    Raises:
        ValueError: one of its suffixes is another format's.
    """
    for other in FORMATS.values():
        taken = sorted(set(other.suffixes) & set(fmt.suffixes))
        if taken and other.name != fmt.name:
            raise ValueError(f"image format {fmt.name}: suffixes {taken} are {other.name}'s")
    FORMATS[fmt.name] = fmt


class _View(Mapping[str, str]):
    """A read-only mapping made from :data:`FORMATS` whenever it is read, so that it
    follows :func:`register`."""

    def __init__(self, build: Callable[[], dict[str, str]]) -> None:
        self._build = build

    def __getitem__(self, key: str) -> str:
        return self._build()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._build())

    def __len__(self) -> int:
        return len(self._build())

    def __repr__(self) -> str:
        return repr(self._build())


#: Suffixes the batch job reads -> the format each is written back in.
SUFFIXES: Mapping[str, str] = _View(
    lambda: {s: f.name for f in FORMATS.values() if f.available for s in f.suffixes}
)
#: Image suffixes that are listed and refused by name (with what to do instead) rather
#: than passed over: a folder job reports them as failed files.
UNSUPPORTED: Mapping[str, str] = _View(
    lambda: {s: f.refusal for f in FORMATS.values() if not f.available for s in f.suffixes}
)


def _known() -> str:
    """The formats read, in words (for errors): "a PNG, JPEG, ... or PPM/PGM"."""
    names = [f.title for f in FORMATS.values() if f.available]
    return f"a {', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else f"a {names[0]}"


def read_file(path: str | Path, max_pixels: int | None = None) -> ImageFile:
    """Decode an image file, keeping its bit depth, alpha, ICC profile and EXIF.

    ``max_pixels`` defaults to :data:`MAX_PIXELS`. The decoded data is complete:
    a file holding fewer rows than it declares is refused, never padded. Only what
    the file's header declares is read: data after the image is left unread (and
    noted), a header declaring far more than the image can need is refused.

    Raises:
        ImageError: the file is missing, not a regular file, unreadable, empty,
            truncated, corrupt, not a PNG/JPEG/TIFF/WebP/BMP/PPM image, has more than
            ``max_pixels`` pixels or a pixel mode that cannot be kept, declares more
            bytes than its image can need, or is too large to decode in memory; any
            decoder failure (or a warning turned into an error) is reported this
            way; the message names the file.
    """
    path = Path(path)
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    try:
        # a decoder's warnings become the file's notes, not lines on stderr (a filter
        # that turns them into errors still does: the file then fails, by name)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # max_pixels is ours
            loaded = _read(path, max_pixels)
        for text in dict.fromkeys(str(w.message) for w in caught):
            loaded.notes.append(f"decoder warning: {text}")
        return loaded
    except ImageError:
        raise
    except FileNotFoundError:
        if path.is_symlink():
            raise ImageError(f"{path}: broken symbolic link (to {os.readlink(path)})") from None
        raise ImageError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not {_known()} image") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: more pixels than Pillow will decode ({exc})") from None
    except MemoryError:
        raise ImageError(f"{path}: image too large to decode in the memory available") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read, corrupt or truncated image ({exc})") from None
    except Exception as exc:  # any decoder's failure on hostile bytes
        raise ImageError(
            f"{path}: corrupt or truncated image, the decoder failed ({type(exc).__name__}: {exc})"
        ) from None


def _read(path: Path, max_pixels: int) -> ImageFile:
    """Refuse a suffix that is not read, then read with the format its first bytes name
    (which :attr:`ImageFormat.sniff` accepts them)."""
    refusal = UNSUPPORTED.get(path.suffix.lower())
    if refusal is not None:
        raise ImageError(f"{path}: {refusal}")
    head = _head(path)
    if not head:
        raise ImageError(f"{path}: empty file (0 bytes)")
    fmt = next((f for f in FORMATS.values() if f.sniff is not None and f.sniff(head)), None)
    if fmt is None:
        raise ImageError(f"{path}: not {_known()} image")
    if fmt.read is None or not fmt.available:
        raise ImageError(f"{path}: {fmt.refusal}")
    return fmt.read(path, max_pixels)


def _head(path: Path) -> bytes:
    """The first bytes of a regular file; anything else (a folder, a FIFO, a device) is
    refused by name, without waiting for a FIFO's writer or reading a device."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ImageError(
            f"{path}: not a regular file (a {kind_of(mode)}): only image files are read"
        )
    with open(fd, "rb") as f:
        return f.read(64)


def read_image(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as uint8 H×W×3 RGB (EXIF orientation applied).

    Raises:
        ImageError: as :func:`read_file`.
    """
    return as_rgb_u8(read_file(path, max_pixels).pixels)


def as_rgb_u8(px: np.ndarray) -> np.ndarray:
    """Pixels as :func:`read_file` gives them to uint8 H×W×3 (16-bit and float rounded,
    alpha dropped)."""
    if px.dtype == np.uint16:
        px = np.rint(px / 257.0).astype(np.uint8)
    elif px.dtype.kind == "f":
        px = np.rint(np.clip(px, 0.0, 1.0) * 255.0).astype(np.uint8)
    if px.ndim == 2:
        px = np.repeat(px[:, :, None], 3, axis=2)
    return np.ascontiguousarray(px[:, :, :3])


def write_file(path: str | Path, loaded: ImageFile, pixels: np.ndarray | None = None) -> None:
    """Write ``pixels`` (default ``loaded.pixels``) like ``loaded``: format, mode, ICC, EXIF.

    The format comes from the suffix of ``path``. The file is written atomically.
    uint16 colour pixels are written as a 16-bit PNG (libpng) or a 16-bit TIFF, float
    pixels as a float TIFF (tifffile, which keeps the ICC profile, not the EXIF); a
    PGM/PPM at ``loaded``'s maxval when it was one (:func:`n2n_infer.pnm.encode_pnm`).

    Raises:
        ImageError: unknown suffix; uint16 colour for a format other than PNG,
            TIFF, PPM and HEIF; float pixels for a format other than TIFF; alpha for
            a PGM/PPM.
        OSError: the file cannot be written.
    """
    path = Path(path)
    write_atomic(path, _writer(path, loaded, loaded.pixels if pixels is None else pixels))


def check_writable(path: str | Path, loaded: ImageFile, source: str | Path | None = None) -> None:
    """Refuse, before any denoising, to write ``loaded`` under a name whose format
    cannot hold it: a file whose content is not the format its name says (a 16-bit
    PNG or an image with alpha named ``.jpg``). Same-format writes always pass.

    Raises:
        ImageError: naming ``source`` (default ``path``), what its content is, and
            the name to give it.
    """
    path = Path(path)
    fmt = _format_of(path)
    if fmt.name == loaded.format:
        return
    probe = ImageFile(
        np.ascontiguousarray(loaded.pixels[:2, :2]), loaded.format, loaded.mode, None, None,
        [], loaded.encoder,
    )  # fmt: skip
    try:
        _writer(path, probe, probe.pixels)(io.BytesIO())
    except Exception:
        shown = Path(source) if source is not None else path
        depth = {"uint8": "8-bit", "uint16": "16-bit"}.get(str(probe.pixels.dtype), "float")
        own = FORMATS.get(loaded.format)
        rename = shown.with_suffix(own.suffixes[0] if own and own.available else ".png").name
        raise ImageError(
            f"{shown}: its content is {loaded.format} ({depth} {loaded.mode}), which its "
            f"name's format, {fmt.name}, cannot hold: rename it {rename}"
        ) from None


def _writer(path: Path, loaded: ImageFile, px: np.ndarray) -> Writer:
    """What writes ``px`` like ``loaded`` into an open file, in the format of ``path``'s
    suffix; what keeps it alike (:attr:`ImageFormat.keeps`) only from a file of that
    format."""
    fmt = _format_of(path)
    alike = loaded.format in (fmt.name, *fmt.aliases)
    encoder = {k: loaded.encoder[k] for k in fmt.keeps if k in loaded.encoder} if alike else {}
    assert fmt.write is not None
    return fmt.write(path, loaded, px, encoder)


def _format_of(path: Path) -> ImageFormat:
    """The format written under ``path``'s suffix."""
    suffix = path.suffix.lower()
    for fmt in FORMATS.values():
        if fmt.available and suffix in fmt.suffixes:
            return fmt
    raise ImageError(f"{path}: cannot write format {path.suffix!r} (known: {sorted(SUFFIXES)})")


def write_image(path: str | Path, img_hwc_u8: np.ndarray) -> None:
    """Write a uint8 H×W×3 image to ``path`` (format from the suffix) atomically.

    Raises:
        ImageError: unknown suffix.
        OSError: the file cannot be written.
    """
    write_file(path, ImageFile(img_hwc_u8, "", "RGB"))
