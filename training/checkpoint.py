"""Plain-dict checkpoints that load with ``torch.load(weights_only=True)``.

A checkpoint is a dict of JSON types and tensors only::

    {"format": "n2n-checkpoint", "format_version": 1,
     "config": UNetConfig.to_dict(), "state_dict": {...tensors...},
     "summary": {...training summary: data, noise, epochs, losses, PSNR...},
     "resume": {...optional: optimizer, scheduler and RNG states, epoch...}}

Nothing in it is a pickled object, so a checkpoint from a stranger cannot run
code when it is loaded. Nor can it make the loader allocate much more than the
file holds: every file is read by :func:`load_torch_file`, which checks the
record sizes in the zip archive's directory before torch reads a byte of them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch

from n2n_infer.files import write_atomic
from n2n_train.config import ConfigError, UNetConfig, with_z_context
from n2n_train.unet import UNet

log = logging.getLogger(__name__)

FORMAT = "n2n-checkpoint"
FORMAT_VERSION = 1


#: What :func:`load_torch_file` lets a file expand to in memory, checked in the zip archive's
#: directory before anything is loaded (torch reads each record whole into memory, whatever
#: the pickle declares). torch.save stores its records uncompressed, so each record's size is
#: its bytes in the file; n2n never writes a compressed record. Bounds:
#: - all records together: MAX_LOADED_BYTES. The shipped photo.pt holds 1.9 MB; a UNet with
#:   features 64…1024 and 2 convs per level is 126 MB of float32 weights, and a last.pt holds
#:   three times that with Adam's two moments; 2 GiB leaves room for networks larger still;
#: - a compressed record (someone re-zipped the file): it may expand MAX_COMPRESSION_RATIO
#:   times. Real weights deflate by about 1.1×; zeros by about 1000×, which is the bomb:
#:   a 1.2 MB file holding a 1 GB tensor. Records under COMPRESSION_SLACK bytes (a zero bias,
#:   the archive's small text records) are exempt, and all records together may expand
#:   MAX_COMPRESSION_RATIO times the file's size plus COMPRESSION_SLACK, so many small records
#:   cannot add up to a bomb either;
#: - the records' stored bytes together fit in the file: records that overlap in the file
#:   (another way to make a small file load large) are refused.
MAX_LOADED_BYTES = 2 * 1024**3
MAX_COMPRESSION_RATIO = 20
COMPRESSION_SLACK = 1024**2

#: The first bytes of torch.save's zip format (torch >= 1.6); older torch wrote a bare pickle.
ZIP_MAGIC = b"PK\x03\x04"


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


def with_channels(ckpt: Checkpoint, channels: int) -> Checkpoint:
    """``ckpt`` as a model of ``channels`` input and output channels (1 or 3) that
    computes, on a grey image, what ``ckpt`` computes on it copied into R, G and B.

    Colour to grey: the first convolution's weights are summed over its input
    channels (the three copies of one plane) and the output head averaged over
    its outputs (the mean of R, G and B). Grey to colour: the reverse (the
    weights divided among the inputs, the head copied to each output), which
    gives each channel the grey model's result on the mean of R, G and B. A
    starting point for fine-tuning (``n2n-train fit --init photo --channels 1``),
    not a finished model: a colour model reading a grey image copied into three
    channels sees its noise repeated and mostly leaves it.

    Raises:
        CheckpointError: ``channels`` is not 1 or 3, or the weights are not a UNet's.
    """
    cfg = ckpt.config
    if channels not in (1, 3):
        raise CheckpointError(f"channels must be 1 or 3, got {channels}")
    if cfg.in_channels == channels and cfg.out_channels == channels:
        return ckpt
    state = dict(ckpt.state_dict)
    first = next((k for k in state if k.startswith("down.0.") and k.endswith(".weight")), None)
    if first is None or "head.weight" not in state or state[first].ndim != 4:
        raise CheckpointError("--init: not a UNet's weights (no first convolution or head)")
    w_in, w_head, b_head = state[first], state["head.weight"], state["head.bias"]
    if channels == 1:
        state[first] = w_in.sum(dim=1, keepdim=True)
        state["head.weight"] = w_head.mean(dim=0, keepdim=True)
        state["head.bias"] = b_head.mean(dim=0, keepdim=True)
    else:
        state[first] = (w_in.mean(dim=1, keepdim=True) / 3).expand(-1, 3, -1, -1).contiguous()
        state["head.weight"] = w_head.mean(dim=0, keepdim=True).expand(3, -1, -1, -1).contiguous()
        state["head.bias"] = b_head.mean(dim=0, keepdim=True).expand(3).contiguous()
    config = dataclasses.replace(cfg, in_channels=channels, out_channels=channels)
    return Checkpoint(config, state, dict(ckpt.summary))


def widened_to_context(ckpt: Checkpoint, k: int) -> Checkpoint:
    """A grey (1-channel) ``ckpt`` as a z-context model of ``k`` (``2k + 1`` planes in,
    one out) that computes on a context exactly what ``ckpt`` computes on its centre
    plane: the first convolution's weights go to the centre channel (``k``), zeros to
    the others; every other weight is kept. A colour checkpoint is first made grey
    (:func:`with_channels`). The starting point of ``n2n-train fit --z-context K
    --init grey``.

    Raises:
        CheckpointError: ``k`` outside 1..4, a checkpoint that already has a z-context
            (of another K), or weights that are not a UNet's.
    """
    cfg = ckpt.config
    if cfg.z_context == k:
        return ckpt
    if cfg.z_context:
        raise CheckpointError(
            f"--init: the checkpoint has a z-context of {cfg.z_context}, not {k}; start from "
            "a grey model or a z-context checkpoint of the same K"
        )
    grey = with_channels(ckpt, 1)
    try:
        config = with_z_context(grey.config, k)
    except ValueError as exc:
        raise CheckpointError(f"--z-context {k}: {exc}") from exc
    state = dict(grey.state_dict)
    first = next((n for n in state if n.startswith("down.0.") and n.endswith(".weight")), None)
    if first is None or state[first].ndim != 4:
        raise CheckpointError("--init: not a UNet's weights (no first convolution)")
    w = state[first]
    wide = torch.zeros(w.shape[0], config.in_channels, *w.shape[2:], dtype=w.dtype)
    wide[:, k : k + 1] = w
    state[first] = wide
    return Checkpoint(config, state, dict(grey.summary))


def deepened(ckpt: Checkpoint, features: tuple[int, ...], seed: int = 0) -> Checkpoint:
    """``ckpt`` grown by levels at the bottom of the UNet (``features`` extends its
    features), computing exactly what ``ckpt`` computes: a starting point for training a
    deeper model, with a wider view, from a trained one (``n2n-train fit --init grey
    --features 32,64,128,256``).

    Each added level's encoder block starts from a fresh initialisation (``seed``); the
    decoder block that joins it to the level above starts as the identity on that level's
    features and zero on the new level's, so the new level adds nothing until training
    moves those weights. Exact because the identity 3×3 convolution is followed by a ReLU
    and reads ReLU outputs, which are never negative: hence only ReLU models without batch
    norm can be deepened.

    Raises:
        CheckpointError: ``features`` does not extend the checkpoint's, the model uses
            batch norm or a leaky ReLU, or the weights are not the config's UNet's.
    """
    cfg = ckpt.config
    old = tuple(cfg.features)
    if tuple(features[: len(old)]) != old or len(features) <= len(old):
        raise CheckpointError(
            f"--features {','.join(map(str, features))}: to start from --init, whose features "
            f"are {','.join(map(str, old))}, give those and then the levels to add"
        )
    if cfg.batch_norm or cfg.activation != "relu":
        raise CheckpointError(
            "--init: only a ReLU model without batch norm can be given more levels (an "
            "identity block must leave its features unchanged)"
        )
    try:
        UNet(cfg).load_state_dict(ckpt.state_dict)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"--init: the weights are not the config's UNet's: {exc}") from exc
    state = dict(ckpt.state_dict)
    for level in range(len(old), len(features)):
        try:
            config = dataclasses.replace(cfg, features=tuple(features[: level + 1]))
        except ValueError as exc:
            raise CheckpointError(f"--features: {exc}") from exc
        state = _one_level_deeper(state, cfg, config, seed + level)
        cfg = config
    return Checkpoint(cfg, state, dict(ckpt.summary))


def _one_level_deeper(
    state: dict[str, torch.Tensor], old: UNetConfig, new: UNetConfig, seed: int
) -> dict[str, torch.Tensor]:
    """The state of ``new`` (``old`` with one more level) that computes what ``state`` does."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = UNet(new)
    deep = len(old.features)  # the index of the added level's encoder block
    out = {k: v for k, v in fresh.state_dict().items() if k.startswith(f"down.{deep}.")}
    for key, value in state.items():
        part, _, rest = key.partition(".")
        if part in ("up", "up_blocks"):  # the decoder moves one place down the list
            index, _, tail = rest.partition(".")
            out[f"{part}.{int(index) + 1}.{tail}"] = value
        else:
            out[key] = value
    for key, value in fresh.state_dict().items():  # the new upsampler's weights, if any
        if key.startswith("up.0."):
            out[key] = value
    skip = old.features[-1]
    joined = new.features[-1]  # the upsampled new level comes first in the concatenation
    convs = [m for m in fresh.up_blocks[0] if isinstance(m, torch.nn.Conv2d)]
    for i, conv in enumerate(convs):
        weight = torch.zeros_like(conv.weight)
        first = joined if i == 0 else 0
        for c in range(skip):
            weight[c, first + c, 1, 1] = 1.0
        name = next(n for n, m in fresh.up_blocks[0].named_children() if m is conv)
        out[f"up_blocks.0.{name}.weight"] = weight
        out[f"up_blocks.0.{name}.bias"] = torch.zeros_like(conv.bias)
    return out


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


def load_torch_file(path: str | Path, limit: int = MAX_LOADED_BYTES) -> Any:
    """``torch.load(path, weights_only=True)`` of a zip-format torch file, after checking
    what its records would take in memory (see :data:`MAX_LOADED_BYTES`).

    The file is opened once: the archive that was checked is the one torch reads.

    Raises:
        CheckpointError: the file is missing or unreadable; is not in torch's zip format
            (a legacy torch file or a bare pickle, whose sizes cannot be checked before
            loading); its records would take more than ``limit`` bytes, are compressed more
            than :data:`MAX_COMPRESSION_RATIO` times, or overlap; or it holds pickled
            Python objects. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if not head.startswith(ZIP_MAGIC):
                raise CheckpointError(_not_zip(path, head))
            f.seek(0)
            check_archive(path, f, limit)
            f.seek(0)
            return _torch_load(path, f)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({exc})") from exc


def check_archive(path: str | Path, f: IO[bytes], limit: int = MAX_LOADED_BYTES) -> None:
    """Refuse a torch zip archive ``f`` (read from ``path``) that would expand in memory
    beyond the bounds of :data:`MAX_LOADED_BYTES`, reading only its directory.

    Raises:
        CheckpointError: not a readable zip archive, or a bound is exceeded.
    """
    size = os.fstat(f.fileno()).st_size
    try:
        with zipfile.ZipFile(f) as archive:
            records = archive.infolist()
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        ValueError,
        EOFError,
        NotImplementedError,
    ) as exc:
        raise CheckpointError(f"{path}: not a readable zip archive ({exc}); truncated?") from exc
    stored = sum(r.compress_size for r in records)
    if stored > size:
        raise CheckpointError(
            f"{path}: its zip directory lists {stored} bytes of records in a file of {size} "
            "bytes (records that overlap): refused"
        )
    for r in records:
        if r.compress_type == zipfile.ZIP_STORED and r.file_size != r.compress_size:
            raise CheckpointError(
                f"{path}: record {r.filename!r} is stored uncompressed but lists "
                f"{r.file_size} bytes for {r.compress_size} in the file: refused"
            )
        ratio = r.file_size / max(r.compress_size, 1)
        if r.file_size > COMPRESSION_SLACK and ratio > MAX_COMPRESSION_RATIO:
            raise CheckpointError(
                f"{path}: record {r.filename!r} expands from {_size(r.compress_size)} to "
                f"{_size(r.file_size)} ({ratio:.0f}×) when loaded; expected records stored "
                f"as torch.save writes them (uncompressed) or compressed at most "
                f"{MAX_COMPRESSION_RATIO}×: refused"
            )
    total = sum(r.file_size for r in records)
    if total > limit:
        raise CheckpointError(
            f"{path}: its records hold {_size(total)} once loaded, more than the "
            f"{_size(limit)} a checkpoint or data file may take: refused"
        )
    if total > MAX_COMPRESSION_RATIO * size + COMPRESSION_SLACK:
        raise CheckpointError(
            f"{path}: its records expand from a {_size(size)} file to {_size(total)} when "
            f"loaded, more than {MAX_COMPRESSION_RATIO}× (torch.save stores them "
            "uncompressed): refused"
        )


#: What torch.load raises for a corrupt file (a damaged pickle can fail in any of these).
_LOAD_ERRORS = (
    pickle.UnpicklingError,
    RuntimeError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    OverflowError,
)


def _torch_load(path: Path, f: IO[bytes]) -> Any:
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except _LOAD_ERRORS as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if first.startswith("Weights only load failed"):
            raise CheckpointError(
                f"{path}: holds pickled Python objects (which could run code), not only "
                "weights: refused; an n2n checkpoint holds tensors and plain values"
            ) from exc
        raise CheckpointError(f"{path}: not a torch checkpoint file ({first})") from exc


def _not_zip(path: Path, head: bytes) -> str:
    if head.startswith(b"\x80"):  # a pickle: torch's legacy format (before 1.6), or bare
        return (
            f"{path}: a legacy (non-zip) torch file or a bare pickle, expected torch's zip "
            "format (torch.save since torch 1.6): refused, since its sizes cannot be checked "
            "before loading; load it where you trust it and save it again with torch.save"
        )
    return f"{path}: not a torch checkpoint file (expected a zip archive, found {head!r}...)"


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: the file is missing, not a zip-format torch file, would
            expand in memory beyond the bounds of :func:`load_torch_file`, contains
            pickled objects (refused by ``weights_only=True``), is not an n2n
            checkpoint, has a newer format version, or its weights do not fit
            its config. The message names the file.
    """
    return _from_raw(Path(path), load_torch_file(path))


def _from_raw(path: Path, raw: Any) -> Checkpoint:
    """The :class:`Checkpoint` in ``raw`` (what :func:`load_torch_file` read from ``path``)."""
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
    runtime's models folder (:func:`n2n_infer.registry.models_dir`), which the
    wheel installs too; its name is kept. A path keeps its file name.

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
            f"(bundled checkpoints in {folder}: {', '.join(names) or 'none'})"
        )
    return bundled, path.name


def load_resume_state(path: str | Path) -> tuple[Checkpoint, dict[str, Any]]:
    """Read a checkpoint and the training state saved with it (to resume training).

    Raises:
        CheckpointError: as :func:`load_checkpoint`, or the file holds no
            training state (only ``last.pt`` of a run does).
    """
    raw = load_torch_file(path)
    ckpt = _from_raw(Path(path), raw)
    state = raw.get("resume")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: no training state to resume from (use the run's last.pt)")
    return ckpt, state
