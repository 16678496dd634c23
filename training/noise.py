"""Noise models. Each has one interface: ``noise(clean, generator) -> noisy``.

``clean`` is a float32 tensor N×C×H×W in [0, 1]; the result has the same shape
and is *not* clipped, so the noise stays zero-mean, which Noise2Noise with an
L2 loss needs (the expected noisy target must equal the clean image).

A noise is described by a spec string, which is what configs and checkpoints
store: ``gaussian:25`` (sigma 25 on the 0–255 scale) or ``gaussian:0-50``
(sigma drawn uniformly per image, for blind denoisers).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GaussianNoise:
    """Additive white Gaussian noise; sigma on the 0–255 scale, per image in [lo, hi]."""

    sigma_lo_255: float
    sigma_hi_255: float

    def __call__(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = clean.shape[0]
        u = torch.rand(n, 1, 1, 1, generator=generator, device=clean.device)
        sigma = (self.sigma_lo_255 + u * (self.sigma_hi_255 - self.sigma_lo_255)) / 255.0
        noise = torch.randn(clean.shape, generator=generator, device=clean.device)
        return clean + sigma * noise


def parse_noise(spec: str) -> GaussianNoise:
    """Parse a noise spec such as ``gaussian:25`` or ``gaussian:0-50``.

    Raises:
        ValueError: unknown noise kind or malformed parameters; names the spec.
    """
    kind, _, arg = spec.partition(":")
    if kind != "gaussian":
        raise ValueError(f"noise {spec!r}: unknown kind {kind!r} (known: gaussian)")
    try:
        lo_s, _, hi_s = arg.partition("-")
        lo = float(lo_s)
        hi = float(hi_s) if hi_s else lo
    except ValueError as exc:
        raise ValueError(
            f"noise {spec!r}: expected gaussian:SIGMA or gaussian:LO-HI (0–255 scale)"
        ) from exc
    if not 0 <= lo <= hi:
        raise ValueError(f"noise {spec!r}: need 0 <= sigma_lo <= sigma_hi")
    return GaussianNoise(lo, hi)
