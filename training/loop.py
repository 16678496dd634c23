"""The training loop: keep the checkpoint with the lowest validation loss; resumable.

One epoch is one pass over course-format pairs, or ``steps_per_epoch`` freshly
noised photo batches. Every epoch appends a JSON line to ``metrics.jsonl``
(train and validation loss, validation PSNR, learning rate, images/s) and
redraws ``loss.png``; ``last.pt`` carries the optimizer and random-generator
states so that ``fit(..., resume=True)`` continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from n2n_train.augment import blur_one_side, random_dihedral, swap_half
from n2n_train.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_resume_state,
    save_checkpoint,
)
from n2n_train.config import ConfigError, TrainConfig, UNetConfig
from n2n_train.data import CoursePairs, PhotoPairs, ValidationSet
from n2n_train.distributed import (
    SINGLE,
    Dist,
    DistributedError,
    check_in_sync,
    order_seed,
    rank_seed,
    wrap,
)
from n2n_train.losses import learning_rate, training_loss, validation_loss
from n2n_train.metrics import psnr
from n2n_train.neighbor import neighbor2neighbor_loss, neighbor_validation_loss, subsample
from n2n_train.owndata import NoisyScenes
from n2n_train.plots import plot_loss_curves, read_metrics
from n2n_train.unet import UNet

log = logging.getLogger(__name__)

#: Batches used at once when evaluating, to bound memory.
EVAL_BATCH = 256

#: What ``fit`` trains on: course tensors, clean photos noised on the fly, or own noisy scenes.
TrainingData = CoursePairs | PhotoPairs | NoisyScenes


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The study's optimizers: SGD with momentum, Adam (betas 0.9/0.999), Adagrad."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    return torch.optim.Adagrad(model.parameters(), lr=cfg.lr)


#: ``--precision auto`` takes bf16 on a CPU only when its training steps are at least this
#: much faster than fp32's (a CPU without native bf16 runs them about ten times slower).
BF16_MIN_GAIN = 1.1


def fastest_precision(
    config: UNetConfig,
    patch_size: int,
    batch_size: int,
    device: str = "cpu",
    channels_last: bool = False,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[str, dict[str, float]]:
    """``--precision auto``: ``bf16`` or ``fp32``, whichever trains ``config`` faster here,
    and the seconds per step measured (empty on CUDA).

    On CUDA, bf16 where the GPU supports it. On a CPU, by measuring: a few training
    steps of a fresh model of ``config`` on random ``batch_size`` (at most 4) patches,
    in fp32 and under bf16 autocast; bf16 only when it is :data:`BF16_MIN_GAIN` times
    faster. Each is the fastest of at least two steps (more while they add up to under
    half a second). A first bf16 step over three times as slow as fp32's ends the
    measuring (on a CPU without native bf16 a step takes ten times as long).
    """
    if torch.device(device).type == "cuda":
        return ("bf16" if torch.cuda.is_bf16_supported() else "fp32"), {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = UNet(config).train()
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model = model.to(memory_format=fmt)
        x = torch.rand(min(batch_size, 4), config.in_channels, patch_size, patch_size)
        x = x.to(memory_format=fmt)
        opt = torch.optim.SGD(model.parameters(), lr=1e-6)

        def step(precision: str) -> float:
            start = clock()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = model(x).float().square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return clock() - start

        def fastest(precision: str) -> float:
            times = [step(precision), step(precision)]
            while sum(times) < 0.5 and len(times) < 20:  # small steps: more of them
                times.append(step(precision))
            return min(times)

        step("fp32")  # warm-up: allocations, kernel choice
        seconds = {"fp32": fastest("fp32")}
        first = step("bf16")  # warm-up too, unless it already says enough
        too_slow = first > 3 * seconds["fp32"]
        seconds["bf16"] = first if too_slow else fastest("bf16")
    faster = seconds["bf16"] * BF16_MIN_GAIN <= seconds["fp32"]
    return ("bf16" if faster else "fp32"), seconds


@torch.no_grad()
def predict(model: nn.Module, noisy: torch.Tensor, device: str = "cpu") -> torch.Tensor:
    """Run ``model`` on float N×3×H×W in chunks (eval mode, fp32); float32 on the CPU."""
    model.eval()
    outs = [
        model(noisy[i : i + EVAL_BATCH].to(device)).float().cpu()
        for i in range(0, len(noisy), EVAL_BATCH)
    ]
    return torch.cat(outs)


def validate(
    model: nn.Module, val: ValidationSet, device: str, cfg: TrainConfig, dist: Dist = SINGLE
) -> float:
    """Validation loss on ``val``: :func:`training.losses.validation_loss`, or for
    Neighbor2Neighbor sub-images (``val.full``) the full loss of
    :func:`training.neighbor.neighbor_validation_loss` at the regulariser's final weight.

    In a distributed run each rank predicts its share and the sums are
    reduced: every rank returns the same value.
    """
    if not dist.active:
        return _share_loss(model, val, device, cfg, 0, len(val.noisy))[0]
    start, stop = dist.share(len(val.noisy))
    weight = float(val.target[start:stop].numel())
    part = 0.0
    if stop > start:
        part = _share_loss(model, val, device, cfg, start, stop)[0] * weight
    total, count = dist.sum([part, weight])
    return total / count


def validation_figures(
    model: nn.Module, data: TrainingData, device: str, cfg: TrainConfig, dist: Dist = SINGLE
) -> tuple[float, float | None]:
    """Validation loss (as :func:`validate`) and, where ``data`` has clean references,
    mean per-image PSNR.

    When the PSNR set's noisy images are the validation inputs (photo patches),
    one prediction serves both. In a distributed run each rank predicts its
    share and the sums are reduced: every rank returns the same figures.
    """
    val, pset = data.validation, data.psnr_set
    if not dist.active:
        loss, pred = _share_loss(model, val, device, cfg, 0, len(val.noisy))
        if pset is None:
            return loss, None
        mine = pred if pset[0] is val.noisy else predict(model, pset[0], device)
        return loss, psnr(mine, pset[1])
    sums = [0.0, 0.0, 0.0, 0.0]  # loss × values, values, PSNR × images, images
    start, stop = dist.share(len(val.noisy))
    if stop > start:
        loss, pred = _share_loss(model, val, device, cfg, start, stop)
        weight = val.target[start:stop].numel()
        sums[:2] = loss * weight, weight
    if pset is not None:
        a, b = dist.share(len(pset[0]))  # the same share when it is the same tensor
        if b > a:
            mine = pred if pset[0] is val.noisy else predict(model, pset[0][a:b], device)
            sums[2:] = psnr(mine, pset[1][a:b]) * (b - a), b - a
    totals = dist.sum(sums)
    return totals[0] / totals[1], (totals[2] / totals[3] if pset is not None else None)


def _share_loss(
    model: nn.Module, val: ValidationSet, device: str, cfg: TrainConfig, start: int, stop: int
) -> tuple[float, torch.Tensor]:
    """The validation loss of ``val[start:stop]`` and the predictions of its inputs."""
    pred = predict(model, val.noisy[start:stop], device)
    target = val.target[start:stop]
    if val.full is None or val.index is None:
        return validation_loss(pred, target, cfg), pred
    full = predict(model, val.full[start:stop], device)
    first, second = (i[start:stop] for i in val.index)
    expected = subsample(full, first) - subsample(full, second)
    return neighbor_validation_loss(pred, target, expected, cfg.regulariser), pred


def batch_seed(cfg: TrainConfig) -> int:
    """Seed of the batches' random stream: ``cfg.seed``, mixed with ``cfg.init`` if set."""
    if not cfg.init:
        return cfg.seed
    return (cfg.seed ^ int(cfg.init[:15], 16)) & (2**63 - 1)


def steps_per_epoch(data: TrainingData, cfg: TrainConfig, world: int = 1) -> int:
    """Optimizer steps in one epoch (with ``world`` ranks sharing each batch)."""
    if isinstance(data, CoursePairs):
        return data.epoch_batches(cfg.batch_size, world)
    return cfg.steps_per_epoch or 100


def fit(
    model: UNet,
    data: TrainingData,
    cfg: TrainConfig,
    out_dir: str | Path,
    device: str = "cpu",
    data_info: dict[str, Any] | None = None,
    progress: bool = True,
    resume: bool = False,
    on_start: Callable[[], None] | None = None,
    init: Checkpoint | None = None,
    snapshot_every: int = 0,
    init_name: str = "",
    dist: Dist = SINGLE,
    check_sync: int = 0,
) -> dict[str, Any]:
    """Train ``model`` on ``data`` and keep the best checkpoint by validation loss.

    Writes ``out_dir/best.pt`` (whenever the validation loss improves),
    ``out_dir/last.pt`` (with the state needed to resume), ``metrics.jsonl``
    and ``loss.png``. With ``resume``, continues from ``out_dir/last.pt``
    (``cfg`` may raise ``epochs``; anything else, the data included, must
    match). ``on_start`` is called (on rank 0) once the run is set up and any
    resume accepted, before the first epoch. With ``init``
    (fine-tuning; ``cfg.init`` is its file's sha256), a fresh run starts from
    those weights instead of random ones, with a new optimizer and schedule;
    its summary records where it started (``init_name``: a bundled model's
    name or the file's name) and that model's validation loss. With
    ``snapshot_every`` N > 0, the weights after every Nth epoch also go to
    ``out_dir/snapshots/epoch-NNN.pt`` (for :mod:`training.average`; their
    summary's ``snapshot`` is that epoch's metrics row). With ``cfg.minutes``
    > 0, training stops when that time is spent (even within an epoch, which
    is then validated and counted) and the summary's ``stopped`` says so.

    With ``dist`` of several processes (:mod:`training.distributed`), this
    process trains its rank's share of every batch in DistributedDataParallel
    (``cfg.batch_size`` is the global batch); only rank 0 writes files or
    shows progress, rank 0 alone reads ``last.pt`` to resume, and every rank
    returns the same summary. With ``check_sync`` N > 0 the ranks compare
    their weights bit for bit every N steps. Returns the training summary that
    is also stored in the checkpoints.

    Raises:
        CheckpointError: ``resume`` without a usable ``last.pt``, with a
            different training config or number of processes; ``init`` of
            another model shape.
        DistributedError: a global batch smaller than the number of processes.
        DesyncError: ranks whose weights differ (``check_sync``).
    """
    out_dir = Path(out_dir)
    if getattr(data, "z_context", 0) and cfg.swap:
        raise ConfigError(
            "swap: a z-context input (2K+1 planes) cannot change places with its one-plane "
            "target; its two captures already take the roles at random"
        )
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.batch_size < dist.world:
        raise DistributedError(
            f"--batch-size {cfg.batch_size} is the global batch: it must be at least the "
            f"number of processes ({dist.world})"
        )
    torch.manual_seed(rank_seed(cfg.seed, dist.rank))
    gen = torch.Generator().manual_seed(rank_seed(batch_seed(cfg), dist.rank))
    order = torch.Generator().manual_seed(order_seed(batch_seed(cfg))) if dist.active else gen
    if init is not None:
        if not cfg.init:
            raise ValueError("fit(init=...) needs cfg.init, the checkpoint file's sha256")
        if init.config != model.config:
            raise CheckpointError(
                f"--init: the checkpoint's model {init.config.to_dict()} differs from the "
                f"requested {model.config.to_dict()}"
            )
        if not resume:
            model.load_state_dict(init.state_dict)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    summary = _new_summary(data, cfg, data_info, dist)
    if init is not None:
        summary["init"] = _init_record(init, cfg, init_name)
        if not resume:  # where the fine-tune starts, on this run's validation set
            summary["init"]["val_loss"] = validate(model, data.validation, device, cfg, dist)
    metrics_path = out_dir / "metrics.jsonl"
    start = 1
    if resume:
        start = _restore(out_dir / "last.pt", model, opt, (gen, order), cfg, summary, dist)
        if dist.is_main:
            rows = [r for r in read_metrics(metrics_path) if r["epoch"] < start]
            metrics_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif dist.is_main:
        metrics_path.write_text("")
    if on_start is not None and dist.is_main:
        on_start()
    trainer = _Trainer(wrap(model, dist), model, opt, gen, order, device, dist, check_sync)
    budget = _Budget(60.0 * cfg.minutes)
    per_epoch = steps_per_epoch(data, cfg, dist.world)
    bar = _Progress(progress and dist.is_main, cfg, per_epoch, start, budget)
    try:
        _epochs(trainer, data, cfg, start, budget, bar, summary, out_dir, snapshot_every)
    finally:
        bar.close()
    return summary


def _epochs(
    trainer: _Trainer,
    data: TrainingData,
    cfg: TrainConfig,
    start: int,
    budget: _Budget,
    bar: _Progress,
    summary: dict[str, Any],
    out_dir: Path,
    snapshot_every: int,
) -> None:
    """Train epochs ``start`` to ``cfg.epochs`` (or until ``budget`` is spent), updating
    ``summary`` and writing metrics, plots and checkpoints (rank 0)."""
    dist, model, check_sync = trainer.dist, trainer.model, trainer.check_sync
    metrics_path = out_dir / "metrics.jsonl"
    for epoch in range(start, cfg.epochs + 1):
        row = _run_epoch(trainer, data, cfg, epoch, bar, budget)
        summary["epochs"] = epoch
        if check_sync:
            summary["distributed"]["sync_checks"] += trainer.checks
            trainer.checks = 0
        if dist.is_main:
            with metrics_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            plot_loss_curves(read_metrics(metrics_path), out_dir / "loss.png", title=out_dir.name)
            log.info("epoch %d: %s", epoch, row)
        if budget.spent:
            log.info("time budget of %g minutes spent in epoch %d", cfg.minutes, epoch)
            summary["stopped"] = f"time budget of {cfg.minutes:g} minutes, in epoch {epoch}"
        if summary["best_val_loss"] is None or row["val_loss"] < summary["best_val_loss"]:
            summary.update(
                best_epoch=epoch, best_val_loss=row["val_loss"], val_psnr=row.get("val_psnr")
            )
            if dist.is_main:
                save_checkpoint(out_dir / "best.pt", model, summary)
        state = _resume_state(epoch, trainer)  # collective: every rank takes part
        if dist.is_main:
            save_checkpoint(out_dir / "last.pt", model, summary, resume=state)
            if snapshot_every > 0 and epoch % snapshot_every == 0:
                snap = out_dir / "snapshots" / f"epoch-{epoch:03d}.pt"
                save_checkpoint(snap, model, dict(summary, snapshot=row))
        if budget.spent:
            break


@dataclass
class _Trainer:
    """What a training step needs: the model as trained (DDP-wrapped in a distributed
    run) and as saved, the optimizer, the random streams and this process's rank."""

    train_model: nn.Module
    model: nn.Module
    opt: torch.optim.Optimizer
    gen: torch.Generator
    order: torch.Generator
    device: str
    dist: Dist
    check_sync: int
    checks: int = 0


def _resume_state(epoch: int, trainer: _Trainer) -> dict[str, Any]:
    """What ``last.pt`` needs to continue after ``epoch``; with several processes,
    every rank's random states (gathered: all ranks must call this)."""
    state: dict[str, Any] = {
        "epoch": epoch,
        "optimizer": trainer.opt.state_dict(),
        "generator": trainer.gen.get_state(),
        "torch_rng": torch.get_rng_state(),
    }
    dist = trainer.dist
    if dist.active:
        ranks = dist.gather({"generator": state["generator"], "torch_rng": state["torch_rng"]})
        state.update(processes=dist.world, order_generator=trainer.order.get_state(), ranks=ranks)
    return state


def _new_summary(
    data: TrainingData, cfg: TrainConfig, data_info: dict[str, Any] | None, dist: Dist
) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "train_config": cfg.to_dict(),
        "data": dict(data_info or {}),
        "noise": (data_info or {}).get("noise", cfg.noise),
        "mode": _mode(data, cfg),
        "best_val_loss": None,
    }
    if dist.active:
        summary["distributed"] = {
            "processes": dist.world,
            "backend": dist.backend,
            "sync_checks": 0,
        }
    if data.psnr_set is not None:
        summary["noisy_psnr"] = psnr(*data.psnr_set)
    return summary


def _init_record(init: Checkpoint, cfg: TrainConfig, name: str) -> dict[str, Any]:
    """What a fine-tune's summary says of the checkpoint it started from."""
    record: dict[str, Any] = {
        "sha256": cfg.init,
        "epochs": init.summary.get("epochs"),
        "best_epoch": init.summary.get("best_epoch"),
        "val_psnr": init.summary.get("val_psnr"),
    }
    if init.summary.get("averaged"):  # n2n-train average: which epochs it is the mean of
        averaged = init.summary["averaged"]
        record["averaged"] = {
            "count": averaged.get("count"),
            "epochs": [c.get("epoch") for c in averaged.get("checkpoints", [])],
        }
    if name:
        record["name"] = name
    return record


def _mode(data: TrainingData, cfg: TrainConfig) -> str:
    if isinstance(data, NoisyScenes) and data.subsampled:
        return "neighbor2neighbor"
    return "noise2clean" if cfg.target == "clean" else "noise2noise"


def _restore(
    path: Path,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    gens: tuple[torch.Generator, torch.Generator],
    cfg: TrainConfig,
    summary: dict[str, Any],
    dist: Dist,
) -> int:
    """Load weights, optimizer and RNG states from ``path``; return the next epoch.

    With several processes rank 0 reads the file and sends what it holds to
    the others (no shared file system is assumed); each rank takes its own
    random states from it.
    """
    loaded, error = None, None
    if dist.is_main:
        try:
            loaded = _read_resume(path, model, cfg, dist, summary)
        except CheckpointError as exc:
            error = str(exc)
    error = dist.broadcast(error)
    if error is not None:
        raise CheckpointError(error)
    ckpt, state = dist.broadcast(loaded)
    model.load_state_dict(ckpt.state_dict)
    opt.load_state_dict(state["optimizer"])
    mine = state["ranks"][dist.rank] if dist.active else state
    gens[0].set_state(mine["generator"])
    torch.set_rng_state(mine["torch_rng"])
    if dist.active:
        gens[1].set_state(state["order_generator"])
    summary.update({k: v for k, v in ckpt.summary.items() if k != "train_config"})
    log.info("resuming %s after epoch %d", path, state["epoch"])
    return int(state["epoch"]) + 1


def _read_resume(
    path: Path, model: nn.Module, cfg: TrainConfig, dist: Dist, summary: dict[str, Any]
) -> tuple[Checkpoint, dict[str, Any]]:
    """``path``'s checkpoint and training state, checked against this run.

    Raises:
        CheckpointError: unreadable, or another training config, model, training
            data (as the summaries record it: source, names, checksums, counts)
            or number of processes.
    """
    ckpt, state = load_resume_state(path)
    saved = {k: v for k, v in dict(ckpt.summary.get("data") or {}).items() if k != "init"}
    now = {k: v for k, v in summary["data"].items() if k != "init"}
    if saved and saved != now:
        diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        shown = {k: saved.get(k) for k in diff}
        raise CheckpointError(
            f"{path}: cannot resume: it was trained on other data ({shown}; now "
            f"{ {k: now.get(k) for k in diff} }): resume with the same data, or start a "
            "new run (--init to start from its weights)"
        )
    # read through from_dict, so that a run saved by an older TrainConfig version
    # (without the fields added since, which take their defaults) still resumes
    try:
        raw = dict(ckpt.summary.get("train_config", {}), epochs=cfg.epochs)
        saved = TrainConfig.from_dict(raw, source=str(path)).to_dict()
    except ConfigError as exc:
        raise CheckpointError(f"{path}: cannot resume: {exc}") from exc
    if saved != cfg.to_dict():
        diff = sorted(k for k, v in cfg.to_dict().items() if saved.get(k) != v)
        raise CheckpointError(f"{path}: cannot resume, the training config differs in {diff}")
    if ckpt.config != model.config:
        raise CheckpointError(f"{path}: cannot resume, the model config differs")
    processes = int(state.get("processes", 1))
    if processes != dist.world:
        raise CheckpointError(
            f"{path}: cannot resume: saved by a run of {processes} process(es), this run "
            f"has {dist.world}; the random streams differ, so resume with --nproc {processes}"
            if processes > 1
            else f"{path}: cannot resume: saved by a run of 1 process, this run has "
            f"{dist.world}; resume it without --nproc"
        )
    return ckpt, state


def _run_epoch(
    trainer: _Trainer,
    data: TrainingData,
    cfg: TrainConfig,
    epoch: int,
    bar: _Progress,
    budget: _Budget | None = None,
) -> dict[str, Any]:
    """Train one epoch (or until ``budget`` is spent) and validate; returns its metrics row
    (the same on every rank: losses and counts are summed over ranks)."""
    t0 = time.perf_counter()
    dist, model, device = trainer.dist, trainer.model, trainer.device
    per_epoch = steps_per_epoch(data, cfg, dist.world)
    steps = _Steps((epoch - 1) * per_epoch, cfg.epochs * per_epoch, budget or _Budget(0.0))
    loss_sum, seen = _train_epoch(trainer, data, cfg, epoch, steps, bar)
    loss_sum, seen = dist.sum([loss_sum, seen])
    train_s = dist.max([time.perf_counter() - t0])[0]
    val_loss, val_psnr = validation_figures(model, data, device, cfg, dist)
    row: dict[str, Any] = {
        "epoch": epoch,
        "train_loss": loss_sum / max(seen, 1),
        "val_loss": val_loss,
        "lr": trainer.opt.param_groups[0]["lr"],
        "images_per_s": seen / train_s,
        "train_seconds": train_s,
    }
    if val_psnr is not None:
        row["val_psnr"] = val_psnr
    row["seconds"] = time.perf_counter() - t0
    return row


class _Progress:
    """The run's one progress bar (rank 0, where asked): the steps of every epoch out of
    ``epochs × steps per epoch``, or under a time budget (``cfg.minutes``) the budget's
    seconds; either way tqdm shows the time spent and an estimate of the time left.
    Its description is the epoch (``epoch 3/10``), its postfix the last batch's loss."""

    def __init__(
        self, enabled: bool, cfg: TrainConfig, per_epoch: int, start: int, budget: _Budget
    ) -> None:
        self.epochs, self.budget = cfg.epochs, budget
        if budget.seconds:
            total, initial, unit = budget.seconds, 0.0, "s"
            fmt = (
                "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s of the time budget "
                "[{elapsed}<{remaining}{postfix}]"
            )
        else:
            total, initial = cfg.epochs * per_epoch, (start - 1) * per_epoch
            unit, fmt = "step", None
        self.bar = tqdm(
            total=total,
            initial=initial,
            unit=unit,
            bar_format=fmt,
            disable=not enabled,
            desc=f"epoch {start}/{cfg.epochs}",
            dynamic_ncols=True,
        )

    def step(self, epoch: int, loss: float) -> None:
        """One training step of ``epoch`` done, with this loss."""
        if self.bar.disable:
            return
        self.bar.set_description_str(f"epoch {epoch}/{self.epochs}", refresh=False)
        self.bar.set_postfix_str(f"loss={loss:.5f}", refresh=False)
        if self.budget.seconds:
            self._spend()
        else:
            self.bar.update(1)

    def _spend(self) -> None:
        """Bring a time bar to the seconds spent so far."""
        spent = min(time.perf_counter() - self.budget.start, self.budget.seconds)
        self.bar.update(max(spent - self.bar.n, 0.0))

    def close(self) -> None:
        """End the bar (a time bar at the seconds spent, validation included)."""
        if self.budget.seconds and not self.bar.disable:
            self._spend()
        self.bar.close()


class _Budget:
    """A run's time budget in seconds (0: none), counted from its creation."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start, self.spent = seconds, time.perf_counter(), False

    def fraction(self) -> float:
        """Share of the budget used so far (0 without a budget)."""
        if not self.seconds:
            return 0.0
        return (time.perf_counter() - self.start) / self.seconds

    def check(self, dist: Dist = SINGLE) -> bool:
        """Whether the budget is spent (and remember it); with several processes,
        spent on one rank is spent on all (they must stop at the same step)."""
        spent = self.spent or self.fraction() >= 1.0
        if dist.active and self.seconds:
            spent = dist.max([float(spent)])[0] > 0
        self.spent = spent
        return spent


@dataclass(frozen=True)
class _Steps:
    """Where an epoch's steps lie in the run, for schedules and the time budget."""

    first: int
    total: int
    budget: _Budget

    def progress(self, i: int) -> float:
        """Training progress in [0, 1] at the epoch's step ``i``: by steps, or by time
        when the budget would run out first."""
        return min(max((self.first + i) / max(self.total, 1), self.budget.fraction()), 1.0)


def _epoch_batches(
    data: TrainingData, cfg: TrainConfig, trainer: _Trainer
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's (input, target) batches of one epoch."""
    dist = trainer.dist
    if isinstance(data, CoursePairs):
        return data.batches(cfg.batch_size, trainer.gen, trainer.order, dist)
    start, stop = dist.share(cfg.batch_size)
    return data.batches(stop - start, steps_per_epoch(data, cfg, dist.world), trainer.gen)


def _global_batch(data: TrainingData, cfg: TrainConfig, i: int) -> int:
    """Pairs in the epoch's ``i``-th batch over all ranks."""
    if isinstance(data, CoursePairs):
        return min(cfg.batch_size, len(data) - i * cfg.batch_size)
    return cfg.batch_size


def augment(
    inp: torch.Tensor, target: torch.Tensor, cfg: TrainConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the augmentations that ``cfg`` turns on to one (input, target) batch."""
    if cfg.swap:
        inp, target = swap_half(inp, target, gen)
    if cfg.dihedral:
        inp, target = random_dihedral(inp, target, gen)
    if cfg.blur_prob > 0:
        inp, target = blur_one_side(inp, target, cfg.blur_prob, gen, cfg.target == "clean")
    return inp, target


def _train_epoch(
    trainer: _Trainer,
    data: TrainingData,
    cfg: TrainConfig,
    epoch: int,
    steps: _Steps,
    bar: _Progress,
) -> tuple[float, int]:
    """Train this rank's share of one epoch; returns its loss sum (per pair) and pairs seen.

    In a distributed run each rank's loss is weighted by its share of the
    global batch, so that DDP's gradient average is the gradient of the
    global batch's mean loss.
    """
    model, opt, gen, dist = trainer.train_model, trainer.opt, trainer.gen, trainer.dist
    device = trainer.device
    subsampled = isinstance(data, NoisyScenes) and data.subsampled
    model.train()
    total, seen = 0.0, 0
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    dev_type = torch.device(device).type
    batches = _epoch_batches(data, cfg, trainer)
    for i, (inp_cpu, target_cpu) in enumerate(batches):
        if steps.budget.check(dist):
            break
        inp, target = augment(inp_cpu, target_cpu, cfg, gen)
        inp = inp.to(device, memory_format=fmt)
        target = target.to(device)
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, steps.first + i, steps.total)
        opt.zero_grad(set_to_none=True)
        autocast = (
            torch.autocast(dev_type, dtype=torch.bfloat16)
            if cfg.precision == "bf16"
            else contextlib.nullcontext()
        )
        with autocast:
            if subsampled:  # input and target are the same noisy crops
                gamma = cfg.regulariser * steps.progress(i)
                loss = neighbor2neighbor_loss(model, inp, gen, gamma)
            else:
                loss = training_loss(model(inp).float(), target, cfg, steps.progress(i))
        value = float(loss.detach())
        if dist.active:
            loss = loss * (len(inp) * dist.world / _global_batch(data, cfg, i))
        loss.backward()
        opt.step()
        if trainer.check_sync and (steps.first + i + 1) % trainer.check_sync == 0:
            check_in_sync(trainer.model, dist, steps.first + i + 1)
            trainer.checks += 1
        total += value * len(inp)
        seen += len(inp)
        bar.step(epoch, value)
    return total, seen
