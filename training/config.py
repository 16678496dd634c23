"""Model and training configuration: frozen dataclasses of JSON types.

A config is data, not code. It is saved in every checkpoint and in the ONNX
metadata, and read back with :func:`UNetConfig.from_dict` /
:func:`TrainConfig.from_dict`, which reject unknown keys and newer versions.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from n2n_infer.errors import N2NError

_T = TypeVar("_T", bound="_Versioned")

#: The largest z-context (planes z−K..z+K on each side) a model may take.
MAX_Z_CONTEXT = 4


class ConfigError(N2NError, ValueError):
    """A config dict has unknown keys, a newer version or invalid values."""


@dataclass(frozen=True)
class _Versioned:
    VERSION: ClassVar[int] = 1

    def _check_finite(self) -> None:
        """Refuse NaN and infinities in every float field (a range check such as
        ``x < 0`` is false for NaN, so it would let NaN through)."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name} must be a finite number, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-compatible dict, including the config's version."""
        out = dataclasses.asdict(self)
        out["version"] = self.VERSION
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls: type[_T], data: dict[str, Any], source: str = "config") -> _T:
        """Build a config from :meth:`to_dict` output.

        Raises:
            ConfigError: unknown keys, a version newer than this code knows, or
                invalid values; the message names ``source`` (e.g. a file).
        """
        data = dict(data)
        version = data.pop("version", 1)
        if not isinstance(version, int) or version > cls.VERSION:
            raise ConfigError(
                f"{source}: {cls.__name__} version {version!r} is newer than this code "
                f"understands (version {cls.VERSION}); upgrade n2n"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{source}: unknown {cls.__name__} keys {unknown}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: invalid {cls.__name__}: {exc}") from exc


@dataclass(frozen=True)
class UNetConfig(_Versioned):
    """Shape of a UNet.

    ``features[i]`` is the channel count of level ``i``; there is one pooling
    step between consecutive levels, so the stride (the multiple that input
    heights and widths must have) is ``2 ** (len(features) - 1)``.

    Version 2 added ``residual``: the network predicts the noise and the output
    is ``input + head(...)`` (residual learning, as in DnCNN), which trains
    faster; version-1 dicts load with ``residual=False``, their own network.

    Version 3 added ``z_context`` (K, 0 to :data:`MAX_Z_CONTEXT`): a z-context
    model takes the planes z−K..z+K of a stack as ``2K + 1`` input channels and
    gives the centre plane denoised (``in_channels`` 2K + 1, ``out_channels``
    1; with ``residual`` the centre input plane, channel K, is added to the
    head). Dicts without the key load with 0, today's plane-by-plane network,
    and a config of K 0 is written as version 2 without the key
    (:meth:`to_dict`), so that code from before version 3 still reads it.
    """

    features: tuple[int, ...] = (16, 32, 64)
    convs_per_level: int = 1
    in_channels: int = 3
    out_channels: int = 3
    pooling: str = "avg"
    upsampling: str = "nearest"
    activation: str = "relu"
    batch_norm: bool = False
    dropout: float = 0.0
    residual: bool = False
    z_context: int = 0

    VERSION: ClassVar[int] = 3

    def __post_init__(self) -> None:
        self._check_finite()
        if not 2 <= len(self.features) <= 6:
            raise ValueError(f"features must list 2 to 6 levels, got {list(self.features)}")
        if any(not isinstance(f, int) or f < 1 for f in self.features):
            raise ValueError(f"features must be positive integers, got {list(self.features)}")
        if self.convs_per_level not in (1, 2):
            raise ValueError(f"convs_per_level must be 1 or 2, got {self.convs_per_level}")
        _check_choice("pooling", self.pooling, ("avg", "max"))
        _check_choice("upsampling", self.upsampling, ("nearest", "bilinear", "transposed"))
        _check_choice("activation", self.activation, ("relu", "leaky_relu"))
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not (
            isinstance(self.z_context, int)
            and not isinstance(self.z_context, bool)
            and 0 <= self.z_context <= MAX_Z_CONTEXT
        ):
            raise ValueError(f"z_context must be 0 to {MAX_Z_CONTEXT}, got {self.z_context!r}")
        if self.z_context:
            planes = 2 * self.z_context + 1
            if (self.in_channels, self.out_channels) != (planes, 1):
                raise ValueError(
                    f"z_context {self.z_context} needs in_channels {planes} (planes "
                    f"z-{self.z_context}..z+{self.z_context}) and out_channels 1, got "
                    f"{self.in_channels} and {self.out_channels}"
                )
        elif self.residual and self.in_channels != self.out_channels:
            raise ValueError(
                "residual needs in_channels == out_channels, got "
                f"{self.in_channels} and {self.out_channels}"
            )

    def to_dict(self) -> dict[str, Any]:
        """As :meth:`_Versioned.to_dict`; a config without z-context (``z_context`` 0) is
        written as version 2, without the key, exactly as before version 3."""
        out = super().to_dict()
        if not self.z_context:
            del out["z_context"]
            out["version"] = 2
        return out

    @property
    def planes(self) -> int:
        """Planes of a stack one output plane is computed from: ``2 * z_context + 1``."""
        return 2 * self.z_context + 1

    @property
    def levels(self) -> int:
        return len(self.features)

    @property
    def stride(self) -> int:
        """Input heights and widths must be multiples of this."""
        return 2 ** (len(self.features) - 1)

    @property
    def receptive_radius(self) -> int:
        """Pixels of context, on each side, that one output pixel can depend on (a bound).

        With ``L`` levels and ``c`` convolutions per level: the 3×3 convolutions
        of the encoder and the decoder (``c·(2^L − 1) + c·(2^(L−1) − 1)``), the
        2×2 poolings (``2^(L−1) − 1``) and the upsamplings (as much again, twice
        for bilinear and transposed). Measured on the network
        (``tests/export/test_stated_facts.py``): no output pixel moves farther than
        this from a changed input pixel, and the bound exceeds the measured reach
        by at most ``2·(stride − 1)`` pixels. The exporter writes it into the
        model (``n2n.receptive_radius``); the runtime's tile overlap and a
        BioImage.IO package's halo come from it.
        """
        levels, convs = len(self.features), self.convs_per_level
        deep = 2 ** (levels - 1) - 1  # 1 + 2 + ... + 2^(L-2)
        radius = convs * (2**levels - 1) + convs * deep  # 3×3 convolutions, down and up
        up = 2 if self.upsampling in ("bilinear", "transposed") else 1
        return radius + deep + up * deep  # 2×2 poolings, upsamplings


@dataclass(frozen=True)
class TrainConfig(_Versioned):
    """How a UNet is trained (the study's optimizer settings by default).

    Version 2 added ``loss``, ``target``, the augmentations, ``schedule``,
    ``precision`` and ``channels_last``; version-1 dicts load with their defaults,
    which reproduce version-1 training.

    - ``loss``: ``mse``; ``l1``; ``l0`` (the annealed L0 of the Noise2Noise paper,
      ``(|d| + 1e-8) ** gamma`` with gamma falling linearly from 2 to 0).
    - ``target``: ``noisy`` (Noise2Noise) or ``clean`` (Noise2Clean).
    - ``swap``: exchange input and target in half of the pairs; ``dihedral``: one
      of the 8 flips/rotations per pair; ``blur_prob``: probability of blurring
      one side of a pair with a random Gaussian filter (the study's augmentation).
    - ``schedule``: ``none``, ``cosine`` (to 0 over all steps) or ``step``
      (learning rate ×0.1 after 50 % and 75 % of the epochs).
    - ``precision``: ``fp32`` or ``bf16`` (CPU/CUDA autocast); ``channels_last``:
      NHWC memory format.
    - ``pyramid`` (version 3): photos also train at 1/2, 1/4, ... of their size,
      down to a shorter side of ``max(patch_size, 256)``, so that large photos
      also show the dense detail of smaller ones; 0 = off, else the number of
      halvings at most.
    - ``init`` (version 4): the sha256 of the weights a fine-tuning run started
      from (``n2n-train fit --init``), empty for a random start. It also gives the
      batches a fresh random stream, so that a fine-tune does not replay the
      patches and noise of the run it continues.
    - ``grey_fraction`` (version 5): the share of photo patches made grey (luma in
      R, G and B, one noise draw copied to the three channels), so that the
      model also learns grey images read as RGB; 0 = colour only.
    - ``limit_pairs`` (version 6): train on the first N pairs of a course-format
      file only (its 80/20 split is then of those N), for reduced-scale studies;
      0 = all.
    - ``minutes`` (version 7): a time budget; training stops when it is spent
      (even within an epoch), keeping the best checkpoint; 0 = none. Time also
      drives the training progress (regulariser ramp, L0 annealing) when it
      runs out before the epochs.
    - ``regulariser`` (version 7): for single noisy images (``--singles``), the
      final weight gamma of the Neighbor2Neighbor regulariser, which rises from
      0 with the training progress (see ``training/neighbor.py``).
    """

    epochs: int = 15
    batch_size: int = 50
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    val_fraction: float = 0.2
    patch_size: int = 64
    noise: str = "gaussian:25"
    steps_per_epoch: int = 0
    seed: int = 0
    loss: str = "mse"
    target: str = "noisy"
    swap: bool = False
    dihedral: bool = False
    blur_prob: float = 0.0
    schedule: str = "none"
    precision: str = "fp32"
    channels_last: bool = False
    pyramid: int = 0
    init: str = ""
    grey_fraction: float = 0.0
    limit_pairs: int = 0
    minutes: float = 0.0
    regulariser: float = 2.0

    VERSION: ClassVar[int] = 7

    def __post_init__(self) -> None:
        self._check_finite()
        _check_choice("optimizer", self.optimizer, ("sgd", "adam", "adagrad"))
        _check_choice("loss", self.loss, ("mse", "l1", "l0"))
        _check_choice("target", self.target, ("noisy", "clean"))
        _check_choice("schedule", self.schedule, ("none", "cosine", "step"))
        _check_choice("precision", self.precision, ("fp32", "bf16"))
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if self.steps_per_epoch < 0:
            raise ValueError(f"steps_per_epoch must be positive, got {self.steps_per_epoch}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.patch_size < 1:
            raise ValueError(f"patch_size must be positive, got {self.patch_size}")
        if not 0.0 <= self.blur_prob <= 1.0:
            raise ValueError(f"blur_prob must be in [0, 1], got {self.blur_prob}")
        if not 0.0 <= self.grey_fraction <= 1.0:
            raise ValueError(f"grey_fraction must be in [0, 1], got {self.grey_fraction}")
        if self.limit_pairs < 0:
            raise ValueError(f"limit_pairs must be 0 (all) or positive, got {self.limit_pairs}")
        if self.minutes < 0:
            raise ValueError(f"minutes must be 0 (no budget) or positive, got {self.minutes}")
        if self.regulariser < 0:
            raise ValueError(f"regulariser must be 0 or positive, got {self.regulariser}")
        if not 0 <= self.pyramid <= 8:
            raise ValueError(f"pyramid must be 0 to 8 halvings, got {self.pyramid}")
        if self.init and not re.fullmatch(r"[0-9a-f]{64}", self.init):
            raise ValueError(f"init must be a sha256 in hex or empty, got {self.init!r}")
        if self.target == "clean" and self.swap:
            raise ValueError("swap needs noisy targets: Noise2Clean keeps clean targets")


def with_z_context(config: UNetConfig, k: int) -> UNetConfig:
    """``config`` as a z-context model of ``k`` (``2k + 1`` grey planes in, one out); ``k``
    0 gives a grey (1-channel) model of the same shape.

    Raises:
        ValueError: ``k`` outside 0..:data:`MAX_Z_CONTEXT`.
    """
    if k == 0:
        return dataclasses.replace(config, in_channels=1, out_channels=1, z_context=0)
    return dataclasses.replace(config, in_channels=2 * k + 1, out_channels=1, z_context=k)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


#: Named model shapes. ``study`` is the original study's final choice (table III).
PRESETS: dict[str, UNetConfig] = {
    "study": UNetConfig(),
    "study-2conv": UNetConfig(convs_per_level=2),
    "tiny": UNetConfig(features=(8, 16)),
}

#: The original study's final training choices (table III; 50 epochs for the final model).
STUDY_TRAINING = TrainConfig(
    epochs=50,
    batch_size=50,
    optimizer="sgd",
    lr=0.01,
    momentum=0.9,
    swap=True,
    dihedral=True,
    blur_prob=0.1,
)
