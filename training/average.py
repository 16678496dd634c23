"""Weight averaging: one checkpoint whose weights are the mean of several.

Averaging the weights a run passes through late in training (its per-epoch
snapshots, ``n2n-train fit --snapshot-every``) smooths out the noise that
stochastic gradients leave in them, as stochastic weight averaging does
(Izmailov et al., 2018). Noise2Noise gradients are noisier than Noise2Clean
ones, since their targets are noisy, so they have more to gain. The model has
no batch norm statistics to re-estimate unless its config turns batch norm on;
such models are refused, because a mean of running statistics is not the
statistics of the mean model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from n2n_train.checkpoint import Checkpoint, CheckpointError

log = logging.getLogger(__name__)


def average_checkpoints(
    sources: Sequence[tuple[str | Path, Checkpoint, str]],
) -> Checkpoint:
    """The uniform mean of the weights of ``sources`` (path, checkpoint, file sha256).

    The result keeps the summary of the source trained longest (its data,
    noise and training config) and adds ``averaged``: the number of
    checkpoints and each one's file name (never its path), sha256 and epoch. Its ``best_epoch``,
    ``best_val_loss`` and ``val_psnr`` are dropped, since they were the source's, not the mean's
    (:func:`training.commands.run_average_command` measures them again).

    Raises:
        CheckpointError: fewer than two sources, different model configs,
            batch norm, or different data or noise (naming the file).
    """
    if len(sources) < 2:
        raise CheckpointError("averaging needs at least two checkpoints")
    first_path, first, _ = sources[0]
    if first.config.batch_norm:
        raise CheckpointError(
            f"{first_path}: the model has batch norm, whose running statistics cannot be "
            "averaged; weight averaging supports models without batch norm"
        )
    for path, ckpt, _ in sources[1:]:
        if ckpt.config != first.config:
            raise CheckpointError(
                f"{path}: its model {ckpt.config.to_dict()} differs from {first_path}'s "
                f"{first.config.to_dict()}; only checkpoints of one model shape can be averaged"
            )
        for key in ("noise", "mode"):
            if ckpt.summary.get(key) != first.summary.get(key):
                raise CheckpointError(
                    f"{path}: trained with {key} {ckpt.summary.get(key)!r}, but {first_path} "
                    f"with {first.summary.get(key)!r}; average checkpoints of one task"
                )
    state: dict[str, torch.Tensor] = {}
    for name, tensor in first.state_dict.items():
        if tensor.is_floating_point():
            total = torch.zeros_like(tensor, dtype=torch.float64)
            for _, ckpt, _ in sources:
                total += ckpt.state_dict[name].to(torch.float64)
            state[name] = (total / len(sources)).to(tensor.dtype)
        else:  # integer buffers (none in a UNet without batch norm): keep the first's
            state[name] = tensor.clone()
    latest = max(sources, key=lambda s: s[1].summary.get("epochs") or 0)[1]
    summary: dict[str, Any] = {
        k: v
        for k, v in latest.summary.items()
        if k not in ("val_psnr", "best_val_loss", "best_epoch", "snapshot")
    }
    summary["averaged"] = {
        "count": len(sources),
        "checkpoints": [
            {"file": Path(path).name, "sha256": sha, "epoch": ckpt.summary.get("epochs")}
            for path, ckpt, sha in sources
        ],
    }
    log.info("averaged the weights of %d checkpoints", len(sources))
    return Checkpoint(first.config, state, summary)
