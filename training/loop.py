"""The Noise2Noise training loop: MSE, keep the checkpoint with the lowest validation loss."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from training.checkpoint import save_checkpoint
from training.config import TrainConfig
from training.data import CoursePairs, PhotoPairs, ValidationSet
from training.metrics import psnr
from training.unet import UNet

log = logging.getLogger(__name__)

#: Batches used at once when evaluating, to bound memory.
EVAL_BATCH = 256


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The study's optimizers: SGD with momentum, Adam, Adagrad."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    return torch.optim.Adagrad(model.parameters(), lr=cfg.lr)


@torch.no_grad()
def predict(model: nn.Module, noisy: torch.Tensor, device: str = "cpu") -> torch.Tensor:
    """Run ``model`` on float N×3×H×W in chunks; returns float32 on the CPU."""
    model.eval()
    outs = [
        model(noisy[i : i + EVAL_BATCH].to(device)).cpu() for i in range(0, len(noisy), EVAL_BATCH)
    ]
    return torch.cat(outs)


def validate(model: nn.Module, val: ValidationSet, device: str) -> float:
    """Mean MSE between the model's output on ``val.noisy`` and ``val.target``."""
    out = predict(model, val.noisy, device)
    return float(((out - val.target) ** 2).mean())


def fit(
    model: UNet,
    data: CoursePairs | PhotoPairs,
    cfg: TrainConfig,
    out_dir: str | Path,
    device: str = "cpu",
    data_info: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``model`` on ``data`` and keep the best checkpoint by validation loss.

    Writes ``out_dir/best.pt`` (whenever the validation loss improves),
    ``out_dir/last.pt`` and ``out_dir/metrics.jsonl`` (one JSON line per epoch:
    train loss, validation loss, validation PSNR). Returns the training summary
    that is also stored in the checkpoints.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.to(device)
    opt = make_optimizer(model, cfg)
    loss_fn = nn.MSELoss()
    summary: dict[str, Any] = {
        "train_config": cfg.to_dict(),
        "data": dict(data_info or {}),
        "noise": cfg.noise,
        "best_val_loss": None,
    }
    if data.psnr_set is not None:
        summary["noisy_psnr"] = psnr(*data.psnr_set)
    metrics_path = out_dir / "metrics.jsonl"
    metrics_path.write_text("")
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        train_loss, seen = _train_epoch(
            model, _epoch_batches(data, cfg, gen), opt, loss_fn, device, epoch, progress
        )
        row: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": validate(model, data.validation, device),
            "images_per_s": seen / (time.perf_counter() - t0),
        }
        if data.psnr_set is not None:
            row["val_psnr"] = psnr(predict(model, data.psnr_set[0], device), data.psnr_set[1])
        with metrics_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        log.info("epoch %d: %s", epoch, row)
        summary["epochs"] = epoch
        if summary["best_val_loss"] is None or row["val_loss"] < summary["best_val_loss"]:
            summary.update(
                best_epoch=epoch, best_val_loss=row["val_loss"], val_psnr=row.get("val_psnr")
            )
            save_checkpoint(out_dir / "best.pt", model, summary)
        save_checkpoint(out_dir / "last.pt", model, summary)
    return summary


def _epoch_batches(
    data: CoursePairs | PhotoPairs, cfg: TrainConfig, gen: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(data, CoursePairs):
        return data.batches(cfg.batch_size, gen)
    steps = cfg.steps_per_epoch or 100
    return data.batches(cfg.batch_size, steps, gen)


def _train_epoch(
    model: nn.Module,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    opt: torch.optim.Optimizer,
    loss_fn: nn.Module,
    device: str,
    epoch: int,
    progress: bool,
) -> tuple[float, int]:
    model.train()
    total, seen = 0.0, 0
    bar = tqdm(batches, desc=f"epoch {epoch}", disable=not progress, leave=False, unit="batch")
    for inp, target in bar:
        inp, target = inp.to(device), target.to(device)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(inp), target)
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(inp)
        seen += len(inp)
        bar.set_postfix(loss=f"{float(loss.detach()):.5f}")
    return total / max(seen, 1), seen
