"""Padding to the model's stride and cropping back."""

from __future__ import annotations

import numpy as np


def pad_to_multiple(batch_nchw: np.ndarray, stride: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad H and W of an N×C×H×W array up to multiples of ``stride``.

    The padding reflects the image at its bottom and right borders (numpy's
    ``reflect``, which repeats the reflection for images smaller than the
    padding and repeats the pixel of a 1-pixel image). Returns the padded array
    and the original (H, W) for :func:`crop`.
    """
    h, w = batch_nchw.shape[-2:]
    ph, pw = -h % stride, -w % stride
    if ph == 0 and pw == 0:
        return batch_nchw, (h, w)
    padded = np.pad(batch_nchw, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect")
    return padded, (h, w)


def crop(batch_nchw: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Undo :func:`pad_to_multiple`."""
    h, w = size_hw
    return batch_nchw[..., :h, :w]
