"""The noisy/clean images that parity checks and calibration run on.

Every pair is two float32 C×H×W arrays in [0, 1]: the noisy input (clipped and
rounded like an 8-bit file) and the clean reference (C 3, or 1 for a grey model;
a z-context model's noisy side holds 2K+1 noise draws of the clean plane).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from n2n_infer.batch import find_images
from n2n_infer.imageio import read_image
from n2n_train.data import LUMA, load_course_pairs, quantize
from n2n_train.noise import parse_noise

Pair = tuple[np.ndarray, np.ndarray]

#: The parity cases: (height, width, batch). 33×47 goes through the runtime's padding.
CASE_SHAPES: tuple[tuple[int, int, int], ...] = (
    (32, 32, 1),
    (32, 32, 16),
    (256, 256, 1),
    (256, 256, 4),
    (320, 480, 1),
    (320, 480, 2),
    (33, 47, 1),
    (33, 47, 3),
)


@dataclass(frozen=True)
class ParityCase:
    """Images of one shape that run as one batch, and the case's name in reports."""

    name: str
    pairs: list[Pair]


#: The built-in test patterns' sizes (H, W): one covers the largest case; 97×131 is no
#: multiple of any stride, so the own-size case goes through the runtime's padding.
PATTERN_SHAPES: tuple[tuple[int, int], ...] = ((320, 480), (256, 256), (97, 131))

#: How reports name the built-in test patterns.
PATTERNS_NAME = "built-in test patterns"


def builtin_patterns(seed: int = 0) -> list[np.ndarray]:
    """Clean synthetic uint8 H×W×3 images (see :data:`PATTERN_SHAPES`), the same on every
    install: what parity runs on when no images are given.

    Each is a smooth colour gradient with discs and rectangles (hard edges), a band of
    stripes from coarse to fine, and a patch of smoothed random texture: flat areas, edges
    and detail, so that a model's whole graph is exercised. They are not photos: their PSNR
    figures say that torch and onnxruntime agree, not how well the model denoises photos.
    """
    rng = np.random.default_rng(seed)
    images = []
    for h, w in PATTERN_SHAPES:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        y, x = yy / h, xx / w
        img = rng.uniform(0.15, 0.45, 3) + 0.4 * np.stack([x, y, 1 - (x + y) / 2], axis=-1)
        for _ in range(6):  # discs
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, min(h, w) / 5)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 1, 3)
        for _ in range(4):  # rectangles
            y0, x0 = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
            img[y0 : y0 + int(rng.integers(3, h // 4)), x0 : x0 + int(rng.integers(3, w // 4))] = (
                rng.uniform(0, 1, 3)
            )
        band = slice(h // 3, h // 3 + max(h // 8, 4))  # stripes, period 32 down to 2 pixels
        period = 32.0 * (2.0 / 32.0) ** x[band]
        img[band] = 0.5 + 0.35 * np.sign(np.sin(2 * np.pi * xx[band] / period))[..., None]
        th, tw = h // 4, w // 4  # smoothed random texture in the bottom-right corner
        texture = rng.uniform(0, 1, (th + 4, tw + 4, 3))
        texture = sum(texture[i : i + th, j : j + tw] for i in range(5) for j in range(5)) / 25
        img[h - th :, w - tw :] = 0.5 + 2.5 * (texture - 0.5)
        images.append(np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8))
    return images


def course_pairs(path: str | Path) -> list[Pair]:
    """(noisy, clean) pairs from a course-format ``val_data.pkl``."""
    noisy, clean = load_course_pairs(path)
    scale = np.float32(1 / 255)
    return [
        (n.numpy().astype(np.float32) * scale, c.numpy().astype(np.float32) * scale)
        for n, c in zip(noisy, clean, strict=True)
    ]


def load_clean_images(folder: str | Path) -> list[np.ndarray]:
    """The PNG/JPEG images of ``folder`` as uint8 H×W×3 arrays (sorted by name).

    Raises:
        ValueError: the folder is missing or holds no image.
    """
    if not Path(folder).is_dir():
        raise ValueError(f"{folder}: folder not found (or not a folder)")
    images = [read_image(p) for p in find_images(Path(folder))]
    if not images:
        raise ValueError(f"{folder}: no PNG or JPEG images found")
    return images


def grey_u8(img_hwc_u8: np.ndarray) -> np.ndarray:
    """A uint8 H×W×3 image's luma (ITU-R BT.601, as training's grey photos), H×W×1 uint8;
    a one-channel image as it is."""
    if img_hwc_u8.shape[-1] == 1:
        return img_hwc_u8
    luma = img_hwc_u8[..., :3].astype(np.float64) @ np.array(LUMA)
    return np.rint(luma).clip(0, 255).astype(np.uint8)[..., None]


def noised_pairs(
    clean_hwc_u8: list[np.ndarray],
    noise: str,
    seed: int = 0,
    channels: int = 3,
    z_context: int = 0,
) -> list[Pair]:
    """Apply ``noise`` (seeded) to each clean image; the noisy copy is clipped and rounded.

    ``channels`` 1: the images' luma (:func:`grey_u8`) is noised, for a grey model.
    ``z_context`` K > 0 (a z-context model, grey): the noisy side is ``2K + 1``
    independent noise draws of the luma (a context of planes, 2K+1×H×W), the clean
    side the luma (1×H×W): the planes of a stack of a flat sample, so that the model's
    use of its neighbours is exercised and its output compares with the clean plane.
    """
    noise_fn = parse_noise(noise)
    gen = torch.Generator().manual_seed(seed)
    pairs = []
    if channels == 1 or z_context:
        clean_hwc_u8 = [grey_u8(img) for img in clean_hwc_u8]
    for img in clean_hwc_u8:
        clean = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].float() / 255
        draws = [quantize(noise_fn(clean, gen)) for _ in range(2 * z_context + 1)]
        pairs.append((torch.cat(draws, dim=1)[0].numpy(), clean[0].numpy()))
    return pairs


def parity_cases(
    clean_hwc_u8: list[np.ndarray],
    noise: str,
    seed: int = 0,
    channels: int = 3,
    z_context: int = 0,
) -> list[ParityCase]:
    """The standard cases (see :data:`CASE_SHAPES`) plus the images at their own sizes.

    Crops are taken at seeded random places; an image smaller than a case is
    first enlarged (Lanczos) to cover it. ``channels`` 1: their luma, for a grey model;
    ``z_context`` K: ``2K + 1`` noise draws of their luma (:func:`noised_pairs`).
    """
    rng = np.random.default_rng(seed)
    cases = []
    for h, w, batch in CASE_SHAPES:
        crops = [_crop(clean_hwc_u8[i % len(clean_hwc_u8)], h, w, rng) for i in range(batch)]
        name = f"{w}x{h} batch {batch}"
        pairs = noised_pairs(crops, noise, seed + len(cases), channels, z_context)
        cases.append(ParityCase(name, pairs))
    full = noised_pairs(clean_hwc_u8, noise, seed + len(cases), channels, z_context)
    cases.append(ParityCase(f"{len(full)} images at their own sizes", full))
    return cases


def _crop(img: np.ndarray, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    ih, iw = img.shape[:2]
    if ih < h or iw < w:
        scale = max(h / ih, w / iw)
        size = (max(w, round(iw * scale)), max(h, round(ih * scale)))
        img = np.asarray(Image.fromarray(img).resize(size, Image.Resampling.LANCZOS))
        ih, iw = img.shape[:2]
    y, x = int(rng.integers(0, ih - h + 1)), int(rng.integers(0, iw - w + 1))
    return img[y : y + h, x : x + w]


def calibration_batches(
    clean_hwc_u8: list[np.ndarray],
    noise: str,
    count: int = 16,
    size: int = 128,
    seed: int = 0,
    channels: int = 3,
    z_context: int = 0,
) -> list[np.ndarray]:
    """Noisy float32 1×C×size×size crops for int8 calibration (C: ``channels``, or
    ``2K + 1`` noise draws of the luma for a z-context model of ``z_context`` K).

    ``count`` seeded random crops from images spread evenly over the list
    (several per image when there are fewer images than crops), noised with
    ``noise`` (use the model's training noise).
    """
    rng = np.random.default_rng(seed)
    picks = np.linspace(0, len(clean_hwc_u8), num=count, endpoint=False).astype(int)
    crops = [_crop(clean_hwc_u8[i], size, size, rng) for i in picks]
    return [p[0][None] for p in noised_pairs(crops, noise, seed, channels, z_context)]


def resized_crops(clean_hwc_u8: list[np.ndarray], h: int, w: int) -> list[np.ndarray]:
    """Each image resized (Lanczos) to cover h×w, then centre-cropped to h×w (landscape)."""
    out = []
    for img in clean_hwc_u8:
        if img.shape[0] > img.shape[1]:
            img = np.ascontiguousarray(img.transpose(1, 0, 2))
        ih, iw = img.shape[:2]
        scale = max(h / ih, w / iw)
        size = (max(w, round(iw * scale)), max(h, round(ih * scale)))
        img = np.asarray(Image.fromarray(img).resize(size, Image.Resampling.LANCZOS))
        y, x = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
        out.append(img[y : y + h, x : x + w])
    return out
