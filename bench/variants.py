"""Reduced-precision variants of a shipped model: PSNR cost and CPU speed, measured in one run.

Usage: python -m bench.variants [--model photo] [--noise gaussian:25] [--repeats 7]

Exports fp16 and int8 variants of ``models/MODEL.pt`` (int8 calibrated on 16
crops of the ``TRAIN_CORE`` photos noised with the model's training noise), then
on held-out photos (the ``TRAIN_EXTRA`` set, resized and cropped to 480×320,
``--noise`` applied, clipped and rounded) measures the mean
per-image PSNR of each precision through ``n2n_infer`` and its CPU time
(median of interleaved repeats, same threads). Writes
``bench/results/variants-MODEL.{json,md}`` and ``models/MODEL.variants.json``
(read by the model card). Needs the photo corpus (``n2n-train corpus``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from n2n_export.card import write_model_card
from n2n_export.data import calibration_batches, load_clean_images, noised_pairs, resized_crops
from n2n_export.exporter import export_onnx
from n2n_export.variants import SHIP_MAX_PSNR_COST_DB, SHIP_MIN_SPEEDUP, markdown_table
from n2n_infer import Denoiser
from n2n_infer.metrics import psnr
from n2n_train.checkpoint import load_checkpoint
from n2n_train.corpus import fetch_corpus

REPO = Path(__file__).resolve().parent.parent


def held_out_images() -> list[np.ndarray]:
    """The TRAIN_EXTRA photos, resized and centre-cropped to 480×320."""
    folder = fetch_corpus(("TRAIN_EXTRA",))["TRAIN_EXTRA"]
    return resized_crops(load_clean_images(folder), 320, 480)


def calibration_set(noise: str) -> list[np.ndarray]:
    """What ``scripts/train_default.sh`` calibrates the shipped int8 model on."""
    folder = fetch_corpus(("TRAIN_CORE",))["TRAIN_CORE"]
    return calibration_batches(load_clean_images(folder), noise)


def machine() -> str:
    """CPU model and core count, from /proc/cpuinfo where there is one."""
    model = platform.processor() or "cpu"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="photo")
    ap.add_argument("--noise", default="gaussian:25", help="noise of the held-out inputs")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    ckpt = REPO / "models" / f"{args.model}.pt"
    pairs = noised_pairs(held_out_images(), args.noise, seed=0)
    training_noise = str(load_checkpoint(ckpt).summary.get("noise", args.noise))
    rng = np.random.default_rng(0)
    workloads = {
        "4×480×320": np.stack([p[0] for p in pairs[:4]]),
        "1×1920×1080": rng.random((1, 3, 1080, 1920), dtype=np.float32),
    }
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"fp32": REPO / "models" / f"{args.model}.onnx"}
        for precision in ("fp16", "int8"):
            calib = calibration_set(training_noise) if precision == "int8" else None
            paths[precision] = export_onnx(
                ckpt, Path(tmp) / f"{precision}.onnx", precision=precision, calibration=calib
            )
        runtimes = {k: Denoiser(p, device="cpu", batch_size=4) for k, p in paths.items()}
        quality = {k: _mean_psnr(d, pairs) for k, d in runtimes.items()}
        seconds = {w: _interleaved_medians(runtimes, x, args.repeats) for w, x in workloads.items()}
        sizes = {k: p.stat().st_size for k, p in paths.items()}
    rows = []
    for k in runtimes:
        speedup = min(s["fp32"] / s[k] for s in seconds.values())
        cost = quality["fp32"] - quality[k]
        rows.append(
            {
                "precision": k,
                "psnr": quality[k],
                "psnr_cost_db": cost,
                "seconds": {w: s[k] for w, s in seconds.items()},
                "speedup_vs_fp32": speedup,
                "file_bytes": sizes[k],
                "worth_shipping": k == "fp32"
                or (speedup >= SHIP_MIN_SPEEDUP and cost <= SHIP_MAX_PSNR_COST_DB),
            }
        )
    result = {
        "model": args.model,
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "held_out": f"{len(pairs)} TRAIN_EXTRA photos at 480×320, noise {args.noise}",
        "psnr_noisy": float(np.mean([psnr(n, c) for n, c in pairs])),
        "timing": f"median of {args.repeats} interleaved runs per workload, "
        f"{os.cpu_count()} threads; speed-up = the smaller over the workloads",
        "rule": f"ship if ≥ {SHIP_MIN_SPEEDUP}× faster for ≤ {SHIP_MAX_PSNR_COST_DB} dB",
        "rows": rows,
    }
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"variants-{args.model}.json").write_text(json.dumps(result, indent=2) + "\n")
    (REPO / "models" / f"{args.model}.variants.json").write_text(
        json.dumps(result, indent=2) + "\n"
    )
    write_model_card(REPO / "models" / f"{args.model}.onnx")
    table = markdown_table(result)
    (out_dir / f"variants-{args.model}.md").write_text(table)
    print(table)


def _mean_psnr(d: Denoiser, pairs: list) -> float:
    return float(np.mean([psnr(d.denoise_nchw(n[None])[0], c) for n, c in pairs]))


def _interleaved_medians(runtimes: dict, batch: np.ndarray, repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in runtimes}
    for d in runtimes.values():
        d.denoise_nchw(batch)  # warm-up
    for _ in range(repeats):
        for k, d in runtimes.items():
            t0 = time.perf_counter()
            d.denoise_nchw(batch)
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


if __name__ == "__main__":
    main()
