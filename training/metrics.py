"""PSNR, the project's one definition (torch side).

Images are in [0, 1]; per image ``-10·log10(mean squared error)``; a data set's
figure is the mean of the per-image values. ``n2n_infer.metrics.psnr`` is the
numpy twin used by the runtime; a test checks that they agree.
"""

from __future__ import annotations

import torch

#: MSE floor, so that identical images score 100 dB instead of infinity.
MSE_FLOOR = 1e-10


def psnr_per_image(denoised: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of N×C×H×W tensors in [0, 1]; ``denoised`` is clamped."""
    if denoised.shape != clean.shape:
        raise ValueError(f"shape mismatch: {tuple(denoised.shape)} vs {tuple(clean.shape)}")
    err = (denoised.clamp(0, 1).double() - clean.double()) ** 2
    mse = err.flatten(1).mean(dim=1).clamp_min(MSE_FLOOR)
    return -10.0 * torch.log10(mse)


def psnr(denoised: torch.Tensor, clean: torch.Tensor) -> float:
    """Mean per-image PSNR in dB of N×C×H×W tensors in [0, 1]."""
    return float(psnr_per_image(denoised, clean).mean())
