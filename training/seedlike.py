"""The seed-like stand-in for the course data (docs/design.md, "Data").

``train_data.pkl``: 50,000 pairs of 32×32 patches cut from n2n_train photos at
several scales (each patch turned by one of the 8 flips/rotations, so photos
whose small scales offer few distinct positions still give varied patches),
each noised twice, independently, with the pixelated noise. ``val_data.pkl``:
1,000 (noisy, clean) pairs from other photos. The noise level is calibrated by
bisection on the validation patches so that the noisy inputs (clipped and
rounded to uint8) score ``target_psnr`` dB mean per-image PSNR against the
clean patches. ``train_clean.pkl`` holds (noisy, clean) for the training
patches (the first noisy copy), for Noise2Clean comparisons. Everything is
deterministic for a given seed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from n2n_train.augment import dihedral
from n2n_train.data import DataError, quantize, save_course_pairs, to_float, to_uint8
from n2n_train.metrics import psnr
from n2n_train.noise import PixelatedNoise

log = logging.getLogger(__name__)

#: Short sides (pixels) that photos are scaled to before cutting patches.
SCALES = (48, 96, 192, 384)
#: The course's validation inputs scored 20.72 dB.
TARGET_PSNR = 20.7


@dataclass(frozen=True)
class SeedlikeSpec:
    """What :func:`make_seedlike` builds."""

    n_train: int = 50_000
    n_val: int = 1_000
    patch: int = 32
    block: int = 2
    target_psnr: float = TARGET_PSNR
    seed: int = 0


def scaled_versions(photos: Sequence[torch.Tensor], patch: int) -> list[torch.Tensor]:
    """Each uint8 3×H×W photo resized (area-averaged) so its short side is each of SCALES.

    Scales larger than the photo itself are skipped; the photo at full size is
    always kept. Returns float32 tensors in [0, 1].
    """
    out = []
    for photo in photos:
        img = to_float(photo)[None]
        short = min(img.shape[2:])
        for s in SCALES:
            if patch <= s < short:
                f = s / short
                size = (max(patch, round(img.shape[2] * f)), max(patch, round(img.shape[3] * f)))
                out.append(F.interpolate(img, size=size, mode="area")[0])
        if short >= patch:
            out.append(img[0])
    if not out:
        raise DataError(f"no photo is at least {patch}×{patch} pixels")
    return out


def cut_patches(
    images: Sequence[torch.Tensor], n: int, patch: int, gen: torch.Generator
) -> torch.Tensor:
    """``n`` random ``patch``² crops (random image, position and flip/rotation), float N×3×p×p."""
    out = torch.empty(n, 3, patch, patch)
    picks = torch.randint(len(images), (n,), generator=gen).tolist()
    turns = torch.randint(8, (n,), generator=gen).tolist()
    for k, (i, t) in enumerate(zip(picks, turns, strict=True)):
        _, h, w = images[i].shape
        y = int(torch.randint(h - patch + 1, (1,), generator=gen))
        x = int(torch.randint(w - patch + 1, (1,), generator=gen))
        out[k] = dihedral(images[i][None, :, y : y + patch, x : x + patch], t)[0]
    return quantize(out)


def calibrate_sigma(
    clean: torch.Tensor, block: int, target_psnr: float, gen: torch.Generator
) -> tuple[float, torch.Tensor]:
    """Find sigma (0–255) so that uint8 noisy copies of ``clean`` score ``target_psnr``.

    One noise draw is fixed and scaled, so the PSNR falls monotonically with
    sigma and a bisection converges. Returns sigma and the noisy copies (float).
    """
    unit = PixelatedNoise(255.0, block)(torch.zeros_like(clean), gen)
    lo, hi = 0.0, 255.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if psnr(quantize(clean + unit * (mid / 255.0)), clean) > target_psnr:
            lo = mid
        else:
            hi = mid
    sigma = (lo + hi) / 2
    return sigma, quantize(clean + unit * (sigma / 255.0))


def make_seedlike(
    train_photos: Sequence[torch.Tensor],
    val_photos: Sequence[torch.Tensor],
    out_dir: str | Path,
    spec: SeedlikeSpec = SeedlikeSpec(),
) -> dict[str, Any]:
    """Write ``train_data.pkl``, ``val_data.pkl``, ``train_clean.pkl`` and ``seedlike.json``.

    ``train_photos`` and ``val_photos`` are uint8 3×H×W tensors from disjoint
    photo sets. Returns the facts written to ``seedlike.json`` (sigma, noise
    spec, noisy validation PSNR, counts).

    Raises:
        DataError: no photo is large enough for one patch.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(spec.seed)
    val_clean = cut_patches(scaled_versions(val_photos, spec.patch), spec.n_val, spec.patch, gen)
    sigma, val_noisy = calibrate_sigma(val_clean, spec.block, spec.target_psnr, gen)
    noise = PixelatedNoise(sigma, spec.block)
    save_course_pairs(out / "val_data.pkl", to_uint8(val_noisy), to_uint8(val_clean))
    images = scaled_versions(train_photos, spec.patch)
    shape = (spec.n_train, 3, spec.patch, spec.patch)
    a, b, clean = (torch.empty(shape, dtype=torch.uint8) for _ in range(3))
    for i in range(0, spec.n_train, 5000):
        n = min(5000, spec.n_train - i)
        c = cut_patches(images, n, spec.patch, gen)
        clean[i : i + n] = to_uint8(c)
        a[i : i + n] = to_uint8(noise(c, gen))
        b[i : i + n] = to_uint8(noise(c, gen))
    save_course_pairs(out / "train_data.pkl", a, b)
    save_course_pairs(out / "train_clean.pkl", a, clean)
    facts = {
        "noise": f"pixelated:{sigma:.4f},{spec.block}",
        "sigma_255": sigma,
        "val_noisy_psnr": psnr(to_float(to_uint8(val_noisy)), to_float(to_uint8(val_clean))),
        "n_train": spec.n_train,
        "n_val": spec.n_val,
        "train_images_at_scales": len(images),
        "seed": spec.seed,
    }
    (out / "seedlike.json").write_text(json.dumps(facts, indent=2) + "\n")
    log.info("seed-like data in %s: %s", out, facts)
    return facts
