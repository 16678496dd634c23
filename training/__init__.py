"""Training of Noise2Noise UNets (torch only; never imports onnxruntime).

The public names load on first use, so that ``n2n-train --help`` (``training.cli``)
starts without importing torch, and says which extra to install where torch is missing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'n2n_train' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
