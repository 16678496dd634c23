"""n2n_infer: denoise images with an exported n2n ONNX model (no torch needed).

>>> from n2n_infer import Denoiser
>>> d = Denoiser()                 # the bundled default model, CUDA if usable
>>> out = d.denoise(image)         # numpy (H×W, H×W×{1,3,4}; uint8/uint16/float) or PIL
"""

from n2n_infer.denoiser import Denoiser
from n2n_infer.errors import (
    ImageError,
    InferenceError,
    ModelLoadError,
    N2NError,
    ProviderError,
)
from n2n_infer.metadata import ModelInfo
from n2n_infer.registry import available_models
from n2n_infer.session import SessionConfig

__version__ = "0.1.0"

__all__ = [
    "Denoiser",
    "ImageError",
    "InferenceError",
    "ModelInfo",
    "ModelLoadError",
    "N2NError",
    "ProviderError",
    "SessionConfig",
    "__version__",
    "available_models",
]
