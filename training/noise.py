"""Noise models. Each has one interface: ``noise(clean, generator) -> noisy``.

``clean`` is a float32 tensor N×C×H×W in [0, 1]; the result has the same shape
and is *not* clipped, so zero-mean noises stay zero-mean, which Noise2Noise
with an L2 loss needs (the expected noisy target must equal the clean image).
Callers that need an 8-bit-like input clip and round it (``data.quantize``).

A noise is described by a spec string, which is what configs and checkpoints
store. ``LO-HI`` draws the parameter uniformly per image (blind training).

================  ===================================  =========  ====================
spec              model                                zero-mean  loss for Noise2Noise
================  ===================================  =========  ====================
``gaussian:25``   additive Gaussian, sigma 0–255 scale yes        L2 (MSE)
``poisson:30``    Poisson(lambda·clean)/lambda         yes        L2 (MSE)
``pixelated:24``  coarse 2×2-block + fine Gaussian     yes        L2 (MSE)
``bernoulli:0.3`` pixel set to 0 with probability p    no         L1 (median), p < 0.5
``impulse:0.2``   pixel set to uniform random, prob p  no         annealed L0 (mode)
``correlated:25`` Gaussian smoothed by a 3×3 binomial  yes        L2 (MSE)
``poisson-gaussian:30,2``  shot + read noise           yes        L2 (MSE)
================  ===================================  =========  ====================

``poisson-gaussian:PHOTONS[,READ]`` is a camera's noise: a pixel of value
``x`` in [0, 1] collects ``Poisson(PHOTONS·x)`` photons and gains read noise
``N(0, READ²)`` (both in photons; ``READ`` defaults to 0), and is scaled back
by ``1/PHOTONS``. ``PHOTONS`` is the count at white; 30 is a very dim capture
(std 0.18 of the range at white), 1000 a bright one. Either may be a range
``LO-HI``, drawn per image; ``PHOTONS`` is then drawn log-uniformly, so that
dim and bright captures are equally represented across a wide range, e.g.
``poisson-gaussian:10-1000,0-4``.

``correlated:SIGMA`` (or ``LO-HI``) is white Gaussian noise smoothed by the 3×3
binomial kernel ``[1 2 1]ᵀ[1 2 1]/16`` and rescaled to std ``SIGMA`` per pixel:
horizontal and vertical neighbours' noise is correlated at 0.67, as after
demosaicing or resampling (``bench/scope.py`` tests the shipped model on it).

Zero-mean kinds can be mixed with ``+``: ``gaussian:0-50+correlated:0-50``
draws, for each image, one of the listed noises with equal probability (a
blind model for several kinds of noise).

``pixelated:SIGMA[,BLOCK]`` is the seed-like noise (docs/design.md, "Data"): zero-mean
Gaussian noise drawn on a grid ``BLOCK`` times coarser than the image and
upsampled by nearest neighbour (80 % of the variance), plus per-pixel Gaussian
noise (20 %); ``SIGMA`` is the total standard deviation on the 0–255 scale.

Benchmarks noise uint8 images with numpy generators, as files would hold them:
:func:`gaussian_u8`, :func:`poisson_u8` and :func:`correlated_u8` are the same
models on the 0–255 scale (one fixed parameter, no per-image draw), clipped and
rounded to uint8. They live here, beside their torch versions, so that a noise
has one definition; the correlated one shares :data:`BINOMIAL` and draws its
white noise one pixel beyond each border, as :class:`CorrelatedNoise` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import torch
import torch.nn.functional as F


class NoiseModel(Protocol):
    """What every noise model offers: a call and whether it is zero-mean."""

    zero_mean: ClassVar[bool]

    def __call__(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...


def _per_image(lo: float, hi: float, clean: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A parameter drawn uniformly in [lo, hi] per image, shaped N×1×1×1."""
    u = torch.rand(clean.shape[0], 1, 1, 1, generator=gen, device=clean.device)
    return lo + u * (hi - lo)


@dataclass(frozen=True)
class GaussianNoise:
    """Additive white Gaussian noise; sigma on the 0–255 scale, per image in [lo, hi]."""

    sigma_lo_255: float
    sigma_hi_255: float
    zero_mean: ClassVar[bool] = True

    def __call__(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        sigma = _per_image(self.sigma_lo_255, self.sigma_hi_255, clean, generator) / 255.0
        noise = torch.randn(clean.shape, generator=generator, device=clean.device)
        return clean + sigma * noise


@dataclass(frozen=True)
class PoissonNoise:
    """Shot noise: ``Poisson(lambda · clean) / lambda``; lambda per image in [lo, hi].

    Its mean is ``clean``; its variance ``clean / lambda`` (smaller lambda, more noise).
    """

    lam_lo: float
    lam_hi: float
    zero_mean: ClassVar[bool] = True

    def __call__(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        lam = _per_image(self.lam_lo, self.lam_hi, clean, generator)
        return torch.poisson(clean.clamp_min(0) * lam, generator=generator) / lam


@dataclass(frozen=True)
class PoissonGaussianNoise:
    """Camera noise: ``(Poisson(photons · clean) + N(0, read²)) / photons``.

    ``photons`` (the count at white) is drawn per image log-uniformly in
    [``photons_lo``, ``photons_hi``], ``read`` (the read noise's std, in photons)
    uniformly in [``read_lo``, ``read_hi``]. The mean is ``clean``; the variance
    ``clean / photons + (read / photons)²``.
    """

    photons_lo: float
    photons_hi: float
    read_lo: float = 0.0
    read_hi: float = 0.0
    zero_mean: ClassVar[bool] = True

    def __call__(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        log_lo, log_hi = np.log(self.photons_lo), np.log(self.photons_hi)
        photons = torch.exp(_per_image(float(log_lo), float(log_hi), clean, generator))
        read = _per_image(self.read_lo, self.read_hi, clean, generator)
        shot = torch.poisson(clean.clamp_min(0) * photons, generator=generator)
        noise = torch.randn(clean.shape, generator=generator, device=clean.device)
        return (shot + read * noise) / photons


@dataclass(frozen=True)
class PixelatedNoise:
    """Seed-like noise: block-constant Gaussian noise plus fine Gaussian noise.

    ``sigma_255`` is the total standard deviation (0–255 scale); a fraction
    ``coarse_fraction`` of the variance is drawn on a grid ``block`` times
    coarser than the image and upsampled by nearest neighbour.
    """

    sigma_255: float
    block: int = 2
    coarse_fraction: float = 0.8
    zero_mean: ClassVar[bool] = True

    def __call__(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, c, h, w = clean.shape
        b = self.block
        hb, wb = -(-h // b), -(-w // b)
        coarse = torch.randn(n, c, hb, wb, generator=generator, device=clean.device)
        coarse = coarse.repeat_interleave(b, 2).repeat_interleave(b, 3)[:, :, :h, :w]
        fine = torch.randn(clean.shape, generator=generator, device=clean.device)
        sigma = self.sigma_255 / 255.0
        f = self.coarse_fraction
        return clean + sigma * (f**0.5 * coarse + (1 - f) ** 0.5 * fine)


@dataclass(frozen=True)
class BernoulliNoise:
    """Multiplicative Bernoulli noise: each pixel (all channels) is set to 0 with prob p.

    Not zero-mean: the mean is ``(1 - p) · clean``, but for p < 0.5 the median
    is ``clean``, so Noise2Noise needs an L1 loss.
    """

    p_lo: float
    p_hi: float
    zero_mean: ClassVar[bool] = False

    def __call__(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, h, w = clean.shape
        p = _per_image(self.p_lo, self.p_hi, clean, generator)
        keep = torch.rand(n, 1, h, w, generator=generator, device=clean.device) >= p
        return clean * keep


@dataclass(frozen=True)
class ImpulseNoise:
    """Random-valued impulse noise: each value is replaced by U(0, 1) with prob p.

    Not zero-mean; the clean value is the mode, so Noise2Noise needs the
    annealed L0 loss.
    """

    p_lo: float
    p_hi: float
    zero_mean: ClassVar[bool] = False

    def __call__(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        p = _per_image(self.p_lo, self.p_hi, clean, generator)
        hit = torch.rand(clean.shape, generator=generator, device=clean.device) < p
        values = torch.rand(clean.shape, generator=generator, device=clean.device)
        return torch.where(hit, values, clean)


#: The 1-D binomial kernel; the correlated noise smooths by its outer product.
BINOMIAL = (0.25, 0.5, 0.25)
#: What keeps smoothed white noise at std 1: 1 / sqrt(sum of the 3×3 kernel's squares) = 8/3.
CORRELATED_GAIN = 1.0 / float(np.sqrt(np.sum(np.outer(BINOMIAL, BINOMIAL) ** 2)))
_BINOMIAL = torch.tensor(BINOMIAL, dtype=torch.float32)
#: The 3×3 binomial kernel scaled so that smoothing white noise keeps its std.
_KERNEL = (_BINOMIAL[:, None] * _BINOMIAL)[None, None] * CORRELATED_GAIN


@dataclass(frozen=True)
class CorrelatedNoise:
    """Gaussian noise smoothed by a 3×3 binomial kernel, std sigma per pixel (0–255 scale).

    Sigma is drawn per image in [lo, hi]. The kernel sums to 1 and its squares
    to 9/64, so the smoothed noise is scaled by 8/3 to keep std sigma.
    """

    sigma_lo_255: float
    sigma_hi_255: float
    zero_mean: ClassVar[bool] = True

    def __call__(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, c, h, w = clean.shape
        sigma = _per_image(self.sigma_lo_255, self.sigma_hi_255, clean, generator) / 255.0
        white = torch.randn(n * c, 1, h + 2, w + 2, generator=generator, device=clean.device)
        smooth = F.conv2d(white, _KERNEL.to(clean.device)).view(n, c, h, w)
        return clean + sigma * smooth


@dataclass(frozen=True)
class MixedNoise:
    """One of several zero-mean noises per image, each with equal probability."""

    parts: tuple[NoiseModel, ...]
    zero_mean: ClassVar[bool] = True

    def __call__(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # Every part noises the whole batch (so the random stream does not depend
        # on the draw); each image keeps the one its draw picked.
        pick = torch.randint(
            len(self.parts), (clean.shape[0],), generator=generator, device=clean.device
        )
        out = torch.empty_like(clean)
        for i, part in enumerate(self.parts):
            noisy = part(clean, generator)
            chosen = pick == i
            out[chosen] = noisy[chosen]
        return out


_KINDS = "gaussian, poisson, poisson-gaussian, pixelated, correlated, bernoulli, impulse"


def parse_noise(spec: str) -> NoiseModel:
    """Parse a noise spec such as ``gaussian:25``, ``poisson:5-50`` or ``pixelated:24,2``.

    ``A+B`` mixes zero-mean noises (each image gets one of them).

    Raises:
        ValueError: unknown noise kind or malformed parameters, or a mix with a
            noise that is not zero-mean; names the spec.
    """
    if "+" in spec:
        parts = tuple(_parse_part(spec, p) for p in spec.split("+"))
        if not all(p.zero_mean for p in parts):
            raise ValueError(
                f"noise {spec!r}: only zero-mean noises (gaussian, poisson, "
                "poisson-gaussian, pixelated, correlated) can be mixed with '+'; they share "
                "one loss"
            )
        return MixedNoise(parts)
    return _parse_one(spec)


def _parse_part(spec: str, part: str) -> NoiseModel:
    try:
        return _parse_one(part)
    except ValueError as exc:
        why = str(exc).removeprefix(f"noise {part!r}: ")
        raise ValueError(f"noise {spec!r}: part {part!r}: {why}") from None


def _parse_one(spec: str) -> NoiseModel:
    kind, _, arg = spec.partition(":")
    if kind == "pixelated":
        return _parse_pixelated(spec, arg)
    if kind == "poisson-gaussian":
        return _parse_poisson_gaussian(spec, arg)
    ranges = {"gaussian": (0.0, 255.0), "correlated": (0.0, 255.0), "poisson": (1e-3, 1e6)}
    ranges.update(bernoulli=(0.0, 1.0), impulse=(0.0, 1.0))
    if kind not in ranges:
        raise ValueError(f"noise {spec!r}: unknown kind {kind!r} (known: {_KINDS})")
    lo, hi = _parse_range(spec, arg)
    low_ok, high_ok = ranges[kind]
    if not low_ok <= lo <= hi <= high_ok:
        raise ValueError(f"noise {spec!r}: need {low_ok} <= LO <= HI <= {high_ok}")
    if kind in ("bernoulli", "impulse") and hi >= 1.0:
        raise ValueError(f"noise {spec!r}: probability must be below 1")
    cls = {"gaussian": GaussianNoise, "poisson": PoissonNoise, "correlated": CorrelatedNoise}
    cls.update(bernoulli=BernoulliNoise, impulse=ImpulseNoise)
    return cls[kind](lo, hi)


def _parse_range(spec: str, arg: str) -> tuple[float, float]:
    try:
        lo_s, _, hi_s = arg.partition("-")
        lo = float(lo_s)
        return lo, float(hi_s) if hi_s else lo
    except ValueError as exc:
        raise ValueError(f"noise {spec!r}: expected KIND:VALUE or KIND:LO-HI") from exc


def _parse_poisson_gaussian(spec: str, arg: str) -> PoissonGaussianNoise:
    photons_s, _, read_s = arg.partition(",")
    photons = _parse_range(spec, photons_s)
    read = _parse_range(spec, read_s) if read_s else (0.0, 0.0)
    if not (0.1 <= photons[0] <= photons[1] <= 1e6):
        raise ValueError(
            f"noise {spec!r}: need 0.1 <= PHOTONS <= 1e6 photons at white "
            "(poisson-gaussian:PHOTONS[,READ], each a value or LO-HI)"
        )
    if not (0.0 <= read[0] <= read[1] <= 1e4):
        raise ValueError(f"noise {spec!r}: need 0 <= READ <= 1e4 (read noise in photons)")
    return PoissonGaussianNoise(photons[0], photons[1], read[0], read[1])


def _parse_pixelated(spec: str, arg: str) -> PixelatedNoise:
    parts = arg.split(",")
    try:
        sigma = float(parts[0])
        block = int(parts[1]) if len(parts) > 1 else 2
    except ValueError as exc:
        raise ValueError(
            f"noise {spec!r}: expected pixelated:SIGMA or pixelated:SIGMA,BLOCK"
        ) from exc
    if len(parts) > 2 or sigma < 0 or block < 1:
        raise ValueError(f"noise {spec!r}: need SIGMA >= 0 and an integer BLOCK >= 1")
    return PixelatedNoise(sigma, block)


# --- The same noises on uint8 images with numpy generators (benchmarks, examples) ---


def gaussian_u8(clean_hwc_u8: np.ndarray, sigma_255: float, rng: np.random.Generator) -> np.ndarray:
    """:class:`GaussianNoise` of ``sigma_255`` on a uint8 image, clipped and rounded to uint8.

    Draws ``rng.normal(0, sigma_255, shape)`` once; any shape of image.
    """
    noisy = clean_hwc_u8.astype(np.float64) + rng.normal(0.0, sigma_255, clean_hwc_u8.shape)
    return _round_u8(noisy)


def poisson_u8(clean_hwc_u8: np.ndarray, lam: float, rng: np.random.Generator) -> np.ndarray:
    """:class:`PoissonNoise` of ``lam`` (``Poisson(lam · x) / lam`` for x in [0, 1]) on uint8."""
    x = clean_hwc_u8.astype(np.float64) / 255.0
    return _round_u8(rng.poisson(x * lam) / lam * 255.0)


def poisson_gaussian_u8(
    clean_hwc_u8: np.ndarray, photons: float, read: float, rng: np.random.Generator
) -> np.ndarray:
    """:class:`PoissonGaussianNoise` at ``photons`` (at white) and ``read`` (photons)
    on a uint8 image, clipped and rounded to uint8."""
    x = clean_hwc_u8.astype(np.float64) / 255.0
    counts = rng.poisson(photons * x) + rng.normal(0.0, read, x.shape)
    return _round_u8(counts / photons * 255.0)


def correlated_u8(
    clean_hwc_u8: np.ndarray, sigma_255: float, rng: np.random.Generator
) -> np.ndarray:
    """:class:`CorrelatedNoise` of ``sigma_255`` on a uint8 H×W×C image, clipped and rounded.

    White noise is drawn on (H+2)×(W+2)×C and smoothed without padding, so every
    pixel's noise, borders included, has std ``sigma_255`` (as in the torch model).

    Raises:
        ValueError: the image is not H×W×C.
    """
    if clean_hwc_u8.ndim != 3:
        raise ValueError(f"correlated_u8: expected an H×W×C image, got shape {clean_hwc_u8.shape}")
    h, w, c = clean_hwc_u8.shape
    smooth = smooth_binomial(rng.normal(0.0, 1.0, (h + 2, w + 2, c)))
    return _round_u8(clean_hwc_u8.astype(np.float64) + sigma_255 * smooth)


def smooth_binomial(white_hwc: np.ndarray) -> np.ndarray:
    """Valid 3×3 binomial smoothing times :data:`CORRELATED_GAIN`: (H+2)×(W+2)×C -> H×W×C."""
    k0, k1, k2 = BINOMIAL
    rows = k0 * white_hwc[:-2] + k1 * white_hwc[1:-1] + k2 * white_hwc[2:]
    cols = k0 * rows[:, :-2] + k1 * rows[:, 1:-1] + k2 * rows[:, 2:]
    return cols * CORRELATED_GAIN


def _round_u8(img_255: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img_255), 0, 255).astype(np.uint8)
