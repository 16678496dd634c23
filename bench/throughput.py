"""Every CPU engine on the same model and inputs, in one run: speed and PSNR cost.

    .venv/bin/python bench/throughput.py     # writes bench/results/throughput.{json,md}

Engines: torch eager on the checkpoint, onnxruntime fp32 through ``Denoiser``
(the product's path), onnxruntime int8 (static QDQ quantization calibrated as
the shipped variants are), and OpenVINO fp32, bf16 and int8 on the same ONNX
files when ``openvino`` is installed (bf16 only where the CPU reports it), and
``auto``: what ``Denoiser()`` runs, its engine probe measured afresh (the
table's preamble says what it chose and why). Each
runs with 1 and 2 threads on a batch of 8 images of 256×256 and on one
1920×1080 image; timings are interleaved across engines (median of
``--repeats``), so the ratios to onnxruntime fp32 come from one run on one
machine. The table also gives the convolution GFLOP/s achieved against this
machine's float32 matrix-multiply rate measured in the same run (torch), and
each engine's PSNR cost on the held-out photos (``TRAIN_EXTRA``, 480×320,
Gaussian sigma 25). Needs the photo corpus (``n2n-train corpus``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
WORKLOADS = {"8×256×256": (8, 256, 256), "1×1080×1920": (1, 1080, 1920)}
Engine = Callable[[np.ndarray], np.ndarray]
#: threads -> what ``Denoiser()`` (device "auto") chose, and how long loading and probing took.
AUTO_CHOICES: dict[int, dict] = {}


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


def matmul_gflops(threads: int, repeats: int, n: int = 2048) -> float:
    """float32 n×n matrix-multiply rate with ``threads`` threads (torch, median), GFLOP/s."""
    import torch

    torch.set_num_threads(threads)
    a = torch.rand(n, n, generator=torch.Generator().manual_seed(0))
    b = torch.rand(n, n, generator=torch.Generator().manual_seed(1))
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def openvino_caps() -> list[str] | None:
    """The CPU's OpenVINO optimisation capabilities, or None without openvino."""
    try:
        import openvino as ov
    except ImportError:
        return None
    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def engines(threads: int, paths: dict[str, Path], checkpoint: Path) -> dict[str, Engine]:
    """Callables float32 N×3×H×W -> output, each limited to ``threads`` threads."""
    import torch

    from n2n_infer import Denoiser, SessionConfig
    from n2n_train.checkpoint import load_checkpoint

    torch.set_num_threads(threads)
    model = load_checkpoint(checkpoint).build_model().eval()

    def torch_eager(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    cfg = SessionConfig(intra_op_threads=threads)
    out: dict[str, Engine] = {"torch eager fp32": torch_eager}
    for precision in ("fp32", "int8"):
        d = Denoiser(paths[precision], device="cpu", batch_size=64, session_config=cfg)
        out[f"onnxruntime {precision}"] = d.denoise_nchw
    # what Denoiser() runs: device "auto", its engine probe measured now (a fresh cache)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["N2N_CACHE"] = cache
        t0 = time.perf_counter()
        auto = Denoiser(paths["fp32"], batch_size=64, session_config=cfg)
        AUTO_CHOICES[threads] = {
            "engine": auto.providers[0],
            "choice": auto.engine_choice.summary() if auto.engine_choice else "",
            "load_and_probe_s": time.perf_counter() - t0,
        }
    out["auto"] = auto.denoise_nchw
    caps = openvino_caps()
    if caps is not None:
        import openvino as ov

        core = ov.Core()
        for precision, path, hint in (
            ("fp32", paths["fp32"], "f32"),
            ("bf16", paths["fp32"], "bf16"),
            ("int8", paths["int8"], "f32"),
        ):
            if precision == "bf16" and "BF16" not in caps:
                continue
            compiled = core.compile_model(
                str(path),
                "CPU",
                {
                    "INFERENCE_NUM_THREADS": threads,
                    "PERFORMANCE_HINT": "LATENCY",
                    "INFERENCE_PRECISION_HINT": hint,
                },
            )
            out[f"OpenVINO {precision}"] = lambda x, c=compiled: c(x)[0]
    return out


def interleaved(runs: dict[str, Engine], x: np.ndarray, repeats: int) -> dict[str, float]:
    """Median seconds per engine, the engines taking turns (one warm-up each)."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    for f in runs.values():
        f(x)
    for _ in range(repeats):
        for k, f in runs.items():
            t0 = time.perf_counter()
            f(x)
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def held_out(noise: str) -> list[tuple[np.ndarray, np.ndarray]]:
    from n2n_export.data import load_clean_images, noised_pairs, resized_crops
    from n2n_train.corpus import fetch_corpus

    folder = fetch_corpus(("TRAIN_EXTRA",))["TRAIN_EXTRA"]
    return noised_pairs(resized_crops(load_clean_images(folder), 320, 480), noise, seed=0)


def mean_psnr(f: Engine, pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    from n2n_infer.metrics import psnr

    return float(np.mean([psnr(np.clip(f(n[None])[0], 0, 1), c) for n, c in pairs]))


def export_variants(checkpoint: Path, onnx: Path, tmp: Path) -> dict[str, Path]:
    """The shipped fp32 file and an int8 export calibrated like the shipped variants."""
    sys.path.insert(0, str(REPO))
    from bench.variants import calibration_set
    from n2n_export.exporter import export_onnx
    from n2n_train.checkpoint import load_checkpoint

    noise = str(load_checkpoint(checkpoint).summary.get("noise", "gaussian:25"))
    int8 = export_onnx(
        checkpoint, tmp / "int8.onnx", precision="int8", calibration=calibration_set(noise)
    )
    return {"fp32": onnx, "int8": int8}


def run(args: argparse.Namespace) -> dict:
    import onnxruntime
    import torch

    from n2n_train.checkpoint import load_checkpoint

    fpp = conv_flops_per_pixel(load_checkpoint(args.checkpoint).config.to_dict())
    pairs = held_out(args.noise)
    rows, quality = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = export_variants(args.checkpoint, args.onnx, Path(tmp))
        peaks = {}
        for threads in args.threads:
            peaks[threads] = matmul_gflops(threads, args.repeats)
            runs = engines(threads, paths, args.checkpoint)
            if not quality:
                quality = {k: mean_psnr(f, pairs) for k, f in runs.items()}
            for workload, shape in WORKLOADS.items():
                x = np.random.default_rng(0).random((*shape[:1], 3, *shape[1:]), dtype=np.float32)
                secs = interleaved(runs, x, args.repeats)
                mp = shape[0] * shape[1] * shape[2] / 1e6
                base = secs["onnxruntime fp32"]
                for k, s in secs.items():
                    gflops = fpp * mp * 1e6 / s / 1e9
                    rows.append(
                        {
                            "threads": threads,
                            "workload": workload,
                            "engine": k,
                            "seconds": s,
                            "mp_per_s": mp / s,
                            "vs_onnxruntime_fp32": base / s,
                            "gflops": gflops,
                            "percent_of_matmul": 100 * gflops / peaks[threads],
                            "psnr_cost_db": quality["onnxruntime fp32"] - quality[k],
                        }
                    )
                print(
                    f"{threads} thread(s), {workload}: "
                    + ", ".join(f"{k} {base / s:.2f}×" for k, s in secs.items()),
                    flush=True,
                )
    caps = openvino_caps()
    openvino_version = None
    if caps is not None:
        import openvino

        openvino_version = openvino.__version__
    return {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "openvino": openvino_version,
        "openvino_cpu_capabilities": caps,
        "repeats": args.repeats,
        "held_out": f"{len(pairs)} TRAIN_EXTRA photos at 480×320, noise {args.noise}",
        "psnr": quality,
        "flops_per_pixel": fpp,
        "matmul_gflops": peaks,
        "auto": AUTO_CHOICES,
        "rows": rows,
    }


def machine() -> str:
    """:func:`bench.variants.machine` and the CPU features that decide bf16 and int8 speed."""
    from bench.variants import machine as cpu_and_cores

    cpuinfo = Path("/proc/cpuinfo")
    flags: set[str] = set()
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    wanted = ("avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16")
    features = ", ".join(f for f in wanted if f in flags) or "no AVX-512, no VNNI"
    return f"{cpu_and_cores()}{cpu_family()}; {features}"


def cpu_family() -> str:
    """`` (family F, model M)`` from /proc/cpuinfo (what tells CPU generations apart when the
    hypervisor shortens the model name), or nothing."""
    facts: dict[str, str] = {}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("cpu family", "model") and key.strip() not in facts:
                facts[key.strip()] = value.strip()
            if not line.strip():
                break
    if len(facts) < 2:
        return ""
    return f" (family {facts['cpu family']}, model {facts['model']})"


def markdown(result: dict) -> str:
    caps = result["openvino_cpu_capabilities"]
    ov = (
        f"OpenVINO {result['openvino']} (CPU capabilities: {', '.join(caps)})"
        if caps is not None
        else "OpenVINO not installed"
    )
    lines = [
        f"Measured {result['date']} on {result['machine']} by `python bench/throughput.py`: "
        f"torch {result['torch']}, onnxruntime {result['onnxruntime']}, {ov}. Median of "
        f"{result['repeats']} interleaved runs; PSNR cost on {result['held_out']} "
        f"(onnxruntime fp32: {result['psnr']['onnxruntime fp32']:.3f} dB); model "
        f"{result['flops_per_pixel'] / 1e3:.1f} kFLOP per pixel; float32 matmul: "
        + ", ".join(f"{v:.0f} GFLOP/s at {t} thread(s)" for t, v in result["matmul_gflops"].items())
        + ".",
        "",
        "| threads | workload | engine | MP/s | vs onnxruntime fp32 | GFLOP/s (% of matmul) "
        "| PSNR cost dB |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for threads, auto in result.get("auto", {}).items():
        lines.insert(
            -3,
            f"`auto` with {threads} thread(s) chose {auto['engine']} (loading and probing "
            f"{auto['load_and_probe_s']:.1f} s): {auto['choice']}.\n",
        )
    for r in result["rows"]:
        lines.append(
            f"| {r['threads']} | {r['workload']} | {r['engine']} | {r['mp_per_s']:.3f} "
            f"| {r['vs_onnxruntime_fp32']:.2f}× "
            f"| {r['gflops']:.1f} ({r['percent_of_matmul']:.0f}%) "
            f"| {r['psnr_cost_db']:+.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO / "models" / "photo.pt")
    parser.add_argument("--onnx", type=Path, default=REPO / "models" / "photo.onnx")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--noise", default="gaussian:25")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "throughput")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from bench.report import write_results

    result = run(args)
    write_results(args.out, result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
