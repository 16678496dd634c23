"""Neighbor2Neighbor: training on single noisy images (Huang et al., CVPR 2021).

A noisy image ``y`` (N×C×2h×2w) is cut into 2×2 cells. In every cell one pixel
goes to the sub-image ``g1(y)`` and one of its horizontal or vertical
neighbours (never the diagonal one, never itself) to ``g2(y)``, both N×C×h×w.
If the noise is independent from pixel to pixel and zero-mean, ``g2(y)`` is a
second noisy observation of nearly the same scene as ``g1(y)``, so a network
``f`` can learn ``f(g1(y)) ≈ g2(y)`` as in Noise2Noise. The two sub-images'
clean contents differ slightly (they are one pixel apart); the regulariser

    ‖f(g1(y)) − g2(y) − (g1(f(y)) − g2(f(y)))‖²

(``f(y)`` without gradient) pulls the learned mapping towards the one that
would be right on the full image. Its weight rises from 0 to ``gamma`` over
training, as in the paper's code.

The assumption matters: noise shared by neighbouring pixels (demosaicked
camera noise, JPEG, resampling) is partly the same in ``g1`` and ``g2``, so the
network learns to keep it (see ``docs/own_data.md`` for measurements).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["neighbor2neighbor_loss", "neighbor_indices", "subsample"]

#: For each position in a 2×2 cell (0 top-left, 1 top-right, 2 bottom-left,
#: 3 bottom-right), the two positions that are its horizontal/vertical neighbours.
_NEIGHBOURS = torch.tensor([[1, 2], [0, 3], [0, 3], [1, 2]])


def neighbor_indices(
    shape: torch.Size | tuple[int, ...], generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random cell positions for the two sub-images of images of ``shape`` (N×C×H×W).

    Returns two int64 tensors N×1×H/2×W/2 of positions 0..3 in each 2×2 cell;
    the second is always a horizontal or vertical neighbour of the first. One
    choice per pixel location, shared by the channels.

    Raises:
        ValueError: H or W is odd, or the shape is not N×C×H×W.
    """
    if len(shape) != 4 or shape[2] % 2 or shape[3] % 2:
        raise ValueError(f"neighbor sub-sampling needs N×C×H×W with even H, W; got {tuple(shape)}")
    n, _, h, w = shape
    first = torch.randint(4, (n, 1, h // 2, w // 2), generator=generator)
    pick = torch.randint(2, (n, 1, h // 2, w // 2), generator=generator)
    second = _NEIGHBOURS[first, pick]
    return first, second


def subsample(img: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The sub-image of ``img`` (N×C×H×W) taking, in each 2×2 cell, the position ``index``
    (N×1×H/2×W/2, from :func:`neighbor_indices`); N×C×H/2×W/2."""
    n, c, h, w = img.shape
    cells = img.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 2, 4, 3, 5)
    cells = cells.reshape(n, c, h // 2, w // 2, 4)
    idx = index.to(img.device).unsqueeze(-1).expand(n, c, h // 2, w // 2, 1)
    return cells.gather(-1, idx).squeeze(-1)


def neighbor2neighbor_loss(
    model: nn.Module, noisy: torch.Tensor, generator: torch.Generator, gamma: float
) -> torch.Tensor:
    """The Neighbor2Neighbor loss of ``model`` on noisy N×C×2h×2w images in [0, 1].

    Mean squared ``f(g1) − g2`` plus ``gamma`` times the mean squared
    regulariser (module docstring); ``f(y)`` on the full image runs without
    gradient. Returns a scalar tensor.

    Raises:
        ValueError: as :func:`neighbor_indices`.
    """
    first, second = neighbor_indices(noisy.shape, generator)
    g1, g2 = subsample(noisy, first), subsample(noisy, second)
    with torch.no_grad():
        full = model(noisy).float()
    diff = model(g1).float() - g2
    loss = torch.mean(diff**2)
    if gamma > 0:
        expected = subsample(full, first) - subsample(full, second)
        loss = loss + gamma * torch.mean((diff - expected) ** 2)
    return loss


def neighbor_validation_loss(
    pred: torch.Tensor, target: torch.Tensor, expected: torch.Tensor, gamma: float
) -> float:
    """The Neighbor2Neighbor loss of fixed validation sub-images, as a number.

    ``pred`` is ``f(g1)``, ``target`` is ``g2`` and ``expected`` is
    ``f(y)`` sub-sampled at the first minus at the second positions; the loss is
    the mean squared ``f(g1) − g2`` plus ``gamma`` times the mean squared
    regulariser, as :func:`neighbor2neighbor_loss` trains it with its final weight.
    """
    diff = pred - target
    return float(torch.mean(diff**2) + gamma * torch.mean((diff - expected) ** 2))
