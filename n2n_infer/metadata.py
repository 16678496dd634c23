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

#: The largest stride accepted (a UNet of 9 levels); images are padded to it.
MAX_STRIDE = 256
#: Bounds of a plausible ``n2n.config``: levels (``features``), channels per level
#: and convolutions per level (the training code allows 2..6 levels and 1..2 convs).
MAX_LEVELS = 9
MAX_FEATURES = 65536
MAX_CONVS_PER_LEVEL = 4
#: A model whose config implies a wider tile overlap needs an explicit ``tile_overlap``
#: (the deepest UNet that training builds, 6 levels of 2 convolutions, needs 1008).
MAX_AUTO_OVERLAP = 2048


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
            ModelLoadError: a missing or unknown format version, a missing stride
                or one that is not a power of two up to :data:`MAX_STRIDE`, JSON
                values that are not objects, or a config outside the bounds
                above; the message names the file.
        """
        version = _int(props, KEY_FORMAT_VERSION, path)
        if version > FORMAT_VERSION or version < 1:
            raise ModelLoadError(
                f"{path}: model metadata format version {version} is not supported by this "
                f"n2n_infer (supports 1..{FORMAT_VERSION}); upgrade n2n_infer or re-export"
            )
        stride = _int(props, KEY_STRIDE, path)
        if stride < 1 or stride > MAX_STRIDE or stride & (stride - 1):
            raise ModelLoadError(
                f"{path}: metadata {KEY_STRIDE}={stride}: expected a power of two from 1 to "
                f"{MAX_STRIDE}"
            )
        config = _json(props, KEY_CONFIG, path)
        _check_config(config, path)
        return cls(
            path=path,
            format_version=version,
            stride=stride,
            name=props.get(KEY_NAME, ""),
            noise=props.get(KEY_NOISE, ""),
            config=config,
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
        raise ModelLoadError(
            f"{path}: metadata {key}={_short(props[key])} is not an integer"
        ) from None


def _json(props: dict[str, str], key: str, path: Path) -> dict[str, Any]:
    if key not in props:
        return {}
    try:
        value = json.loads(props[key])
    except (json.JSONDecodeError, RecursionError):  # RecursionError: nested too deep
        raise ModelLoadError(f"{path}: metadata {key} is not valid JSON") from None
    if not isinstance(value, dict):
        raise ModelLoadError(f"{path}: metadata {key} must be a JSON object")
    return value


def _check_config(config: dict[str, Any], path: Path) -> None:
    """Refuse a config whose levels or convolutions no real UNet has (see the bounds above)."""
    features = config.get("features")
    if features is not None and not (
        isinstance(features, list)
        and 1 <= len(features) <= MAX_LEVELS
        and all(_int_in(f, 1, MAX_FEATURES) for f in features)
    ):
        raise ModelLoadError(
            f"{path}: metadata {KEY_CONFIG} features={_short(features)}: expected a list of "
            f"1 to {MAX_LEVELS} channel counts from 1 to {MAX_FEATURES}"
        )
    convs = config.get("convs_per_level")
    if convs is not None and not _int_in(convs, 1, MAX_CONVS_PER_LEVEL):
        raise ModelLoadError(
            f"{path}: metadata {KEY_CONFIG} convs_per_level={_short(convs)}: expected an "
            f"integer from 1 to {MAX_CONVS_PER_LEVEL}"
        )


def _int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _short(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (metadata can hold huge values)."""
    return _cut(repr(value), limit)


#: How each noise kind of a noise spec reads in words (its arguments follow).
NOISE_WORDS = {
    "gaussian": ("Gaussian noise", "sigma {} (of 255)"),
    "correlated": ("spatially correlated Gaussian noise", "sigma {} (of 255)"),
    "poisson": ("Poisson (shot) noise", "lambda {}"),
    "pixelated": ("pixelated Gaussian noise (80% of it in blocks)", "sigma {} (of 255), blocks {}"),
    "bernoulli": ("Bernoulli (dropped pixel) noise", "probability {}"),
    "impulse": ("impulse (salt and pepper) noise", "probability {}"),
}


def describe_noise(spec: str) -> str:
    """A noise spec in words: ``gaussian:0-50`` -> ``Gaussian noise, sigma 0–50 (of 255)``.

    Mixes (``a+b``) read as "one of ..."; unknown kinds are shown as given.
    """
    parts = []
    for part in spec.split("+"):
        kind, _, arg = part.partition(":")
        if kind not in NOISE_WORDS:
            parts.append(_cut(part))
            continue
        words, args = NOISE_WORDS[kind]
        values = [v.replace("-", "–") for v in arg.split(",")] if arg else []
        if kind == "pixelated" and len(values) == 1:
            values.append("2")
        text = args.format(*values) if len(values) == args.count("{}") else _cut(arg)
        parts.append(f"{words}, {text}" if text else words)
    return parts[0] if len(parts) == 1 else "one of: " + "; ".join(parts)


def card(info: ModelInfo) -> list[tuple[str, str]]:
    """The model card's lines from the metadata: (label, text), short lines, in reading order."""
    cfg, train = info.config, info.training
    lines = [("model", _cut(info.name or info.path.stem))]
    if info.noise:
        lines.append(("for", _cut(f"images with {describe_noise(info.noise)}", 120)))
    lines.append(("architecture", _architecture(cfg)))
    lines.append(("stride", f"{info.stride} (sizes are padded to a multiple of {info.stride} px)"))
    lines.append(("precision", _cut(str(info.raw.get(KEY_PRECISION, "fp32")))))
    tc = train.get("train_config") if isinstance(train.get("train_config"), dict) else {}
    data = train.get("data") if isinstance(train.get("data"), dict) else {}
    trained = [
        _cut(str(data["source"])) if "source" in data else "",
        _epochs(train, tc),
        f"batches of {tc['batch_size']}" if "batch_size" in tc else "",
        f"{tc['patch_size']} px patches" if "patch_size" in tc else "",
        f"{tc['optimizer']} lr {tc['lr']}" if "optimizer" in tc and "lr" in tc else "",
        _cut(str(train["mode"])) if "mode" in train else "",
    ]
    if any(trained):
        lines.append(("training", _cut(", ".join(t for t in trained if t), 120)))
    psnr = _psnr(info.psnr)
    if psnr:
        lines.append(("PSNR", psnr))
    return lines


def _epochs(train: dict[str, Any], tc: dict[str, Any]) -> str:
    """Epochs run (the summary's count, else the config's), and a time budget if one was set."""
    epochs = train.get("epochs", tc.get("epochs"))
    text = f"{epochs} epochs" if isinstance(epochs, int) else ""
    minutes = tc.get("minutes")
    if isinstance(minutes, int | float) and minutes > 0:
        text = f"{text} within a {minutes:g}-minute budget".strip()
    return text


def _architecture(cfg: dict[str, Any]) -> str:
    features = cfg.get("features")
    if not isinstance(features, list) or not features:
        return "not described in the metadata"
    text = f"UNet, {len(features)} levels ({'/'.join(map(str, features))} channels)"
    if isinstance(cfg.get("convs_per_level"), int):
        text += f", {cfg['convs_per_level']} conv per level"
    for key, word in (("pooling", "pooling"), ("upsampling", "upsampling")):
        if isinstance(cfg.get(key), str):
            text += f", {_cut(cfg[key], 20)} {word}"
    if cfg.get("residual") is True:
        text += ", residual"
    return text


def _psnr(psnr: dict[str, Any]) -> str:
    noisy, out = psnr.get("psnr_noisy"), psnr.get("psnr_onnx", psnr.get("psnr_torch"))
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (noisy, out)):
        return ""
    where = psnr.get("eval_set")
    text = f"{noisy:.2f} dB noisy -> {out:.2f} dB denoised"
    text += f" on {_cut(str(where))}" if where else ""
    if psnr.get("reference") == "noisy images":
        text += " (vs noisy references: parity, not quality)"
    return text


def _cut(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters (metadata can hold huge strings)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
