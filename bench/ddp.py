"""Distributed training on one machine: 2 processes × 1 thread against 1 process × 2 threads.

    .venv/bin/python -m bench.ddp                       # both workloads, 1 run each
    .venv/bin/python -m bench.ddp --workload course --runs 3

Writes ``bench/results/ddp.{json,md}``. Every configuration runs the real
command, ``n2n-train fit`` (with ``--nproc 2`` for DDP), on the same data, with
the same global batch and number of epochs, so each sees the same number of
training samples:

- ``course``: the seed-like course pairs (``n2n-train make-seedlike
  ~/.cache/n2n/seedlike``), the study's UNet, its first 5,000 pairs, batch 50
  (4,000 after the validation split: 80 steps an epoch), 3 epochs;
- ``photos``: clean photos noised on the fly (``n2n-train corpus``, the
  ``TRAIN_CORE`` set), the shipped ``photo`` model's UNet (32/64/128
  features, residual) with Adam, 64×64 patches, batch 16, 3 epochs of 40 steps.

Configurations: ``1×1`` (one process, one thread: the reference), ``1×2``
(one process, two intra-op threads) and ``2×1`` (two DDP processes on gloo,
one thread each). Reported: the training rate (images/s and steps/s over the
training time of all epochs, from ``metrics.jsonl``, validation excluded), the
whole command's wall time (start-up, data loading, validation and checkpoints
included), and the validation PSNR after the last epoch. Medians over
``--runs`` for the times; the PSNR of a configuration does not change between
runs (seeded).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import write_results
from bench.variants import machine

REPO = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "n2n"
#: (processes, threads per process) of each configuration.
CONFIGS = ((1, 1), (1, 2), (2, 1))


def workloads() -> dict[str, dict[str, Any]]:
    """The ``fit`` arguments (besides output, processes and threads) of each workload."""
    seedlike = CACHE / "seedlike"
    return {
        "course": {
            "args": [
                *("--course", seedlike / "train_data.pkl"),
                *("--course-val", seedlike / "val_data.pkl"),
                *("--preset", "study", "--limit-pairs", "5000"),
                *("--batch-size", "50", "--epochs", "3", "--swap"),
            ],
            "needs": seedlike / "train_data.pkl",
            "describe": "seed-like course pairs, study UNet, 5,000 pairs, batch 50, 3 epochs",
        },
        "photos": {
            "args": [
                *("--photos", CACHE / "photos" / "TRAIN_CORE"),
                *("--features", "32,64,128", "--convs-per-level", "2", "--residual"),
                *("--noise", "gaussian:0-50", "--optimizer", "adam", "--lr", "2e-4"),
                *("--patch-size", "64", "--batch-size", "16"),
                *("--steps-per-epoch", "40", "--epochs", "3"),
            ],
            "needs": CACHE / "photos" / "TRAIN_CORE",
            "describe": "TRAIN_CORE photos noised on the fly (gaussian:0-50), the photo "
            "model's UNet (32/64/128, residual), Adam, 64² patches, batch 16, 3 epochs of 40 steps",
        },
    }


def run_one(args: list[Any], procs: int, threads: int, out: Path) -> dict[str, Any]:
    """Run one ``fit``; its wall time, training rate and last validation PSNR."""
    cmd = [sys.executable, "-m", "n2n_train.cli", "fit", *map(str, args), "--out", str(out)]
    cmd += ["--threads", str(threads), "--no-progress", "--json"]
    if procs > 1:
        cmd += ["--nproc", str(procs)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads(done.stdout)
    images = sum(r["images_per_s"] * r["train_seconds"] for r in rows)
    train_s = sum(r["train_seconds"] for r in rows)
    batch = int(args[args.index("--batch-size") + 1])
    return {
        "wall_s": wall,
        "images_per_s": images / train_s,
        "steps_per_s": images / train_s / batch,
        "images": round(images),
        "val_psnr": rows[-1].get("val_psnr"),
        "noisy_psnr": summary.get("noisy_psnr"),
    }


def measure(names: list[str], runs: int, work: Path) -> list[dict[str, Any]]:
    """Every configuration of every workload, ``runs`` times, interleaved."""
    rows = []
    for name in names:
        spec = workloads()[name]
        if not Path(spec["needs"]).exists():
            raise SystemExit(f"{name}: {spec['needs']} is missing (see this module's docstring)")
        results: dict[tuple[int, int], list[dict[str, Any]]] = {c: [] for c in CONFIGS}
        for run in range(runs):
            for procs, threads in CONFIGS:
                out = work / f"{name}-{procs}x{threads}-{run}"
                results[(procs, threads)].append(run_one(spec["args"], procs, threads, out))
        base = statistics.median(r["images_per_s"] for r in results[(1, 1)])
        for (procs, threads), got in results.items():
            rate = statistics.median(r["images_per_s"] for r in got)
            rows.append(
                {
                    "workload": name,
                    "config": f"{procs}×{threads}",
                    "processes": procs,
                    "threads": threads,
                    "images_per_s": round(rate, 1),
                    "steps_per_s": round(statistics.median(r["steps_per_s"] for r in got), 2),
                    "speedup_vs_1x1": round(rate / base, 2),
                    "wall_s": round(statistics.median(r["wall_s"] for r in got), 1),
                    "images": got[0]["images"],
                    "val_psnr": round(got[0]["val_psnr"], 3),
                    "noisy_psnr": round(got[0]["noisy_psnr"], 3),
                }
            )
    return rows


def table(result: dict[str, Any]) -> str:
    """The Markdown table of the result, with the machine and date."""
    lines = [
        f"`python -m bench.ddp`, {result['date']}, {result['machine']}; torch "
        f"{result['torch']}; medians of {result['runs']} run(s); load average "
        f"{result['load_before']} before, {result['load_after']} after.",
        "",
    ]
    for name, describe in result["workloads"].items():
        lines.append(f"- `{name}`: {describe}")
    lines += [
        "",
        "| workload | processes × threads | images/s | steps/s | vs 1×1 | wall (s) | images "
        "| val PSNR (dB) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['workload']} | {r['config']} | {r['images_per_s']} | {r['steps_per_s']} "
            f"| {r['speedup_vs_1x1']}× | {r['wall_s']} | {r['images']} | {r['val_psnr']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workload", choices=["course", "photos", "both"], default="both")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ddp")
    args = parser.parse_args()
    import torch

    names = ["course", "photos"] if args.workload == "both" else [args.workload]
    load_before = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="n2n-ddp-") as work:
        rows = measure(names, args.runs, Path(work))
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "torch": torch.__version__,
        "runs": args.runs,
        "workloads": {n: workloads()[n]["describe"] for n in names},
        "load_before": load_before,
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "rows": rows,
    }
    write_results(args.out, result, table(result))
    print(table(result))


if __name__ == "__main__":
    main()
