"""The Noise2Noise UNet, built from a :class:`~training.config.UNetConfig`."""

from __future__ import annotations

import torch
from torch import nn

from n2n_train.config import UNetConfig


def _block(in_ch: int, out_ch: int, cfg: UNetConfig) -> nn.Sequential:
    """``convs_per_level`` 3×3 convolutions, each followed by [BN], activation, [dropout]."""
    layers: list[nn.Module] = []
    for i in range(cfg.convs_per_level):
        layers.append(nn.Conv2d(in_ch if i == 0 else out_ch, out_ch, 3, padding=1))
        if cfg.batch_norm:
            layers.append(nn.BatchNorm2d(out_ch))
        if cfg.activation == "relu":
            layers.append(nn.ReLU(inplace=True))
        else:
            layers.append(nn.LeakyReLU(0.1, inplace=True))
        if cfg.dropout > 0:
            layers.append(nn.Dropout2d(cfg.dropout))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """UNet with skip connections by concatenation and a linear 1×1 output.

    With ``config.residual`` the 1×1 output is added to the input (the network
    predicts the noise to remove); for a z-context model (``config.z_context``
    K > 0) to the centre input plane, channel K.

    Input and output: float32 N×C×H×W; H and W must be multiples of
    :attr:`stride`. Images are RGB in [0, 1]; the output is not clamped. A
    z-context model takes N×(2K+1)×H×W (planes z−K..z+K) and gives N×1×H×W.
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or UNetConfig()
        cfg, feats = self.config, self.config.features
        self.down = nn.ModuleList()
        in_ch = cfg.in_channels
        for f in feats:
            self.down.append(_block(in_ch, f, cfg))
            in_ch = f
        self.pool = nn.AvgPool2d(2) if cfg.pooling == "avg" else nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for deep, skip in zip(reversed(feats[1:]), reversed(feats[:-1]), strict=True):
            self.up.append(_upsampler(deep, cfg))
            self.up_blocks.append(_block(deep + skip, skip, cfg))
        self.head = nn.Conv2d(feats[0], cfg.out_channels, 1)

    @property
    def stride(self) -> int:
        """Input heights and widths must be multiples of this."""
        return self.config.stride

    @property
    def receptive_radius(self) -> int:
        """Pixels of context, on each side, that one output pixel can depend on (a bound)."""
        return self.config.receptive_radius

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = x
        skips: list[torch.Tensor] = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        skips.pop()
        for up, block in zip(self.up, self.up_blocks, strict=True):
            x = block(torch.cat([up(x), skips.pop()], dim=1))
        out = self.head(x)
        if not self.config.residual:
            return out
        k = self.config.z_context
        return (inputs[:, k : k + 1] if k else inputs) + out


def _upsampler(channels: int, cfg: UNetConfig) -> nn.Module:
    if cfg.upsampling == "transposed":
        return nn.ConvTranspose2d(channels, channels, 2, stride=2)
    if cfg.upsampling == "bilinear":
        return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
    return nn.Upsample(scale_factor=2, mode="nearest")
