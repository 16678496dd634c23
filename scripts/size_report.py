"""Network size for the photo model: validation PSNR per CPU-second of training against
CPU inference speed, from the runs of ``scripts/size_sweep.sh``.

Usage: python scripts/size_report.py [RUNS_DIR] [--out docs/training/size_sweep.md]

For each run: the validation PSNR (held-out TRAIN_CORE photos, blind sigma 0-50)
after each epoch against the cumulative training seconds, and the PSNR reached at
the largest time every run got to (the last epoch at or before it). Inference speed:
an ONNX export of the same architecture through ``n2n_infer`` on a 480×320 image,
seconds per megapixel (median of 5, all cores); it depends only on the architecture.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.variants import machine  # noqa: E402
from n2n_export.exporter import export_onnx  # noqa: E402
from n2n_infer import Denoiser  # noqa: E402
from n2n_train.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from n2n_train.config import UNetConfig  # noqa: E402
from n2n_train.unet import UNet  # noqa: E402


def inference_seconds_per_mp(config: UNetConfig, tmp: Path, repeats: int = 5) -> float:
    torch.manual_seed(0)
    ckpt = tmp / f"{'-'.join(map(str, config.features))}.pt"
    save_checkpoint(ckpt, UNet(config), {})
    runtime = Denoiser(export_onnx(ckpt, ckpt.with_suffix(".onnx")), device="cpu")
    img = np.random.default_rng(0).integers(0, 256, (320, 480, 3), dtype=np.uint8)
    runtime.denoise(img)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        runtime.denoise(img)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / (320 * 480 / 1e6)


def curve(run: Path) -> list[tuple[float, float]]:
    """(cumulative seconds, validation PSNR) after each epoch."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    out, total = [], 0.0
    for r in rows:
        total += r["seconds"]
        out.append((total, r["val_psnr"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="?", default=REPO / "runs" / "sweep")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "training" / "size_sweep.md")
    ap.add_argument(
        "--reuse-timing",
        action="store_true",
        help="take the inference speeds from the JSON beside --out (no re-timing)",
    )
    args = ap.parse_args()
    old_rows = {}
    if args.reuse_timing:
        old = json.loads(args.out.with_suffix(".json").read_text())
        old_rows = {r["run"]: r["inference_s_per_mp"] for r in old["rows"]}
        old_rows["study"] = old["study_inference_s_per_mp"]
    runs = sorted(p for p in args.runs.iterdir() if (p / "metrics.jsonl").exists())
    curves = {r.name: curve(r) for r in runs if curve(r)}
    horizon = min(c[-1][0] for c in curves.values())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            if run.name not in curves:
                continue
            cfg = load_checkpoint(run / "last.pt").config
            reached = [p for t, p in curves[run.name] if t <= horizon * 1.02]
            rows.append(
                {
                    "run": run.name,
                    "features": list(cfg.features),
                    "convs_per_level": cfg.convs_per_level,
                    "params": sum(p.numel() for p in UNet(cfg).parameters()),
                    "psnr_at_horizon": reached[-1] if reached else None,
                    "curve": curves[run.name],
                    "inference_s_per_mp": old_rows.get(run.name)
                    or inference_seconds_per_mp(cfg, Path(tmp)),
                }
            )
        study = old_rows.get("study") or inference_seconds_per_mp(UNetConfig(), Path(tmp))
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "horizon_s": horizon,
        "study_inference_s_per_mp": study,
        "rows": rows,
    }
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "| features (2 convs/level, residual) | parameters | val PSNR at "
        f"{horizon / 60:.0f} min (dB) | last epoch: minutes, val PSNR (dB) | inference s/MP |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        psnr = "–" if r["psnr_at_horizon"] is None else f"{r['psnr_at_horizon']:.2f}"
        last_t, last_p = r["curve"][-1]
        lines.append(
            f"| {'/'.join(map(str, r['features']))} | {r['params'] / 1e6:.2f} M | {psnr} | "
            f"{last_t / 60:.1f}, {last_p:.2f} | {r['inference_s_per_mp']:.2f} |"
        )
    lines.append(f"| study 16/32/64, 1 conv (reference) | 0.06 M | – | – | {study:.2f} |")
    table = "\n".join(lines) + "\n"
    args.out.write_text(
        f"# Network size for the photo model\n\nMeasured on {result['date']}, "
        f"{result['machine']}, by `bash scripts/size_sweep.sh && python "
        f"scripts/size_report.py`.\n\n{__doc__.split(chr(10), 3)[3].strip()}\n\n{table}"
    )
    print(table)


if __name__ == "__main__":
    main()
