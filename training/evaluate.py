"""Evaluate a checkpoint on (noisy, clean) pairs: PSNR figures and the study's figures.

PSNR is the project's mean per-image figure (:mod:`training.metrics`); the
global-MSE variant (one MSE over the whole set, the seed report's formula) is
given beside it, labelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from n2n_train.data import DataError, load_photo_folder, quantize, to_float
from n2n_train.loop import predict
from n2n_train.metrics import global_mse_psnr, psnr_per_image
from n2n_train.noise import parse_noise


@dataclass(frozen=True)
class EvalResult:
    """Per-image PSNRs (dB) of the denoised and of the noisy images, and their summaries."""

    denoised_psnr: list[float]
    noisy_psnr: list[float]
    global_mse_psnr: float

    @property
    def mean_psnr(self) -> float:
        return sum(self.denoised_psnr) / len(self.denoised_psnr)

    @property
    def mean_noisy_psnr(self) -> float:
        return sum(self.noisy_psnr) / len(self.noisy_psnr)


def evaluate(
    model: nn.Module, noisy: torch.Tensor, clean: torch.Tensor, device: str = "cpu"
) -> tuple[EvalResult, torch.Tensor]:
    """Denoise float N×3×H×W ``noisy`` in [0, 1]; score against ``clean``.

    Returns the :class:`EvalResult` and the denoised images (float, clamped to [0, 1]).
    """
    denoised = predict(model, noisy, device).clamp(0, 1)
    result = EvalResult(
        denoised_psnr=psnr_per_image(denoised, clean).tolist(),
        noisy_psnr=psnr_per_image(noisy, clean).tolist(),
        global_mse_psnr=global_mse_psnr(denoised, clean),
    )
    return result, denoised


def photo_pairs(
    folder: str | Path, noise_spec: str, stride: int, seed: int = 0, max_side: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy, clean) pairs from a folder of clean photos, for evaluation.

    Each photo is centre-cropped to a square and area-resized to a common side:
    the smallest photo's short side, at most ``max_side``, rounded down to a
    multiple of ``stride``. Noise from ``noise_spec`` is drawn with ``seed``,
    then clipped and rounded to 8 bits.

    Raises:
        DataError: the folder is missing, has no image, or its smallest photo
            is smaller than ``stride``.
        ValueError: a malformed noise spec.
    """
    noise = parse_noise(noise_spec)
    photos = load_photo_folder(folder)
    side = min([max_side, *(min(p.shape[1:]) for p in photos)])
    side -= side % stride
    if side < stride:
        raise DataError(f"{folder}: a photo is smaller than the model's stride {stride}")
    crops = []
    for photo in photos:
        img = to_float(photo)[None]
        short = min(img.shape[2:])
        y, x = (img.shape[2] - short) // 2, (img.shape[3] - short) // 2
        img = img[:, :, y : y + short, x : x + short]
        crops.append(nn.functional.interpolate(img, size=(side, side), mode="area"))
    clean = quantize(torch.cat(crops))
    gen = torch.Generator().manual_seed(seed)
    return quantize(noise(clean, gen)), clean
