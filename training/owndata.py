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

Every file goes through the runtime's reader (:func:`training.data.read_frame`:
EXIF orientation applied, alpha dropped, any size) and keeps its precision:
16-bit files stay 16-bit (dim 12-bit data in a 16-bit file keeps every level),
and all are scaled to [0, 1] as the runtime scales them (a dim 16-bit image by
its own range, :func:`n2n_infer.arrays.levels_of`; both patches of a pair by the
input frame's levels, so that the target is in the input's units; a scene whose
frames' ranges are too far apart for that, a constant frame above all, is refused
by name, :func:`_levels_problem`). Grey images
(grey files, or colour with three equal channels) are kept as one plane and fed
to the network copied into R, G and B; the record counts them
(``grey_scenes``), which makes the runtime feed grey images to the trained model
the same way (``--grey auto`` picks ``replicate``,
:func:`n2n_export.exporter.trained_on_grey` states it in the model). All problems (unmatched names,
different sizes or pixel ranges, unreadable files, scenes too small or with fewer
than two frames) are collected and reported in one :class:`~training.data.DataError`
before any training.

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

import torch

from n2n_infer.files import visible_files
from n2n_train.data import (
    IMAGE_SUFFIXES,
    DataError,
    Levels,
    ValidationSet,
    read_frame,
    to_unit,
)
from n2n_train.neighbor import neighbor_indices, subsample

log = logging.getLogger(__name__)

__all__ = ["MODES", "NoisyScenes", "Scene", "scan_bursts", "scan_pairs", "scan_singles"]

#: The own-data layouts, as ``n2n-train fit`` names them.
MODES = ("pairs", "bursts", "singles")
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

    def levels_of(self, index: int) -> Levels | None:
        """Frame ``index``'s levels."""
        return None if self.levels is None else self.levels[index]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the frames."""
        return int(self.frames[0].shape[1]), int(self.frames[0].shape[2])

    @property
    def grey(self) -> bool:
        """Whether the frames are grey (one plane)."""
        return int(self.frames[0].shape[0]) == 1


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
    sizes = {(int(f.shape[1]), int(f.shape[2])) for f in frames}
    if len(sizes) > 1:
        pairs = zip(paths, frames, strict=True)
        listed = ", ".join(f"{p} {f.shape[2]}×{f.shape[1]}" for p, f in pairs)
        problems.append(f"different sizes in scene {name!r}: {listed}")
        return None
    # a pair's target is scaled by its input's levels: a dim capture (its own levels)
    # and a full-range one would be scaled alike, wrongly; 8 and 16 bits mix freely
    if len({lv is None for lv in levels}) > 1:
        pairs = zip(paths, frames, levels, strict=True)
        listed = ", ".join(
            f"{p} {_depth(f)}{' (dim: own levels)' if lv is not None else ''}" for p, f, lv in pairs
        )
        problems.append(
            f"different pixel ranges in scene {name!r}: {listed}; a dim capture (no value "
            "above 16383, scaled by its own range) cannot pair with a full-range one: "
            "convert them to one range"
        )
        return None
    problem = _levels_problem(name, paths, frames, levels)
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
    return Scene(name, tuple(frames), levels)


def _levels_problem(
    name: str,
    paths: Sequence[Path],
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
    extent = [(int(f.numpy().min()), int(f.numpy().max())) for f in frames]
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
        f"{p} {f'constant {lo} (a dead capture?)' if lo == hi else f'{lo}..{hi}'}"
        for p, (lo, hi) in zip(paths, extent, strict=True)
    )
    return (
        f"pixel ranges too far apart in dim 16-bit scene {name!r}: {listed}; each dim frame "
        f"is scaled by its own range and its partner by the same levels, so {paths[j]} "
        f"would become a target of {low:.3g}..{high:.3g} for {paths[i]} instead of about "
        "0..1: remove the scene or its odd frame"
    )


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


def scan_pairs(dir_a: str | Path, dir_b: str | Path, min_side: int = 1) -> list[Scene]:
    """Read two folders of aligned noisy captures, matched by relative path.

    Raises:
        DataError: a folder is missing or empty, or any file is unmatched,
            unreadable, of another size than its partner or smaller than
            ``min_side``; one error lists every such file.
    """
    dir_a, dir_b = Path(dir_a), Path(dir_b)
    _check_folder(dir_a, "--pairs")
    _check_folder(dir_b, "--pairs")
    a, b = _images(dir_a, recursive=True), _images(dir_b, recursive=True)
    if not a and not b:
        raise DataError(f"--pairs {dir_a} {dir_b}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    problems = [f"unmatched: {a[k]} has no {dir_b / k}" for k in a if k not in b]
    problems += [f"unmatched: {b[k]} has no {dir_a / k}" for k in b if k not in a]
    scenes = [_scene(k, (a[k], b[k]), min_side, problems) for k in a if k in b]
    _raise_problems(f"--pairs {dir_a} {dir_b}", problems)
    return [s for s in scenes if s is not None]


def scan_bursts(folder: str | Path, min_side: int = 1) -> list[Scene]:
    """Read a folder of bursts: one subfolder per scene, two or more aligned frames in each.

    Raises:
        DataError: the folder is missing or holds no subfolder; images lie
            directly in it; a scene has fewer than two frames; any frame is
            unreadable, of another size than the scene's others or smaller than
            ``min_side``; one error lists them all.
    """
    folder = Path(folder)
    _check_folder(folder, "--bursts")
    problems = [
        f"not in a scene folder: {p} (put each burst in its own subfolder)"
        for p in _images(folder, recursive=False).values()
    ]
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs and not problems:
        raise DataError(f"--bursts {folder}: no scene subfolders found")
    scenes = []
    for sub in subdirs:
        frames = list(_images(sub, recursive=False).values())
        if len(frames) < 2:
            problems.append(
                f"too few frames: {sub} holds {len(frames)} image(s), expected 2 or more"
            )
            continue
        scenes.append(_scene(sub.name, frames, min_side, problems))
    _raise_problems(f"--bursts {folder}", problems)
    return [s for s in scenes if s is not None]


def scan_singles(folder: str | Path, min_side: int = 2) -> list[Scene]:
    """Read a folder (recursively) of single noisy images, one scene each.

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
    scenes = [_scene(k, (p,), min_side, problems) for k, p in files.items()]
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
    ) -> None:
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
        """``n`` float patch pairs: random scenes, places and (unless ``ordered``) frames."""
        size = self.crop
        inp, target = torch.empty(n, 3, size, size), torch.empty(n, 3, size, size)
        picks = torch.randint(len(scenes), (n,), generator=generator).tolist()
        for k, i in enumerate(picks):
            scene = scenes[i]
            h, w = scene.size
            y = int(torch.randint(h - size + 1, (1,), generator=generator))
            x = int(torch.randint(w - size + 1, (1,), generator=generator))
            a, b = self._frames(len(scene.frames), generator, ordered)
            levels = scene.levels_of(a)  # the target in the input's units
            inp[k] = to_unit(scene.frames[a][:, y : y + size, x : x + size], levels)
            target[k] = to_unit(scene.frames[b][:, y : y + size, x : x + size], levels)
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
        """``steps`` batches of (input, target) float N×3×P×P patches from training scenes."""
        for _ in range(steps):
            yield self._patches(self.train_scenes, batch_size, generator, self.clean_targets)

    def describe(self) -> dict[str, object]:
        """For the training summary: scenes and frames on each side of the split, how
        many scenes are grey, and the frames' pixel types (``uint8``, ``uint16``, ...)."""
        scenes = (*self.train_scenes, *self.val_scenes)
        dtypes = {str(f.dtype).removeprefix("torch.") for s in scenes for f in s.frames}
        return {
            "scenes": len(scenes),
            "val_scenes": len(self.val_scenes),
            "files": sum(len(s.frames) for s in scenes),
            "grey_scenes": sum(s.grey for s in scenes),
            "pixel_types": sorted(dtypes),
        }


def load_noisy_scenes(
    mode: str,
    folders: Sequence[str | Path],
    patch_size: int,
    val_fraction: float,
    seed: int,
    clean_targets: bool = False,
) -> tuple[NoisyScenes, dict[str, object]]:
    """Read ``folders`` in layout ``mode`` and split them; return the data and its record.

    ``clean_targets``: ``pairs`` whose second folder holds clean references.

    The record (for the training summary) names the folders by name only, with
    file and scene counts, never by absolute path.

    Raises:
        DataError: as :func:`scan_pairs`, :func:`scan_bursts`,
            :func:`scan_singles`, or fewer than two usable scenes.
    """
    paths = [Path(f) for f in folders]
    min_side = 2 * patch_size if mode == "singles" else patch_size
    if mode == "pairs":
        scenes = scan_pairs(paths[0], paths[1], min_side)
    elif mode == "bursts":
        scenes = scan_bursts(paths[0], min_side)
    else:
        scenes = scan_singles(paths[0], min_side)
    gen = torch.Generator().manual_seed(seed)
    data = NoisyScenes(scenes, mode, patch_size, val_fraction, gen, clean_targets=clean_targets)
    names = [p.resolve().name for p in paths]
    info: dict[str, object] = {"source": mode, "name": names[0], **data.describe()}
    if len(names) > 1:
        info["name_b"] = names[1]
    info["noise"] = f"own noise of {' and '.join(names)} ({mode})".replace("+", " ")
    log.info("%s: %s", mode, info)
    return data, info
