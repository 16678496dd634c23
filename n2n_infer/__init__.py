"""n2n_infer: denoise images with an exported n2n ONNX model (no torch needed).

>>> from n2n_infer import Denoiser
>>> d = Denoiser()                 # the bundled default model, CUDA if usable
>>> out = d.denoise(image)         # numpy (H×W, H×W×{1,3,4}; uint8/uint16/float) or PIL

The public names are loaded on first use, so that ``import n2n_infer.files`` (or
``n2n_infer.imageio``) from training code does not load onnxruntime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from n2n_infer.lazy import lazy_names

if TYPE_CHECKING:
    from n2n_infer.denoiser import Denoiser
    from n2n_infer.errors import (
        ImageError,
        InferenceError,
        ModelLoadError,
        N2NError,
        ProviderError,
    )
    from n2n_infer.metadata import ModelInfo
    from n2n_infer.options import DenoiserOptions
    from n2n_infer.registry import available_models
    from n2n_infer.session import SessionConfig

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_HOMES = {
    "Denoiser": "n2n_infer.denoiser",
    "DenoiserOptions": "n2n_infer.options",
    "ImageError": "n2n_infer.errors",
    "InferenceError": "n2n_infer.errors",
    "ModelLoadError": "n2n_infer.errors",
    "N2NError": "n2n_infer.errors",
    "ProviderError": "n2n_infer.errors",
    "ModelInfo": "n2n_infer.metadata",
    "available_models": "n2n_infer.registry",
    "SessionConfig": "n2n_infer.session",
}

__all__ = [
    "Denoiser",
    "DenoiserOptions",
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


__getattr__, __dir__ = lazy_names(__name__, _HOMES, globals())
