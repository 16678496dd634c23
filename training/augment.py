"""Pair augmentations of the study: swap input/target, 8 flips/rotations, blur one side.

All functions take float N×C×H×W batches and a ``torch.Generator`` and return
new tensors; input and target of a pair always get the same geometric transform.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Range of the random Gaussian blur's standard deviation, in pixels.
BLUR_SIGMA = (0.5, 1.5)


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Transform ``k`` in 0..7 of the square's symmetry group: ``k % 4`` quarter turns,
    then a horizontal flip when ``k >= 4``. Square N×C×H×W batches keep their shape."""
    x = torch.rot90(x, k % 4, dims=(2, 3))
    return x.flip(3) if k >= 4 else x


def swap_half(
    inp: torch.Tensor, target: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exchange input and target in a random half (each pair with probability 0.5)."""
    swap = (torch.rand(inp.shape[0], generator=gen) < 0.5).view(-1, 1, 1, 1)
    return torch.where(swap, target, inp), torch.where(swap, inp, target)


def random_dihedral(
    inp: torch.Tensor, target: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply one random flip/rotation per pair (the same to input and target)."""
    ks = torch.randint(8, (inp.shape[0],), generator=gen)
    inp, target = inp.clone(), target.clone()
    for k in range(1, 8):
        idx = (ks == k).nonzero().flatten()
        if len(idx):
            inp[idx] = dihedral(inp[idx], k)
            target[idx] = dihedral(target[idx], k)
    return inp, target


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image of N×C×H×W ``x`` with its own Gaussian ``sigma[i]`` (pixels).

    Uses a 7×7 separable kernel and reflect padding; shape is kept.
    """
    n, c, h, w = x.shape
    r = torch.arange(-3, 4, dtype=x.dtype)
    k = torch.exp(-(r[None] ** 2) / (2 * sigma[:, None].to(x.dtype) ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (n*c)×7
    y = F.pad(x.reshape(1, n * c, h, w), (3, 3, 3, 3), mode="reflect")
    y = F.conv2d(y, k[:, None, None, :], groups=n * c)
    y = F.conv2d(y, k[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


def blur_one_side(
    inp: torch.Tensor,
    target: torch.Tensor,
    prob: float,
    gen: torch.Generator,
    input_only: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """With probability ``prob`` per pair, blur the input or the target (chosen at random;
    always the input when ``input_only``, as Noise2Clean must keep clean targets)."""
    n = inp.shape[0]
    hit = torch.rand(n, generator=gen) < prob
    side = torch.rand(n, generator=gen) < 0.5
    sigma = BLUR_SIGMA[0] + torch.rand(n, generator=gen) * (BLUR_SIGMA[1] - BLUR_SIGMA[0])
    if not bool(hit.any()):
        return inp, target
    inp, target = inp.clone(), target.clone()
    on_inp = (hit & (side | input_only)).nonzero().flatten()
    on_tgt = (hit & ~side).nonzero().flatten() if not input_only else on_inp[:0]
    if len(on_inp):
        inp[on_inp] = gaussian_blur(inp[on_inp], sigma[on_inp])
    if len(on_tgt):
        target[on_tgt] = gaussian_blur(target[on_tgt], sigma[on_tgt])
    return inp, target
