"""The UNet wrapped to the ONNX contract: ``noisy`` -> ``denoised``, clipped to [0, 1]."""

from __future__ import annotations

import torch
from torch import nn

from training.unet import UNet


class OnnxDenoiser(nn.Module):
    """float32 N×3×H×W in [0, 1] -> float32 N×3×H×W in [0, 1] (H, W multiples of the stride)."""

    def __init__(self, unet: UNet) -> None:
        super().__init__()
        self.unet = unet.eval()

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        return self.unet(noisy).clamp(0.0, 1.0)
