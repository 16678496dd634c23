"""n2n_infer: denoise images with an exported n2n ONNX model (no torch needed).

>>> from n2n_infer import Denoiser
>>> d = Denoiser()                 # the bundled default model, CUDA if usable
>>> out = d.denoise(img_hwc_u8)    # H×W×3 uint8 in, same out
"""

from n2n_infer.denoiser import Denoiser
from n2n_infer.errors import ImageError, ModelLoadError, N2NError, ProviderError
from n2n_infer.metadata import ModelInfo
from n2n_infer.registry import available_models

__version__ = "0.1.0"

__all__ = [
    "Denoiser",
    "ImageError",
    "ModelInfo",
    "ModelLoadError",
    "N2NError",
    "ProviderError",
    "__version__",
    "available_models",
]
