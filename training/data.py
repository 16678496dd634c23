"""Training data: course-format pickles and clean photos with synthetic noise.

Inside the code images are float32 N×C×H×W RGB in [0, 1]; the uint8 <-> float
conversion happens here and nowhere else in ``training``.

Course format (what the original study trained on)::

    noisy_a, noisy_b = torch.load("train_data.pkl")  # uint8 N×3×32×32 each
    noisy, clean = torch.load("val_data.pkl")        # uint8 N×3×32×32 each
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from n2n_infer.arrays import INT_SCALE, ImageArray, levels_of
from n2n_infer.errors import ImageError, N2NError
from n2n_infer.files import visible_files
from n2n_infer.grey import is_grey
from n2n_infer.imageio import SUFFIXES, read_file, read_image
from n2n_train.distributed import SINGLE, Dist
from n2n_train.noise import NoiseModel

log = logging.getLogger(__name__)

#: Image files of training folders: every suffix the runtime reads
#: (:data:`n2n_infer.imageio.SUFFIXES`). AVIF and HEIF are listed even where they cannot
#: be read (no codec, no ``heic`` extra), so that such a file stops the run by name.
IMAGE_SUFFIXES = tuple(dict.fromkeys((*SUFFIXES, ".avif", ".heic", ".heif", ".hif")))
#: Refuse photos above this many pixels (decompression bombs).
MAX_PIXELS = 64_000_000


class DataError(N2NError, ValueError):
    """A data file or folder is missing, unreadable or not in the expected format."""


def check_out_apart(
    out_dir: str | Path, folders: Sequence[tuple[str, str | Path]], links: bool = True
) -> None:
    """Refuse a run folder that is a data folder, lies inside one or holds one.

    ``folders``: ``(option, folder)`` pairs such as ``("--singles", "shots")``.
    A run writes ``best.pt``, ``loss.png`` and more into ``out_dir``; inside a
    data folder the next run would read its own plots as training data (and
    ``--resume`` would refuse the changed data), and a data folder inside
    ``out_dir`` can be replaced by the run (``--overwrite`` removes
    ``OUT/snapshots``). Paths are compared by their real paths (symbolic links
    followed, as the data is read), and so are the linked subfolders of each
    data folder (with ``links``: folders read recursively): a link inside the data
    that leads into ``out_dir`` is refused too.

    Raises:
        DataError: one line naming ``out_dir`` and the data folder.
    """
    out = Path(os.path.realpath(out_dir))
    for option, folder in folders:
        data = Path(os.path.realpath(folder))
        if out == data:
            relation = "is the data folder"
        elif data in out.parents:
            relation = "lies inside the data folder"
        elif out in data.parents:
            relation = "holds the data folder"
        else:
            link = _link_into(Path(folder), out) if links else None
            if link is None:
                continue
            raise DataError(
                f"--out {out_dir} is reached from the data folder {option} {folder} through "
                f"the link {link}: the run's checkpoints and plots would be read as training "
                "data; choose an --out outside the data, or remove the link"
            )
        raise DataError(
            f"--out {out_dir} {relation} {option} {folder}{_real_note(out_dir, folder)}: the "
            "run's checkpoints and plots would be read as training data next time (and "
            "--resume would refuse the changed data); choose an --out outside the data"
        )


def _real_note(*paths: str | Path) -> str:
    """`` (real paths A and B)`` where a symbolic link makes a path differ from its real one."""
    real = [os.path.realpath(p) for p in paths]
    if all(os.path.abspath(p) == r for p, r in zip(paths, real, strict=True)):
        return ""
    return f" (real paths {' and '.join(real)})"


def _link_into(folder: Path, out: Path) -> Path | None:
    """The first linked subfolder under ``folder`` (hidden ones skipped, each real folder
    walked once, as :func:`n2n_infer.files.visible_files` walks) whose real path is
    ``out`` or lies inside it."""
    if not folder.is_dir():
        return None
    seen: set[str] = set()
    for root, dirs, _ in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in dirs:
            path = Path(root) / name
            if path.is_symlink():
                target = Path(os.path.realpath(path))
                if target == out or out in target.parents or target in out.parents:
                    return path
    return None


def to_float(img_u8: torch.Tensor) -> torch.Tensor:
    """uint8 tensor (any layout) -> float32 in [0, 1]."""
    return to_unit(img_u8)


#: Full scale of the integer pixel types a file can hold (float pixels are in [0, 1]):
#: the runtime's own table.
FULL_SCALE = {getattr(torch, dtype.name): scale for dtype, scale in INT_SCALE.items()}


#: ``(black, span)``: values map to ``(value - black) / span``; see :func:`read_frame`.
Levels = tuple[float, float]


def to_unit(img: torch.Tensor, levels: Levels | None = None) -> torch.Tensor:
    """uint8, uint16 or float tensor (any layout) -> float32, as the runtime scales it.

    A new tensor. ``levels``: the image's own ``(black, span)`` (a dim 16-bit
    or float image, :func:`read_frame`); ``None``: the dtype's full scale (float input
    is taken as already in [0, 1]).
    """
    black, scale = levels or (0.0, FULL_SCALE.get(img.dtype))
    out = img.float()
    if black:
        out.sub_(black)
    return out if scale is None else out.div_(scale)


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """float tensor in [0, 1] -> uint8, clipped and rounded."""
    return img.clamp(0, 1).mul(255.0).round_().to(torch.uint8)


def quantize(img: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 1] and round to 1/255 steps, as an 8-bit image file would."""
    return img.clamp(0, 1).mul(255.0).round_().div_(255.0)


def load_course_pairs(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a course-format file: two uint8 tensors N×3×H×W of the same shape.

    Raises:
        DataError: missing file, unsafe pickle (objects other than tensors and
            tuples are refused), or anything but two uint8 tensors of one shape.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    from n2n_train.checkpoint import CheckpointError, load_torch_file

    try:  # record sizes checked before torch reads anything (a small file cannot expand)
        data = load_torch_file(path)
    except CheckpointError as exc:  # legacy/bare pickles, bombs, unsafe or corrupt files
        raise DataError(f"{path}: not a readable course-format file ({exc})") from exc
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise DataError(f"{path}: expected a pair of tensors, found {type(data).__name__}")
    a, b = data
    for t in (a, b):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or t.ndim != 4:
            raise DataError(f"{path}: expected two uint8 tensors N×3×H×W, found {_describe(t)}")
    if a.shape != b.shape or a.shape[1] != 3:
        raise DataError(
            f"{path}: the two tensors must have one shape N×3×H×W, found "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )
    return a, b


def save_course_pairs(path: str | Path, a: torch.Tensor, b: torch.Tensor) -> None:
    """Write two uint8 tensors N×3×H×W in the course format."""
    if a.dtype != torch.uint8 or b.dtype != torch.uint8 or a.shape != b.shape:
        raise DataError(f"{path}: course format needs two uint8 tensors of one shape")
    # clone: a view (e.g. a slice) would otherwise be saved with its whole storage
    torch.save((a.contiguous().clone(), b.contiguous().clone()), Path(path))


def _describe(t: object) -> str:
    if isinstance(t, torch.Tensor):
        return f"{t.dtype} tensor of shape {tuple(t.shape)}"
    return type(t).__name__


def load_photo_folder(folder: str | Path) -> list[torch.Tensor]:
    """Read every image in ``folder`` (sorted by name) as uint8 3×H×W tensors.

    Raises:
        DataError: the folder is missing or holds no readable image; a file
            that cannot be decoded is named in the message.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: photo folder not found")
    files = sorted(p for p in visible_files(folder) if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    return [read_rgb(p) for p in files]


def read_rgb(path: Path) -> torch.Tensor:
    """Read one image file as a uint8 3×H×W RGB tensor, as the runtime reads it.

    Through ``n2n_infer.imageio.read_image``: EXIF orientation applied (a photo
    is upright, as ``n2n-infer`` will see it), grey repeated, alpha dropped,
    16-bit rounded to 8.

    Raises:
        DataError: the file cannot be decoded or has more than :data:`MAX_PIXELS`
            pixels; names the file.
    """
    try:
        arr = read_image(path, max_pixels=MAX_PIXELS)
    except ImageError as exc:
        raise DataError(f"cannot read image: {exc}") from exc
    arr = arr if arr.flags.writeable else arr.copy()  # torch.from_numpy warns on read-only
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def read_frame(path: Path) -> tuple[torch.Tensor, Levels | None]:
    """Read one image file as the runtime reads it, keeping its precision: C×H×W, and
    the levels the runtime maps it by.

    Through ``n2n_infer.imageio.read_file``: EXIF orientation applied, alpha
    dropped. ``C`` is 1 for a grey image (a grey file, or colour whose three
    channels are equal, as :func:`n2n_infer.grey.is_grey` decides) and 3 for
    colour. The dtype is the file's: uint8, uint16 (16-bit files: never rounded
    to 8 bits, so dim 12-bit data in a 16-bit file keeps every level) or
    float32 (float TIFFs, values in [0, 1]). The levels are
    :func:`n2n_infer.arrays.levels_of`'s: a dim image (16-bit with no value
    above 16383, a microscope's counts, or float with none above 0.25) is mapped
    by its own min..max, as ``n2n-infer`` maps it (``--levels auto``); ``None``
    for the rest.
    :func:`to_unit` scales any frame to [0, 1] with them.

    Raises:
        DataError: the file cannot be decoded, has more than :data:`MAX_PIXELS`
            pixels, or holds float values outside [0, 1] or not finite (as the
            runtime refuses them); names the file.
    """
    try:
        px = read_file(path, max_pixels=MAX_PIXELS).pixels
    except ImageError as exc:
        raise DataError(f"cannot read image: {exc}") from exc
    if px.dtype.kind == "f":  # the reader refused values outside [0, 1]
        px = px.astype(np.float32)
    px = px[:, :, :3] if px.ndim == 3 else px[:, :, None]  # alpha dropped; H×W×C
    levels = levels_of(px)
    if is_grey(ImageArray(px, px)):
        px = px[:, :, :1]
    chw = np.ascontiguousarray(px.transpose(2, 0, 1))
    if not chw.flags.writeable:  # a grey image's view of the reader's read-only array
        chw = chw.copy()
    return torch.from_numpy(chw), levels


@dataclass
class ValidationSet:
    """Fixed validation pairs: input, target and (where known) clean, float N×3×H×W;
    for Neighbor2Neighbor also the full crops and sub-sampling indices."""

    noisy: torch.Tensor
    target: torch.Tensor
    clean: torch.Tensor | None
    #: Neighbor2Neighbor validation: the full noisy crops that ``noisy`` and ``target``
    #: were sub-sampled from, and the two index maps (:func:`training.neighbor.subsample`).
    full: torch.Tensor | None = None
    index: tuple[torch.Tensor, torch.Tensor] | None = None


class CoursePairs:
    """Pairs from course-format tensors, split into train/validation.

    ``noisy_b`` is the target: a second noisy copy (Noise2Noise) or, with
    ``clean_targets``, the clean image (Noise2Clean, e.g. ``train_clean.pkl``).
    """

    def __init__(
        self,
        noisy_a: torch.Tensor,
        noisy_b: torch.Tensor,
        val_fraction: float,
        generator: torch.Generator,
        val_clean: tuple[torch.Tensor, torch.Tensor] | None = None,
        clean_targets: bool = False,
    ) -> None:
        n = noisy_a.shape[0]
        perm = torch.randperm(n, generator=generator)
        n_val = max(1, round(n * val_fraction))
        self._a, self._b = noisy_a[perm[n_val:]], noisy_b[perm[n_val:]]
        va, vb = to_float(noisy_a[perm[:n_val]]), to_float(noisy_b[perm[:n_val]])
        self.validation = ValidationSet(va, vb, vb if clean_targets else None)
        #: (noisy, clean) float tensors from a val_data.pkl, for PSNR.
        self.psnr_set = None if val_clean is None else tuple(to_float(t) for t in val_clean)

    def __len__(self) -> int:
        return self._a.shape[0]

    def batches(
        self,
        batch_size: int,
        generator: torch.Generator,
        order: torch.Generator | None = None,
        dist: Dist = SINGLE,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of shuffled (input, target) float batches.

        ``order`` draws the shuffle (default: ``generator``). In a distributed
        run (``dist``) every rank passes the same ``order`` and gets its share
        of each batch of ``batch_size``; a last batch with fewer pairs than
        ranks is dropped (:meth:`epoch_batches` counts it out).
        """
        perm = torch.randperm(len(self), generator=order or generator)
        for i in range(0, len(self), batch_size):
            idx = perm[i : i + batch_size]
            if len(idx) < dist.world:
                break
            start, stop = dist.share(len(idx))
            idx = idx[start:stop]
            yield to_float(self._a[idx]), to_float(self._b[idx])

    def epoch_batches(self, batch_size: int, world: int = 1) -> int:
        """Batches in one epoch of :meth:`batches` with ``world`` ranks."""
        full, rest = divmod(len(self), batch_size)
        return full + (1 if rest >= world else 0)


def photo_pyramid(
    photos: Sequence[torch.Tensor], halvings: int, min_side: int
) -> list[torch.Tensor]:
    """Each uint8 3×H×W photo, then copies halved (area average) up to ``halvings``
    times while the shorter side stays at least ``min_side``."""
    out = []
    for photo in photos:
        out.append(photo)
        level = photo
        for _ in range(halvings):
            if min(level.shape[1:]) // 2 < min_side:
                break
            level = to_uint8(F.avg_pool2d(to_float(level)[None], 2)[0])
            out.append(level)
    return out


#: ITU-R BT.601 luma weights, as PIL's ``convert("L")`` uses.
LUMA = (0.299, 0.587, 0.114)


def to_grey(clean: torch.Tensor) -> torch.Tensor:
    """N×3×H×W colour -> N×3×H×W grey (its luma in all three channels)."""
    w = torch.tensor(LUMA, dtype=clean.dtype, device=clean.device).view(1, 3, 1, 1)
    return (clean * w).sum(dim=1, keepdim=True).expand_as(clean).contiguous()


class PhotoPairs:
    """Noise2Noise pairs drawn on the fly from clean photos.

    Each step crops random ``patch_size`` patches (with random flips) and noises
    each twice, independently. The input copy is clipped and quantized like an
    8-bit file; the target copy is left unclipped so that its expectation is
    the clean patch. With ``clean_targets`` the target is the clean patch
    (Noise2Clean). Photos are split by image into train and validation.

    With ``grey_fraction`` p, each patch is turned grey with probability p (its
    luma in R, G and B) and its noise is drawn once and copied into the three
    channels, as in a grey image file read as RGB; the validation patches too.
    """

    def __init__(
        self,
        photos: Sequence[torch.Tensor],
        noise: NoiseModel,
        patch_size: int,
        val_fraction: float,
        generator: torch.Generator,
        val_patches: int = 256,
        clean_targets: bool = False,
        pyramid: int = 0,
        grey_fraction: float = 0.0,
        channels: int = 3,
    ) -> None:
        if not 0.0 <= grey_fraction <= 1.0:
            raise ValueError(f"grey_fraction must be in [0, 1], got {grey_fraction}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if channels == 1 and grey_fraction:
            raise ValueError("grey_fraction applies to colour models: with 1 channel all is grey")
        self.channels = channels
        photos = [p for p in photos if min(p.shape[1:]) >= patch_size]
        if len(photos) < 2:
            raise DataError(
                f"need at least 2 photos of at least {patch_size}×{patch_size} pixels "
                f"(one for validation), found {len(photos)}"
            )
        perm = torch.randperm(len(photos), generator=generator).tolist()
        n_val = max(1, round(len(photos) * val_fraction))
        self.noise, self.patch_size, self.clean_targets = noise, patch_size, clean_targets
        self.grey_fraction = grey_fraction
        # Split first, then add the smaller scales: a photo stays on one side.
        floor = max(patch_size, 256)
        self._train = photo_pyramid([photos[i] for i in perm[n_val:]], pyramid, floor)
        val_photos = photo_pyramid([photos[i] for i in perm[:n_val]], pyramid, floor)
        clean, grey = self._greyed(self._crops(val_photos, val_patches, generator), generator)
        a, b = self._noised(clean, grey, generator), self._noised(clean, grey, generator)
        self.validation = ValidationSet(quantize(a), clean if clean_targets else b, clean)
        self.psnr_set = (self.validation.noisy, clean)

    def _crops(
        self, photos: Sequence[torch.Tensor], n: int, generator: torch.Generator
    ) -> torch.Tensor:
        ps = self.patch_size
        out = torch.empty(n, 3, ps, ps)
        picks = torch.randint(len(photos), (n,), generator=generator).tolist()
        for k, i in enumerate(picks):
            _, h, w = photos[i].shape
            y = int(torch.randint(h - ps + 1, (1,), generator=generator))
            x = int(torch.randint(w - ps + 1, (1,), generator=generator))
            patch = photos[i][:, y : y + ps, x : x + ps]
            if torch.rand(1, generator=generator) < 0.5:
                patch = patch.flip(2)
            out[k] = to_float(patch)
        return out

    def batches(
        self, batch_size: int, steps: int, generator: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``steps`` batches of freshly cropped and noised (input, target) pairs."""
        for _ in range(steps):
            clean, grey = self._greyed(self._crops(self._train, batch_size, generator), generator)
            inp = quantize(self._noised(clean, grey, generator))
            # drawn in both modes: the same random stream
            target = self._noised(clean, grey, generator)
            yield inp, clean if self.clean_targets else target

    def _greyed(
        self, clean: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The patches with a ``grey_fraction`` share made grey, and which ones (or all of
        them, with one channel, for a grey model)."""
        if self.channels == 1:
            return to_grey(clean)[:, :1].contiguous(), None
        if not self.grey_fraction:
            return clean, None  # no draw: the stream of colour-only runs is unchanged
        grey = torch.rand(clean.shape[0], generator=generator) < self.grey_fraction
        if grey.any():
            clean[grey] = to_grey(clean[grey])
        return clean, grey

    def _noised(
        self, clean: torch.Tensor, grey: torch.Tensor | None, generator: torch.Generator
    ) -> torch.Tensor:
        noisy = self.noise(clean, generator)
        if grey is not None and grey.any():  # one noise draw, copied to R, G and B
            noisy[grey] = self.noise(clean[grey][:, :1], generator).expand(-1, 3, -1, -1)
        return noisy
