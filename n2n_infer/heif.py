"""HEIF/HEIC files (a phone's default format), through pillow-heif: the ``heic`` extra.

``pip install "n2n[heic]"`` adds pillow-heif, whose wheels bundle libheif and
libde265 (LGPL) and the x265 encoder (GPL): that is why it is an extra and not a
dependency of the runtime. Without it, HEIF files are refused by name with that
advice (:data:`MISSING`), whatever their suffix (:func:`looks_like_heif`).

Reading: the primary image, at its own bit depth: 8-bit files as uint8, 10- and
12-bit ones as uint16 spread over the full 16-bit range (a 10-bit 1023 is
65535). libheif applies the file's rotation and mirroring (its ``irot`` and
``imir`` boxes) while decoding; the EXIF orientation that phones also write
only repeats them (HEIF readers must ignore it), so it is dropped, never applied
a second time. Writing: the same bit depth (10 or 12), the same chroma
subsampling (a phone's 4:2:0 stays 4:2:0), the ICC or nclx colour profile,
EXIF (orientation 1, the pixels being upright) and XMP, at quality
:data:`QUALITY`, in tiles of :data:`TILE` pixels as phones write them. A file's
other images (depth maps, an HDR gain map, the other images of a sequence) are
not written back: the reader says so in its notes. :data:`FORMAT` is HEIF's entry in
:data:`n2n_infer.imageio.FORMATS`; pillow-heif reads a file whole, so the file's
boxes are bounded first (:func:`n2n_infer.containers.isobmff_extent`).
"""

from __future__ import annotations

import importlib.util
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from n2n_infer import containers
from n2n_infer.errors import ImageError
from n2n_infer.formats import ImageFile, ImageFormat, Writer, parse_exif, written


def _installed() -> bool:
    try:
        return importlib.util.find_spec("pillow_heif") is not None
    except (ImportError, ValueError):  # a broken install, or blocked in sys.modules
        return False


#: Whether pillow-heif is installed (``pip install "n2n[heic]"``).
HAS_HEIF = _installed()
#: The suffixes of HEIF files (``.hif``: some cameras' 10-bit HEIF).
SUFFIXES = (".heic", ".heif", ".hif")
#: The refusal of a HEIF file where pillow-heif is missing.
MISSING = (
    'HEIF/HEIC (a phone\'s default format) needs the heic extra: pip install "n2n[heic]" '
    "(pillow-heif), or convert it to JPEG or PNG first"
)
#: Quality of the HEVC encoder (as JPEG's, 0-100): what the JPEG writer uses.
QUALITY = 95
#: Tile size of written images (phones write 512-pixel grids; decoders expect them).
TILE = 512
#: x265 preset: "medium" encodes twice as fast as libheif's default ("slow"), for the
#: same size and PSNR on photos (measured at quality 95, 3 megapixels).
PRESET = "medium"
#: What a HEIF carries beside its pixels that :func:`encode_heif` writes back as it was
#: (``thumbnails``: the thumbnails' sizes; they are made again from the new pixels).
KEPT = (
    "chroma",
    "nclx_profile",
    "xmp",
    "pixel_aspect_ratio",
    "content_light_level",
    "mastering_display_colour_volume",
    "ambient_viewing_environment",
    "nominal_diffuse_white_luminance",
    "thumbnails",
)
#: How much of a file's start is searched for an nclx box beside an ICC profile.
_HEAD_BYTES = 1 << 20
#: ISO-BMFF brands of HEVC-coded images; ``mif1``/``msf1`` files are HEIF unless AVIF.
_HEVC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_GENERIC_BRANDS = {b"mif1", b"msf1"}


@dataclass
class Heif:
    """A decoded HEIF primary image and what is needed to write it back alike."""

    pixels: np.ndarray
    mode: str
    icc_profile: bytes | None
    exif: bytes | None
    #: Encoder settings to write it back alike: bit_depth, chroma, nclx_profile, xmp.
    encoder: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def looks_like_heif(head: bytes) -> bool:
    """Whether a file's first bytes (32 or more) are a HEIF file's ``ftyp`` box (not AVIF's)."""
    if head[4:8] != b"ftyp":
        return False
    size = int.from_bytes(head[:4], "big")
    major = head[8:12]
    compatible = {head[i : i + 4] for i in range(16, min(size, len(head)) - 3, 4)}
    if major in _HEVC_BRANDS or compatible & _HEVC_BRANDS:
        return True
    return major in _GENERIC_BRANDS and b"avif" not in compatible and b"avis" not in compatible


def read_heif(path: Path, max_pixels: int) -> Heif:
    """Decode the primary image of a HEIF file (see the module's docstring).

    Raises:
        ImageError: pillow-heif is missing, the image has more than ``max_pixels``
            pixels, or its mode cannot be kept; the message names the file. Decoder
            failures propagate (``read_file`` names the file).
    """
    if not HAS_HEIF:
        raise ImageError(f"{path}: {MISSING}")
    import pillow_heif

    image = pillow_heif.open_heif(path, convert_hdr_to_8bit=False)  # decodes on first access
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"{path}: {width}×{height} pixels exceeds the limit of {max_pixels}")
    mode = image.mode.split(";")[0]  # "RGB;16" is RGB with 16-bit samples
    if mode not in ("L", "I", "RGB", "RGBA"):
        raise ImageError(f"{path}: HEIF pixel mode {image.mode} is not supported")
    info = image.info
    if mode == "RGBA" and not info.get("chroma"):
        mode = "LA"  # monochrome with alpha: pillow-heif gives it as RGBA, written back as LA
    notes = _left_out(path, image, info)
    bit_depth = int(info.get("bit_depth") or 8)
    # a copy: with some pillow-heif releases the array is a view of memory that is
    # freed with the file object (seen with 1.0.0: garbage pixels once it is collected)
    pixels = np.array(image, copy=True)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.dtype == np.uint16:
        pixels = _to_full_range(pixels, bit_depth)
    elif pixels.dtype != np.uint8:
        raise ImageError(f"{path}: HEIF pixel type {pixels.dtype} is not supported")
    encoder: dict[str, Any] = {"bit_depth": bit_depth}
    for key in KEPT:
        if info.get(key):
            encoder[key] = info[key]
    if encoder.get("xmp"):  # an XMP tiff:Orientation repeats the file's own, too
        encoder["xmp"] = _xmp_upright(encoder["xmp"])
    return Heif(
        pixels=np.ascontiguousarray(pixels),
        mode=mode,
        icc_profile=info.get("icc_profile") or None,
        exif=info.get("exif") or None,  # its orientation repeats libheif's: dropped by the caller
        encoder=encoder,
        notes=notes,
    )


def _left_out(path: Path, image: Any, info: dict[str, Any]) -> list[str]:
    """Notes on what a rewrite of this file will not keep."""
    notes = []
    if info.get("icc_profile"):  # pillow-heif gives one colour box: the ICC profile
        with open(path, "rb") as f:
            if b"colrnclx" in f.read(_HEAD_BYTES):
                notes.append("HEIF nclx colour box beside the ICC profile not written back")
    if info.get("metadata"):
        notes.append("HEIF metadata other than EXIF and XMP (e.g. IPTC) not written back")
    if len(image) > 1:
        n = len(image)
        notes.append(f"HEIF holds {n} images: only the primary one is denoised and written")
    if info.get("depth_images"):
        notes.append("HEIF depth map not written back")
    if info.get("aux"):
        notes.append("HEIF auxiliary images (e.g. an HDR gain map) not written back")
    return notes


def _xmp_upright(xmp: bytes) -> bytes:
    """XMP bytes without a ``tiff:Orientation`` (pillow-heif's encoder would apply it)."""
    import pillow_heif

    meta = {"xmp": xmp}
    pillow_heif.set_orientation(meta)
    return meta["xmp"]


def _to_full_range(raw: np.ndarray, bit_depth: int) -> np.ndarray:
    """pillow-heif's 16-bit data (``bit_depth`` bits, shifted to the top) over 0-65535."""
    top = (1 << bit_depth) - 1
    values = (raw >> (16 - bit_depth)).astype(np.uint32)
    return ((values * 65535 + top // 2) // top).astype(np.uint16)


def _from_full_range(px: np.ndarray, bit_depth: int) -> np.ndarray:
    """The inverse of :func:`_to_full_range`: rounded to ``bit_depth`` bits, shifted up."""
    top = (1 << bit_depth) - 1
    values = (px.astype(np.uint32) * top + 32767) // 65535
    return (values << (16 - bit_depth)).astype(np.uint16)


def encode_heif(
    px: np.ndarray,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    encoder: dict[str, Any] | None = None,
) -> bytes:
    """HEIF bytes of H×W, H×W×2 (grey + alpha), H×W×3 or H×W×4 uint8 or uint16 pixels, upright.

    ``exif`` should hold no orientation (:func:`n2n_infer.imageio.read_file` drops
    it): the pixels are upright. ``encoder`` (from :func:`read_heif`): ``bit_depth``
    for uint16 pixels (10,
    the default, or 12), ``chroma`` (420, 422 or 444; default 420), and what
    else :data:`KEPT` names.

    Raises:
        ImageError: pillow-heif is missing, or pixels of another type or shape.
    """
    if not HAS_HEIF:
        raise ImageError(MISSING)
    import pillow_heif

    encoder = dict(encoder or {})
    channels = 1 if px.ndim == 2 else px.shape[2]
    if px.dtype not in (np.uint8, np.uint16) or channels not in (1, 2, 3, 4):
        raise ImageError(f"HEIF: cannot write {px.dtype} pixels with {channels} channels")
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
    options: dict[str, Any] = {
        "quality": QUALITY,
        "enc_params": {"preset": PRESET},
        "tile_size": TILE,
        "chroma": int(encoder.get("chroma") or 420),
        "exif": exif,  # without an orientation: the encoder would make it the file's rotation
        "xmp": _xmp_upright(encoder["xmp"]) if encoder.get("xmp") else None,
    }
    if icc_profile:
        options["icc_profile"] = icc_profile
    for key in KEPT:  # the rest of what the file carried
        if key not in ("chroma", "xmp") and encoder.get(key):
            options[key] = encoder[key]
    if px.dtype == np.uint16:
        bit_depth = 12 if int(encoder.get("bit_depth") or 10) >= 12 else 10
        px = _from_full_range(px, bit_depth)
        mode = "I;16L" if channels == 1 else f"{mode};16"
        options["bit_depth"] = bit_depth
    out = io.BytesIO()
    data = np.ascontiguousarray(px).tobytes()
    pillow_heif.encode(mode, (px.shape[1], px.shape[0]), data, out, **options)
    return out.getvalue()


def _load(path: Path, max_pixels: int) -> ImageFile:
    """A HEIF/HEIC file's primary image, upright, at its own bit depth."""
    with open(path, "rb") as f:  # pillow-heif reads the whole file: bounded by its boxes first
        size = os.fstat(f.fileno()).st_size
        extent = containers.isobmff_extent(path, f, size, max_pixels, "HEIF")
    if extent.trailing:
        raise ImageError(
            f"{path}: {extent.trailing} bytes after the last HEIF box (at offset "
            f"{extent.end}): corrupt, or data that is not the image's; refused unread"
        )
    h = read_heif(path, max_pixels)
    mode = "I;16" if h.mode == "I" or (h.mode == "L" and h.pixels.dtype == np.uint16) else h.mode
    # the EXIF orientation only repeats the rotation libheif has applied: dropped, not applied
    exif, _ = parse_exif(h.exif, h.notes) if h.exif else (None, None)
    return ImageFile(h.pixels, "HEIF", mode, h.icc_profile, exif, h.notes, h.encoder)


def _save(path: Path, loaded: ImageFile, px: np.ndarray, encoder: dict[str, Any]) -> Writer:
    """HEIF bytes, with ``loaded``'s profile, EXIF data and (a HEIF's) encoder settings."""
    if px.dtype.kind == "f":
        raise ImageError(f"{path}: floating-point pixels can only be written as TIFF, not HEIF")
    if loaded.mode == "LA":  # grey + alpha, held as RGBA with R = G = B
        grey = np.rint(px[..., :3].mean(axis=2)).astype(px.dtype)
        px = np.stack([grey, px[..., 3]], axis=2)
    try:
        return written(encode_heif(px, loaded.icc_profile, loaded.exif, encoder))
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from None


FORMAT = ImageFormat(
    "HEIF",
    SUFFIXES,
    sniff=looks_like_heif,  # whatever its name: phones also export HEIF as .jpg
    read=_load,
    write=_save,
    keeps=("bit_depth", *KEPT),
    holds=frozenset({"grey", "colour", "alpha", "16-bit"}),
    refusal="" if HAS_HEIF else MISSING,
)
