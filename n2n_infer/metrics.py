"""PSNR on numpy arrays: the runtime's twin of ``training.metrics`` (same definition).

Images in [0, 1] (or uint8, divided by 255); per image ``-10·log10(MSE)``;
a set's figure is the mean of per-image values.
"""

from __future__ import annotations

import numpy as np

#: MSE floor, so that identical images score 100 dB instead of infinity.
MSE_FLOOR = 1e-10


def psnr(denoised: np.ndarray, clean: np.ndarray) -> float:
    """PSNR in dB of one image (any layout) against its clean reference.

    uint8 inputs are scaled by 1/255; float inputs must be in [0, 1] (``denoised``
    is clipped). Raises ``ValueError`` when the shapes differ.
    """
    if denoised.shape != clean.shape:
        raise ValueError(f"shape mismatch: {denoised.shape} vs {clean.shape}")
    a, b = _unit(denoised), _unit(clean)
    mse = max(float(np.mean((np.clip(a, 0.0, 1.0) - b) ** 2)), MSE_FLOOR)
    return -10.0 * float(np.log10(mse))


def _unit(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img.astype(np.float64) / 255.0
    return img.astype(np.float64)
