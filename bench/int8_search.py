"""int8 that keeps quality: every candidate's PSNR cost and speed against onnxruntime fp32.

    .venv/bin/python bench/int8_search.py         # writes bench/results/int8_search.{json,md}
    .venv/bin/python bench/int8_search.py --qat   # without the fine-tuned candidate

The search behind docs/runtime.md, "int8 that keeps quality: what was tried",
for ``models/photo.pt`` / ``models/photo.onnx``. Candidates:

- ``diag``: the torch model with int8 rounding (``n2n_train.qat.FakeQuant``)
  at some points only (weights only, activations only, 8-bit weights, the
  weights of one convolution left float): where the cost comes from. Quality
  only.
- ``ort``: onnxruntime static QDQ quantization (``n2n_export.quantize``'s
  recipe with one option changed: calibration method and size, 8-bit weights,
  head quantized, one convolution left float), run through OpenVINO.
- ``nncf``: NNCF's post-training quantization of the OpenVINO model (presets,
  overflow fix, head ignored). Its accuracy-controlled variant was not run
  (too slow on the shared CPU of the day).
- ``qat``: ``n2n_train.qat.finetune_int8`` (distillation under int8 rounding,
  one thread) from ``models/photo.pt``, then the exporter's int8 recipe. The
  fine-tuned checkpoints are cached in ``~/.cache/n2n/int8_search/``.

PSNR cost: mean PSNR on the held-out photos (``TRAIN_EXTRA``, 480×320,
Gaussian sigma 25, as ``bench/throughput.py``) of OpenVINO fp32 minus the
candidate's. Speed: OpenVINO int8 MP/s over onnxruntime fp32 (``Denoiser``)
MP/s, interleaved, 1 and 2 threads, 8×256×256 and 1×1080×1920; the timings
take the lock file ``n2n-bench.lock`` in the temporary folder (``flock``;
``N2N_BENCH_LOCK`` names another) one workload at a time, the quality
runs do not. Needs the photo corpus, ``openvino`` and ``nncf``.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "n2n" / "int8_search"
LOCK = Path(os.environ.get("N2N_BENCH_LOCK") or Path(tempfile.gettempdir()) / "n2n-bench.lock")
#: The bar of issue 21: at least this much faster than onnxruntime fp32 ...
MIN_SPEEDUP = 2.0
#: ... for at most this PSNR cost on the held-out photos (dB).
MAX_COST_DB = 0.02
Engine = Callable[[np.ndarray], np.ndarray]


@contextmanager
def bench_lock() -> Iterator[None]:
    """Hold the shared timing lock (:data:`LOCK`, as ``flock`` on it) for the block."""
    with LOCK.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def candidates(qat_runs: list[tuple[int, float]]) -> list[dict[str, Any]]:
    """Every candidate as data: ``name``, ``kind`` and the options of its kind."""
    # one layer float at a time: the convolutions whose weights cost most in the
    # torch rows (conv2, conv3), the first, and the largest (conv8); timed on the
    # small-image batch only
    convs = ["node_conv2d", "node_conv2d_2", "node_conv2d_3", "node_conv2d_8"]
    out: list[dict[str, Any]] = [
        {"name": "torch: 7-bit weights + 8-bit activations", "kind": "diag", "float": []},
        {"name": "torch: 7-bit weights only", "kind": "diag", "float": ["act"]},
        {"name": "torch: 8-bit activations only", "kind": "diag", "float": ["weight"]},
        {"name": "torch: 8-bit weights + 8-bit activations", "kind": "diag", "levels": 127},
        {"name": "torch: conv2 weights float", "kind": "diag", "float": ["weight2"]},
        {"name": "torch: conv3 weights float", "kind": "diag", "float": ["weight3"]},
        {"name": "ort: as export/quantize.py (head float)", "kind": "ort"},
        {"name": "ort: no node kept float (head quantized too)", "kind": "ort", "head": False},
        {"name": "ort: 8-bit weights (no reduce_range)", "kind": "ort", "reduce_range": False},
        {"name": "ort: Percentile calibration", "kind": "ort", "method": "Percentile"},
        {"name": "ort: Entropy calibration", "kind": "ort", "method": "Entropy"},
        {"name": "ort: 64 calibration crops of 256", "kind": "ort", "count": 64, "size": 256},
    ]
    out += [
        {"name": f"ort: {c} float", "kind": "ort", "exclude": [c], "sweep": True} for c in convs
    ]
    out += [
        {"name": "nncf: performance preset", "kind": "nncf"},
        {"name": "nncf: mixed, head ignored", "kind": "nncf", "preset": "MIXED", "head": True},
        {"name": "nncf: mixed, head ignored, 7-bit weights everywhere", "kind": "nncf",
         "preset": "MIXED", "head": True, "overflow_fix": "ENABLE"},
        {"name": "nncf: mixed, head ignored, 8-bit weights everywhere", "kind": "nncf",
         "preset": "MIXED", "head": True, "overflow_fix": "DISABLE"},
    ]  # fmt: skip
    out += [
        {"name": f"qat: {steps} steps at lr {lr:g}", "kind": "qat", "steps": steps, "lr": lr}
        for steps, lr in qat_runs
    ]
    return out


class Search:
    """The shared inputs: held-out pairs, calibration images and the reference engines."""

    def __init__(self, noise: str, tmp: Path) -> None:
        sys.path.insert(0, str(REPO))
        from bench.throughput import held_out
        from bench.variants import calibration_set
        from n2n_train.checkpoint import load_checkpoint

        self.tmp, self.checkpoint = tmp, REPO / "models" / "photo.pt"
        self.onnx = REPO / "models" / "photo.onnx"
        self.training_noise = str(load_checkpoint(self.checkpoint).summary["noise"])
        self.pairs = held_out(noise)
        self.calibration = calibration_set(self.training_noise)

    def calibration_of(self, count: int, size: int) -> list[np.ndarray]:
        """``count`` crops of ``size`` of the TRAIN_CORE photos, as the exporter calibrates."""
        from n2n_export.data import calibration_batches, load_clean_images
        from n2n_train.corpus import fetch_corpus

        folder = fetch_corpus(("TRAIN_CORE",))["TRAIN_CORE"]
        images = load_clean_images(folder)
        return calibration_batches(images, self.training_noise, count=count, size=size)


def openvino_engine(model: Any, threads: int) -> Engine:
    """An OpenVINO CPU callable (file path or ``ov.Model``), float32 hint, ``threads``."""
    import openvino as ov

    config = {
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
    }
    compiled = ov.Core().compile_model(
        str(model) if isinstance(model, Path) else model, "CPU", config
    )
    return lambda x: compiled(x)[0]


def build(c: dict[str, Any], s: Search) -> Engine | Path:
    """The candidate's torch engine (``diag``) or its model file (the others)."""
    out = s.tmp / f"{abs(hash(c['name']))}.onnx"
    if c["kind"] == "diag":
        return _diag_engine(c, s)
    if c["kind"] == "ort":
        from n2n_export.quantize import quantize_int8

        cal = s.calibration_of(c["count"], c["size"]) if "count" in c else s.calibration
        quantize_int8(
            s.onnx,
            out,
            cal,
            head_float=c.get("head", True),
            reduce_range=c.get("reduce_range", True),
            method=c.get("method", "MinMax"),
            exclude=tuple(c.get("exclude", ())),
        )
        return out
    if c["kind"] == "nncf":
        return _nncf(c, s, out.with_suffix(".xml"))
    return _qat(c, s, out)


def _diag_engine(c: dict[str, Any], s: Search) -> Engine:
    import torch

    from n2n_train.checkpoint import load_checkpoint
    from n2n_train.qat import FakeQuant

    torch.set_num_threads(2)
    model = load_checkpoint(s.checkpoint).build_model()
    fq = FakeQuant(model, weight_levels=c.get("levels", 64))
    fq.calibrate([torch.from_numpy(b) for b in s.calibration])
    wanted = c.get("float", [])
    points = {
        p
        for p in fq.points
        if p in wanted
        or ("act" in wanted and not p.startswith("weight"))
        or ("weight" in wanted and p.startswith("weight"))
    }
    fq.set_float_points(frozenset(points))

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    return run


def _nncf(c: dict[str, Any], s: Search, out: Path) -> Path:
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        OverflowFix,
    )

    model = ov.Core().read_model(str(s.onnx))
    common: dict[str, Any] = {
        "preset": getattr(nncf.QuantizationPreset, c.get("preset", "PERFORMANCE")),
        "subset_size": len(s.calibration),
        "fast_bias_correction": c.get("fast_bias_correction", True),
    }
    if c.get("head"):
        head = ["node_conv2d_10/WithoutBiases", "node_conv2d_10", "node_add_185"]
        common["ignored_scope"] = nncf.IgnoredScope(names=head, validate=False)
    if "overflow_fix" in c:
        fix = getattr(OverflowFix, c["overflow_fix"])
        common["advanced_parameters"] = AdvancedQuantizationParameters(overflow_fix=fix)
    quantized = nncf.quantize(model, nncf.Dataset(s.calibration), **common)
    ov.save_model(quantized, str(out))
    return out


def _qat(c: dict[str, Any], s: Search, out: Path) -> Path:
    """Fine-tune (cached by steps and lr) and export with the shipped int8 recipe."""
    import torch

    from n2n_export.exporter import export_onnx
    from n2n_train.corpus import fetch_corpus
    from n2n_train.data import load_photo_folder
    from n2n_train.qat import QATConfig, finetune_int8

    cfg = QATConfig(steps=c["steps"], lr=c.get("lr", QATConfig.lr))
    ckpt = CACHE / f"photo-qat-{cfg.steps}-{cfg.lr:g}.pt"
    if not ckpt.exists():
        photos = load_photo_folder(fetch_corpus(("TRAIN_CORE",))["TRAIN_CORE"])
        cal = [torch.from_numpy(b) for b in s.calibration]
        finetune_int8(s.checkpoint, photos, cal, ckpt, cfg)
    return export_onnx(ckpt, out, precision="int8", calibration=s.calibration)


def mean_psnr(f: Engine, pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    from n2n_infer.metrics import psnr

    return float(np.mean([psnr(np.clip(f(n[None])[0], 0, 1), c) for n, c in pairs]))


def timings(
    models: dict[str, Path], sweep: set[str], s: Search, threads: int, repeats: int
) -> dict[str, dict[str, float]]:
    """Seconds per workload and engine (median, interleaved), under the timing lock.

    Engines: onnxruntime fp32 through ``Denoiser`` (the reference), OpenVINO
    fp32, and every candidate's file through OpenVINO; those in ``sweep`` only
    on the first workload (8×256×256), to keep the lock short.
    """
    from bench.throughput import WORKLOADS, interleaved
    from n2n_infer import Denoiser, SessionConfig

    cfg = SessionConfig(intra_op_threads=threads)
    runs: dict[str, Engine] = {
        "onnxruntime fp32": Denoiser(
            s.onnx, device="cpu", batch_size=64, session_config=cfg
        ).denoise_nchw,
        "OpenVINO fp32": openvino_engine(s.onnx, threads),
    }
    runs.update({name: openvino_engine(path, threads) for name, path in models.items()})
    out: dict[str, dict[str, float]] = {}
    for i, (workload, shape) in enumerate(WORKLOADS.items()):
        x = np.random.default_rng(0).random((shape[0], 3, *shape[1:]), dtype=np.float32)
        these = {k: f for k, f in runs.items() if i == 0 or k not in sweep}
        with bench_lock():
            out[workload] = interleaved(these, x, repeats)
        log(f"timed {threads} thread(s), {workload}")
    return out


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import onnxruntime
    import openvino

    from bench.throughput import WORKLOADS, machine

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        s = Search(args.noise, Path(tmp))
        reference = mean_psnr(openvino_engine(s.onnx, 2), s.pairs)
        models: dict[str, Path] = {}
        for c in candidates(args.qat):
            t0 = time.perf_counter()
            built = build(c, s)
            engine = built if callable(built) else openvino_engine(built, 2)
            cost = reference - mean_psnr(engine, s.pairs)
            if isinstance(built, Path):
                models[c["name"]] = built
            rows.append({**c, "psnr_cost_db": cost, "build_s": time.perf_counter() - t0})
            log(f"{c['name']}: {cost:+.4f} dB")
        sweep = {r["name"] for r in rows if r.get("sweep")}
        speed = {t: timings(models, sweep, s, t, args.repeats) for t in args.threads}
    for row in rows:
        row["speedup"] = {
            f"{t}t {w}": speed[t][w]["onnxruntime fp32"] / speed[t][w][row["name"]]
            for t in args.threads
            for w in WORKLOADS
            if row["name"] in speed[t][w]
        }
        row["meets_bar"] = bool(row["speedup"]) and (
            min(row["speedup"].values()) >= MIN_SPEEDUP and row["psnr_cost_db"] <= MAX_COST_DB
        )
    import nncf

    return {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "versions": {
            "onnxruntime": onnxruntime.__version__,
            "openvino": openvino.__version__,
            "nncf": nncf.__version__,
        },
        "held_out": f"{len(s.pairs)} TRAIN_EXTRA photos at 480×320, noise {args.noise}",
        "reference_psnr": reference,
        "bar": {"min_speedup": MIN_SPEEDUP, "max_cost_db": MAX_COST_DB},
        "repeats": args.repeats,
        "openvino_fp32_speedup": {
            f"{t}t {w}": speed[t][w]["onnxruntime fp32"] / speed[t][w]["OpenVINO fp32"]
            for t in args.threads
            for w in WORKLOADS
        },
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    keys = list(result["openvino_fp32_speedup"])
    lines = [
        f"Measured {result['date']} on {result['machine']} by `python bench/int8_search.py`: "
        + ", ".join(f"{k} {v}" for k, v in result["versions"].items())
        + f". PSNR cost against OpenVINO fp32 ({result['reference_psnr']:.3f} dB) on "
        f"{result['held_out']}; speed: candidate through OpenVINO vs onnxruntime fp32, "
        f"median of {result['repeats']} interleaved runs (OpenVINO fp32: "
        + ", ".join(f"{result['openvino_fp32_speedup'][k]:.2f}×" for k in keys)
        + f"). Bar: ≥ {result['bar']['min_speedup']}× everywhere for ≤ "
        f"{result['bar']['max_cost_db']} dB.",
        "",
        "| candidate | PSNR cost dB | " + " | ".join(f"× at {k}" for k in keys) + " | bar |",
        "| --- | ---: | " + "---: | " * len(keys) + "--- |",
    ]
    for r in result["rows"]:
        sp = " | ".join(f"{r['speedup'][k]:.2f}" if k in r["speedup"] else "–" for k in keys)
        bar = "yes" if r["meets_bar"] else "no"
        lines.append(f"| {r['name']} | {r['psnr_cost_db']:+.3f} | {sp} | {bar} |")
    return "\n".join(lines) + "\n"


def _steps_lr(text: str) -> tuple[int, float]:
    steps, _, lr = text.partition(":")
    return int(steps), float(lr or 2e-5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--noise", default="gaussian:25")
    parser.add_argument(
        "--qat",
        type=_steps_lr,
        nargs="*",
        default=[(600, 2e-5)],
        metavar="STEPS:LR",
        help="fine-tuning runs (each about 13 minutes of one thread per 600 steps; cached)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "int8_search")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from bench.report import write_results

    result = run(args)
    write_results(args.out, result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
