"""Model metadata: the key names (shared with the exporter) and :class:`ModelInfo`.

The ONNX file's ``metadata_props`` carry strings. ``export`` writes them with
these key names; the runtime reads them back here, never from a guess.

Format 2 files state the facts the runtime acts on: the architecture's name,
the channel count, the receptive radius (tiles overlap by it), how grey images
should go through the model, and the training noise in words. Format 1 files
did not; for them :func:`_format1_facts` derives the same facts from the UNet
config and the noise spec, as the runtime did before format 2. Nothing else in
``n2n_infer`` knows the UNet's layers or the noise kinds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from n2n_infer.errors import ModelLoadError

#: The metadata format the exporter writes for a plane-by-plane model; this runtime
#: reads 1, 2 and 3.
FORMAT_VERSION = 2
#: The format of a z-context model: format 2 plus :data:`KEY_Z_CONTEXT`. The exporter
#: writes it only for those models, so that runtimes that read format 2 still read every
#: other model, and refuse (by its version) one they would run wrong.
Z_CONTEXT_FORMAT = 3
#: The metadata format versions this runtime understands.
SUPPORTED_FORMATS = (1, 2, 3)

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
# Format 2: the model's own facts.
#: The network's kind, a short name ("unet"); the config's meaning depends on it.
KEY_ARCHITECTURE = "n2n.architecture"
#: Input and output channels (3: RGB; 1: grey, a grey-native model).
KEY_CHANNELS = "n2n.channels"
#: Pixels of context, on each side, that one output pixel depends on (an upper bound).
KEY_RECEPTIVE_RADIUS = "n2n.receptive_radius"
#: How grey images go through a colour model: one of :data:`GREY_HANDLING`
#: (:data:`GREY_NATIVE` for a 1-channel model).
KEY_GREY = "n2n.grey"
#: The training noise in words ("Gaussian noise, sigma 0–50 (of 255)"); may be empty.
KEY_NOISE_DESCRIPTION = "n2n.noise_description"
#: The facts a format-2 file must state (its noise description may be missing or empty).
FORMAT2_REQUIRED = (KEY_ARCHITECTURE, KEY_CHANNELS, KEY_RECEPTIVE_RADIUS, KEY_GREY)
# Format 3: a z-context model.
#: K: the model takes planes z−K..z+K of a stack's Z axis (``2K + 1`` channels of grey
#: planes) and gives plane z (one channel). Stated by format 3 files only (1 to
#: :data:`MAX_Z_CONTEXT`); ``n2n.channels`` is then 1, the channels of its output.
KEY_Z_CONTEXT = "n2n.z_context"
#: The largest z-context a model may state.
MAX_Z_CONTEXT = 4

INPUT_NAME = "noisy"
OUTPUT_NAME = "denoised"

#: The largest stride accepted (a UNet of 9 levels); images are padded to it.
MAX_STRIDE = 256
#: A model whose receptive radius implies a wider tile overlap needs an explicit
#: ``tile_overlap`` (the deepest UNet that training builds, 6 levels of 2 convolutions
#: with bilinear upsampling, needs 1152).
MAX_AUTO_OVERLAP = 2048
#: The largest receptive radius accepted (px); beyond MAX_AUTO_OVERLAP / 4 the model
#: needs an explicit ``tile_overlap``.
MAX_RECEPTIVE_RADIUS = 4096
#: ``phases``: a grey image's four pixel phases as colour images (noise independent from
#: pixel to pixel); ``replicate``: the grey copied into R, G and B (noise shared by
#: neighbouring pixels, or a model that learned grey copies). See :mod:`n2n_infer.grey`.
GREY_HANDLING = ("phases", "replicate")
#: What a 1-channel (grey-native) model states as its grey handling: grey images run as
#: they are; a colour image runs channel by channel (see :class:`n2n_infer.Denoiser`).
GREY_NATIVE = "native"
#: Channel counts a model may state; this runtime runs those of RUNTIME_CHANNELS.
CHANNELS = (1, 3)
RUNTIME_CHANNELS = (1, 3)
#: The receptive radius assumed for a format-1 file whose config does not describe its
#: layers (and the default of a :class:`ModelInfo` built by hand).
FALLBACK_RADIUS = 32
#: An architecture's name: a short word (letters, digits, ``.``, ``_``, ``-``).
_ARCHITECTURE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class ModelInfo:
    """What the runtime needs to know about a model, read from its metadata.

    ``architecture``, ``channels``, ``receptive_radius``, ``grey`` and
    ``noise_description`` are the model's own statements (format 2), or derived
    from its config and noise spec for a format-1 file (:func:`_format1_facts`).
    """

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
    architecture: str = ""
    channels: int = 3
    receptive_radius: int = FALLBACK_RADIUS
    grey: str = "phases"
    noise_description: str = ""
    #: K of a z-context model (format 3): planes z−K..z+K in, plane z out; 0 for others.
    z_context: int = 0

    @property
    def in_channels(self) -> int:
        """The model input's channels: :attr:`channels`, or ``2K + 1`` planes for a
        z-context model."""
        return 2 * self.z_context + 1 if self.z_context else self.channels

    @classmethod
    def from_props(cls, props: dict[str, str], path: Path) -> ModelInfo:
        """Parse ``metadata_props``.

        Raises:
            ModelLoadError: a missing or unknown format version, a missing stride
                or one that is not a power of two up to :data:`MAX_STRIDE`, JSON
                values that are not objects; for format 2, a missing fact of
                :data:`FORMAT2_REQUIRED` or one out of bounds (a receptive radius
                above :data:`MAX_RECEPTIVE_RADIUS`, channels other than 1 or 3, a
                grey handling not in :data:`GREY_HANDLING`), or a channel count this
                runtime cannot run; for format 1, a config outside the UNet's
                bounds. The message names the file.
        """
        version = _int(props, KEY_FORMAT_VERSION, path)
        if version not in SUPPORTED_FORMATS:
            raise ModelLoadError(
                f"{path}: model metadata format version {version} is not supported by this "
                f"n2n_infer (supports {min(SUPPORTED_FORMATS)}..{max(SUPPORTED_FORMATS)}); "
                "upgrade n2n_infer or re-export"
            )
        stride = _int(props, KEY_STRIDE, path)
        if stride < 1 or stride > MAX_STRIDE or stride & (stride - 1):
            raise ModelLoadError(
                f"{path}: metadata {KEY_STRIDE}={stride}: expected a power of two from 1 to "
                f"{MAX_STRIDE}"
            )
        config = _json(props, KEY_CONFIG, path)
        training = _json(props, KEY_TRAINING, path)
        noise = props.get(KEY_NOISE, "")
        if version == 1:
            facts = _format1_facts(config, noise, training, path)
        else:
            facts = _stated_facts(props, path)
            facts["z_context"] = _z_context(props, version, facts["channels"], path)
        return cls(
            path=path,
            format_version=version,
            stride=stride,
            name=props.get(KEY_NAME, ""),
            noise=noise,
            config=config,
            training=training,
            psnr=_json(props, KEY_PSNR, path),
            exporter=_json(props, KEY_EXPORTER, path),
            raw=dict(props),
            **facts,
        )


def _stated_facts(props: dict[str, str], path: Path) -> dict[str, Any]:
    """The facts a format-2 file states, checked (see :meth:`ModelInfo.from_props`)."""
    for key in FORMAT2_REQUIRED:
        if key not in props:
            raise ModelLoadError(
                f"{path}: metadata format 2 needs {key!r}, which is missing; re-export the "
                "model with n2n-export"
            )
    architecture = props[KEY_ARCHITECTURE]
    if not _ARCHITECTURE_NAME.fullmatch(architecture):
        raise ModelLoadError(
            f"{path}: metadata {KEY_ARCHITECTURE}={_short(architecture)}: expected a name of "
            "1 to 64 letters, digits, '.', '_' or '-'"
        )
    channels = _int(props, KEY_CHANNELS, path)
    if channels not in CHANNELS:
        raise ModelLoadError(
            f"{path}: metadata {KEY_CHANNELS}={channels}: expected one of "
            f"{', '.join(map(str, CHANNELS))}"
        )
    if channels not in RUNTIME_CHANNELS:
        raise ModelLoadError(
            f"{path}: a {channels}-channel model: this n2n_infer runs 3-channel (RGB) models "
            f"only; {channels}-channel models need a newer n2n_infer"
        )
    radius = _int(props, KEY_RECEPTIVE_RADIUS, path)
    if not 0 <= radius <= MAX_RECEPTIVE_RADIUS:
        raise ModelLoadError(
            f"{path}: metadata {KEY_RECEPTIVE_RADIUS}={radius}: expected 0 to "
            f"{MAX_RECEPTIVE_RADIUS} pixels"
        )
    grey = props[KEY_GREY]
    allowed = (GREY_NATIVE,) if channels == 1 else GREY_HANDLING
    if grey not in allowed:
        raise ModelLoadError(
            f"{path}: metadata {KEY_GREY}={_short(grey)}: a {channels}-channel model states "
            f"one of {', '.join(allowed)}"
        )
    return {
        "architecture": architecture,
        "channels": channels,
        "receptive_radius": radius,
        "grey": grey,
        "noise_description": props.get(KEY_NOISE_DESCRIPTION, ""),
    }


def _z_context(props: dict[str, str], version: int, channels: int, path: Path) -> int:
    """The z-context a format-3 file states (format 2 states none).

    Raises:
        ModelLoadError: format 3 without :data:`KEY_Z_CONTEXT`, a value outside 1 to
            :data:`MAX_Z_CONTEXT`, or more than one channel; the key in a format-2 file.
    """
    if version < Z_CONTEXT_FORMAT:
        if KEY_Z_CONTEXT in props:
            raise ModelLoadError(
                f"{path}: metadata {KEY_Z_CONTEXT} in a format-{version} file: a z-context "
                f"model is format {Z_CONTEXT_FORMAT}; re-export it with n2n-export"
            )
        return 0
    if KEY_Z_CONTEXT not in props:
        raise ModelLoadError(
            f"{path}: metadata format {version} needs {KEY_Z_CONTEXT!r}, which is missing; "
            "re-export the model with n2n-export"
        )
    k = _int(props, KEY_Z_CONTEXT, path)
    if not 1 <= k <= MAX_Z_CONTEXT:
        raise ModelLoadError(
            f"{path}: metadata {KEY_Z_CONTEXT}={k}: expected 1 to {MAX_Z_CONTEXT} planes on "
            "each side"
        )
    if channels != 1:
        raise ModelLoadError(
            f"{path}: metadata {KEY_Z_CONTEXT}={k} with {KEY_CHANNELS}={channels}: z-context "
            "models take grey planes (1 channel)"
        )
    return k


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


def _int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _short(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (metadata can hold huge values)."""
    return _cut(repr(value), limit)


# --- Format 1 compatibility ---------------------------------------------------------------
# Format-1 files do not state their facts. Everything below derives them as the runtime
# did before format 2, from the UNet config and the noise spec: the only place in
# n2n_infer that knows the UNet's layers and the noise kinds. Format-2 files never come
# here; new knowledge of architectures or noises belongs in training/ and export/.

#: Bounds of a plausible format-1 ``n2n.config``: levels (``features``), channels per
#: level and convolutions per level (the training code allows 2..6 levels and 1..2 convs).
MAX_LEVELS = 9
MAX_FEATURES = 65536
MAX_CONVS_PER_LEVEL = 4
#: Format-1 noise kinds whose draws are not independent from pixel to pixel (format 1
#: replicated grey images for these only; format 2 states ``n2n.grey``).
FORMAT1_BLOCK_NOISES = ("pixelated",)


def _format1_facts(
    config: dict[str, Any], noise: str, training: dict[str, Any], path: Path
) -> dict[str, Any]:
    """The facts a format-1 file leaves unstated, derived as before format 2.

    Every format-1 file is a 3-channel UNet (the only network the exporter wrote).

    Raises:
        ModelLoadError: a config whose levels or convolutions no real UNet has.
    """
    _format1_check_config(config, path)
    kinds = {part.split(":", 1)[0] for part in noise.split("+")}  # "a:1+b:2" is a mix
    replicate = trained_on_grey(training) or bool(kinds & set(FORMAT1_BLOCK_NOISES))
    return {
        "architecture": "unet",
        "channels": 3,
        "receptive_radius": _format1_receptive_radius(config),
        "grey": "replicate" if replicate else "phases",
        "noise_description": describe_noise(noise) if noise else "",
    }


def _format1_check_config(config: dict[str, Any], path: Path) -> None:
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


def _format1_receptive_radius(config: dict[str, Any]) -> int:
    """The UNet's receptive radius from its config (the formula of
    ``UNetConfig.receptive_radius``), or :data:`FALLBACK_RADIUS` when the config
    does not describe its layers."""
    feats, convs = config.get("features"), config.get("convs_per_level")
    if not isinstance(feats, list) or not isinstance(convs, int) or not feats:
        return FALLBACK_RADIUS
    levels = len(feats)
    radius = convs * (2**levels - 1) + convs * (2 ** (levels - 1) - 1)  # 3×3 convs
    radius += 2 ** (levels - 1) - 1  # 2×2 pooling
    up = 2 if config.get("upsampling") in ("bilinear", "transposed") else 1
    return radius + up * (2 ** (levels - 1) - 1)


def trained_on_grey(training: dict[str, Any]) -> bool:
    """Whether a training summary says the model learned grey images copied into RGB.

    Photo training with grey patches (``n2n-train fit --grey-fraction``), or own
    data (``--pairs``/``--bursts``/``--singles``) with grey scenes, which training
    copies into R, G and B (the summary's ``data.grey_scenes``).
    """
    cfg, data = training.get("train_config"), training.get("data")
    try:
        if isinstance(cfg, dict) and float(cfg.get("grey_fraction") or 0.0) > 0.0:
            return True
        return isinstance(data, dict) and int(data.get("grey_scenes") or 0) > 0
    except (TypeError, ValueError, OverflowError):
        return False


#: How each noise kind of a format-1 noise spec reads in words (its arguments follow).
NOISE_WORDS = {
    "gaussian": ("Gaussian noise", "sigma {} (of 255)"),
    "correlated": ("spatially correlated Gaussian noise", "sigma {} (of 255)"),
    "poisson": ("Poisson (shot) noise", "lambda {}"),
    "poisson-gaussian": (
        "Poisson-Gaussian (camera) noise",
        "{} photons at white, read noise {} photons",
    ),
    "pixelated": ("pixelated Gaussian noise (80% of it in blocks)", "sigma {} (of 255), blocks {}"),
    "bernoulli": ("Bernoulli (dropped pixel) noise", "probability {}"),
    "impulse": ("impulse (salt and pepper) noise", "probability {}"),
}


def describe_noise(spec: str) -> str:
    """A noise spec in words: ``gaussian:0-50`` -> ``Gaussian noise, sigma 0–50 (of 255)``.

    Format 1 compatibility: the words of a file that does not state them (format 2
    files carry ``n2n.noise_description``: use :attr:`ModelInfo.noise_description`).
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
        if kind == "poisson-gaussian" and len(values) == 1:
            values.append("0")
        text = args.format(*values) if len(values) == args.count("{}") else _cut(arg)
        parts.append(f"{words}, {text}" if text else words)
    return parts[0] if len(parts) == 1 else "one of: " + "; ".join(parts)


def card(info: ModelInfo) -> list[tuple[str, str]]:
    """The model card's lines from the metadata: (label, text), short lines, in reading order."""
    cfg, train = info.config, info.training
    lines = [("model", _cut(info.name or info.path.stem))]
    images = f"{_CHANNEL_WORDS.get(info.channels, f'{info.channels}-channel')} images"
    if info.noise_description:
        images += f" with {info.noise_description}"
    lines.append(("for", _cut(images, 120)))
    if info.z_context:
        k = info.z_context
        lines.append(
            (
                "z-context",
                f"{k}: plane z of a stack denoised from planes z-{k}..z+{k} "
                f"({2 * k + 1} channels in, 1 out; stacks with a Z axis only)",
            )
        )
    lines.append(("architecture", _architecture(info.architecture, cfg)))
    lines.append(
        (
            "stride",
            f"{info.stride} (sizes are padded to a multiple of {info.stride} px); "
            f"receptive radius {info.receptive_radius} px",
        )
    )
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


#: How a model's channel count reads on its card.
_CHANNEL_WORDS = {3: "RGB", 1: "grey"}
#: How an architecture's name reads on a card (others as they are named).
_ARCHITECTURE_WORDS = {"unet": "UNet"}


def _architecture(architecture: str, cfg: dict[str, Any]) -> str:
    """The stated architecture; for a UNet, its levels and layers from its config."""
    name = _ARCHITECTURE_WORDS.get(architecture, _cut(architecture, 40))
    features = cfg.get("features")
    if architecture != "unet" or not isinstance(features, list) or not features:
        return name or "not described in the metadata"
    text = f"{name}, {len(features)} levels ({'/'.join(map(str, features))} channels)"
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
