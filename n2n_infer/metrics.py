"""PSNR, the project's one definition (numpy side; ``training.metrics`` is its torch twin).

Images in [0, 1] (uint8 divided by 255, uint16 by 65535); per image
``-10·log10(max(MSE, MSE_FLOOR))`` with the denoised image clipped to [0, 1];
a set's figure is the mean of the per-image values. ``training.metrics`` uses
the same formula and this :data:`MSE_FLOOR` on torch tensors, and a test pins
both to the same values. Numpy code everywhere (runtime, export, bench, scripts)
scores images with :func:`psnr`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MSE_FLOOR", "psnr"]

#: MSE floor, so that identical images score 100 dB instead of infinity.
MSE_FLOOR = 1e-10
_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def psnr(denoised: np.ndarray, clean: np.ndarray) -> float:
    """PSNR in dB of one image (any layout) against its clean reference.

    uint8 inputs are scaled by 1/255, uint16 by 1/65535; float inputs must be in
    [0, 1] (``denoised`` is clipped). The two may have different dtypes.

    Raises:
        ValueError: the shapes differ.
    """
    if denoised.shape != clean.shape:
        raise ValueError(f"psnr: shape mismatch: {denoised.shape} vs {clean.shape}")
    a, b = _unit(denoised), _unit(clean)
    mse = max(float(np.mean((np.clip(a, 0.0, 1.0) - b) ** 2)), MSE_FLOOR)
    return -10.0 * float(np.log10(mse))


def _unit(img: np.ndarray) -> np.ndarray:
    scale = _SCALE.get(img.dtype)
    if scale is not None:
        return img.astype(np.float64) / scale
    return img.astype(np.float64)
