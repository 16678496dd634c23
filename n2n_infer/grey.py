"""Grey images through a colour model: its four pixel phases as colour images.

A colour model trained on noise that is independent from channel to channel
reads a grey image copied into R, G and B (the same noise in all three) as a
clean colour image, and leaves the noise in: the shipped photo model gains
almost nothing on a grey photo copied so, a small fraction of what it gains on
a colour photo at the same noise (docs/scope.md, the rows "grey σ=25" and
"grey σ=25, copied to RGB", measured by ``python -m bench.scope``).

When the noise is also independent from pixel to pixel, the grey image's four
phases (even/odd rows × even/odd columns, each half the size) carry
independent noise on nearly the same picture. Three different phases stacked
as R, G and B therefore look like a noisy colour photo at half size. Four
such stacks, in which every phase appears three times and once in each
channel, cost as much model time as one colour image of the full size; each
pixel's result is the mean of its three estimates.

Whether it suits a model is the model's own statement (``n2n.grey``, read
into :attr:`~n2n_infer.metadata.ModelInfo.grey`): the exporter says
``phases`` when the training noise is independent from pixel to pixel, and
``replicate`` (the grey copied into R, G and B) when neighbouring pixels share
it (so the phases share it too) or when the model learned grey images copied
into RGB. ``--grey auto`` follows it; see :func:`grey_mode_for`.
"""

from __future__ import annotations

import numpy as np

from n2n_infer.arrays import ImageArray, row_bands, to_unit
from n2n_infer.metadata import GREY_HANDLING

GREY_MODES = ("auto", *GREY_HANDLING)
#: Each stack: the (row, column) phase in R, G and B. Every phase appears three
#: times, once in each channel (a Latin square).
STACKS = (
    ((0, 0), (0, 1), (1, 0)),
    ((0, 1), (1, 1), (0, 0)),
    ((1, 0), (0, 0), (1, 1)),
    ((1, 1), (1, 0), (0, 1)),
)


def grey_mode_for(mode: str, stated: str = "phases") -> str:
    """``"phases"`` or ``"replicate"``: ``mode``, or for ``"auto"`` the model's ``stated``
    grey handling (:attr:`~n2n_infer.metadata.ModelInfo.grey`).

    Raises:
        ValueError: ``mode`` is not one of :data:`GREY_MODES`.
    """
    if mode not in GREY_MODES:
        raise ValueError(f"grey: expected one of {', '.join(GREY_MODES)}, got {mode!r}")
    return stated if mode == "auto" else mode


def is_grey(img: ImageArray) -> bool:
    """One channel, or colour channels that are all equal (alpha aside).

    Compared band by band of rows (a few MB of temporaries however large the image).
    """
    hwc = img.original
    if hwc.ndim == 2 or hwc.shape[2] == 1:
        return True
    for band in row_bands(hwc):
        r = band[:, :, 0]
        if not (np.array_equal(r, band[:, :, 1]) and np.array_equal(r, band[:, :, 2])):
            return False
    return True


def phase_stacks(img: ImageArray) -> list[np.ndarray]:
    """The four ⌈H/2⌉×⌈W/2⌉×3 colour images (input dtype) of a grey image's phases.

    An odd height or width is first extended by one mirrored row or column.
    """
    plane = img.rgb[:, :, 0]
    h, w = plane.shape
    pad = ((0, h % 2), (0, w % 2))
    if h % 2 or w % 2:
        plane = np.pad(plane, pad, mode="reflect" if min(h, w) > 1 else "edge")
    phases = {(a, b): plane[a::2, b::2] for a in (0, 1) for b in (0, 1)}
    return [np.stack([phases[p] for p in stack], axis=-1) for stack in STACKS]


def merge_phases(
    outputs: list[np.ndarray],
    size_hw: tuple[int, int],
    levels: tuple[float, float] | None = None,
) -> np.ndarray:
    """The float32 H×W grey result from the four denoised stacks (any accepted dtype,
    mapped to [0, 1] with the grey image's ``levels``, as :class:`ImageArray` has them)."""
    h2, w2 = outputs[0].shape[:2]
    grey = np.zeros((2 * h2, 2 * w2), np.float32)
    for stack, out in zip(STACKS, outputs, strict=True):
        for channel, (a, b) in enumerate(stack):
            grey[a::2, b::2] += to_unit(out[:, :, channel], levels)
    grey /= np.float32(3.0)
    h, w = size_hw
    return grey[:h, :w]
