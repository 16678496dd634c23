"""Training of Noise2Noise UNets (torch only; never imports onnxruntime)."""

from training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from training.config import PRESETS, ConfigError, TrainConfig, UNetConfig
from training.unet import UNet

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
