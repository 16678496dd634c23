"""Model metadata: the key names (shared with the exporter) and :class:`ModelInfo`.

The ONNX file's ``metadata_props`` carry strings. ``export`` writes them with
these key names; the runtime reads them back here, never from a guess.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from n2n_infer.errors import ModelLoadError

#: The metadata format versions this runtime understands.
FORMAT_VERSION = 1

KEY_FORMAT_VERSION = "n2n.format_version"
KEY_STRIDE = "n2n.stride"
KEY_CONFIG = "n2n.config"
KEY_NOISE = "n2n.noise"
KEY_TRAINING = "n2n.training"
KEY_PSNR = "n2n.psnr"
KEY_EXPORTER = "n2n.exporter"
KEY_CHECKPOINT_SHA256 = "n2n.checkpoint_sha256"
KEY_NAME = "n2n.name"
#: "fp32" (absent means fp32), "fp16" or "int8"; inputs and outputs are float32 for all.
KEY_PRECISION = "n2n.precision"
#: The command that rebuilds the model from scratch.
KEY_REPRODUCE = "n2n.reproduce"

INPUT_NAME = "noisy"
OUTPUT_NAME = "denoised"


@dataclass(frozen=True)
class ModelInfo:
    """What the runtime needs to know about a model, read from its metadata."""

    path: Path
    format_version: int
    stride: int
    name: str = ""
    noise: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    psnr: dict[str, Any] = field(default_factory=dict)
    exporter: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_props(cls, props: dict[str, str], path: Path) -> ModelInfo:
        """Parse ``metadata_props``.

        Raises:
            ModelLoadError: a missing or unknown format version, or a missing or
                invalid stride; the message names the file.
        """
        version = _int(props, KEY_FORMAT_VERSION, path)
        if version > FORMAT_VERSION or version < 1:
            raise ModelLoadError(
                f"{path}: model metadata format version {version} is not supported by this "
                f"n2n_infer (supports 1..{FORMAT_VERSION}); upgrade n2n_infer or re-export"
            )
        stride = _int(props, KEY_STRIDE, path)
        if stride < 1 or stride & (stride - 1):
            raise ModelLoadError(f"{path}: metadata {KEY_STRIDE}={stride} is not a power of two")
        return cls(
            path=path,
            format_version=version,
            stride=stride,
            name=props.get(KEY_NAME, ""),
            noise=props.get(KEY_NOISE, ""),
            config=_json(props, KEY_CONFIG, path),
            training=_json(props, KEY_TRAINING, path),
            psnr=_json(props, KEY_PSNR, path),
            exporter=_json(props, KEY_EXPORTER, path),
            raw=dict(props),
        )


def _int(props: dict[str, str], key: str, path: Path) -> int:
    if key not in props:
        raise ModelLoadError(f"{path}: not an n2n model (metadata has no {key!r})")
    try:
        return int(props[key])
    except ValueError:
        raise ModelLoadError(f"{path}: metadata {key}={props[key]!r} is not an integer") from None


def _json(props: dict[str, str], key: str, path: Path) -> dict[str, Any]:
    if key not in props:
        return {}
    try:
        value = json.loads(props[key])
    except json.JSONDecodeError:
        raise ModelLoadError(f"{path}: metadata {key} is not valid JSON") from None
    if not isinstance(value, dict):
        raise ModelLoadError(f"{path}: metadata {key} must be a JSON object")
    return value
