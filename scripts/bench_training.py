"""Training throughput (images/s) of the study's UNet on 32×32 batches of 50, per variant.

Times optimizer steps (forward, MSE, backward, SGD) on random data for fp32,
bf16 autocast and channels-last, interleaved over several repeats; reports the
median per variant as JSON (stdout and --out). Usage:

    .venv/bin/python scripts/bench_training.py --out docs/training_bench.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from datetime import datetime, timezone

import torch

from n2n_train.config import STUDY_TRAINING, TrainConfig
from n2n_train.loop import make_optimizer
from n2n_train.losses import training_loss
from n2n_train.unet import UNet

VARIANTS = {
    "fp32": {},
    "bf16": {"precision": "bf16"},
    "channels_last": {"channels_last": True},
    "bf16+channels_last": {"precision": "bf16", "channels_last": True},
}


def time_steps(cfg: TrainConfig, steps: int, batch: torch.Tensor) -> float:
    """Images per second over ``steps`` training steps (after 3 warm-up steps)."""
    torch.manual_seed(0)
    model = UNet()
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(memory_format=fmt).train()
    opt = make_optimizer(model, cfg)
    x = batch.to(memory_format=fmt)
    for i in range(steps + 3):
        if i == 3:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            pred = model(x)
        loss = training_loss(pred.float(), batch, cfg, 0.0)
        loss.backward()
        opt.step()
    return steps * batch.shape[0] / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batch = torch.rand(50, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    runs: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for changes in VARIANTS.values():  # warm-up: oneDNN kernels, allocator
        time_steps(dataclasses.replace(STUDY_TRAINING, **changes), 5, batch)
    for _ in range(args.repeats):
        for name, changes in VARIANTS.items():
            cfg = dataclasses.replace(STUDY_TRAINING, **changes)
            runs[name].append(time_steps(cfg, args.steps, batch))
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} shared 2-core VM, no GPU",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "batch": 50,
        "steps": args.steps,
        "repeats": args.repeats,
        "images_per_s_median": {k: statistics.median(v) for k, v in runs.items()},
        "images_per_s_all": runs,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
