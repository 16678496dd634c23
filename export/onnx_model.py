"""The UNet wrapped to the ONNX contract: ``noisy`` -> ``denoised``, clipped to [0, 1]."""

from __future__ import annotations

import torch
from torch import nn

from n2n_train.unet import UNet


class OnnxDenoiser(nn.Module):
    """float32 N×3×H×W in [0, 1] -> float32 N×3×H×W in [0, 1] (H, W multiples of the stride).

    With ``half=True`` the network runs in float16 inside the graph while the
    input and output stay float32, so callers need no change (the fp16 variant).
    """

    def __init__(self, unet: UNet, half: bool = False) -> None:
        super().__init__()
        self.unet = unet.eval()
        self.half_precision = half
        if half:
            self.unet.half()

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        if self.half_precision:
            return self.unet(noisy.half()).clamp(0.0, 1.0).float()
        return self.unet(noisy).clamp(0.0, 1.0)
