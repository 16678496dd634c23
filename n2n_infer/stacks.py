"""Image stacks: multi-page TIFF, ImageJ hyperstacks and OME-TIFF, denoised plane by plane.

A *stack* is a TIFF whose first image series, as `tifffile
<https://pypi.org/project/tifffile/>`_ reads it (``TiffFile.series[0]``), holds
more than one 2-D plane: a plain multi-page TIFF (pages of one size and kind), an
ImageJ hyperstack (axes among T, Z, C; its description and IJMetadata) or an
OME-TIFF (any axes its OME-XML names). Each plane is denoised on its own, through
the public :class:`~n2n_infer.Denoiser` API: as a grey image (H×W), or as a
colour image (H×W×3; alpha passed through) when the series has samples (axis
``S``) of 3 or 4, a multi-page scan of photos say.

Levels. A dim 16-bit image (no value above
:data:`~n2n_infer.arrays.DIM_16BIT_MAX`) is mapped by its own range in the 2-D
path (:func:`n2n_infer.arrays.levels_of`). In a stack the rule applies per stack
*and channel* (index along ``C``), not per plane: a first pass over the stack
finds each channel's minimum and maximum, and every plane of that channel is
mapped by them, ``(v - black) / span``, fed to the model as float32 in [0, 1] and
mapped back (rounded, clipped to the dtype). Planes of one channel thus stay
comparable (a dim plane beside a bright one is not stretched to full range, a
constant plane stays constant), as microscopy measurements require. The same
holds for a dim float32 channel (values in [0, 1], checked in the first pass,
none above :data:`~n2n_infer.arrays.DIM_FLOAT_MAX`; mapped back without
rounding). Other 16-bit channels are mapped by 65535, uint8 by 255 and other
float channels as they are, as the Denoiser maps 2-D images; with
``Denoiser(levels="full")`` every channel is. The mapped planes go to the
Denoiser with ``levels="full"``, so that its own rule for 2-D images does not
map a plane again by the plane's range.

Reading. Nothing is decoded before its layout is checked: every directory of the
file by its entries alone (the rules of :func:`n2n_infer.tiff16.check_directories`,
for all pages, at most :data:`MAX_PAGES`), SubIFDs (pyramids) and OME-XML that
refers to other files are refused, then tifffile finds the series, and each
plane's strips or tiles are checked (:func:`n2n_infer.tiff16.check_layout`) just
before it is decoded. Planes are read one at a time (``series[i].asarray()``, or
by offset in a contiguous ImageJ hyperstack of one directory): the whole series
is never read at once.

Writing. The output has the input's axes, shape and dtype, its first page's
compression and predictor (Deflate instead of a compression tifffile cannot write,
JPEG included, with a note), strips or tiles, photometric, extra samples, ICC
profile, orientation and resolution (XResolution, YResolution, ResolutionUnit),
and its metadata: an OME-TIFF's OME-XML as written (physical sizes, channel
names, everything else; its planes stay in the IFDs it names), an ImageJ
hyperstack's description and IJMetadata rebuilt by tifffile (``imagej=True``:
axes, spacing, unit, finterval, display range, LUTs, labels...), a tifffile
"shaped" file's JSON metadata, any other first page's description as written.
Planes stream from the input through the model into the output
(``TiffWriter.write`` with an iterator), so memory does not grow with depth:
the runtime, plus the Denoiser's batch of planes. The file is written
atomically (:func:`n2n_infer.files.write_atomic`).

Z-context. A z-context model (``Denoiser.z_context`` K > 0) denoises plane z from
the planes z−K..z+K of its Z run (:func:`context_indices`: mirrored at the ends as
``numpy.pad(mode="reflect")``), through :meth:`~n2n_infer.Denoiser.denoise_planes`.
Only stacks with a Z axis and grey planes are denoised with it. The planes still
stream: each is read once, when a context first needs it, and dropped when the last
context of its run has used it, so at most 2K+1 planes of each open Z run are held
(one run, or one per channel when C lies inside Z as in ImageJ hyperstacks), plus
the Denoiser's batch of contexts.

:func:`denoise_stack_file` is what ``n2n-infer batch`` runs on a stack
(:func:`n2n_infer.batch.convert_file`, when :func:`is_stack`); :func:`denoise_axes`
denoises an array in memory whose axes are named (``"ZCYX"``) by the same rules.
"""

from __future__ import annotations

import logging
import math
import os
import re
import stat
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO
from xml.etree import ElementTree

import numpy as np
import tifffile

from n2n_infer import tiff16
from n2n_infer.arrays import (
    MAX_PIXELS,
    finite_range,
    from_unit,
    levels_of,
    to_unit,
)
from n2n_infer.errors import ImageError
from n2n_infer.files import write_atomic

if TYPE_CHECKING:
    from n2n_infer.denoiser import Denoiser

__all__ = [
    "AXES",
    "MAX_PAGES",
    "StackInfo",
    "StackResult",
    "context_indices",
    "denoise_axes",
    "denoise_stack_file",
    "is_stack",
    "read_stack_info",
]

log = logging.getLogger(__name__)

#: Axis letters :func:`denoise_axes` takes: time, depth, channel, any other
#: dimension, rows, columns, samples (RGB / RGBA).
AXES = "TZCQYXS"
#: A TIFF of more pages than this is refused before tifffile reads it.
MAX_PAGES = 100_000
#: Sample counts of a plane: grey, RGB, RGBA.
SAMPLES = (1, 3, 4)
#: The dtypes of a stack file that are denoised.
FILE_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
#: The dtypes :func:`denoise_axes` takes (those the Denoiser takes).
ARRAY_DTYPES = (*FILE_DTYPES, np.dtype(np.float64))
#: tifffile's series kinds written back, with how they are named in messages.
KINDS = {
    "ome": "OME-TIFF",
    "imagej": "ImageJ hyperstack",
    "shaped": "tifffile stack",
    "generic": "multi-page TIFF",
    "uniform": "multi-page TIFF",
}
#: Compressions written as read (tifffile with imagecodecs): none, LZW, Deflate
#: (Adobe and old-style), PackBits, Zstandard, LZMA. Others are written as Deflate.
WRITTEN_COMPRESSIONS = (1, 5, 8, 32946, 32773, 50000, 34925)
DEFLATE = 8
JPEG = 7
#: PhotometricInterpretation values: 0 is white, 0 is black, RGB, YCbCr.
MINISWHITE, MINISBLACK, RGB, YCBCR = 0, 1, 2, 6
ORIENTATION, DESCRIPTION, NEW_SUBFILE_TYPE, SUB_IFDS = 274, 270, 254, 330
ICC_PROFILE = 34675
X_RESOLUTION, Y_RESOLUTION, RESOLUTION_UNIT = 282, 283, 296
#: A file larger than this is written as BigTIFF (tifffile's own margin below 4 GiB).
BIGTIFF_BYTES = 2**32 - 2**25
#: Bytes of an ImageJ description read to tell a one-directory hyperstack.
IMAGEJ_HEAD = 4096
#: ImageJ metadata that tifffile computes from the shape when it writes a hyperstack.
IMAGEJ_COMPUTED = ("images", "channels", "slices", "frames")
#: ``(black, span)``: a value v goes to the model as ``(v - black) / span``.
Levels = tuple[float, float]


@dataclass(frozen=True)
class StackInfo:
    """What a stack file holds.

    Attributes:
        kind: ``"OME-TIFF"``, ``"ImageJ hyperstack"``, ``"tifffile stack"`` or
            ``"multi-page TIFF"``.
        axes: tifffile's axes of the series (``"ZCYX"``, ``"TZYX"``, ``"IYXS"``...).
        shape: the series' shape, one size per axis.
        dtype: uint8, uint16 or float32.
        planes: the number of 2-D planes (pages).
        size_hw: a plane's height and width.
        samples: samples per pixel: 1 (grey), 3 (RGB) or 4 (RGBA).
    """

    kind: str
    axes: str
    shape: tuple[int, ...]
    dtype: np.dtype
    planes: int
    size_hw: tuple[int, int]
    samples: int


@dataclass(frozen=True)
class StackResult:
    """A stack written by :func:`denoise_stack_file`: what it holds, and notes (what
    was not kept as it was, how the levels were mapped)."""

    info: StackInfo
    notes: tuple[str, ...] = ()

    @property
    def size_hw(self) -> tuple[int, int]:
        """A plane's height and width."""
        return self.info.size_hw


# --- z-context: the neighbours of a plane ---------------------------------------------


def context_indices(z: int, depth: int, k: int, what: str = "stack") -> list[int]:
    """The planes a z-context model of ``k`` reads for plane ``z`` of a Z axis of ``depth``
    planes: ``z - k .. z + k``, mirrored at the ends as ``numpy.pad(mode="reflect")``
    mirrors (without repeating the end plane: ``-1`` is plane 1, ``depth`` is plane
    ``depth - 2``). The one rule of training and the runtime.

    >>> context_indices(0, 5, 2)
    [2, 1, 0, 1, 2]

    Raises:
        ImageError: a Z axis shorter than ``k + 1`` planes (it cannot be mirrored), or
            ``z`` outside it; the message names ``what`` (a file, an argument).
    """
    if k < 0:
        raise ImageError(f"{what}: z-context must be 0 or more, got {k}")
    if depth < k + 1:
        raise ImageError(
            f"{what}: a Z axis of {depth} plane(s), too short for a z-context model of K={k} "
            f"(planes z-{k}..z+{k}, mirrored at the ends): it needs at least {k + 1} planes"
        )
    if not 0 <= z < depth:
        raise ImageError(f"{what}: plane {z} is outside the Z axis of {depth} planes")
    last = depth - 1
    return [abs(i) if i < 0 else 2 * last - i if i > last else i for i in range(z - k, z + k + 1)]


# --- arrays in memory ------------------------------------------------------------------


def denoise_axes(
    denoiser: Denoiser, array: np.ndarray, axes: str, *, tile: bool | None = None
) -> np.ndarray:
    """Denoise every 2-D plane of ``array``, whose axes ``axes`` names; same shape and dtype back.

    ``axes`` has one letter per dimension among :data:`AXES` (``T`` time, ``Z``
    depth, ``C`` channel, ``Q`` any other, ``Y`` rows, ``X`` columns, ``S``
    samples), each at most once, ``Y`` and ``X`` required, in any order; ``S``
    only last, of size 1 (grey), 3 (RGB) or 4 (RGBA, alpha passed through).
    Lower case is accepted. Each plane (``Y`` × ``X``, with its samples) is
    denoised by ``denoiser`` as a grey or colour image; uint16 planes are mapped
    per channel (``C``) over the whole array, not per plane (see the module);
    ``tile`` is passed to the Denoiser. Planes go through
    :meth:`~n2n_infer.Denoiser.denoise_iter`, a batch at a time.

    >>> out = denoise_axes(Denoiser(), volume, "ZCYX")   # uint16 Z×C×Y×X

    Raises:
        ImageError: ``axes`` is not a string of those letters, names an axis twice,
            lacks ``Y`` or ``X``, has another length than ``array`` has
            dimensions, puts ``S`` elsewhere than last or gives it another size;
            ``array`` is not a numpy array, of a dtype other than uint8, uint16,
            float32 or float64, or has empty planes; a plane the Denoiser refuses
            (``image N``: the N-th plane in C order of the other axes).
    """
    axes = _check_axes(array, axes)
    if getattr(denoiser, "z_context", 0):
        return _denoise_axes_z(denoiser, array, axes, tile)
    view, out, out_view, lead = _plane_views(array, axes)
    lead_shape = view.shape[: len(lead)]
    if math.prod(lead_shape) == 0:
        return out
    grey_s = axes.endswith("S") and array.shape[-1] == 1
    channel = lead.index("C") if "C" in lead else None

    def planes() -> Iterator[tuple[np.ndarray, int]]:
        for idx in np.ndindex(lead_shape):
            plane = view[idx]
            yield (plane[..., 0] if grey_s else plane), (0 if channel is None else idx[channel])

    levels = _levels(denoiser, array.dtype, planes, "image")
    results = _denoised(denoiser, planes(), levels, tile)
    for idx, result in zip(np.ndindex(lead_shape), results, strict=True):
        out_view[idx] = result[..., None] if grey_s else result
    return out


def _denoise_axes_z(
    denoiser: Denoiser, array: np.ndarray, axes: str, tile: bool | None
) -> np.ndarray:
    """:func:`denoise_axes` for a z-context model: each plane from its Z neighbours."""
    if array.ndim and axes.endswith("S") and array.shape[-1] != 1:
        raise ImageError(
            f"image: axes {axes!r} with {array.shape[-1]} samples: {denoiser.path.name} is a "
            "z-context model of grey planes"
        )
    view, out, out_view, lead = _plane_views(array, axes)
    _check_z_axis(denoiser, "".join(lead), "image", f"axes {axes!r}")
    if axes.endswith("S"):
        view, out_view = view[..., 0], out_view[..., 0]
    lead_shape = view.shape[: len(lead)]
    if math.prod(lead_shape) == 0:
        return out
    channel = lead.index("C") if "C" in lead else None
    positions = list(np.ndindex(lead_shape))

    def channel_of(i: int) -> int:
        return 0 if channel is None else positions[i][channel]

    def planes() -> Iterator[tuple[np.ndarray, int]]:
        for i, idx in enumerate(positions):
            yield view[idx], channel_of(i)

    levels = _levels(denoiser, array.dtype, planes, "image")
    results = _denoised_z(
        denoiser,
        lambda i: view[positions[i]],
        lead_shape,
        lead.index("Z"),
        channel_of,
        levels,
        tile,
        "image",
    )
    for idx, result in zip(positions, results, strict=True):
        out_view[idx] = result
    return out


def _plane_views(
    array: np.ndarray, axes: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(``array`` with Y, X (and S) moved last, an empty output of its shape and dtype,
    the output's view moved alike, the other axes' letters in order): no copy."""
    src = [axes.index("Y"), axes.index("X")] + ([array.ndim - 1] if axes.endswith("S") else [])
    dst = list(range(-len(src), 0))
    out = np.empty(array.shape, array.dtype)
    lead = [a for a in axes if a not in "YXS"]
    return np.moveaxis(array, src, dst), out, np.moveaxis(out, src, dst), lead


def _check_z_axis(denoiser: Denoiser, lead: str, what: str, axes: str) -> None:
    """Refuse planes without a Z axis for a z-context model.

    Raises:
        ImageError: naming ``what`` (the file or ``image``) and its ``axes``.
    """
    if "Z" not in lead:
        k = denoiser.z_context
        raise ImageError(
            f"{what}: {axes} have no Z axis, but {denoiser.path.name} is a z-context model "
            f"(it denoises plane z from planes z-{k}..z+{k}): give a stack with a Z axis, or "
            "denoise plane by plane with another model"
        )


def _denoised_z(
    denoiser: Denoiser,
    read: Callable[[int], np.ndarray],
    lead_shape: tuple[int, ...],
    z_axis: int,
    channel_of: Callable[[int], int],
    levels: dict[int, Levels] | None,
    tile: bool | None,
    what: str,
) -> Iterator[np.ndarray]:
    """The planes (in C order of ``lead_shape``, as ``read(i)`` gives plane ``i``), each
    denoised from its context along the axis ``z_axis``
    (:func:`context_indices`), in their dtype, mapped as :func:`_denoised` maps them.

    Streams: a plane is read once, when a context first needs it, and dropped when no
    later plane of its Z run needs it, so at most ``2K + 1`` planes of each Z run being
    denoised are held (one run at a time when Z is the innermost of the other axes;
    one per channel of an ImageJ hyperstack, whose C runs inside Z), plus the
    Denoiser's batch of contexts.

    Raises:
        ImageError: a Z axis shorter than ``K + 1`` planes (naming ``what``).
    """
    k, depth = denoiser.z_context, lead_shape[z_axis]
    context_indices(0, depth, k, what)  # a short Z axis is refused before any work
    inner = math.prod(lead_shape[z_axis + 1 :])
    held: dict[int, np.ndarray] = {}
    dtypes: dict[int, np.dtype] = {}

    def unit(i: int) -> np.ndarray:
        if i not in held:
            plane = read(i)
            dtypes[i] = plane.dtype
            held[i] = to_unit(plane, None if levels is None else levels[channel_of(i)])
        return held[i]

    def contexts() -> Iterator[np.ndarray]:
        for i in range(math.prod(lead_shape)):
            z = (i // inner) % depth
            yield np.stack([unit(i + (j - z) * inner) for j in context_indices(z, depth, k, what)])
            gone = range(max(z - k, 0), depth if z == depth - 1 else max(z - k + 1, 0))
            for j in gone:  # no later plane of this run reads them
                held.pop(i + (j - z) * inner, None)

    for i, result in enumerate(denoiser.denoise_planes(contexts(), tile=tile)):
        yield from_unit(result, dtypes.pop(i), None if levels is None else levels[channel_of(i)])


def _check_axes(array: Any, axes: Any) -> str:
    """``axes`` upper-cased, checked against ``array`` (see :func:`denoise_axes`)."""
    if not isinstance(array, np.ndarray) or isinstance(array, np.ma.MaskedArray):
        raise ImageError(
            f"image: expected a numpy array (not masked) with axes {axes!r}, got "
            f"{type(array).__name__}"
        )
    if not isinstance(axes, str):
        raise ImageError(
            f"axes: expected a string of axis letters such as 'ZYX' or 'TCYX', got {axes!r} "
            f"({type(axes).__name__})"
        )
    named = axes.upper()
    unknown = sorted(set(named) - set(AXES))
    if unknown:
        raise ImageError(
            f"axes {axes!r}: unknown letter(s) {', '.join(map(repr, unknown))} (expected "
            f"letters among {', '.join(AXES)})"
        )
    twice = sorted({a for a in named if named.count(a) > 1})
    if twice:
        raise ImageError(
            f"axes {axes!r}: {', '.join(map(repr, twice))} named more than once (each axis "
            "at most once)"
        )
    if "Y" not in named or "X" not in named:
        raise ImageError(f"axes {axes!r}: Y and X are required (a plane's rows and columns)")
    if len(named) != array.ndim:
        raise ImageError(
            f"axes {axes!r} names {len(named)} axes, but the array has {array.ndim} "
            f"dimensions (shape {array.shape})"
        )
    if "S" in named[:-1]:
        raise ImageError(f"axes {axes!r}: S (samples per pixel) must be the last axis")
    if named.endswith("S") and array.shape[-1] not in SAMPLES:
        raise ImageError(
            f"axes {axes!r}: S of size {array.shape[-1]} (expected 1 grey, 3 RGB or 4 RGBA)"
        )
    if array.dtype.newbyteorder("=") not in ARRAY_DTYPES:
        raise ImageError(
            f"image: dtype {array.dtype} is not supported (expected uint8, uint16, float32 "
            "or float64 in [0, 1])"
        )
    h, w = array.shape[named.index("Y")], array.shape[named.index("X")]
    if h == 0 or w == 0:
        raise ImageError(f"image: empty planes of {h}×{w} pixels (shape {array.shape})")
    return named


# --- levels and the model ---------------------------------------------------------------


def _levels(
    denoiser: Denoiser,
    dtype: np.dtype,
    planes: Callable[[], Iterable[tuple[np.ndarray, int]]],
    what: str,
) -> dict[int, Levels] | None:
    """Each channel's ``(black, span)`` for uint16 and float planes (``None`` for uint8:
    its planes go to the Denoiser as they are); float planes are checked to lie in [0, 1].

    ``planes()`` gives (plane, channel) pairs afresh (a first pass over the stack);
    ``what`` names the stack in errors. A channel is dim when none of its values
    exceeds :data:`~n2n_infer.arrays.DIM_16BIT_MAX` (16-bit) or
    :data:`~n2n_infer.arrays.DIM_FLOAT_MAX` (float), unless
    ``denoiser.levels`` is ``"full"``: it is mapped by its minimum and maximum over
    the stack (:func:`~n2n_infer.arrays.levels_of`'s rule on the channel's extremes);
    any other by its dtype's full scale (65535; 1 for floats).

    Raises:
        ImageError: float values outside [0, 1] or not finite (naming the plane).
    """
    dtype = np.dtype(dtype).newbyteorder("=")
    if dtype.kind != "f" and dtype != np.uint16:
        return None
    floats = dtype.kind == "f"
    full = 1.0 if floats else 65535.0
    if getattr(denoiser, "levels", "auto") == "full":
        for i, (plane, _) in enumerate(planes() if floats else ()):
            _check_unit(plane, f"{what}: plane {i}")
        return _FullScale(full)
    ranges: dict[int, tuple[float, float]] = {}
    for i, (plane, channel) in enumerate(planes()):
        colour = plane if plane.ndim == 2 else plane[..., :3]  # alpha left out
        if floats:
            lo, hi = _check_unit(colour, f"{what}: plane {i}")
        else:
            lo, hi = float(colour.min()), float(colour.max())
        was = ranges.get(channel, (lo, hi))
        ranges[channel] = (min(was[0], lo), max(was[1], hi))
    extremes = np.dtype(np.float32 if dtype.kind == "f" else np.uint16)
    return {
        # the 2-D rule, on a 1×2 image of the channel's extremes
        c: levels_of(np.array([[[lo], [hi]]], extremes)) or (0.0, full)
        for c, (lo, hi) in ranges.items()
    }


class _FullScale(dict[int, Levels]):
    """Every channel mapped by its dtype's full scale (``levels="full"``)."""

    def __init__(self, full: float) -> None:
        super().__init__()
        self.full = full

    def __missing__(self, channel: int) -> Levels:
        return (0.0, self.full)


def _check_unit(plane: np.ndarray, what: str) -> tuple[float, float]:
    """The smallest and largest of float ``plane``'s values, read band by band; refuses
    values that are not finite or lie outside [0, 1]."""
    found = finite_range(plane)
    if found is None:
        raise ImageError(f"{what} contains NaN or infinite values")
    lo, hi = found
    if lo < 0.0 or hi > 1.0:
        raise ImageError(
            f"{what} holds values in [{lo:.9g}, {hi:.9g}]: only float values in [0, 1] are denoised"
        )
    return lo, hi


def _denoised(
    denoiser: Denoiser,
    planes: Iterable[tuple[np.ndarray, int]],
    levels: dict[int, Levels] | None,
    tile: bool | None,
) -> Iterator[np.ndarray]:
    """The denoised planes, in order, of the same shapes and dtypes as ``planes``'
    (H×W or H×W×S, with their channels); through ``denoiser.denoise_iter``, so that
    at most a batch of planes is held. With ``levels`` (uint16), a plane goes to the
    model as float32 mapped by its channel's levels (and ``levels="full"``, so that the
    Denoiser does not map it again) and comes back mapped by them."""
    pending: deque[tuple[np.ndarray, Levels | None]] = deque()

    def inputs() -> Iterator[np.ndarray]:
        for plane, channel in planes:
            mapping = None if levels is None else levels[channel]
            pending.append((plane, mapping))
            yield _to_model(plane, mapping)

    mapped = {} if levels is None else {"levels": "full"}
    for result in denoiser.denoise_iter(inputs(), tile=tile, **mapped):
        plane, mapping = pending.popleft()
        yield _from_model(result, plane, mapping)


def _to_model(plane: np.ndarray, levels: Levels | None) -> np.ndarray:
    """``plane`` as the Denoiser gets it: as it is, or its colour mapped to float32 in [0, 1]."""
    if levels is None:
        return plane
    black, span = levels
    unit = (plane if plane.ndim == 2 else plane[..., :3]).astype(np.float32)
    unit -= np.float32(black)
    unit /= np.float32(span)
    return np.clip(unit, 0.0, 1.0, out=unit)


def _from_model(result: np.ndarray, plane: np.ndarray, levels: Levels | None) -> np.ndarray:
    """The Denoiser's ``result`` in ``plane``'s dtype: mapped back by ``levels`` (integers
    rounded and clipped to the dtype), ``plane``'s alpha copied."""
    if levels is None:
        return result
    black, span = levels
    values = np.clip(result, 0.0, 1.0) * np.float32(span)
    values += np.float32(black)
    if plane.dtype.kind != "f":
        np.rint(values, out=values)
        np.clip(values, 0, np.iinfo(plane.dtype).max, out=values)
    out = values.astype(plane.dtype)
    if plane.ndim == 3 and plane.shape[2] == 4:
        out = np.concatenate([out, plane[..., 3:]], axis=2)
    return out


# --- files ------------------------------------------------------------------------------


def is_stack(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a TIFF for :func:`denoise_stack_file` rather than the image
    readers: one with a second full-resolution page (reduced-resolution pages,
    thumbnails, do not count) or more pages than the image readers look at, or one
    page whose ImageJ description declares several images (a hyperstack stored
    contiguously). Reads the first bytes and a few directories; never raises (a
    file that cannot be read this far is left to the image readers to report)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        with os.fdopen(os.dup(fd), "rb") as f:
            return _several_images(Path(path), f, os.fstat(f.fileno()).st_size)
    except (OSError, ImageError, ValueError, OverflowError):
        return False
    finally:
        os.close(fd)


def _several_images(path: Path, f: BinaryIO, size: int) -> bool:
    layout, offset = _header(path, f)
    full, seen, description = 0, set(), b""
    for page in range(tiff16.MAX_PAGES_CHECKED + 2):
        if not 0 < offset < size or offset in seen:
            break
        if page > tiff16.MAX_PAGES_CHECKED:
            return True  # more pages than the image readers take
        seen.add(offset)
        entries, offset = layout.directory(path, f, offset)
        values = {tag: (kind, count, raw) for tag, kind, count, raw in entries}
        subfile = values.get(NEW_SUBFILE_TYPE)
        reduced = subfile is not None and (layout.number(*subfile) or 0) & 1
        full += not reduced
        if full > 1:
            return True
        if page == 0 and DESCRIPTION in values:
            kind, count, raw = values[DESCRIPTION]
            description = _tag_bytes(f, layout, kind, min(count, IMAGEJ_HEAD), raw, count)
    found = (
        re.search(rb"\nimages=(\d+)", description) if description.startswith(b"ImageJ=") else None
    )
    return found is not None and int(found.group(1)) > 1


def read_stack_info(path: str | os.PathLike[str]) -> StackInfo:
    """Check a stack file as :func:`denoise_stack_file` does (without decoding a plane)
    and say what it holds.

    Raises:
        ImageError: as :func:`denoise_stack_file`, for the input.
    """
    with _open(Path(path)) as stack:
        return stack.info


def denoise_stack_file(
    denoiser: Denoiser,
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    tile: bool | None = None,
    before_write: Callable[[], None] | None = None,
    on_plane: Callable[[int, int], None] | None = None,
) -> StackResult:
    """Denoise the stack ``src`` plane by plane into the TIFF file ``dst`` (see the module).

    ``dst`` is written atomically: a temporary file beside it, renamed over it once
    complete; on any failure nothing is left at ``dst`` (an existing file is left as
    it was). ``before_write`` is called after ``src`` is checked (and, for uint16 or
    float32 stacks, read once for its levels), before ``dst``'s temporary file is
    created: the folder job checks there where ``dst`` leads. ``tile`` is passed to
    the Denoiser. ``on_plane(done, total)`` is called as each denoised plane goes
    to the writer. Memory does not grow with the number of planes.

    Raises:
        ImageError: ``dst``'s name is not a TIFF's; ``src`` is not a readable TIFF
            stack: a plane of more than :data:`~n2n_infer.arrays.MAX_PIXELS`
            pixels, more than :data:`MAX_PAGES` pages, more planes declared than
            the file holds, a dtype other than uint8, uint16 or float32 in [0, 1],
            samples other than grey, RGB or RGBA, planes in several series, files
            or out of order, SubIFDs, a TIFF flavour whose metadata cannot be
            written back (LSM, STK, ...); strips or tiles missing or out of the
            file; any decoder failure (tifffile's errors are wrapped); the message
            names ``src``.
        N2NError: what ``before_write`` raises.
        OSError: ``dst`` cannot be written.
    """
    src, dst = Path(src), Path(dst)
    if dst.suffix.lower() not in tiff16.FORMAT.suffixes:
        raise ImageError(
            f"{src}: a TIFF stack is written as a TIFF, not {dst.suffix or 'without a suffix'}: "
            f"name the output {dst.with_suffix('.tif').name}"
        )
    k = getattr(denoiser, "z_context", 0)
    with _open(src) as stack:
        info = stack.info
        lead = info.axes[: len(stack.lead_shape)]
        if k:
            _check_z_axis(denoiser, lead, str(src), f"its axes {info.axes}")
            if info.samples != 1:
                raise ImageError(
                    f"{src}: {info.kind} of {info.samples} samples per pixel, but "
                    f"{denoiser.path.name} is a z-context model of grey planes"
                )
            context_indices(0, info.shape[lead.index("Z")], k, str(src))
        levels = _levels(denoiser, info.dtype, stack.planes, str(src))
        if before_write is not None:
            before_write()
        if k:
            results = _denoised_z(
                denoiser,
                stack.plane,
                tuple(stack.lead_shape),
                lead.index("Z"),
                stack.channel,
                levels,
                tile,
                str(src),
            )
        else:
            results = _denoised(denoiser, stack.planes(), levels, tile)
        if on_plane is not None:
            results = _counted(results, info.planes, on_plane)
        write_atomic(dst, lambda f: stack.write(f, results))
        notes = [*stack.notes, *_level_notes(levels)]
        if k:
            notes.append(
                f"z-context model: each plane denoised from planes z-{k}..z+{k} along Z "
                "(mirrored at the ends)"
            )
    log.info("%s: %s of %d planes denoised into %s", src, info.kind, info.planes, dst)
    return StackResult(info, tuple(dict.fromkeys(notes)))


def _counted(
    items: Iterator[np.ndarray], total: int, on_item: Callable[[int, int], None]
) -> Iterator[np.ndarray]:
    """``items``, calling ``on_item(done, total)`` after each is given."""
    for done, item in enumerate(items, 1):
        yield item
        on_item(done, total)


def _level_notes(levels: dict[int, Levels] | None) -> list[str]:
    """How dim 16-bit channels were mapped, one note for all of them."""
    if not levels or isinstance(levels, _FullScale):
        return []
    dim = {c: lv for c, lv in sorted(levels.items()) if lv != (0.0, 65535.0)}
    if not dim:
        return []
    if len(levels) == 1:
        (black, span), *_ = dim.values()
        return [
            f"dim 16-bit stack: mapped by its range over the whole stack "
            f"({black:g}..{black + span:g}), not per plane"
        ]
    ranges = ", ".join(f"channel {c} {b:g}..{b + span:g}" for c, (b, span) in dim.items())
    return [
        f"dim 16-bit channels: each mapped by its range over the whole stack ({ranges}), "
        "not per plane"
    ]


@contextmanager
def _open(path: Path) -> Iterator[_Stack]:
    """The checked stack at ``path``, open (tifffile's log lines become its notes).

    Raises:
        ImageError: see :func:`denoise_stack_file`; tifffile's own errors on a
            malformed file are wrapped, naming the file.
    """
    description = _check_file(path)
    with tiff16._TIFFFILE_LOG.collect() as logged:
        with _tifffile_errors(path, "TIFF stack"):
            tif = tifffile.TiffFile(path)
        with tif:
            with _tifffile_errors(path, "TIFF stack"):
                stack = _Stack(path, tif, description, logged)
            yield stack


@contextmanager
def _tifffile_errors(path: Path, what: str) -> Iterator[None]:
    """tifffile's and the codecs' failures on hostile bytes as :class:`ImageError`
    naming ``path`` and ``what`` was read; our own errors and OSError pass."""
    try:
        yield
    except (ImageError, OSError, MemoryError):
        raise
    except Exception as exc:
        raise ImageError(
            f"{path}: corrupt or truncated {what}, tifffile failed ({type(exc).__name__}: {exc})"
        ) from exc


def _check_file(path: Path) -> bytes:
    """Check every directory of the TIFF at ``path`` before tifffile reads any; the first
    page's description (raw bytes, ``b""`` when none).

    Raises:
        ImageError: not a regular file or not a TIFF; see :func:`_check_directories`
            and :func:`_check_ome`.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(f"{path}: not a regular file: only image files are read")
        pages, description = _check_directories(path, f, st.st_size)
    _check_ome(path, description, pages)
    return description


def _header(path: Path, f: BinaryIO) -> tuple[Any, int]:
    """The file's byte order and flavour (tiff16's layout) and its first directory's offset.

    Raises:
        ImageError: not a TIFF.
    """
    f.seek(0)
    head = f.read(16)
    if head[:4] not in tiff16.TIFF_MAGICS:
        raise ImageError(f"{path}: not a TIFF file")
    big = head[2:4] in (b"+\0", b"\0+")
    if len(head) < (16 if big else 8):
        raise ImageError(f"{path}: truncated TIFF header")
    layout = tiff16._Layout("<" if head[:2] == b"II" else ">", big)
    return layout, layout.offset(head[8:16] if big else head[4:8])


def _check_directories(path: Path, f: BinaryIO, size: int) -> tuple[int, bytes]:
    """:func:`n2n_infer.tiff16.check_directories` for every page, at most
    :data:`MAX_PAGES`, and no SubIFDs; the number of pages and the first page's
    description.

    Raises:
        ImageError: a page of more than ``MAX_PIXELS`` pixels, declared strips or tiles
            or tag values beyond what the layout needs, more than ``MAX_PAGES`` pages,
            SubIFDs.
    """
    layout, offset = _header(path, f)
    budget = [tiff16.MAX_TAG_BYTES]
    seen: set[int] = set()
    page, description = 0, b""
    while 0 < offset < size and offset not in seen:
        if page == MAX_PAGES:
            raise ImageError(f"{path}: TIFF of more than {MAX_PAGES} pages: refused")
        seen.add(offset)
        entries, offset = layout.directory(path, f, offset)
        tiff16._check_entries(path, page, entries, layout, budget, MAX_PIXELS)
        for tag, kind, count, raw in entries:
            if tag == SUB_IFDS:
                raise ImageError(
                    f"{path}: TIFF page {page} has SubIFDs (a pyramid of reduced resolutions): "
                    "stacks with pyramids are not written back; save the full resolution "
                    "without its pyramid first"
                )
            sub = layout.offset(raw) if tag in tiff16.SUB_DIRECTORY_TAGS and count == 1 else 0
            if 0 < sub < size and sub not in seen:
                seen.add(sub)
                sub_entries, _ = layout.directory(path, f, sub)
                tiff16._check_entries(path, page, sub_entries, layout, budget, MAX_PIXELS)
            if page == 0 and tag == DESCRIPTION and not description:  # the first, as tifffile
                description = _tag_bytes(f, layout, kind, count, raw, count)
        page += 1
    return page, description


def _tag_bytes(f: BinaryIO, layout: Any, kind: int, count: int, raw: bytes, total: int) -> bytes:
    """The first ``count`` bytes of a text or byte tag's ``total`` values (in its entry or
    at the offset it holds), trailing NULs dropped; ``b""`` for other types."""
    if kind not in (1, 2, 7):
        return b""
    if total <= layout.field:
        return raw[:count].rstrip(b"\0")
    f.seek(layout.offset(raw))
    return f.read(count).rstrip(b"\0")


def _check_ome(path: Path, description: bytes, pages: int) -> None:
    """Refuse OME-XML whose planes tifffile would look for in other files (a multi-file
    dataset, a companion file), before tifffile opens any, or that declares more planes
    than the file's ``pages`` (tifffile would make room for every one of them) or planes
    of more than ``MAX_PIXELS`` pixels.

    Raises:
        ImageError: naming the file, and the other file or the sizes.
    """
    if not description.rstrip().endswith(b"OME>"):  # as tifffile tells OME-XML
        return
    try:
        root = ElementTree.fromstring(description)
    except ElementTree.ParseError:
        return  # tifffile reads no OME series from it: refused as an OME-TIFF it cannot use
    own = root.attrib.get("UUID")
    for element in root.iter():
        if element.tag.endswith("Pixels"):
            _check_ome_sizes(path, element, pages)
        if element.tag.endswith("BinaryOnly"):
            raise ImageError(
                f"{path}: OME-TIFF whose metadata is in a companion file (BinaryOnly): "
                "open the dataset's .companion.ome file in Fiji and save it as one OME-TIFF first"
            )
        if not element.tag.endswith("TiffData"):
            continue
        for uuid in element:
            if not uuid.tag.endswith("UUID"):
                continue
            name = uuid.attrib.get("FileName", "")
            if own is None and name.lower() == path.name.lower():
                own = uuid.text
            elif uuid.text != own:
                raise ImageError(
                    f"{path}: OME-TIFF whose planes are (also) in other files ({name!r}): "
                    "multi-file OME-TIFF datasets are not denoised; save it as one OME-TIFF first"
                )


def _check_ome_sizes(path: Path, pixels: ElementTree.Element, pages: int) -> None:
    """Refuse a Pixels element of more planes than ``pages`` or planes over ``MAX_PIXELS``."""
    try:
        x, y, z, c, t = (int(pixels.attrib.get(f"Size{a}", 1)) for a in "XYZCT")
        channel = next((e for e in pixels if e.tag.endswith("Channel")), None)
        samples = 1 if channel is None else int(channel.attrib.get("SamplesPerPixel", 1))
    except ValueError:
        raise ImageError(f"{path}: OME-XML with sizes that are not integers: corrupt") from None
    planes = z * c * t // max(samples, 1)
    if min(x, y, z, c, t) < 1 or x * y > MAX_PIXELS or planes > pages:
        raise ImageError(
            f"{path}: OME-XML declares {planes} planes of {x}×{y} pixels; the file holds "
            f"{pages} pages (at most {MAX_PIXELS} pixels a plane): truncated or corrupt"
        )


class _Page:
    """A tifffile TiffFrame's layout, as :func:`n2n_infer.tiff16.check_layout` reads a page:
    its own strip or tile offsets and byte counts, everything else its keyframe's."""

    def __init__(self, frame: Any) -> None:
        self._keyframe = frame.keyframe
        self.dataoffsets = frame.dataoffsets
        self.databytecounts = frame.databytecounts

    def __getattr__(self, name: str) -> Any:
        return getattr(self._keyframe, name)


class _Stack:
    """An open, checked stack file: its planes, one at a time, and its writer."""

    def __init__(self, path: Path, tif: Any, description: bytes, logged: list[str]) -> None:
        self.path, self.tif, self.description = path, tif, description
        self.size = tif.filehandle.size
        self._logged = logged
        self._notes: list[str] = []
        series = tif.series
        if not series:
            raise ImageError(f"{path}: no image in this TIFF")
        self.series = s = series[0]
        self.kind = self._kind(s, series)
        key = s.keyframe
        self.key = key
        if s.dtype not in FILE_DTYPES or (s.dtype.kind == "f" and int(key.sampleformat) != 3):
            raise ImageError(
                f"{path}: {self.kind} of {s.dtype} samples: only uint8, uint16 and float32 (in "
                "[0, 1]) stacks are denoised"
            )
        if key.bitspersample != s.dtype.itemsize * 8:
            self._notes.append(f"{key.bitspersample}-bit samples written as {s.dtype} (unpacked)")
        self.samples, self.planar = self._samples(key)
        page_dims = len(key.shape)
        if s.shape[-page_dims:] != key.shape:
            raise ImageError(
                f"{path}: {self.kind} whose planes ({key.shape}) are not the last axes of its "
                f"series ({s.axes} {s.shape}): not written back faithfully"
            )
        self.lead_shape = s.shape[:-page_dims]
        lead_axes = s.axes[:-page_dims]
        self.channel_axis = lead_axes.index("C") if "C" in lead_axes else None
        planes = math.prod(self.lead_shape)
        if planes < 2:
            why = "; ".join(dict.fromkeys(logged)) or "one plane"
            raise ImageError(
                f"{path}: not a stack: tifffile reads one plane ({why}); a single image is "
                "denoised as an image, and a stack that should hold more planes is truncated "
                "or corrupt"
            )
        h, w = key.shape[1:3] if self.planar else key.shape[:2]
        if h * w > MAX_PIXELS:
            raise ImageError(f"{path}: planes of {w}×{h} pixels exceed the limit of {MAX_PIXELS}")
        if planes > MAX_PAGES:
            raise ImageError(f"{path}: {planes} planes, more than {MAX_PAGES}: refused")
        self.offset = self._contiguous(s, planes)
        self.info = StackInfo(
            self.kind, s.axes, tuple(s.shape), np.dtype(s.dtype), planes, (h, w), self.samples
        )

    @property
    def notes(self) -> list[str]:
        """What is not kept as it was, and what tifffile noted while reading."""
        return [*self._notes, *(f"tifffile: {m}" for m in dict.fromkeys(self._logged))]

    def _kind(self, s: Any, series: list[Any]) -> str:
        """The series' kind in words; refuses what cannot be written back."""
        path, tif = self.path, self.tif
        if tif.is_ome and s.kind != "ome":
            why = "; ".join(dict.fromkeys(self._logged)) or "its OME-XML does not describe them"
            raise ImageError(
                f"{path}: OME-TIFF whose planes tifffile cannot map by its OME-XML ({why}): "
                "not written back faithfully"
            )
        if s.kind not in KINDS:
            raise ImageError(
                f"{path}: a {s.kind.upper() or 'special'} TIFF, whose own metadata cannot be "
                "written back: only multi-page TIFF, ImageJ hyperstacks and OME-TIFF are "
                "denoised as stacks; save it as OME-TIFF first (e.g. with Fiji)"
            )
        if len(series) > 1:
            raise ImageError(
                f"{path}: {len(series)} image series in one TIFF (pages of different sizes or "
                "kinds): only a file of one series is denoised as a stack; split it first"
            )
        reduced = sum(len(level) for level in s.levels[1:])
        if reduced:
            self._notes.append(f"{reduced} reduced-resolution page(s) (thumbnails) not kept")
        if s.kind == "imagej":
            order = str((tif.imagej_metadata or {}).get("order", "czt")).lower()
            if order not in ("czt", "default"):
                raise ImageError(
                    f"{path}: ImageJ hyperstack stored in order {order!r}: only ImageJ's own "
                    "order (czt) is written back; resave it in Fiji first"
                )
            try:
                rgb = s.keyframe.photometric == RGB
                tifffile.imagej_description(s.shape, axes=s.axes, rgb=rgb)
            except ValueError as exc:
                raise ImageError(
                    f"{path}: ImageJ hyperstack of axes {s.axes}: cannot be written back as "
                    f"ImageJ ({exc})"
                ) from None
        return KINDS[s.kind]

    def _samples(self, key: Any) -> tuple[int, bool]:
        """(samples per pixel, planar?) of the planes; refuses other kinds of pixels."""
        photometric, compression = int(key.photometric), int(key.compression)
        if photometric == YCBCR and compression == JPEG:
            photometric = RGB  # tifffile decodes JPEG's YCbCr to RGB
        if key.axes not in ("YX", "YXS", "SYX"):
            raise ImageError(
                f"{self.path}: {self.kind} of pages with axes {key.axes} (volumes in one page?): "
                "only pages of one plane are denoised"
            )
        samples = 1 if key.axes == "YX" else int(key.shape[0 if key.axes == "SYX" else -1])
        grey = photometric in (MINISWHITE, MINISBLACK) and samples == 1
        colour = photometric == RGB and samples in (3, 4)
        if not (grey or colour):
            what = {3: "palette (indexed colour)", 5: "CMYK", YCBCR: "YCbCr"}.get(photometric)
            raise ImageError(
                f"{self.path}: {self.kind} of {what or f'photometric {photometric}'} pages with "
                f"{samples} samples per pixel: only grey, RGB and RGBA planes are denoised"
            )
        return samples, key.axes == "SYX"

    def _contiguous(self, s: Any, planes: int) -> int | None:
        """None when every plane has its page; else the offset of the planes stored one
        after the other behind the first page (an ImageJ hyperstack of one directory)."""
        if len(s) == planes:
            for page in s:
                if page is None:
                    raise ImageError(
                        f"{self.path}: {self.kind} declares {planes} planes but some are "
                        "missing from the file: not denoised"
                    )
                if page.parent is not self.tif:
                    raise ImageError(f"{self.path}: {self.kind} whose planes are in other files")
            if s.kind == "ome" and any(p.index != i for i, p in enumerate(s)):
                raise ImageError(
                    f"{self.path}: OME-TIFF whose planes are not stored in order (plane k in "
                    "IFD k): its OME-XML cannot be written back as it is; resave it first"
                )
            extra = len(self.tif.pages) - planes - sum(len(lv) for lv in s.levels[1:])
            if s.kind == "ome" and extra > 0:
                self._notes.append(f"{extra} page(s) outside the OME image not kept")
            return None
        offset, nbytes = s.dataoffset, planes * self.key.nbytes
        unpacked = self.key.bitspersample == s.dtype.itemsize * 8
        if offset is None or int(self.key.compression) != 1 or len(s) != 1 or not unpacked:
            raise ImageError(
                f"{self.path}: {self.kind} declares {planes} planes but holds {len(s)} pages, "
                "not stored one after the other: corrupt or truncated"
            )
        if offset + nbytes > self.size:
            raise ImageError(
                f"{self.path}: {self.kind} declares {planes} planes of {self.key.nbytes} bytes, "
                f"more than the file's {self.size} bytes hold: truncated or corrupt"
            )
        return int(offset)

    def channel(self, i: int) -> int:
        """The channel (index along C) of plane ``i``; 0 without a C axis."""
        if self.channel_axis is None:
            return 0
        return int(np.unravel_index(i, self.lead_shape)[self.channel_axis])

    def plane(self, i: int) -> np.ndarray:
        """Plane ``i`` decoded (its layout checked first), H×W or H×W×S, native byte order."""
        key = self.key
        if self.offset is not None:
            fh = self.tif.filehandle
            fh.seek(self.offset + i * key.nbytes)
            data = fh.read(key.nbytes)
            if len(data) != key.nbytes:
                raise ImageError(f"{self.path}: plane {i} is cut short: truncated TIFF")
            stored = np.frombuffer(data, self.series.dtype.newbyteorder(self.tif.byteorder))
            pixels = stored.reshape(key.shape).astype(self.series.dtype)
        else:
            page = self.series[i]
            is_page = isinstance(page, tifffile.TiffPage)
            tiff16.check_layout(self.path, page if is_page else _Page(page), self.size)
            with _tifffile_errors(self.path, f"plane {i}"):
                pixels = page.asarray(maxworkers=1)
        return np.moveaxis(pixels, 0, -1) if self.planar else pixels

    def planes(self) -> Iterator[tuple[np.ndarray, int]]:
        """Every plane with its channel, in the series' order, read one at a time."""
        for i in range(self.info.planes):
            yield self.plane(i), self.channel(i)

    def write(self, f: IO[bytes], results: Iterator[np.ndarray]) -> None:
        """Write the denoised planes ``results`` (in order, as :meth:`plane` gives them)
        into the open file ``f``, like the input (see the module)."""
        options, writer, shape = self._options()
        stored = (
            np.ascontiguousarray(np.moveaxis(r, -1, 0) if self.planar else r) for r in results
        )
        data = self._tiles(stored, options["tile"]) if options.get("tile") else stored
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # named: tifffile takes the name of an open file's descriptor for a path
            handle = tifffile.FileHandle(f, name=self.path.name)
            with handle, tifffile.TiffWriter(handle, **writer) as tw:
                tw.write(data, shape=shape, dtype=self.series.dtype, **options)
        self._notes.extend(f"tifffile: {w.message}" for w in caught)

    @staticmethod
    def _tiles(planes: Iterator[np.ndarray], tile: tuple[int, int]) -> Iterator[np.ndarray]:
        """Each plane's tiles, row by row (tifffile pads the edge ones)."""
        th, tw = tile
        for plane in planes:
            for y in range(0, plane.shape[0], th):
                for x in range(0, plane.shape[1], tw):
                    yield plane[y : y + th, x : x + tw]

    def _options(self) -> tuple[dict[str, Any], dict[str, Any], tuple[int, ...]]:
        """(``TiffWriter.write``'s arguments, ``TiffWriter``'s, the shape written)."""
        s, key, tif = self.series, self.key, self.tif
        compression, predictor = int(key.compression), int(key.predictor)
        if compression not in WRITTEN_COMPRESSIONS:
            name = getattr(key.compression, "name", str(compression))
            self._notes.append(f"{name} compression is not written: Deflate instead (lossless)")
            compression = DEFLATE
        options: dict[str, Any] = {
            "photometric": RGB if self.samples > 1 else int(key.photometric),
            "planarconfig": ("separate" if self.planar else "contig") if self.samples > 1 else None,
            "extrasamples": tuple(key.extrasamples) or None,
            "compression": None if compression == 1 else compression,
            "predictor": True if compression != 1 and predictor != 1 else None,
            "iccprofile": key.tags.valueof(ICC_PROFILE),
            "software": False,
            "metadata": None,
            "description": None,
        }
        if key.is_tiled and not self.planar:
            options["tile"] = (key.tilelength, key.tilewidth)
        elif not key.is_tiled and 0 < key.rowsperstrip < key.imagelength:
            options["rowsperstrip"] = key.rowsperstrip
        options.update(self._resolution(key))
        orientation = key.tags.valueof(ORIENTATION)
        if isinstance(orientation, int) and orientation != 1:
            options["extratags"] = [(ORIENTATION, 3, 1, orientation, False)]
        nbytes = self.info.planes * key.nbytes
        writer = {"bigtiff": tif.is_bigtiff or nbytes > BIGTIFF_BYTES, "ome": False}
        shape: tuple[int, ...] = (self.info.planes, *key.shape)
        if s.kind == "imagej":
            meta = dict(tif.imagej_metadata or {})
            meta = {k: v for k, v in meta.items() if k not in IMAGEJ_COMPUTED}
            options["metadata"] = {**meta, "axes": s.axes}
            writer["imagej"] = True
            shape = tuple(s.shape)
        elif s.kind == "shaped":
            meta = dict((tif.shaped_metadata or ({},))[0])
            options["metadata"] = {k: v for k, v in meta.items() if k not in ("shape", "truncated")}
            writer["shaped"] = True
            shape = tuple(s.get_shape(False))
        else:
            writer["shaped"] = False
            options["description"] = self.description or None
        return options, writer, shape

    @staticmethod
    def _resolution(key: Any) -> dict[str, Any]:
        """The first page's resolution tags as written (rationals kept), when it has them."""
        x, y = key.tags.valueof(X_RESOLUTION), key.tags.valueof(Y_RESOLUTION)
        if x is None or y is None:
            return {}
        unit = key.tags.valueof(RESOLUTION_UNIT)
        return {"resolution": (x, y), "resolutionunit": 2 if unit is None else int(unit)}
