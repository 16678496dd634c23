"""Exception types of the runtime."""

from __future__ import annotations


class N2NError(Exception):
    """Base of every error that n2n raises on purpose."""


class ModelLoadError(N2NError):
    """A model file is missing, corrupt, of an unknown format version or wrong signature."""


class ProviderError(N2NError):
    """A requested execution provider (e.g. CUDA) cannot be used."""


class ImageError(N2NError, ValueError):
    """An input image has a shape, dtype or content that cannot be denoised."""


class InferenceError(N2NError):
    """onnxruntime failed while running the model (e.g. out of memory on the device)."""
