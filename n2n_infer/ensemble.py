"""Self-ensemble: run the model on flipped and rotated copies and average the results.

A denoiser trained with flips and rotations is close to, but not exactly,
equivariant to them; averaging its outputs over ``n`` of the eight symmetries
of the square (the dihedral group) removes part of its error, at ``n`` times
the cost. On the shipped photo model the gain is a fraction of a dB that grows
with ``n``, by less at each doubling of the time (docs/quality.md, the rows
``photo-x2`` to ``photo-x8``).

Transforms act on the last two axes of N×C×H×W arrays; H and W may differ (a
transposed batch is W×H: the model is fully convolutional and both sides stay
multiples of its stride). The first ``n`` transforms of :data:`TRANSFORMS` form
a subgroup for every allowed ``n``, so each ensemble is symmetric in itself.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Transform = Callable[[np.ndarray], np.ndarray]

#: Ensemble sizes allowed: subgroups of the dihedral group of order 1, 2, 4 and 8.
SIZES = (1, 2, 4, 8)


def _t(a: np.ndarray) -> np.ndarray:
    return a.swapaxes(-1, -2)


def _r180(a: np.ndarray) -> np.ndarray:
    return a[..., ::-1, ::-1]


def _anti(a: np.ndarray) -> np.ndarray:
    return a[..., ::-1, ::-1].swapaxes(-1, -2)


def _flip_h(a: np.ndarray) -> np.ndarray:
    return a[..., ::-1, :]


def _flip_w(a: np.ndarray) -> np.ndarray:
    return a[..., :, ::-1]


def _r90(a: np.ndarray) -> np.ndarray:
    return np.rot90(a, 1, axes=(-2, -1))


def _r270(a: np.ndarray) -> np.ndarray:
    return np.rot90(a, -1, axes=(-2, -1))


def _identity(a: np.ndarray) -> np.ndarray:
    return a


#: (forward, inverse) pairs; the first 1, 2, 4 and 8 are subgroups:
#: {id}, {id, transpose}, {id, transpose, rot180, anti-transpose}, all eight.
TRANSFORMS: tuple[tuple[Transform, Transform], ...] = (
    (_identity, _identity),
    (_t, _t),
    (_r180, _r180),
    (_anti, _anti),
    (_flip_h, _flip_h),
    (_flip_w, _flip_w),
    (_r90, _r270),
    (_r270, _r90),
)


def check_size(n: int) -> int:
    """``n`` if it is an allowed ensemble size.

    Raises:
        ValueError: ``n`` is not one of :data:`SIZES`.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) not in SIZES:
        raise ValueError(
            f"ensemble must be one of {', '.join(map(str, SIZES))} (flips/rotations "
            f"averaged per image), got {n!r}"
        )
    return int(n)


def run_ensemble(run: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, n: int) -> np.ndarray:
    """The mean of ``inverse(run(forward(batch)))`` over the first ``n`` transforms.

    ``run`` maps a contiguous float32 N×C×H×W array to one of the same shape;
    the result is float32 and contiguous. ``n == 1`` is a plain call.
    """
    if n == 1:
        return run(batch)
    total = np.array(run(batch), dtype=np.float32, copy=True)  # the identity comes first
    for forward, inverse in TRANSFORMS[1:n]:
        total += inverse(run(np.ascontiguousarray(forward(batch))))
    total *= np.float32(1.0 / n)
    return total
