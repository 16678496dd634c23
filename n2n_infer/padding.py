"""Padding to the model's stride and cropping back."""

from __future__ import annotations

import numpy as np


def pad_bottom_right(array: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """``array`` (…×H×W, any rank of two or more) with ``ph`` rows and ``pw`` columns added.

    The one padding of the runtime: it reflects the image at its bottom and right
    borders (numpy's ``reflect``, which repeats the reflection for images smaller
    than the padding and repeats the pixel of a 1-pixel image).
    """
    if ph == 0 and pw == 0:
        return array
    return np.pad(array, ((0, 0),) * (array.ndim - 2) + ((0, ph), (0, pw)), mode="reflect")


def pad_to_multiple(batch_nchw: np.ndarray, stride: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad H and W of an N×C×H×W array up to multiples of ``stride`` (reflected, see
    :func:`pad_bottom_right`). Returns the padded array and the original (H, W) for
    :func:`crop`."""
    h, w = batch_nchw.shape[-2:]
    return pad_bottom_right(batch_nchw, -h % stride, -w % stride), (h, w)


def crop(batch_nchw: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Undo :func:`pad_to_multiple`."""
    h, w = size_hw
    return batch_nchw[..., :h, :w]
