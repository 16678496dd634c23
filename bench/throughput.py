"""Throughput of n2n_infer (onnxruntime) against torch eager on the same checkpoint, in one run.

    .venv/bin/python bench/throughput.py            # writes bench/results/throughput.{json,md}

Both engines get the same thread count (``--threads``, default: all cores) and
the same inputs: batches of 1, 16 and 256 images of 32×32 and one 1920×1080
image. Each case is timed ``--repeats`` times after a warm-up; the table gives
medians, images/s and megapixels/s, the runtime/torch ratio, and the GFLOP/s
achieved (convolution FLOPs counted from the model config) against this
machine's float32 matrix-multiply peak, measured in the same run with numpy.
The runtime side is timed through ``Denoiser.denoise_nchw`` (padding and all).
This is a benchmark script, not a test; bench/ may import torch, the runtime never does.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CASES = [(1, 32, 32), (16, 32, 32), (256, 32, 32), (1, 1080, 1920)]


def conv_flops_per_pixel(config: dict) -> float:
    """Multiply-adds ×2 of every convolution, per input pixel, for the study UNet family."""
    feats, convs, cin = config["features"], config["convs_per_level"], config["in_channels"]
    flops, prev = 0.0, cin
    for level, f in enumerate(feats):  # encoder
        area = 4.0**-level
        for i in range(convs):
            flops += 2 * 9 * (prev if i == 0 else f) * f * area
        prev = f
    for level in range(len(feats) - 2, -1, -1):  # decoder: concat(upsampled, skip) -> skip
        area, f = 4.0**-level, feats[level]
        for i in range(convs):
            flops += 2 * 9 * ((feats[level + 1] + f) if i == 0 else f) * f * area
    return flops + 2 * feats[0] * config["out_channels"]  # 1×1 head


def median_seconds(fn: Callable[[], object], repeats: int, min_seconds: float = 0.2) -> float:
    """Median over ``repeats`` timings; each timing loops ``fn`` for at least ``min_seconds``."""
    fn()  # warm-up (first-call allocations)
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < min_seconds:
        fn()
        n += 1
    loops = max(1, n)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        times.append((time.perf_counter() - t0) / loops)
    return statistics.median(times)


def matmul_peak_gflops(repeats: int, n: int = 2048) -> float:
    """numpy float32 n×n matmul, GFLOP/s (median)."""
    import numpy as np

    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    return 2 * n**3 / median_seconds(lambda: a @ b, repeats) / 1e9


def run(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from n2n_infer import Denoiser, SessionConfig
    from n2n_train.checkpoint import load_checkpoint

    torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint)
    model = ckpt.build_model()
    den = Denoiser(
        args.onnx,
        device="cpu",
        batch_size=256,
        session_config=SessionConfig(intra_op_threads=args.threads),
    )
    fpp = conv_flops_per_pixel(ckpt.config.to_dict())
    peak = matmul_peak_gflops(args.repeats)
    rows = []
    for n, h, w in CASES:
        x = np.random.default_rng(0).random((n, 3, h, w), dtype=np.float32)
        xt = torch.from_numpy(x)

        def torch_eager(xt: torch.Tensor = xt) -> object:
            with torch.inference_mode():
                return model(xt)

        t_torch = median_seconds(torch_eager, args.repeats)
        t_ort = median_seconds(lambda x=x: den.denoise_nchw(x), args.repeats)
        diff = float(np.abs(den.denoise_nchw(x) - torch_eager().numpy()).max())
        mpix = n * h * w / 1e6
        row = {"batch": n, "height": h, "width": w, "max_abs_diff": diff}
        for name, t in (("torch", t_torch), ("n2n_infer", t_ort)):
            gflops = fpp * n * h * w / t / 1e9
            row[name] = {
                "seconds": t,
                "images_per_s": n / t,
                "megapixels_per_s": mpix / t,
                "gflops": gflops,
                "percent_of_peak": 100 * gflops / peak,
            }
        row["speedup"] = t_torch / t_ort
        rows.append(row)
        print(_line(row), flush=True)
    return {
        "date": datetime.date.today().isoformat(),
        "machine": args.machine,
        "platform": f"{platform.machine()} {platform.system()}, {os.cpu_count()} logical CPUs",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": __import__("onnxruntime").__version__,
        "numpy": np.__version__,
        "threads": args.threads,
        "repeats": args.repeats,
        "checkpoint": str(args.checkpoint),
        "onnx": str(args.onnx),
        "flops_per_pixel": fpp,
        "matmul_peak_gflops": peak,
        "rows": rows,
    }


def _line(row: dict) -> str:
    t, o = row["torch"], row["n2n_infer"]
    return (
        f"{row['batch']:>4} × {row['width']}×{row['height']}: "
        f"torch {t['images_per_s']:9.1f} img/s, "
        f"n2n_infer {o['images_per_s']:9.1f} img/s, speedup {row['speedup']:.2f}×"
    )


def markdown(result: dict) -> str:
    """The results as a Markdown table with its date, machine and settings."""
    lines = [
        f"Measured {result['date']} on {result['machine']} ({result['platform']}), "
        f"{result['threads']} threads for both engines, median of {result['repeats']} repeats; "
        f"torch {result['torch']} eager vs onnxruntime {result['onnxruntime']}. "
        f"numpy float32 matmul peak: {result['matmul_peak_gflops']:.1f} GFLOP/s; "
        f"model: {result['flops_per_pixel'] / 1e3:.1f} kFLOP per pixel.",
        "",
        "| batch × size | torch img/s | n2n_infer img/s | torch MP/s | n2n_infer MP/s "
        "| n2n_infer / torch | torch GFLOP/s (% peak) | n2n_infer GFLOP/s (% peak) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        t, o = r["torch"], r["n2n_infer"]
        lines.append(
            f"| {r['batch']} × {r['width']}×{r['height']} | {t['images_per_s']:.1f} "
            f"| {o['images_per_s']:.1f} | {t['megapixels_per_s']:.2f} "
            f"| {o['megapixels_per_s']:.2f} "
            f"| {r['speedup']:.2f}× | {t['gflops']:.1f} ({t['percent_of_peak']:.0f}%) "
            f"| {o['gflops']:.1f} ({o['percent_of_peak']:.0f}%) |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO / "models" / "photo.pt")
    parser.add_argument("--onnx", type=Path, default=REPO / "models" / "photo.onnx")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--machine", default="2-core shared x86_64 VM, no GPU")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "throughput")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # numpy's BLAS reads these when first imported
    sys.path.insert(0, str(REPO))
    from bench.report import write_results

    result = run(args)
    write_results(args.out, result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
