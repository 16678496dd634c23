"""PSNR on torch tensors: the twin of ``n2n_infer.metrics.psnr`` (the same definition).

Images are in [0, 1]; per image ``-10·log10(max(MSE, MSE_FLOOR))`` with the
denoised image clamped to [0, 1], computed in float64; a data set's figure is
the mean of the per-image values. Training needs it on tensors; the floor is
``n2n_infer.metrics.MSE_FLOOR`` and a test pins both to the same values.

:func:`global_mse_psnr` is a different metric, named as such: one MSE over a
whole set (the seed report's formula); it is reported beside PSNR, labelled.
"""

from __future__ import annotations

import math

import torch

from n2n_infer.metrics import MSE_FLOOR

__all__ = ["MSE_FLOOR", "global_mse_psnr", "psnr", "psnr_per_image"]


def psnr_per_image(denoised: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of N×C×H×W tensors in [0, 1]; ``denoised`` is clamped.

    Raises:
        ValueError: the shapes differ.
    """
    if denoised.shape != clean.shape:
        raise ValueError(f"psnr: shape mismatch: {tuple(denoised.shape)} vs {tuple(clean.shape)}")
    err = (denoised.clamp(0, 1).double() - clean.double()) ** 2
    mse = err.flatten(1).mean(dim=1).clamp_min(MSE_FLOOR)
    return -10.0 * torch.log10(mse)


def psnr(denoised: torch.Tensor, clean: torch.Tensor) -> float:
    """Mean per-image PSNR in dB of N×C×H×W tensors in [0, 1].

    Raises:
        ValueError: the shapes differ.
    """
    return float(psnr_per_image(denoised, clean).mean())


def global_mse_psnr(denoised: torch.Tensor, clean: torch.Tensor) -> float:
    """``-10·log10`` of one MSE over the whole set, dB: not the per-image mean of :func:`psnr`."""
    mse = float(((denoised.clamp(0, 1).double() - clean.double()) ** 2).mean())
    return -10.0 * math.log10(max(mse, MSE_FLOOR))
