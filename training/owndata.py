"""Training data from the user's own noisy images: aligned pairs, bursts, single images.

Three layouts, each read into *scenes* (the frames of one scene share a size
and are aligned):

- ``pairs``: two folders; files are matched by their path relative to each
  folder (``a/x/1.png`` with ``b/x/1.png``); each match is one scene of two
  noisy captures.
- ``bursts``: one folder, one subfolder per scene holding two or more noisy
  frames; every step pairs two different frames of a scene.
- ``singles``: one folder (searched recursively) of single noisy images; each
  is its own scene, trained the Neighbor2Neighbor way (:mod:`training.neighbor`).

TIFF stacks (multi-page TIFF, ImageJ hyperstacks, OME-TIFF; read plane by plane,
bounded, by :mod:`training.stacks`) are read in each layout, every channel (``C``)
as separate grey planes, an ``S`` axis of three samples as colour planes:

- ``pairs``: a stack in the first folder pairs with the stack of the same name in
  the second, which must have the same axes and shape (else both are named, with
  the difference); plane k of one with plane k of the other, each plane index a
  scene of two frames.
- ``bursts``: stacks lie directly in the folder; the time axis (``T``) holds
  repeated frames of a static sample, and each index along the other axes (each
  ``Z``, each channel) is one scene whose frames are its ``T`` planes. With
  ``burst_axis`` ``Z`` (``--burst-axis Z``: a sample imaged repeatedly at one
  depth, stored as Z) the ``Z`` axis holds them instead. A stack without axis
  metadata (a plain multi-page TIFF) holds them along its pages.
- ``singles``: every plane of a stack is one single noisy image.

With ``z_context`` K (``n2n-train fit --z-context K``; ``pairs`` and ``bursts`` of grey
stacks with a Z axis only), every frame of a scene is a plane's context: the planes
z−K..z+K of its Z run (:func:`n2n_infer.stacks.context_indices`, the runtime's rule),
a ``2K + 1``×H×W tensor (a view of the run's volume, copied only where mirrored at
its ends). A patch's input is one frame's planes and its target the centre plane of
another frame: plane z of the other capture, or of another time point of a burst.

A stack's planes are scenes of their own, so the validation split (below) can put
neighbouring planes of one sample on both sides: their noise is still
independent. Each plane keeps its stack's levels: the dim 16-bit rule applies to
each stack and channel as a whole (as the runtime is to map stacks), so that the
planes of one stack stay comparable (:mod:`training.stacks`).

Every other file goes through the runtime's reader (:func:`training.data.read_frame`:
EXIF orientation applied, alpha dropped, any size) and keeps its precision:
16-bit files stay 16-bit (dim 12-bit data in a 16-bit file keeps every level),
and all are scaled to [0, 1] as the runtime scales them (a dim 16-bit image by
its own range, :func:`n2n_infer.arrays.levels_of`; both patches of a pair by the
input frame's levels, so that the target is in the input's units; a scene whose
frames' ranges are too far apart for that, a constant frame above all, is refused
by name, :func:`_levels_problem`). Grey images
(grey files, or colour with three equal channels) are kept as one plane. When
every scene is grey the model is grey-native (one input channel, ``channels``
1 in the record); with ``--channels 3``, or beside colour scenes, grey planes
are fed copied into R, G and B, the record counts them (``grey_scenes``), and
the runtime feeds grey images to the trained model the same way (``--grey
auto`` picks ``replicate``, :func:`n2n_export.exporter.trained_on_grey` states
it in the model). All problems (unmatched names, different sizes or pixel
ranges, unreadable files, stacks of different layouts, scenes too small or with
fewer than two frames) are collected and reported in one
:class:`~training.data.DataError` before any training.

Validation is split by scene: no scene has patches on both sides. Its loss is
noisy against noisy; for zero-mean noise independent between the two
captures, ``E‖f(x) − y₂‖² = ‖f(x) − clean‖² + σ²``, so it ranks models as the
clean loss would, shifted by the targets' noise variance.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from n2n_infer.errors import ImageError
from n2n_infer.files import visible_files
from n2n_infer.stacks import context_indices
from n2n_train.data import (
    IMAGE_SUFFIXES,
    DataError,
    Levels,
    ValidationSet,
    read_frame,
    to_unit,
)
from n2n_train.neighbor import neighbor_indices, subsample
from n2n_train.stacks import GENERIC_AXES, Plane, Stack, probe_stack, read_stack

log = logging.getLogger(__name__)

__all__ = ["MODES", "NoisyScenes", "Scene", "scan_bursts", "scan_pairs", "scan_singles"]

#: The own-data layouts, as ``n2n-train fit`` names them.
MODES = ("pairs", "bursts", "singles")
#: The axes that can hold a stack's repeated frames (``--burst-axis``).
BURST_AXES = ("T", "Z")
#: A stack plane's index: ``(axis, position)`` pairs (:attr:`training.stacks.Plane.index`).
PlaneIndex = tuple[tuple[str, int], ...]
#: Problems listed in one error at most (the rest are counted).
MAX_LISTED = 50
#: Where a dim 16-bit frame may reach when mapped by the levels of another frame of
#: its scene (as a target is mapped by its input's levels): one whole span beyond the
#: input's black or white. Beyond it the scene is refused (:func:`_levels_problem`).
TARGET_RANGE = (-1.0, 2.0)


@dataclass(frozen=True)
class Scene:
    """Aligned noisy frames of one scene: C×H×W tensors of one size and one ``C``.

    As :func:`training.data.read_frame` reads them (uint8, uint16 or float32; ``C``
    is 1 for grey, 3 for colour). A scene whose frames mix grey and colour holds
    its grey frames copied into three channels.
    """

    name: str
    frames: tuple[torch.Tensor, ...]
    #: Each frame's ``(black, span)`` (:func:`training.data.read_frame`); ``None``:
    #: every frame at its dtype's full scale.
    levels: tuple[Levels | None, ...] | None = None
    #: The TIFF stack (its relative name) whose planes the frames are, if any.
    stack: str | None = None
    #: K of a z-context scene: each frame is the ``2K + 1`` grey planes z−K..z+K of a
    #: capture (:func:`n2n_infer.stacks.context_indices`), its centre plane (``K``) the
    #: target of the others; 0: frames are images.
    z_context: int = 0

    def levels_of(self, index: int) -> Levels | None:
        """Frame ``index``'s levels."""
        return None if self.levels is None else self.levels[index]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the frames."""
        return int(self.frames[0].shape[1]), int(self.frames[0].shape[2])

    @property
    def grey(self) -> bool:
        """Whether the frames are grey (one plane, or grey planes of a z-context)."""
        return self.z_context > 0 or int(self.frames[0].shape[0]) == 1


def _images(folder: Path, recursive: bool) -> dict[str, Path]:
    """Image files under ``folder`` by their relative POSIX path (hidden files and
    folders skipped; linked subfolders followed, each real folder once, as the
    runtime's batch job does)."""
    out = {
        p.relative_to(folder).as_posix(): p
        for p in visible_files(folder, recursive)
        if p.suffix.lower() in IMAGE_SUFFIXES
    }
    return dict(sorted(out.items()))


def _check_folder(folder: Path, what: str) -> None:
    if not folder.is_dir():
        raise DataError(f"{what} {folder}: folder not found")


def _read(path: Path, problems: list[str]) -> tuple[torch.Tensor, Levels | None] | None:
    try:
        return read_frame(path)
    except DataError as exc:
        problems.append(f"unreadable: {exc}")
        return None


def _scene(name: str, paths: Sequence[Path], min_side: int, problems: list[str]) -> Scene | None:
    """Read ``paths`` as one scene, adding what is wrong with it to ``problems``."""
    read = [_read(p, problems) for p in paths]
    if any(r is None for r in read):
        return None
    frames = [r[0] for r in read if r is not None]
    levels = tuple(r[1] for r in read if r is not None)
    return _checked_scene(name, [str(p) for p in paths], frames, levels, min_side, problems)


def _checked_scene(
    name: str,
    sources: Sequence[str],
    frames: Sequence[torch.Tensor],
    levels: tuple[Levels | None, ...],
    min_side: int,
    problems: list[str],
    stack: str | None = None,
    z_context: int = 0,
) -> Scene | None:
    """The scene of ``frames`` (read from ``sources``: files, or planes of the stack
    ``stack``; with ``z_context``, each frame a context of planes), or ``None``, adding
    what is wrong with it to ``problems``."""
    sizes = {(int(f.shape[1]), int(f.shape[2])) for f in frames}
    if len(sizes) > 1:
        pairs = zip(sources, frames, strict=True)
        listed = ", ".join(f"{p} {f.shape[2]}×{f.shape[1]}" for p, f in pairs)
        problems.append(f"different sizes in scene {name!r}: {listed}")
        return None
    # a pair's target is scaled by its input's levels: a dim capture (its own levels)
    # and a full-range one would be scaled alike, wrongly; 8 and 16 bits mix freely
    if len({lv is None for lv in levels}) > 1:
        pairs = zip(sources, frames, levels, strict=True)
        listed = ", ".join(
            f"{p} {_depth(f)}{' (dim: own levels)' if lv is not None else ''}" for p, f, lv in pairs
        )
        problems.append(
            f"different pixel ranges in scene {name!r}: {listed}; a dim capture (16-bit "
            "with no value above 16383, or float with none above 0.25: scaled by its own "
            "range) cannot pair with a full-range one: convert them to one range"
        )
        return None
    problem = _levels_problem(name, sources, frames, levels)
    if problem is not None:
        problems.append(problem)
        return None
    h, w = sizes.pop()
    if min(h, w) < min_side:
        problems.append(
            f"too small: scene {name!r} is {w}×{h}, expected at least {min_side}×{min_side} "
            "(the patch size; twice it for singles)"
        )
        return None
    if len({int(f.shape[0]) for f in frames}) > 1:  # grey and colour frames: all colour
        frames = [f.expand(3, -1, -1).contiguous() for f in frames]
    return Scene(name, tuple(frames), levels, stack, z_context)


def _levels_problem(
    name: str,
    paths: Sequence[str],
    frames: Sequence[torch.Tensor],
    levels: Sequence[Levels | None],
) -> str | None:
    """What is wrong with a dim 16-bit scene whose frames' ranges are too far apart, or
    ``None``.

    A dim frame is scaled by its own range and a target by its input's levels (the
    runtime will scale the input that way, so the target must be in its units). A
    constant frame (a dead capture) has a span of one count, so its partner, as its
    target, would reach hundreds where the network outputs 0..1 (a loss thousands
    of times the others', and no error). No scaling rescues such a scene: a
    constant input carries no picture to denoise, and a span shared by the scene
    would no longer be the one the runtime gives that input. So a scene is
    refused when one frame, mapped by another's levels, leaves :data:`TARGET_RANGE`.
    """
    if len(frames) < 2 or any(lv is None for lv in levels):
        return None
    if len({f.dtype for f in frames}) > 1:  # levels in counts and in fractions of 1
        listed = ", ".join(f"{p} {_depth(f)}" for p, f in zip(paths, frames, strict=True))
        return (
            f"dim captures of different pixel types in scene {name!r}: {listed}; each is "
            "scaled by its own range and a target by its input's levels, which need one "
            "type: convert them to one type"
        )
    extent = [(float(f.numpy().min()), float(f.numpy().max())) for f in frames]
    worst: tuple[float, int, int, float, float] | None = None
    for i, lv in enumerate(levels):
        black, span = lv or (0.0, 1.0)
        for j, (lo, hi) in enumerate(extent):
            low, high = (lo - black) / span, (hi - black) / span
            reach = max(TARGET_RANGE[0] - low, high - TARGET_RANGE[1])
            if i != j and reach > 0 and (worst is None or reach > worst[0]):
                worst = (reach, i, j, low, high)
    if worst is None:
        return None
    _, i, j, low, high = worst
    listed = ", ".join(
        f"{p} {f'constant {lo:.6g} (a dead capture?)' if lo == hi else f'{lo:.6g}..{hi:.6g}'}"
        for p, (lo, hi) in zip(paths, extent, strict=True)
    )
    return (
        f"pixel ranges too far apart in dim scene {name!r}: {listed}; each dim frame "
        f"is scaled by its own range and its partner by the same levels, so {paths[j]} "
        f"would become a target of {low:.3g}..{high:.3g} for {paths[i]} instead of about "
        "0..1: remove the scene or its odd frame"
    )


def _probe(path: Path, problems: list[str]) -> Stack | Literal[False] | None:
    """``path``'s stack layout, ``None`` for a single image, ``False`` (a problem added)
    when it cannot be read."""
    try:
        return probe_stack(path)
    except DataError as exc:
        problems.append(f"unreadable: {exc}")
        return False


def _stack_fits(stack: Stack, min_side: int, problems: list[str]) -> bool:
    h, w = stack.size
    if min(h, w) >= min_side:
        return True
    problems.append(
        f"too small: stack {stack.path} ({stack.describe()}) has planes of {w}×{h}, expected "
        f"at least {min_side}×{min_side} (the patch size; twice it for singles)"
    )
    return False


def _planes(stack: Stack, problems: list[str]) -> list[Plane] | None:
    try:
        return read_stack(stack)
    except DataError as exc:
        problems.append(f"unreadable: {exc}")
        return None


def _where(stack: Stack, plane: Plane) -> str:
    """A plane in words, for problems: ``path [t=0,z=3]``."""
    return f"{stack.path} [{plane.label()}]"


def _plane_problems(stack: Stack, found: list[str], problems: list[str]) -> None:
    """Add the first of one stack's plane problems, counting the rest."""
    if found:
        more = f" (and {len(found) - 1} more plane(s) of {stack.path})" if len(found) > 1 else ""
        problems.append(found[0] + more)


def _stack_difference(a: Stack, b: Stack) -> str | None:
    """How two stacks' layouts differ, in words, or ``None``."""
    if a.axes != b.axes:
        return f"axes {a.axes} against {b.axes}"
    if a.shape != b.shape:
        return ", ".join(
            f"{axis} {m} against {n}"
            for axis, m, n in zip(a.axes, a.shape, b.shape, strict=True)
            if m != n
        )
    if (a.colour, a.samples) != (b.colour, b.samples):
        kinds = [("RGB" if s.colour else f"grey samples {list(s.samples)}") for s in (a, b)]
        return f"{kinds[0]} against {kinds[1]}"
    return None


def _context_problem(stack: Stack, k: int) -> str | None:
    """Why ``stack`` cannot give z-contexts of ``k`` (no Z axis, colour, too few planes)."""
    if "Z" not in stack.outer_axes:
        return (
            f"no Z axis for --z-context {k}: {stack.path} is {stack.describe()}; a z-context "
            "model reads the neighbouring planes along Z"
        )
    if stack.colour:
        return (
            f"colour stack for --z-context {k}: {stack.path} is {stack.describe()}; z-context "
            "models are grey"
        )
    try:
        context_indices(0, stack.shape[stack.axes.index("Z")], k, str(stack.path))
    except ImageError as exc:
        return f"too few planes: {exc}"
    return None


def _contexts(stack: Stack, planes: Sequence[Plane], k: int) -> dict[PlaneIndex, torch.Tensor]:
    """Each plane's z-context (its index -> ``2k + 1``×H×W): the planes z−k..z+k of its Z
    run (the planes that differ from it along Z only), mirrored at the ends
    (:func:`n2n_infer.stacks.context_indices`). Inside a run a context is a view of one
    volume; only the mirrored ones at its ends are copies."""
    runs: dict[str, list[Plane]] = {}
    for plane in planes:
        runs.setdefault(plane.label(without="Z"), []).append(plane)
    out: dict[PlaneIndex, torch.Tensor] = {}
    for run in runs.values():
        run.sort(key=lambda p: p.at("Z") or 0)
        volume = torch.cat([p.pixels for p in run])
        for z, plane in enumerate(run):
            idx = context_indices(z, len(run), k, str(stack.path))
            straight = idx[0] == z - k and idx[-1] == z + k
            out[plane.index] = volume[z - k : z + k + 1] if straight else volume[idx]
    return out


def _stack_pair_scenes(
    name: str,
    a: tuple[Path, Stack | None],
    b: tuple[Path, Stack | None],
    min_side: int,
    problems: list[str],
    z_context: int = 0,
) -> list[Scene]:
    """One scene per plane index of two matched stacks: plane k of ``a`` with plane k
    of ``b`` (with ``z_context``, their contexts along Z)."""
    (path_a, sa), (path_b, sb) = a, b
    if sa is None or sb is None:
        stack, single = (sa, path_b) if sa is not None else (sb, path_a)
        assert stack is not None
        problems.append(
            f"a stack and a single image: {stack.path} is a TIFF stack ({stack.describe()}) "
            f"but {single} is one image"
        )
        return []
    difference = _stack_difference(sa, sb)
    if difference is not None:
        problems.append(
            f"different stacks: {path_a} is {sa.describe()}, {path_b} is {sb.describe()} "
            f"({difference}); plane k of one pairs with plane k of the other"
        )
        return []
    problem = _context_problem(sa, z_context) if z_context else None
    if problem is not None:
        problems.append(problem)
        return []
    if not _stack_fits(sa, min_side, problems):
        return []
    planes_a, planes_b = _planes(sa, problems), _planes(sb, problems)
    if planes_a is None or planes_b is None:
        return []
    pixels_a = {p.index: p.pixels for p in planes_a}
    pixels_b = {q.index: q.pixels for q in planes_b}
    if z_context:
        pixels_a, pixels_b = _contexts(sa, planes_a, z_context), _contexts(sb, planes_b, z_context)
    found: list[str] = []
    scenes = [
        _checked_scene(
            f"{name}[{p.label()}]",
            (_where(sa, p), _where(sb, q)),
            (pixels_a[p.index], pixels_b[q.index]),
            (p.levels, q.levels),
            min_side,
            found,
            stack=name,
            z_context=z_context,
        )
        for p, q in zip(planes_a, planes_b, strict=True)
    ]
    _plane_problems(sa, found, problems)
    return [s for s in scenes if s is not None]


def _repeats_axis(stack: Stack, axis: str) -> str | None:
    """The axis of ``stack`` holding the repeated frames: ``axis``, or a stack's only
    axis without metadata (a plain multi-page TIFF's pages), channels aside."""
    if axis in stack.outer_axes:
        return axis
    others = [a for a in stack.outer_axes if a != "C"]
    return others[0] if len(others) == 1 and others[0] in GENERIC_AXES else None


def _burst_scenes(
    name: str, stack: Stack, axis: str, min_side: int, problems: list[str], z_context: int = 0
) -> list[Scene]:
    """One scene per index of ``stack`` along its other axes (each channel its own),
    its frames the planes along the repeats axis (with ``z_context``, their contexts
    along Z)."""
    repeats = _repeats_axis(stack, axis)
    if repeats is None:
        hint = {"T": "Z", "Z": "T"}[axis]
        tip = (
            f"; if its {hint} axis holds the repeats, give --burst-axis {hint}"
            if hint in stack.outer_axes
            else "; a burst stack holds its repeated frames along T (or Z, --burst-axis Z)"
        )
        problems.append(
            f"no {axis} axis for the repeated frames: {stack.path} is {stack.describe()}{tip}"
        )
        return []
    problem = _context_problem(stack, z_context) if z_context else None
    if problem is not None:
        problems.append(problem)
        return []
    if not _stack_fits(stack, min_side, problems):
        return []
    planes = _planes(stack, problems)
    if planes is None:
        return []
    pixels = {p.index: p.pixels for p in planes}
    if z_context:
        pixels = _contexts(stack, planes, z_context)
    bursts: dict[str, list[Plane]] = {}
    for plane in planes:
        bursts.setdefault(plane.label(without=repeats), []).append(plane)
    found: list[str] = []
    scenes = [
        _checked_scene(
            f"{name}[{label}]" if label else name,
            [_where(stack, p) for p in frames],
            [pixels[p.index] for p in frames],
            tuple(p.levels for p in frames),
            min_side,
            found,
            stack=name,
            z_context=z_context,
        )
        for label, frames in bursts.items()
    ]
    _plane_problems(stack, found, problems)
    return [s for s in scenes if s is not None]


def _single_scenes(name: str, stack: Stack, min_side: int, problems: list[str]) -> list[Scene]:
    """One scene per plane of ``stack``."""
    if not _stack_fits(stack, min_side, problems):
        return []
    planes = _planes(stack, problems)
    if planes is None:
        return []
    found: list[str] = []
    scenes = [
        _checked_scene(
            f"{name}[{p.label()}]",
            (_where(stack, p),),
            (p.pixels,),
            (p.levels,),
            min_side,
            found,
            stack=name,
        )
        for p in planes
    ]
    _plane_problems(stack, found, problems)
    return [s for s in scenes if s is not None]


def _depth(frame: torch.Tensor) -> str:
    return {torch.uint8: "8-bit", torch.uint16: "16-bit"}.get(frame.dtype, "float")


def _raise_problems(where: str, problems: list[str]) -> None:
    if not problems:
        return
    shown = problems[:MAX_LISTED]
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    raise DataError(
        f"{where}: {len(problems)} problem(s) in the training data, nothing trained:\n  "
        + "\n  ".join(shown)
        + more
    )


def scan_pairs(
    dir_a: str | Path, dir_b: str | Path, min_side: int = 1, z_context: int = 0
) -> list[Scene]:
    """Read two folders of aligned noisy captures, matched by relative path.

    A TIFF stack pairs with the stack of the same name: plane k of one with plane
    k of the other, each plane index one scene. With ``z_context`` K, every file
    must be a grey stack with a Z axis of K + 1 planes or more, and each frame of a
    scene is a plane's context (planes z−K..z+K).

    Raises:
        DataError: a folder is missing or empty, or any file is unmatched,
            unreadable, of another size than its partner or smaller than
            ``min_side``, or a stack's partner is a single image or a stack of
            other axes or shape; one error lists every such file.
    """
    dir_a, dir_b = Path(dir_a), Path(dir_b)
    _check_folder(dir_a, "--pairs")
    _check_folder(dir_b, "--pairs")
    a, b = _images(dir_a, recursive=True), _images(dir_b, recursive=True)
    if not a and not b:
        raise DataError(f"--pairs {dir_a} {dir_b}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    problems = [f"unmatched: {a[k]} has no {dir_b / k}" for k in a if k not in b]
    problems += [f"unmatched: {b[k]} has no {dir_a / k}" for k in b if k not in a]
    scenes: list[Scene | None] = []
    for k in (k for k in a if k in b):
        sa = _probe(a[k], problems)
        sb = _probe(b[k], problems) if sa is not False else False
        if sa is False or sb is False:
            continue
        if sa is None and sb is None and z_context:
            problems.append(_not_a_stack(a[k], z_context))
        elif sa is None and sb is None:
            scenes.append(_scene(k, (a[k], b[k]), min_side, problems))
        else:
            scenes += _stack_pair_scenes(k, (a[k], sa), (b[k], sb), min_side, problems, z_context)
    _raise_problems(f"--pairs {dir_a} {dir_b}", problems)
    return [s for s in scenes if s is not None]


def scan_bursts(
    folder: str | Path, min_side: int = 1, burst_axis: str = "T", z_context: int = 0
) -> list[Scene]:
    """Read a folder of bursts: one subfolder per scene, two or more aligned frames in
    each, or TIFF stacks directly in the folder whose ``burst_axis`` (``T`` or ``Z``)
    holds the repeated frames (module docstring). With ``z_context`` K, only grey TIFF
    stacks with T and Z axes: each frame is a plane's context along Z.

    Raises:
        DataError: the folder is missing or holds neither subfolder nor stack;
            single images lie directly in it; a stack lies in a scene folder or
            lacks ``burst_axis``; a scene has fewer than two frames; any frame is
            unreadable, of another size than the scene's others or smaller than
            ``min_side``; one error lists them all.
    """
    if burst_axis not in BURST_AXES:
        raise ValueError(f"burst_axis must be one of {list(BURST_AXES)}, got {burst_axis!r}")
    if z_context and burst_axis != "T":
        raise ValueError("z-context bursts hold their repeated frames along T, not Z")
    folder = Path(folder)
    _check_folder(folder, "--bursts")
    problems: list[str] = []
    stacks: list[tuple[str, Stack]] = []
    for name, path in _images(folder, recursive=False).items():
        stack = _probe(path, problems)
        if isinstance(stack, Stack):
            stacks.append((name, stack))
        elif stack is None:
            problems.append(
                f"not in a scene folder: {path} (put each burst in its own subfolder, or "
                "its frames in one TIFF stack)"
            )
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs and not stacks and not problems:
        raise DataError(f"--bursts {folder}: no scene subfolders or TIFF stacks found")
    scenes: list[Scene | None] = []
    for name, stack in stacks:
        scenes += _burst_scenes(name, stack, burst_axis, min_side, problems, z_context)
    for sub in subdirs:
        if z_context:
            problems.append(_not_a_stack(sub, z_context))
            continue
        frames = list(_images(sub, recursive=False).values())
        nested = [p for p in frames if isinstance(_probe(p, []), Stack)]
        if nested:
            problems += [
                f"a TIFF stack in a scene folder: {p}; put stacks directly in {folder} "
                "(each is read as bursts)"
                for p in nested
            ]
            continue
        if len(frames) < 2:
            problems.append(
                f"too few frames: {sub} holds {len(frames)} image(s), expected 2 or more"
            )
            continue
        scenes.append(_scene(sub.name, frames, min_side, problems))
    _raise_problems(f"--bursts {folder}", problems)
    return [s for s in scenes if s is not None]


def _not_a_stack(path: Path, k: int) -> str:
    return (
        f"not a stack: {path} is no TIFF stack with a Z axis, which --z-context {k} needs "
        "(the neighbouring planes are its input)"
    )


def scan_singles(folder: str | Path, min_side: int = 2) -> list[Scene]:
    """Read a folder (recursively) of single noisy images, one scene each; every plane
    of a TIFF stack is one such image.

    Raises:
        DataError: the folder is missing or holds no image; any image is
            unreadable or smaller than ``min_side``; one error lists them all.
    """
    folder = Path(folder)
    _check_folder(folder, "--singles")
    files = _images(folder, recursive=True)
    if not files:
        raise DataError(f"--singles {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    problems: list[str] = []
    scenes: list[Scene | None] = []
    for name, path in files.items():
        stack = _probe(path, problems)
        if stack is None:
            scenes.append(_scene(name, (path,), min_side, problems))
        elif isinstance(stack, Stack):
            scenes += _single_scenes(name, stack, min_side, problems)
    _raise_problems(f"--singles {folder}", problems)
    return [s for s in scenes if s is not None]


class NoisyScenes:
    """(input, target) batches of patches from noisy scenes, split by scene.

    ``pairs``/``bursts``: each patch is cut at one place from two different
    frames of a scene (in random order), input and target, both noisy.
    ``singles``: each patch is cut at twice ``patch_size`` from one image and
    yielded as both input and target; the loop trains it with
    :func:`training.neighbor.neighbor2neighbor_loss` (``subsampled`` is true),
    and the validation pairs are its two fixed neighbour sub-images, scored by
    the same loss with the regulariser at its final weight (the full crops and
    indices are kept for it), so that the best epoch is the best by the loss
    being trained rather than by its first term alone.

    There are no clean images, so ``psnr_set`` is ``None`` and the validation
    loss is noisy against noisy (module docstring). With ``clean_targets``
    (``pairs`` only: the second folder holds clean references), the input is
    always the first frame and the target the second (Noise2Clean), and the
    validation pairs also give PSNR.
    """

    def __init__(
        self,
        scenes: Sequence[Scene],
        mode: str,
        patch_size: int,
        val_fraction: float,
        generator: torch.Generator,
        val_patches: int = 64,
        clean_targets: bool = False,
        channels: int | None = None,
        z_context: int = 0,
    ) -> None:
        if z_context and (mode == "singles" or channels == 3):
            raise ValueError("z-context scenes are pairs or bursts of grey planes")
        #: The model's output channels (and the channels of an image).
        self.channels = 1 if z_context else _channels_for(scenes, channels, mode)
        #: K of a z-context model: inputs hold ``2K + 1`` planes, targets the centre plane.
        self.z_context = z_context
        #: The model's input channels.
        self.in_channels = 2 * z_context + 1 if z_context else self.channels
        if mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
        if clean_targets and mode != "pairs":
            raise ValueError(f"clean targets need pairs (noisy, clean), not {mode}")
        if len(scenes) < 2:
            raise DataError(
                f"--{mode}: need at least 2 scenes (one for validation, split by scene), "
                f"found {len(scenes)}"
            )
        self.mode, self.subsampled = mode, mode == "singles"
        self.clean_targets = clean_targets
        self.crop = 2 * patch_size if self.subsampled else patch_size
        perm = torch.randperm(len(scenes), generator=generator).tolist()
        n_val = min(len(scenes) - 1, max(1, round(len(scenes) * val_fraction)))
        self.val_scenes = [scenes[i] for i in perm[:n_val]]
        self.train_scenes = [scenes[i] for i in perm[n_val:]]
        self.validation = self._validation_set(val_patches, generator)
        self.psnr_set: tuple[torch.Tensor, torch.Tensor] | None = None
        if clean_targets:
            self.psnr_set = (self.validation.noisy, self.validation.target)

    def _validation_set(self, n: int, generator: torch.Generator) -> ValidationSet:
        inp, target = self._patches(self.val_scenes, n, generator, ordered=True)
        if self.subsampled:
            first, second = neighbor_indices(inp.shape, generator)
            g1, g2 = subsample(inp, first), subsample(inp, second)
            return ValidationSet(g1, g2, None, full=inp, index=(first, second))
        return ValidationSet(inp, target, target if self.clean_targets else None)

    def _patches(
        self, scenes: Sequence[Scene], n: int, generator: torch.Generator, ordered: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` float patch pairs: random scenes, places and (unless ``ordered``) frames.
        A z-context input holds its frame's planes, its target the other frame's centre."""
        size, c, z = self.crop, self.channels, self.z_context
        inp, target = torch.empty(n, self.in_channels, size, size), torch.empty(n, c, size, size)
        centre = slice(z, z + 1) if z else slice(None)
        picks = torch.randint(len(scenes), (n,), generator=generator).tolist()
        for j, i in enumerate(picks):
            scene = scenes[i]
            h, w = scene.size
            y = int(torch.randint(h - size + 1, (1,), generator=generator))
            x = int(torch.randint(w - size + 1, (1,), generator=generator))
            a, b = self._frames(len(scene.frames), generator, ordered)
            levels = scene.levels_of(a)  # the target in the input's units
            inp[j] = to_unit(scene.frames[a][:, y : y + size, x : x + size], levels)
            target[j] = to_unit(scene.frames[b][centre, y : y + size, x : x + size], levels)
        return inp, target

    @staticmethod
    def _frames(count: int, generator: torch.Generator, ordered: bool) -> tuple[int, int]:
        """Two different frame indices of a scene (the same one for singles)."""
        if count == 1:
            return 0, 0
        if ordered:
            return 0, 1
        a, b = torch.randperm(count, generator=generator)[:2].tolist()
        return a, b

    def batches(
        self, batch_size: int, steps: int, generator: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``steps`` batches of (input, target) float N×C×P×P patches from training scenes
        (C: :attr:`channels`)."""
        for _ in range(steps):
            yield self._patches(self.train_scenes, batch_size, generator, self.clean_targets)

    def describe(self) -> dict[str, object]:
        """For the training summary: scenes and frames (``files``: a stack's planes
        counted one by one) on each side of the split, how many scenes are grey, the
        frames' pixel types (``uint8``, ``uint16``, ...) and, where there are any, how
        many TIFF stacks the frames come from (``stacks``)."""
        scenes = (*self.train_scenes, *self.val_scenes)
        dtypes = {str(f.dtype).removeprefix("torch.") for s in scenes for f in s.frames}
        stacks = {s.stack for s in scenes if s.stack is not None}
        return {
            **({"stacks": len(stacks)} if stacks else {}),
            **({"z_context": self.z_context} if self.z_context else {}),
            "scenes": len(scenes),
            "val_scenes": len(self.val_scenes),
            "files": sum(len(s.frames) for s in scenes),
            "grey_scenes": sum(s.grey for s in scenes),
            "channels": self.channels,
            "pixel_types": sorted(dtypes),
        }


def _channels_for(scenes: Sequence[Scene], channels: int | None, mode: str) -> int:
    """The model's channels for ``scenes``: ``channels``, or 1 when every scene is grey
    (a grey-native model) and 3 otherwise.

    Raises:
        DataError: 1 channel asked for colour scenes (named, the first five).
    """
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    colour = [s.name for s in scenes if not s.grey]
    if channels is None:
        return 3 if colour else 1
    if channels == 1 and colour:
        shown = ", ".join(colour[:5]) + (", ..." if len(colour) > 5 else "")
        raise DataError(
            f"--{mode}: --channels 1 trains a grey model, but {len(colour)} scene(s) are in "
            f"colour ({shown}); convert them to grey or train with --channels 3"
        )
    return channels


def load_noisy_scenes(
    mode: str,
    folders: Sequence[str | Path],
    patch_size: int,
    val_fraction: float,
    seed: int,
    clean_targets: bool = False,
    channels: int | None = None,
    burst_axis: str = "T",
    z_context: int = 0,
) -> tuple[NoisyScenes, dict[str, object]]:
    """Read ``folders`` in layout ``mode`` and split them; return the data and its record.

    ``clean_targets``: ``pairs`` whose second folder holds clean references.
    ``channels``: the model's input channels (1: every scene must be grey); by
    default 1 when every scene is grey, else 3 (grey scenes copied into R, G, B).
    ``burst_axis``: the axis of ``bursts`` TIFF stacks holding the repeated frames.
    ``z_context`` K (``pairs`` or ``bursts`` of grey stacks with a Z axis): inputs
    are the planes z−K..z+K of a capture, targets the plane z of another.

    The record (for the training summary) names the folders by name only, with
    file and scene counts, never by absolute path.

    Raises:
        DataError: as :func:`scan_pairs`, :func:`scan_bursts`,
            :func:`scan_singles`, or fewer than two usable scenes.
    """
    paths = [Path(f) for f in folders]
    min_side = 2 * patch_size if mode == "singles" else patch_size
    if z_context and mode == "singles":
        raise DataError(
            f"--singles {paths[0]}: --z-context needs pairs or bursts (Neighbor2Neighbor "
            "sub-images of one plane have no neighbouring planes of their own noise)"
        )
    if mode == "pairs":
        scenes = scan_pairs(paths[0], paths[1], min_side, z_context)
    elif mode == "bursts":
        scenes = scan_bursts(paths[0], min_side, burst_axis, z_context)
    else:
        scenes = scan_singles(paths[0], min_side)
    gen = torch.Generator().manual_seed(seed)
    data = NoisyScenes(
        scenes,
        mode,
        patch_size,
        val_fraction,
        gen,
        clean_targets=clean_targets,
        channels=channels,
        z_context=z_context,
    )
    names = [p.resolve().name for p in paths]
    info: dict[str, object] = {"source": mode, "name": names[0], **data.describe()}
    if len(names) > 1:
        info["name_b"] = names[1]
    info["noise"] = f"own noise of {' and '.join(names)} ({mode})".replace("+", " ")
    log.info("%s: %s", mode, info)
    return data, info
