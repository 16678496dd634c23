"""Plain-dict checkpoints that load with ``torch.load(weights_only=True)``.

A checkpoint is a dict of JSON types and tensors only::

    {"format": "n2n-checkpoint", "format_version": 1,
     "config": UNetConfig.to_dict(), "state_dict": {...tensors...},
     "summary": {...training summary: data, noise, epochs, losses, PSNR...},
     "resume": {...optional: optimizer, scheduler and RNG states, epoch...}}

Nothing in it is a pickled object, so a checkpoint from a stranger cannot run
code when it is loaded.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from n2n_infer.files import write_atomic
from n2n_train.config import ConfigError, UNetConfig
from n2n_train.unet import UNet

log = logging.getLogger(__name__)

FORMAT = "n2n-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, unsafe or not an n2n checkpoint."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the config, the weights and the training summary."""

    config: UNetConfig
    state_dict: dict[str, torch.Tensor]
    summary: dict[str, Any] = field(default_factory=dict)

    def build_model(self) -> UNet:
        """Return a :class:`UNet` with these weights, in eval mode, on the CPU."""
        model = UNet(self.config)
        model.load_state_dict(self.state_dict)
        return model.eval()


def save_checkpoint(
    path: str | Path,
    model: UNet,
    summary: dict[str, Any] | None = None,
    resume: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` and ``summary`` (JSON types only) to ``path`` atomically.

    ``resume`` (plain types and tensors: optimizer/scheduler ``state_dict()``s,
    RNG states) is stored for :func:`load_resume_state`; ``last.pt`` carries it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "summary": dict(summary or {}),
    }
    if resume is not None:
        payload["resume"] = resume
    write_atomic(path, lambda f: torch.save(payload, f))
    log.debug("saved checkpoint %s", path)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: the file is missing, not a torch file, contains
            pickled objects (refused by ``weights_only=True``), is not an n2n
            checkpoint, has a newer format version, or its weights do not fit
            its config. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        try:
            with open(path, "rb") as f:
                head = f.read(4)
        except OSError as err:
            raise CheckpointError(f"{path}: cannot read the checkpoint ({err})") from exc
        if not head.startswith((b"PK\x03\x04", b"\x80")):  # neither torch's zip nor a pickle
            raise CheckpointError(f"{path}: not a torch checkpoint file") from exc
        if first.startswith("Weights only load failed"):
            raise CheckpointError(
                f"{path}: holds pickled Python objects (which could run code), not only "
                "weights: refused; an n2n checkpoint holds tensors and plain values"
            ) from exc
        raise CheckpointError(f"{path}: not a torch checkpoint file ({first})") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an n2n checkpoint (no 'format': {FORMAT!r})")
    version = raw.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path}: invalid checkpoint format version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is newer than this code "
            f"understands ({FORMAT_VERSION}); upgrade n2n"
        )
    try:
        config = UNetConfig.from_dict(raw["config"], source=str(path))
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: checkpoint has no valid 'config'") from exc
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from exc
    state, summary = raw.get("state_dict"), raw.get("summary", {})
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"{path}: its 'state_dict' is not a mapping of names to tensors")
    if not isinstance(summary, dict):
        raise CheckpointError(f"{path}: its 'summary' is not a mapping")
    _check_shapes(path, config, state)  # before any real model is built from the config
    ckpt = Checkpoint(config, state, summary)
    try:
        ckpt.build_model()
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the config: {exc}") from exc
    return ckpt


def _check_shapes(path: Path, config: UNetConfig, state: dict[str, torch.Tensor]) -> None:
    """Refuse weights whose names or shapes are not the config's model's, comparing with
    a model built on the meta device (no memory): a small file whose config asks for a
    huge network is refused without allocating it.

    Raises:
        CheckpointError: names missing or unexpected, or shapes that differ.
    """
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in UNet(config).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got == expected:
        return
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    shapes = [k for k in sorted(set(got) & set(expected)) if got[k] != expected[k]]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if extra:
        parts.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} of another shape (e.g. {k}: {got[k]}, expected {expected[k]})")
    raise CheckpointError(f"{path}: weights do not match the config: {'; '.join(parts)}")


def find_checkpoint(name_or_path: str | Path) -> tuple[Path, str]:
    """A checkpoint file and the name a summary gives it, from a path or a bundled model's name.

    A bare name without a suffix (``"photo"``) that is not an existing file is a
    shipped model: its checkpoint ``<name>.pt`` beside ``<name>.onnx`` in the
    runtime's models folder (:func:`n2n_infer.registry.models_dir`); its name
    is kept. A path keeps its file name.

    Raises:
        CheckpointError: no such file, or no bundled checkpoint of that name
            (the message lists the bundled ones).
    """
    from n2n_infer.registry import models_dir

    path = Path(name_or_path)
    if path.is_file():
        return path, path.name
    if path.suffix or path.name != str(name_or_path):
        raise CheckpointError(f"{path}: checkpoint file not found")
    folder = models_dir()
    bundled = folder / f"{path.name}.pt"
    if not bundled.is_file():
        names = sorted(p.stem for p in folder.glob("*.pt"))
        raise CheckpointError(
            f"{name_or_path!r}: neither a checkpoint file nor a bundled model with a checkpoint "
            f"(bundled checkpoints in {folder.name}/: {', '.join(names) or 'none'}; the .pt "
            "files ship with a clone of the repository, not with the wheel)"
        )
    return bundled, path.name


def load_resume_state(path: str | Path) -> tuple[Checkpoint, dict[str, Any]]:
    """Read a checkpoint and the training state saved with it (to resume training).

    Raises:
        CheckpointError: as :func:`load_checkpoint`, or the file holds no
            training state (only ``last.pt`` of a run does).
    """
    ckpt = load_checkpoint(path)
    raw = torch.load(Path(path), map_location="cpu", weights_only=True)
    state = raw.get("resume")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: no training state to resume from (use the run's last.pt)")
    return ckpt, state
