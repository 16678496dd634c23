"""Reading and writing image files: formats, bit depth, orientation, colour profile.

Files are read into numpy arrays that :class:`~n2n_infer.Denoiser` accepts:
H×W uint8 (8-bit grey), H×W uint16 (16-bit grey), H×W×3 uint8 (colour),
H×W×4 uint8 (with alpha), H×W×3 / H×W×4 uint16 (16-bit colour PNG, TIFF or PPM), or
float32/float64 H×W / H×W×3 (floating-point TIFF, values in [0, 1]).

Who decodes what (the format is found from the file's first bytes, not its name):
PNG goes to libpng (:mod:`n2n_infer.png16`), which refuses image data shorter
than the header declares; every TIFF is checked by :mod:`n2n_infer.tiff16`
(tifffile) before any decoding, and its 16-bit colour and float images are
decoded there; HEIF/HEIC goes to libheif through pillow-heif where the
``heic`` extra is installed (:mod:`n2n_infer.heif`); PGM and PPM (binary or
plain, any maxval from 1 to 65535, kept and written back) go to
:mod:`n2n_infer.pnm`; JPEG, WebP, AVIF (where Pillow has it), BMP and the other
TIFFs go to Pillow. No reader reads a file whole before checking its header: a
PNG is read chunk by chunk, a TIFF's directories are checked before tifffile
reads their values, and what the other decoders get is bounded by what the
header declares (:mod:`n2n_infer.containers`), so that a huge or sparse file
is refused, or read without its tail, rather than read whole. Only regular
files are read: a folder, a FIFO or a device is refused by name (a FIFO is
not waited on). Files whose suffix names a
format that is not read (camera RAW, GIF, JPEG XL, HEIF without the extra, ...:
:data:`UNSUPPORTED`) are refused by name with what to do instead, so that a
batch job reports them rather than passing them over. Pixel modes
that cannot be kept faithfully (CMYK, 32-bit integers, ...) are refused.
EXIF orientation is applied on reading; the ICC profile and the remaining EXIF
data are kept and written back (TIFFs written by tifffile keep their ICC
profile and resolution, not their other tags), and so are the resolution (dpi),
a PNG's colour and text chunks (:data:`n2n_infer.png16.KEPT_CHUNKS`), a JPEG's
chroma subsampling and progressive coding and a WebP's losslessness. A file of
several images (an animation, a multi-page TIFF) is refused, since all but one
would be lost; what else is not kept (a palette, an MPO's second image, a
TIFF's thumbnail) is named in the notes. Any decoder failure becomes
:class:`ImageError` naming the file.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, JpegImagePlugin, UnidentifiedImageError, features

from n2n_infer import containers, heif, png16, pnm, tiff16
from n2n_infer.arrays import MAX_PIXELS  # one limit for files and arrays
from n2n_infer.errors import ImageError
from n2n_infer.files import TEMP_PREFIX, TEMP_SUFFIX, kind_of, write_atomic

__all__ = [
    "HAS_HEIF",
    "MAX_PIXELS",
    "SUFFIXES",
    "TEMP_PREFIX",
    "TEMP_SUFFIX",
    "UNSUPPORTED",
    "ImageFile",
    "as_rgb_u8",
    "check_writable",
    "read_file",
    "read_image",
    "write_file",
    "write_image",
]


def _pillow_has(feature: str) -> bool:
    try:
        return bool(features.check(feature))
    except (ValueError, OSError):  # an older Pillow that does not know the feature
        return False


#: Whether this Pillow reads and writes AVIF (wheels of Pillow >= 11.3 do).
HAS_AVIF = _pillow_has("avif")
#: Whether HEIF/HEIC is read and written (pillow-heif: ``pip install "n2n[heic]"``).
HAS_HEIF = heif.HAS_HEIF
#: Suffixes the batch job reads, and the format each is written back in.
SUFFIXES = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".jfif": "JPEG",
    ".jpe": "JPEG",
    ".ppm": "PPM",
    ".pgm": "PPM",
    ".pnm": "PPM",
    **({".avif": "AVIF"} if HAS_AVIF else {}),
    **(dict.fromkeys(heif.SUFFIXES, "HEIF") if HAS_HEIF else {}),
}
_RAW = (
    "camera RAW is not read: develop it to a 16-bit TIFF first (e.g. darktable, "
    "RawTherapee or rawpy), then denoise the TIFF"
)
#: The suffix a file of each format should have (the first listed).
_SUFFIX_OF = {fmt: suffix for suffix, fmt in reversed(SUFFIXES.items())}
#: Image suffixes that are listed and refused by name (with what to do instead) rather
#: than passed over: a folder job reports them as failed files.
UNSUPPORTED = {
    **({} if HAS_HEIF else dict.fromkeys(heif.SUFFIXES, heif.MISSING)),
    **dict.fromkeys(
        (".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".raf", ".orf", ".rw2", ".pef"),
        _RAW,
    ),
    **({} if HAS_AVIF else {".avif": "AVIF is not read by this Pillow: install Pillow >= 11.3"}),
    ".gif": "GIF (a palette, often animated) is not read: convert it to PNG first",
    ".jxl": "JPEG XL is not read: convert it to PNG or 16-bit TIFF first",
    ".jp2": "JPEG 2000 is not read: convert it to PNG or 16-bit TIFF first",
    ".exr": "OpenEXR (HDR) is not read: convert it to a float TIFF with values in [0, 1]",
    ".psd": "Photoshop documents are not read: export a PNG or 16-bit TIFF first",
    ".apng": "APNG (an animated PNG) is not read: split it into single PNGs first",
    **dict.fromkeys(
        (".j2k", ".j2c", ".jpc", ".jpf", ".jpx"),
        "JPEG 2000 is not read: convert it to PNG or 16-bit TIFF first",
    ),
    ".pbm": "PBM (1-bit) is not read: convert it to PNG first",
    ".tga": "TGA is not read: convert it to PNG first",
    ".ico": "icons are not read: convert them to PNG first",
    ".pcx": "PCX is not read: convert it to PNG first",
    ".qoi": "QOI is not read: convert it to PNG first",
}
#: The formats read, in words (for errors).
KNOWN_FORMATS = (
    f"a PNG, JPEG, TIFF, WebP, BMP{', AVIF' if HAS_AVIF else ''}{', HEIF' if HAS_HEIF else ''} "
    "or PPM/PGM"
)
#: Formats Pillow reads (HEIF is read by :mod:`n2n_infer.heif`, PGM/PPM by
#: :mod:`n2n_infer.pnm`; Pillow's JPEG reader also opens an MPO, a JPEG holding further
#: images such as a phone's HDR gain map).
READ_FORMATS = tuple(sorted(set(SUFFIXES.values()) - {"HEIF", "PPM"}))
#: Formats written as another: an MPO's first image is written as a JPEG.
_FAMILY = {"MPO": "JPEG"}
JPEG_QUALITY = 95
WEBP_QUALITY = 95
ORIENTATION_TAG = 0x0112
#: Bytes Pillow may read of a BMP (or another format without a container bound) while
#: it parses the header: then its limit becomes what the declared image can need.
OPEN_BYTES = containers.MAX_METADATA_BYTES
TIFF_MAGICS = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
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
#: libpng's channel count -> mode written back (uint8; uint16 grey is "I;16").
PNG_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


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
            range of their type: :mod:`n2n_infer.pnm`).
    """

    pixels: np.ndarray
    format: str
    mode: str
    icc_profile: bytes | None = None
    exif: bytes | None = None
    notes: list[str] = field(default_factory=list)
    encoder: dict[str, Any] = field(default_factory=dict)


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
        raise ImageError(f"{path}: not {KNOWN_FORMATS} image") from None
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
    if path.suffix.lower() in UNSUPPORTED:
        raise ImageError(f"{path}: {UNSUPPORTED[path.suffix.lower()]}")
    head = _head(path)
    if not head:
        raise ImageError(f"{path}: empty file (0 bytes)")
    if heif.looks_like_heif(head):  # by content: phones also export HEIF as .jpg
        return _read_heif(path, max_pixels)
    if head.startswith(png16.SIGNATURE):
        return _read_png(path, max_pixels)
    if pnm.looks_like_pnm(head):
        return _read_pnm(path, max_pixels)
    if head[:4] in TIFF_MAGICS:
        tif = tiff16.read_tiff(path, max_pixels)
        if tif.pixels is not None:
            return _from_tiff(tif)
        try:
            loaded = _read_pillow(path, max_pixels)
        except UnidentifiedImageError:
            raise ImageError(f"{path}: a TIFF layout that Pillow cannot decode") from None
        loaded.notes.extend(tif.notes)
        loaded.encoder.update(_tiff_encoder(tif))  # read once, by tifffile
        return loaded
    return _read_pillow(path, max_pixels)


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


def _trailing_note(trailing: int, what: str) -> list[str]:
    return [f"{trailing} bytes after the {what} ignored (not read)"] if trailing else []


def _read_png(path: Path, max_pixels: int) -> ImageFile:
    """Any PNG, through libpng; 16-bit grey+alpha is widened to 16-bit RGBA (with a note)."""
    png = png16.read_png(path, max_pixels)
    notes = _trailing_note(png.trailing, "IEND chunk")
    if png.colour_type == 3:
        notes.append(_PALETTE_NOTE)
    elif png.bit_depth < 8:
        notes.append(f"{png.bit_depth}-bit grey written back as 8-bit grey")
    exif, orientation = _parse_exif(png.exif, notes) if png.exif else (None, None)
    px = _orient(png.pixels, orientation, notes)
    encoder: dict[str, Any] = {"png_chunks": png.chunks} if png.chunks else {}
    if png.chunks and _turned(orientation):
        encoder["png_chunks"] = tuple(png16.transposed(c) for c in png.chunks)
    channels = 1 if px.ndim == 2 else px.shape[2]
    mode = PNG_MODES[channels]
    if channels == 2 and px.dtype == np.uint16:
        px = px[..., [0, 0, 0, 1]]
        mode = "RGBA"
        notes.append("16-bit grey+alpha PNG: written back as 16-bit RGBA")
    elif channels == 2:
        px = px[..., [0, 0, 0, 1]]  # read as RGBA, written as LA
    elif channels == 1 and px.dtype == np.uint16:
        mode = "I;16"
    return ImageFile(np.ascontiguousarray(px), "PNG", mode, png.icc_profile, exif, notes, encoder)


def _read_pnm(path: Path, max_pixels: int) -> ImageFile:
    """A PGM or PPM at its own maxval, kept in :attr:`ImageFile.encoder` (``pnm_maxval``)
    and written back; the samples are spread over the full range of uint8 or uint16."""
    p = pnm.read_pnm(path, max_pixels)
    name = "PGM" if p.pixels.ndim == 2 else "PPM"
    notes = _trailing_note(p.trailing, "image data")
    if p.plain:
        notes.append(f"plain (ASCII) {name} written back as a binary {name}")
    if p.comments:
        notes.append(f"{name} header comments not written back")
    mode = "RGB" if p.pixels.ndim == 3 else ("L" if p.pixels.dtype == np.uint8 else "I;16")
    return ImageFile(p.pixels, "PPM", mode, notes=notes, encoder={"pnm_maxval": p.maxval})


def _read_heif(path: Path, max_pixels: int) -> ImageFile:
    """A HEIF/HEIC file's primary image, upright, at its own bit depth."""
    if heif.HAS_HEIF:  # pillow-heif reads the whole file: bounded by its boxes first
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            extent = containers.isobmff_extent(path, f, size, max_pixels, "HEIF")
        if extent.trailing:
            raise ImageError(
                f"{path}: {extent.trailing} bytes after the last HEIF box (at offset "
                f"{extent.end}): corrupt, or data that is not the image's; refused unread"
            )
    h = heif.read_heif(path, max_pixels)
    mode = "I;16" if h.mode == "I" or (h.mode == "L" and h.pixels.dtype == np.uint16) else h.mode
    # the EXIF orientation only repeats the rotation libheif has applied: dropped, not applied
    exif, _ = _parse_exif(h.exif, h.notes) if h.exif else (None, None)
    return ImageFile(h.pixels, "HEIF", mode, h.icc_profile, exif, h.notes, h.encoder)


def _from_tiff(tif: tiff16.Tiff) -> ImageFile:
    notes = list(tif.notes)
    assert tif.pixels is not None
    px = np.ascontiguousarray(_orient(tif.pixels, tif.orientation, notes))
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
    return ImageFile(px, "TIFF", mode, tif.icc_profile, None, notes, _tiff_encoder(tif))


def _tiff_encoder(tif: tiff16.Tiff) -> dict[str, Any]:
    """A TIFF's resolution as tifffile read it, (x, y, unit) of the upright image."""
    if tif.resolution is None:
        return {}
    x, y, unit = tif.resolution
    return {"tiff_resolution": (y, x, unit) if _turned(tif.orientation) else (x, y, unit)}


_PALETTE_NOTE = (
    "palette image written back in full colour: the denoised colours are not in its palette"
)


def _read_pillow(path: Path, max_pixels: int) -> ImageFile:
    """JPEG, WebP, AVIF, BMP and 8-bit or grey TIFF, through Pillow.

    Every format but TIFF (whose layout :mod:`n2n_infer.tiff16` has checked, and which
    libtiff reads from its descriptor) is read through :class:`containers.Bounded`:
    a JPEG, a WebP or an AVIF only as far as its header declares (see
    :mod:`n2n_infer.containers`), a BMP :data:`OPEN_BYTES` while Pillow reads its
    header, then no more than its declared samples can need.
    """
    # from an open file, not the path: from a path Pillow maps an uncompressed file
    # into memory, and (Pillow 13) lays a grey TIFF that it turns upright (orientation
    # 5-8) out in its stored shape, scrambled
    with open(path, "rb") as raw:
        size = os.fstat(raw.fileno()).st_size
        head = raw.read(64)
        raw.seek(0)
        if head[:4] in TIFF_MAGICS:
            return _decode_pillow(path, raw, max_pixels, None, [])
        extent = _container_extent(path, raw, head, size, max_pixels)
        fh = containers.Bounded(raw, extent.end if extent else min(size, OPEN_BYTES))
        try:
            notes = _trailing_note(extent.trailing, "image data") if extent else []
            return _decode_pillow(path, fh, max_pixels, None if extent else fh, notes)
        except ImageError:
            raise
        except Exception:
            if fh.cut:
                raise ImageError(
                    f"{path}: corrupt or not an image: the decoder asked for more than the "
                    f"{fh.limit} bytes that its header allows; refused unread"
                ) from None
            raise


def _container_extent(
    path: Path, raw: BinaryIO, head: bytes, size: int, max_pixels: int
) -> containers.Extent | None:
    """How far a JPEG, a WebP or an AVIF may be read (Pillow reads the last two whole),
    or ``None`` (a BMP: bounded once Pillow has read its header)."""
    if head[:3] == b"\xff\xd8\xff":
        return containers.jpeg_extent(path, raw, size, max_pixels)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return containers.webp_extent(path, raw, size, max_pixels)
    if HAS_AVIF and containers.looks_like_avif(head):
        return containers.isobmff_extent(path, raw, size, max_pixels, "AVIF")
    return None


def _decode_pillow(
    path: Path,
    fh: BinaryIO,
    max_pixels: int,
    bounded: containers.Bounded | None,
    notes: list[str],
) -> ImageFile:
    """Decode with Pillow from ``fh``; ``bounded``: ``fh`` itself, whose limit is set to
    what the declared image can need once Pillow has read the header."""
    fh.seek(0)
    with Image.open(fh, formats=READ_FORMATS) as im:
        if im.width * im.height > max_pixels:
            raise ImageError(
                f"{path}: {im.width}×{im.height} pixels exceeds the limit of {max_pixels}"
            )
        if bounded is not None:
            bands = len(im.getbands())
            bounded.limit = max(bounded.tell(), *(t[2] for t in im.tile)) + (
                containers.sample_bound(im.width * im.height, bands)
            )
        frames = getattr(im, "n_frames", 1)
        if frames > 1 and im.format == "MPO":
            notes.append(
                f"the {frames - 1} further image(s) of this MPO JPEG (a stereo view, a depth "
                "or HDR gain map) not kept"
            )
        elif frames > 1 and im.format != "TIFF":  # a TIFF's pages: see tiff16.read_tiff
            raise ImageError(
                f"{path}: an animation or image sequence ({frames} frames): only single "
                "images are denoised, and the other frames would be lost; split it into "
                "single images first"
            )
        if im.mode not in PILLOW_MODES:
            raise ImageError(
                f"{path}: pixel mode {im.mode} is not supported (expected grey, grey+alpha, "
                "RGB, RGBA, palette or 16-bit grey; CMYK, 32-bit integer and other modes "
                "cannot be written back faithfully)"
            )
        im.load()
        fmt, icc, mode = im.format or "", im.info.get("icc_profile"), im.mode
        # Pillow's "EXIF" of a TIFF is its image IFD (strips, colour map...): not kept
        exif, orientation = _parse_exif(im, notes, keep=fmt != "TIFF")
        encoder = _pillow_encoder(im, fh, _turned(orientation))
        read_as, write_as = PILLOW_MODES[mode]
        if mode == "P" and "transparency" in im.info:
            read_as = write_as = "RGBA"
        if mode == "P":
            notes.append(_PALETTE_NOTE)
        elif mode == "1":
            notes.append("1-bit image written back as 8-bit grey")
        pixels = np.asarray(im if read_as == mode else im.convert(read_as))
    if read_as.startswith("I;16"):
        pixels = pixels.astype(np.uint16)
    px = np.ascontiguousarray(_orient(pixels, orientation, notes))
    return ImageFile(px, fmt, write_as, icc or None, exif, notes, encoder)


def _turned(orientation: object) -> bool:
    """Whether an EXIF orientation swaps rows and columns (5-8)."""
    if isinstance(orientation, tuple) and len(orientation) == 1:
        orientation = orientation[0]
    if isinstance(orientation, bool) or not isinstance(orientation, int):
        return False
    return 5 <= orientation <= 8


def _pillow_encoder(im: Image.Image, fh: BinaryIO, turned: bool) -> dict[str, Any]:
    """The save options that write a Pillow-read image back alike: dpi, a JPEG's chroma
    subsampling and progressive coding, a WebP's losslessness (a TIFF's resolution:
    :func:`_tiff_encoder`)."""
    enc: dict[str, Any] = {}
    if im.format in ("JPEG", "MPO"):
        sampling = JpegImagePlugin.get_sampling(im)
        if sampling >= 0:
            enc["subsampling"] = sampling
        if im.info.get("progressive") or im.info.get("progression"):
            enc["progressive"] = True
    if "dpi" in im.info and im.format in ("JPEG", "MPO", "BMP"):
        dpi = tuple(float(v) for v in im.info["dpi"])
        if len(dpi) == 2 and all(0 < v < 1e6 for v in dpi):
            enc["dpi"] = dpi[::-1] if turned else dpi
    if im.format == "WEBP" and _webp_lossless(fh):
        enc["lossless"] = True
    return enc


def _webp_lossless(fh: BinaryIO) -> bool:
    """Whether a WebP file's image is lossless (a VP8L chunk before any VP8 chunk)."""
    fh.seek(12)
    for _ in range(64):  # VP8X, ICCP, ANIM... come before the image chunk
        head = fh.read(8)
        if len(head) < 8:
            return False
        kind, size = head[:4], int.from_bytes(head[4:], "little")
        if kind in (b"VP8L", b"VP8 "):
            return kind == b"VP8L"
        fh.seek(size + (size & 1), io.SEEK_CUR)
    return False


def _parse_exif(source: Any, notes: list[str], keep: bool = True) -> tuple[bytes | None, object]:
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


def _orient(px: np.ndarray, orientation: object, notes: list[str]) -> np.ndarray:
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
    if fmt == loaded.format:
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
        rename = shown.with_suffix(_SUFFIX_OF.get(loaded.format, ".png")).name
        raise ImageError(
            f"{shown}: its content is {loaded.format} ({depth} {loaded.mode}), which its "
            f"name's format, {fmt}, cannot hold: rename it {rename}"
        ) from None


def _writer(path: Path, loaded: ImageFile, px: np.ndarray) -> Callable[[BinaryIO], object]:
    """What writes ``px`` like ``loaded`` into an open file, in the format of ``path``'s suffix."""
    fmt = _format_of(path)
    if fmt == "HEIF":
        data = _encode_heif(path, px, loaded)
        return lambda f: f.write(data)
    # what keeps it alike applies to a file of the same format only
    encoder = loaded.encoder if _FAMILY.get(loaded.format, loaded.format) == fmt else {}
    if fmt == "PPM":  # at the source's maxval: a 12-bit PGM stays 12-bit
        try:
            data = pnm.encode_pnm(px, encoder.get("pnm_maxval"))
        except ImageError as exc:
            raise ImageError(f"{path}: {exc}") from None
        return lambda f: f.write(data)
    if px.dtype.kind == "f" or (px.dtype == np.uint16 and px.ndim == 3):
        data = _encode_deep(path, fmt, px, loaded.icc_profile, loaded.exif, encoder)
        return lambda f: f.write(data)
    im = Image.fromarray(px)
    if loaded.mode == "LA":
        im = im.convert("LA")
    options: dict[str, Any] = _format_options(fmt)
    options.update(_saved_alike(encoder, fmt))
    if loaded.icc_profile:
        options["icc_profile"] = loaded.icc_profile
    if loaded.exif and fmt != "BMP":
        options["exif"] = loaded.exif
    chunks = encoder.get("png_chunks") if fmt == "PNG" else None
    if chunks:  # Pillow writes only some of them: added to its file after IHDR
        buf = io.BytesIO()
        im.save(buf, format=fmt, **options)
        data = png16.with_chunks(buf.getvalue(), chunks)
        return lambda f: f.write(data)
    return lambda f: im.save(f, format=fmt, **options)


def _encode_heif(path: Path, px: np.ndarray, loaded: ImageFile) -> bytes:
    """HEIF bytes, with ``loaded``'s profile, EXIF and encoder settings if it was a HEIF."""
    if px.dtype.kind == "f":
        raise ImageError(f"{path}: floating-point pixels can only be written as TIFF, not HEIF")
    encoder = loaded.encoder if loaded.format == "HEIF" else {}
    if loaded.mode == "LA":  # grey + alpha, held as RGBA with R = G = B
        grey = np.rint(px[..., :3].mean(axis=2)).astype(px.dtype)
        px = np.stack([grey, px[..., 3]], axis=2)
    try:
        return heif.encode_heif(px, loaded.icc_profile, loaded.exif, encoder)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from None


def _encode_deep(
    path: Path,
    fmt: str,
    px: np.ndarray,
    icc: bytes | None,
    exif: bytes | None,
    encoder: dict[str, Any],
) -> bytes:
    """16-bit colour (PNG or TIFF) or float (TIFF) pixels to a file's bytes."""
    if fmt == "TIFF":
        return tiff16.encode_tiff(px, icc, encoder.get("tiff_resolution"))
    if fmt == "PNG" and px.dtype == np.uint16:
        return png16.encode_png16(px, icc, exif, encoder.get("png_chunks", ()))
    kind = "floating-point pixels can only be written as TIFF"
    if px.dtype == np.uint16:
        kind = "16-bit colour can only be written as PNG or TIFF"
    raise ImageError(f"{path}: {kind}, not {path.suffix!r}")


def write_image(path: str | Path, img_hwc_u8: np.ndarray) -> None:
    """Write a uint8 H×W×3 image to ``path`` (format from the suffix) atomically.

    Raises:
        ImageError: unknown suffix.
        OSError: the file cannot be written.
    """
    write_file(path, ImageFile(img_hwc_u8, "", "RGB"))


def _format_of(path: Path) -> str:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: cannot write format {path.suffix!r} (known: {sorted(SUFFIXES)})")
    return fmt


#: The keys of :attr:`ImageFile.encoder` that each format's Pillow writer takes as they are.
_SAVE_KEYS = {
    "JPEG": ("subsampling", "progressive", "dpi"),
    "WEBP": ("lossless",),
    "BMP": ("dpi",),
}


def _saved_alike(encoder: dict[str, Any], fmt: str) -> dict[str, Any]:
    """Pillow save options from a same-format file's :attr:`ImageFile.encoder`."""
    options = {k: encoder[k] for k in _SAVE_KEYS.get(fmt, ()) if k in encoder}
    if fmt == "TIFF" and "tiff_resolution" in encoder:
        x, y, unit = encoder["tiff_resolution"]
        options.update(x_resolution=x, y_resolution=y, resolution_unit=unit)
    return options


def _format_options(fmt: str) -> dict[str, Any]:
    if fmt == "JPEG":
        return {"quality": JPEG_QUALITY}
    if fmt in ("WEBP", "AVIF"):
        return {"quality": WEBP_QUALITY}
    if fmt == "TIFF":
        return {"compression": "tiff_deflate"}
    return {}
