"""Training of Noise2Noise UNets (torch only; never imports onnxruntime).

The public names load on first use, so that ``n2n-train --help`` (``training.cli``)
starts without importing torch, and says which extra to install where torch is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from n2n_infer.lazy import lazy_names

if TYPE_CHECKING:
    from n2n_train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from n2n_train.config import PRESETS, ConfigError, TrainConfig, UNetConfig
    from n2n_train.unet import UNet

#: Public name -> the module that defines it.
_HOMES = {
    "CheckpointError": "n2n_train.checkpoint",
    "load_checkpoint": "n2n_train.checkpoint",
    "save_checkpoint": "n2n_train.checkpoint",
    "PRESETS": "n2n_train.config",
    "ConfigError": "n2n_train.config",
    "TrainConfig": "n2n_train.config",
    "UNetConfig": "n2n_train.config",
    "UNet": "n2n_train.unet",
}

__all__ = [
    "PRESETS",
    "CheckpointError",
    "ConfigError",
    "TrainConfig",
    "UNet",
    "UNetConfig",
    "load_checkpoint",
    "save_checkpoint",
]


__getattr__, __dir__ = lazy_names(__name__, _HOMES, globals())
