"""The (noisy, clean) pairs that parity checks run on: float32 3×H×W in [0, 1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from n2n_infer.batch import find_images
from n2n_infer.imageio import read_image
from training.data import load_course_pairs, quantize
from training.noise import parse_noise

Pair = tuple[np.ndarray, np.ndarray]


def course_pairs(path: str | Path) -> list[Pair]:
    """(noisy, clean) pairs from a course-format ``val_data.pkl``."""
    noisy, clean = load_course_pairs(path)
    scale = np.float32(1 / 255)
    return [
        (n.numpy().astype(np.float32) * scale, c.numpy().astype(np.float32) * scale)
        for n, c in zip(noisy, clean, strict=True)
    ]


def noised_image_pairs(folder: str | Path, noise: str, seed: int = 0) -> list[Pair]:
    """Clean images of ``folder`` with ``noise`` applied, clipped and rounded like 8-bit files."""
    noise_fn = parse_noise(noise)
    gen = torch.Generator().manual_seed(seed)
    pairs = []
    for path in find_images(Path(folder)):
        clean = torch.from_numpy(read_image(path)).permute(2, 0, 1)[None].float() / 255.0
        noisy = quantize(noise_fn(clean, gen))
        pairs.append((noisy[0].numpy(), clean[0].numpy()))
    return pairs
