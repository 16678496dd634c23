"""TIFF stacks as training frames: multi-page TIFF, ImageJ hyperstacks, OME-TIFF.

A stack is the first series of a TIFF file (``tifffile.TiffFile(path).series[0]``)
holding more than one plane. Its axes are tifffile's letters (``T`` time, ``Z``
depth, ``C`` channel, ``S`` samples of a pixel, ``Y``, ``X``; ``I`` or ``Q`` for
an axis without metadata, as a plain multi-page TIFF has), read from the ImageJ
or OME metadata; axes of length 1 are left out. Every page of the series is
one plane of ``Y``×``X`` pixels. A TIFF whose series holds one plane is not a
stack: it is read as a single image, by the runtime's reader
(:func:`training.data.read_frame`).

:func:`probe_stack` looks at a file's layout (no pixel read) and
:func:`read_stack` reads it, page by page, as :class:`Plane` objects:

- Channels (a ``C`` axis) are separate grey planes; so are the samples of a grey
  page with extra samples, alpha samples aside. An ``S`` axis of three samples
  (RGB) makes colour planes (a fourth sample, alpha, is dropped, as the
  runtime drops alpha); other photometric interpretations are refused.
- Pixels keep their type (uint8, uint16, float32; float64 is read as float32;
  float values must lie in [0, 1], as the runtime requires).
- Levels: the dim rule of :func:`n2n_infer.arrays.levels_of` (16-bit with no
  value above 16383, or float with none above 0.25: mapped by its own min..max)
  applies per stack and channel, the
  minimum and maximum taken over every plane of that channel, not plane by
  plane, so that the planes of a stack stay comparable; each plane carries its
  channel's levels.

Sizes are bounded before any pixel is read: a plane of more than
:data:`training.data.MAX_PIXELS` pixels, more than :data:`MAX_PLANES` planes or
more than :data:`MAX_STACK_PIXELS` pixels in all is refused by name, as are the
layouts the runtime refuses in a single TIFF (directories declaring more than
their image can need, strips or tiles missing, past the end of the file, or
decoding to far more than the plane: :func:`n2n_infer.tiff16.check_directories`,
:func:`n2n_infer.tiff16.check_layout`). Every error is a
:class:`~training.data.DataError` naming the file.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch

from n2n_infer.arrays import levels_of
from n2n_infer.errors import ImageError
from n2n_infer.tiff16 import TIFF_MAGICS, check_directories, check_layout
from n2n_train.data import MAX_PIXELS, DataError, Levels

log = logging.getLogger(__name__)

__all__ = [
    "GENERIC_AXES",
    "MAX_PLANES",
    "MAX_STACK_PIXELS",
    "Plane",
    "Stack",
    "probe_stack",
    "read_stack",
]

#: File suffixes looked at for stacks (any case).
STACK_SUFFIXES = (".tif", ".tiff")
#: Planes (pages × grey samples) of one stack, at most.
MAX_PLANES = 100_000
#: Pixels of one stack, all planes together, at most (4 GiB of 16-bit samples).
MAX_STACK_PIXELS = 1 << 31
#: tifffile's letters for an axis without metadata (a plain multi-page TIFF's pages).
GENERIC_AXES = "IQ"
_PLANE_AXES = "YXS"
_RGB_PHOTOMETRIC = (2, 6)  # RGB, YCbCr (decoded to RGB)
_GREY_PHOTOMETRIC = 1  # black is zero
_ALPHA = (1, 2)  # ExtraSamples: associated, unassociated alpha
_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class Stack:
    """The layout of a TIFF stack (:func:`probe_stack`); no pixels."""

    path: Path
    #: The series' axes (tifffile's letters, length-1 axes left out), e.g. ``"TZCYX"``.
    axes: str
    shape: tuple[int, ...]
    #: How many leading axes index the pages (the rest, ``YX``, ``YXS`` or ``SYX``,
    #: are one page's).
    outer: int
    #: Whether the pages are RGB (one colour plane each) rather than grey.
    colour: bool
    #: The samples read from each page: ``(0, 1, 2)`` for colour; for grey, each a
    #: separate plane (alpha samples left out).
    samples: tuple[int, ...]
    dtype: np.dtype

    @property
    def outer_axes(self) -> str:
        """The axes that index the pages, e.g. ``"TZC"``."""
        return self.axes[: self.outer]

    @property
    def pages(self) -> int:
        return math.prod(self.shape[: self.outer])

    @property
    def planes(self) -> int:
        """Planes read: one per page, or one per page and grey sample."""
        return self.pages * (1 if self.colour else len(self.samples))

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of a plane."""
        page = dict(zip(self.axes[self.outer :], self.shape[self.outer :], strict=True))
        return page["Y"], page["X"]

    def describe(self) -> str:
        """Axes, shape and pixel type in words, e.g. ``"TZYX 3×4×32×40 uint16"``."""
        return f"{self.axes} {'×'.join(map(str, self.shape))} {self.dtype}"


@dataclass(frozen=True)
class Plane:
    """One plane of a stack, as :func:`training.data.read_frame` gives a frame."""

    #: ``(axis, position)`` for each axis that indexes the pages (and ``("S", k)``
    #: for sample ``k`` of a grey page with several).
    index: tuple[tuple[str, int], ...]
    #: C×H×W (C 1 for grey, 3 for colour), uint8, uint16 or float32.
    pixels: torch.Tensor
    #: Its channel's levels (module docstring); ``None``: the dtype's full scale.
    levels: Levels | None

    def at(self, axis: str) -> int | None:
        """The plane's position along ``axis``, or ``None`` when the stack has no such axis."""
        return dict(self.index).get(axis)

    def label(self, without: str = "") -> str:
        """Its index in words, e.g. ``"t=0,z=3,c=1"`` (axes in ``without`` left out)."""
        return ",".join(f"{a.lower()}={i}" for a, i in self.index if a not in without)


def probe_stack(path: Path) -> Stack | None:
    """The layout of the TIFF stack in ``path``, or ``None`` when it is no stack (not
    a TIFF, or a TIFF of one plane: a single image). Reads no pixel.

    Raises:
        DataError: the TIFF cannot be parsed, or its layout is refused (module
            docstring: sizes, pages, photometric interpretation, pixel type);
            names the file.
    """
    if path.suffix.lower() not in STACK_SUFFIXES:
        return None
    try:
        with open(path, "rb") as f:
            if f.read(4) not in TIFF_MAGICS:
                return None  # the runtime's reader says what it is
            check_directories(path, f, path.stat().st_size, MAX_PIXELS)
        with tifffile.TiffFile(path) as tif:
            return _layout(path, tif)
    except (DataError, ImageError) as exc:
        raise DataError(str(exc)) from None
    except Exception as exc:  # tifffile's own failures on a malformed file
        raise DataError(f"{path}: cannot read TIFF ({type(exc).__name__}: {exc})") from None


def _layout(path: Path, tif: Any) -> Stack | None:
    series = tif.series[0]
    key = series.keyframe
    axes, shape = str(series.axes), tuple(int(n) for n in series.shape)
    page_axes = str(key.axes)
    one_page = axes == page_axes  # no stack unless its samples are grey planes
    if int(getattr(key, "imagedepth", 1) or 1) > 1 or set(page_axes) - set(_PLANE_AXES):
        if one_page:
            return None
        raise DataError(f"{path}: TIFF pages holding volumes ({page_axes}) are not supported")
    if not axes.endswith(page_axes):
        raise DataError(
            f"{path}: TIFF series of axes {axes} whose pages are {page_axes}: not supported"
        )
    outer = len(axes) - len(page_axes)
    if "S" in axes[:outer]:
        raise DataError(f"{path}: TIFF stack of axes {axes} (samples outside the pages)")
    dtype = np.dtype(series.dtype)
    samples = int(key.samplesperpixel)
    photometric = int(key.photometric)
    if photometric in _RGB_PHOTOMETRIC and samples >= 3:
        colour, kept = True, (0, 1, 2)
    elif photometric == _GREY_PHOTOMETRIC:
        extra = tuple(int(e) for e in (key.extrasamples or ()))
        colour = False
        kept = tuple(s for s in range(samples) if s == 0 or extra[s - 1 : s] not in ((1,), (2,)))
    elif one_page:
        return None  # one image of its own kind (a palette, white-is-zero): read_frame's
    else:
        raise DataError(
            f"{path}: TIFF stack with photometric interpretation {photometric} and {samples} "
            "sample(s) per pixel is not supported: convert it to grey (black is 0) or RGB"
        )
    stack = Stack(path, axes, shape, outer, colour, kept, dtype)
    if stack.planes == 1:
        return None  # one image: read_frame reads it as the runtime does
    if len(tif.series) > 1:
        log.warning(
            "%s: %d image series; only the first (%s) is read",
            path,
            len(tif.series),
            stack.describe(),
        )
    h, w = stack.size
    if h * w > MAX_PIXELS:
        raise DataError(f"{path}: planes of {w}×{h} pixels exceed the limit of {MAX_PIXELS}")
    if stack.planes > MAX_PLANES:
        raise DataError(
            f"{path}: stack of {stack.planes} planes ({stack.describe()}), more than "
            f"{MAX_PLANES}: split it"
        )
    if stack.planes * h * w > MAX_STACK_PIXELS:
        raise DataError(
            f"{path}: stack of {stack.planes * h * w} pixels ({stack.describe()}), more than "
            f"{MAX_STACK_PIXELS}: split it or crop it"
        )
    if dtype not in _DTYPES:
        raise DataError(
            f"{path}: stack of {dtype} pixels is not supported (expected uint8, uint16, or "
            "floats in [0, 1]): convert it"
        )
    if len(series.pages) != stack.pages and series.dataoffset is None:
        raise DataError(
            f"{path}: stack of {stack.pages} pages ({stack.describe()}) of which the file "
            f"lists {len(series.pages)}: truncated, or an OME-TIFF whose pages lie in other "
            "files (not supported)"
        )
    return stack


class _Frame:
    """A ``TiffFrame`` seen as a page by :func:`n2n_infer.tiff16.check_layout`: its
    strips or tiles, the rest of its layout from its key frame."""

    def __init__(self, frame: Any) -> None:
        self._frame, self._key = frame, frame.keyframe

    def __getattr__(self, name: str) -> Any:
        if name in ("dataoffsets", "databytecounts"):
            return getattr(self._frame, name)
        return getattr(self._key, name)


def read_stack(stack: Stack) -> list[Plane]:
    """Read every plane of ``stack``, page by page, in the file's order (the last
    outer axis fastest; a grey page's samples after one another).

    Raises:
        DataError: the file changed since :func:`probe_stack`, a page is missing or
            its strips or tiles are refused (module docstring), float values lie
            outside [0, 1] or are not finite, or the decoder fails; names the file
            (and the plane).
    """
    try:
        with tifffile.TiffFile(stack.path) as tif:
            planes = _read(stack, tif)
    except (DataError, ImageError) as exc:
        raise DataError(str(exc)) from None
    except MemoryError:
        raise DataError(f"{stack.path}: stack too large for the memory available") from None
    except Exception as exc:  # tifffile's and the codecs' failures on a malformed file
        raise DataError(
            f"{stack.path}: cannot read TIFF stack ({type(exc).__name__}: {exc})"
        ) from None
    return _with_levels(stack, planes)


def _read(stack: Stack, tif: Any) -> list[tuple[tuple[tuple[str, int], ...], np.ndarray]]:
    """(index, H×W×C array) of every plane."""
    path, series = stack.path, tif.series[0]
    if (str(series.axes), tuple(series.shape)) != (stack.axes, stack.shape):
        raise DataError(f"{path}: changed while read (now {series.axes} {series.shape})")
    page_axes = stack.axes[stack.outer :]
    size = tif.filehandle.size
    contiguous = None
    if len(series.pages) != stack.pages:  # one page listed for contiguous data (ImageJ)
        contiguous = _contiguous(stack, tif, series)
    out = []
    outer_axes = stack.outer_axes
    for k, position in enumerate(np.ndindex(*stack.shape[: stack.outer])):
        index = tuple(zip(outer_axes, position, strict=True))
        where = f"{path}: plane {','.join(f'{a.lower()}={i}' for a, i in index)}"
        if contiguous is not None:
            arr = np.asarray(contiguous[k]).astype(stack.dtype.newbyteorder("="))
        else:
            page = series.pages[k]
            if page is None:
                raise DataError(f"{where}: page missing")
            check_layout(path, page if not page.is_frame else _Frame(page), size)
            arr = page.asarray(maxworkers=1)
        arr = _hwc(arr, page_axes)
        if arr.dtype.kind == "f":
            arr = _checked_float(arr, where)
        if stack.colour:
            out.append((index, arr[:, :, :3]))
            continue
        for s in stack.samples:
            sample = (("S", s),) if len(stack.samples) > 1 else ()
            out.append(((*index, *sample), arr[:, :, s : s + 1]))
    return out


def _contiguous(stack: Stack, tif: Any, series: Any) -> np.ndarray:
    """The pages of an uncompressed contiguous series (an ImageJ file listing only its
    first page), mapped from the file, not read."""
    offset = series.dataoffset
    dtype = stack.dtype.newbyteorder(tif.byteorder)
    page_shape = stack.shape[stack.outer :]
    nbytes = stack.pages * math.prod(page_shape) * dtype.itemsize
    if offset is None or offset + nbytes > tif.filehandle.size:
        raise DataError(
            f"{stack.path}: stack of {stack.pages} pages ({stack.describe()}) needs "
            f"{nbytes} bytes of pixels that the file does not hold: truncated"
        )
    return np.memmap(stack.path, dtype, "r", offset, (stack.pages, *page_shape))


def _hwc(arr: np.ndarray, page_axes: str) -> np.ndarray:
    if page_axes == "YX":
        return arr[:, :, None]
    if page_axes == "SYX":
        return arr.transpose(1, 2, 0)
    return arr


def _checked_float(arr: np.ndarray, where: str) -> np.ndarray:
    arr = arr.astype(np.float32, copy=False)
    lo, hi = float(np.min(arr)), float(np.max(arr))  # NaN propagates
    if not (lo >= 0.0 and hi <= 1.0):
        raise DataError(
            f"{where}: float values in [{lo:.9g}, {hi:.9g}]: only values in [0, 1] (finite) "
            "can be denoised"
        )
    return arr


def _with_levels(
    stack: Stack, planes: list[tuple[tuple[tuple[str, int], ...], np.ndarray]]
) -> list[Plane]:
    """Planes as tensors, each with its channel's levels (the channel: the ``C`` and
    ``S`` positions; the extremes over every plane of the channel)."""
    extremes: dict[tuple[int | None, int | None], tuple[float, float]] = {}
    channel = [(dict(i).get("C"), dict(i).get("S")) for i, _ in planes]
    kind = np.dtype(stack.dtype).kind
    if stack.dtype == np.uint16 or kind == "f":
        for ch, (_, arr) in zip(channel, planes, strict=True):
            lo, hi = float(arr.min()), float(arr.max())
            old = extremes.get(ch, (lo, hi))
            extremes[ch] = (min(lo, old[0]), max(hi, old[1]))
    as_type = np.float32 if kind == "f" else np.uint16
    levels: dict[tuple[int | None, int | None], Levels | None] = {
        # the runtime's own rule, on a 1×2 image of the channel's extremes
        ch: levels_of(np.array([[[lo], [hi]]], as_type))
        for ch, (lo, hi) in extremes.items()
    }
    out = []
    for ch, (index, arr) in zip(channel, planes, strict=True):
        chw = torch.from_numpy(np.array(arr.transpose(2, 0, 1), order="C"))
        out.append(Plane(index, chw, levels.get(ch)))
    return out
