"""The bundled models: where they live and how they are found by name."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from n2n_infer.errors import ModelLoadError

#: The model ``Denoiser()`` uses when none is named.
DEFAULT_MODEL = "photo"


def models_dir() -> Path:
    """The folder of bundled models (``models/`` in the repo, ``n2n_infer/models`` installed)."""
    return Path(str(resources.files("n2n_infer.models")))


def available_models() -> list[str]:
    """Names of the bundled models, e.g. ``["photo"]``."""
    return sorted(p.stem for p in models_dir().glob("*.onnx"))


def resolve_model(model: str | Path | None) -> Path:
    """Turn a bundled model name, a path, or ``None`` (the default) into a file path.

    Raises:
        ModelLoadError: neither a bundled name nor an existing file; the message
            lists the bundled names.
    """
    if model is None:
        model = DEFAULT_MODEL
    path = Path(model)
    if path.suffix == "" and path.name == str(model):
        bundled = models_dir() / f"{model}.onnx"
        if bundled.is_file():
            return bundled
        raise ModelLoadError(
            f"model {str(model)!r}: no bundled model of that name "
            f"(bundled: {', '.join(available_models()) or 'none'}); pass a path to an .onnx file"
        )
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file not found")
    return path
