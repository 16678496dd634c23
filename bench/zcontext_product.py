"""Z-context through the product: ``n2n-train fit --z-context K`` → ``n2n-export onnx`` →
``Denoiser.denoise(axes="ZYX")``, against plane by plane, on bench.zcontext's volume.

Usage: python -m bench.zcontext_product [--contexts 0,1,2] [--seed 0] [--epochs 5]
       [--steps-per-epoch 300] [--batch 8] [--patch 64] [--out STEM]

Writes ``bench/results/zcontext_product.json`` and ``.md`` (``--out``: another stem).

The data are :func:`bench.zcontext.volume` and :func:`bench.zcontext.capture` (imported,
not copied): one volume, captured twice with Poisson-Gaussian noise. The product reads
float32 stacks only in [0, 1], and the noise reaches below 0 (read noise) and above 1
(Poisson at white), so each capture is written as float32 ``(noisy + OFFSET) / SPAN``,
an affine map known here and undone on the output (a voxel outside [0, 1] would be
clipped; the number of them is reported, 0 at these settings). float32 is mapped by its
full scale at both ends (no per-stack levels), so the two captures and the held-out
stack share one mapping. Planes 0..TRAIN_PLANES-1 of both captures are the training
pair (``--pairs A B``, ZYX OME-TIFF); the held-out planes (after a gap) of the first
capture are another ZYX stack, denoised by ``Denoiser(model).denoise(volume,
axes="ZYX")`` after being read back from its file; PSNR (peak 1, the clean volume's
scale) is over all held-out planes after clipping the output to [0, 1], as in
bench.zcontext.

Every K trains with the same budget and options (Adam lr 1e-3, UNet 16,32,64 with two
convolutions per level, residual, same seed, one thread); ``fit`` keeps 20 % of the
training planes for validation (bench.zcontext trained on all of them) and the
exported model is ``best.pt`` by validation loss.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from bench.report import write_results
from bench.variants import machine
from bench.zcontext import GAP, PLANES, TRAIN_PLANES, capture, volume

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "results" / "zcontext_product"
#: The stored float32 is ``(noisy + OFFSET) / SPAN`` (noisy on the clean [0, 1] scale).
OFFSET, SPAN = 0.5, 3.0
FEATURES = "16,32,64"


def to_stored(noisy: np.ndarray) -> tuple[np.ndarray, int]:
    """The float32 stack the product reads, and how many voxels had to be clipped."""
    stored = (noisy.astype(np.float64) + OFFSET) / SPAN
    clipped = int(np.count_nonzero((stored < 0) | (stored > 1)))
    return np.clip(stored, 0.0, 1.0).astype(np.float32), clipped


def from_stored(stored: np.ndarray) -> np.ndarray:
    return stored.astype(np.float64) * SPAN - OFFSET


def psnr(estimate: np.ndarray, clean: np.ndarray, clip: bool = True) -> float:
    """PSNR, peak 1; ``clip``: the estimate clipped to [0, 1] first (as bench.zcontext
    clamps the network's output but not the noisy input)."""
    estimate = np.clip(estimate, 0.0, 1.0) if clip else estimate.astype(np.float64)
    mse = float(np.mean((estimate - clean.astype(np.float64)) ** 2))
    return 10.0 * math.log10(1.0 / mse)


def write_data(root: Path, seed: int, planes: int = PLANES) -> dict[str, Any]:
    """Write the training pair ``root/a``, ``root/b`` and ``root/test/held_out.ome.tif``.

    ``planes`` < PLANES keeps the first planes of the volume (for tests); the split
    keeps bench.zcontext's proportions. Returns the paths, the clean held-out planes,
    the split and the clipped-voxel count."""
    rng = np.random.default_rng(seed)
    clean = volume(rng)[:planes]
    captures = (capture(clean, rng), capture(clean, rng))
    train = TRAIN_PLANES * planes // PLANES
    gap = max(1, GAP * planes // PLANES)
    test = slice(train + gap, planes)
    clipped = 0
    paths = {}
    for name, data in (("a", captures[0][:train]), ("b", captures[1][:train])):
        stored, n = to_stored(data)
        clipped += n
        paths[name] = root / name
        paths[name].mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(paths[name] / "volume.ome.tif", stored, ome=True, metadata={"axes": "ZYX"})
    stored, n = to_stored(captures[0][test])
    clipped += n
    (root / "test").mkdir(parents=True, exist_ok=True)
    paths["test"] = root / "test" / "held_out.ome.tif"
    tifffile.imwrite(paths["test"], stored, ome=True, metadata={"axes": "ZYX"})
    return {
        "paths": paths,
        "clean_test": clean[test],
        "noisy_psnr": psnr(captures[0][test], clean[test], clip=False),
        "split": {"train_planes": train, "gap": gap, "test_planes": planes - train - gap},
        "clipped_voxels": clipped,
        "z_correlation_dz1": float(np.corrcoef(clean[:-1].ravel(), clean[1:].ravel())[0, 1]),
    }


def fit_args(k: int, a: Path, b: Path, out: Path, opts: argparse.Namespace, seed: int) -> list[str]:
    """``n2n-train fit`` arguments of z-context ``k`` (``--channels 1`` for K 0)."""
    args = ["fit", "--pairs", str(a), str(b), "--out", str(out), "--features", FEATURES,
            "--convs-per-level", "2", "--residual", "--optimizer", "adam", "--lr", "1e-3",
            "--batch-size", str(opts.batch), "--patch-size", str(opts.patch),
            "--epochs", str(opts.epochs), "--steps-per-epoch", str(opts.steps_per_epoch),
            "--seed", str(seed), "--threads", "1", "--no-progress", "--overwrite"]  # fmt: skip
    args += ["--z-context", str(k)] if k else ["--channels", "1"]
    return args


def _run(module: str, args: list[str]) -> float:
    """Run ``python -m module args`` with one thread; its wall time (s)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", module, *args], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{module} {shlex.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}"
        )
    return time.perf_counter() - t0


def measure(
    k: int, data: dict[str, Any], work: Path, opts: argparse.Namespace, seed: int
) -> dict[str, Any]:
    """Train, export and run z-context ``k``; its PSNR on the held-out planes."""
    from n2n_infer import Denoiser

    run = work / f"run_k{k}"
    args = fit_args(k, data["paths"]["a"], data["paths"]["b"], run, opts, seed)
    train_s = _run("n2n_train.cli", args)
    model = work / f"z{k}.onnx"
    export_s = _run("n2n_export.cli", ["onnx", str(run / "best.pt"), str(model)])
    held_out = tifffile.imread(data["paths"]["test"])
    t0 = time.perf_counter()
    out = Denoiser(model, device="cpu", intra_op_threads=1).denoise(held_out, axes="ZYX")
    denoise_s = time.perf_counter() - t0
    assert out.shape == held_out.shape and out.dtype == held_out.dtype
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [m["val_loss"] for m in metrics if "val_loss" in m]
    return {
        "seed": seed,
        "k": k,
        "psnr": psnr(from_stored(out), data["clean_test"]),
        "train_s": train_s,
        "export_s": export_s,
        "denoise_s": denoise_s,
        "best_val_loss": min(val) if val else None,
        # the scratch folder is this run's own: recorded as SEED_DIR, not as a path
        "fit_args": [a.replace(str(work), "SEED_DIR") for a in args],
    }


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("n2n", "torch", "onnxruntime", "numpy", "tifffile"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def table(result: dict[str, Any]) -> str:
    """The Markdown report of ``result``."""
    s = result["split"]
    lines = [
        "# Z-context through the product (fit → export → Denoiser)",
        "",
        f"Date: {result['date']}. Machine: {result['machine']}. "
        f"Wall time: {result['elapsed_s'] / 60:.1f} min.",
        "",
        f"Command: `{result['command']}`",
        "",
        f"bench.zcontext's volume (seeds {result['seeds']}, each its own volume, noise and "
        f"network; neighbouring clean planes correlate "
        f"{result['z_correlation_dz1']:.3f}) and noise (20 photons, read 2), written as ZYX "
        f"OME-TIFF float32 `(noisy + {OFFSET:g}) / {SPAN:g}` ({result['clipped_voxels']} "
        f"voxels clipped). `n2n-train fit --pairs` on planes 0..{s['train_planes'] - 1} of "
        f"the two captures (20 % of them held for validation by fit), `n2n-export onnx` "
        f'of best.pt, `Denoiser(model).denoise(stack, axes="ZYX")` on the '
        f"{s['test_planes']} held-out planes of the first capture; PSNR peak 1 against "
        f"the clean planes (noisy input: {result['noisy_psnr_mean']:.2f} dB). Same budget for "
        f"every K: {result['steps']} Adam steps (lr 1e-3; {result['epochs']} epochs of "
        f"{result['steps_per_epoch']}) of {result['batch']} patches {result['patch']}², "
        f"UNet {FEATURES}, two convolutions per level, residual, one thread.",
        "",
        "| K (planes in) | PSNR (dB), mean | per seed | gain vs K=0 (dB), mean | per seed "
        "| bench.zcontext gain, per seed | fit (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        per_seed = ", ".join(f"{p:.2f}" for p in row["psnr"])
        ref = result["reference_gain"].get(str(row["k"]))
        if row["k"] == 0:
            gain = gains = ref_text = "—"
        else:
            gain = f"{row['gain_mean']:+.2f}"
            gains = ", ".join(f"{g:+.2f}" for g in row["gain"])
            ref_text = "—" if ref is None else ", ".join(f"{g:+.2f}" for g in ref)
        lines.append(
            f"| {row['k']} ({2 * row['k'] + 1}) | {row['psnr_mean']:.2f} | {per_seed} | {gain} "
            f"| {gains} | {ref_text} | {row['train_s_mean']:.0f} |"
        )
    lines += ["", f"Verdict: {result['verdict']}", ""]
    return "\n".join(lines)


def _reference_gain() -> dict[str, list[float]]:
    """bench.zcontext's measured gains per seed (bench/results/zcontext.json), if present."""
    path = REPO / "bench" / "results" / "zcontext.json"
    try:
        rows = json.loads(path.read_text())["rows"]
    except (OSError, ValueError, KeyError):
        return {}
    return {str(r["k"]): [float(g) for g in r["gain"]] for r in rows}


def run_bench(opts: argparse.Namespace, command: str) -> dict[str, Any]:
    """Everything but the writing: the result dict."""
    t0 = time.perf_counter()
    contexts = [int(k) for k in opts.contexts.split(",")]
    if 0 not in contexts:
        raise ValueError("--contexts must include 0 (the baseline)")
    seeds = [int(x) for x in opts.seeds.split(",")]
    runs: dict[int, list[dict[str, Any]]] = {k: [] for k in contexts}
    noisy, clipped, corr = [], 0, []
    with tempfile.TemporaryDirectory(prefix="zcontext_product_") as tmp:
        for seed in seeds:
            work = Path(tmp) / f"seed{seed}"
            data = write_data(work / "data", seed, opts.planes)
            noisy.append(data["noisy_psnr"])
            clipped += data["clipped_voxels"]
            corr.append(data["z_correlation_dz1"])
            for k in contexts:
                r = measure(k, data, work, opts, seed)
                runs[k].append(r)
                print(f"seed {seed} K={k}: {r['psnr']:.2f} dB (noisy {noisy[-1]:.2f}), "
                      f"fit {r['train_s']:.0f} s", file=sys.stderr, flush=True)  # fmt: skip
    rows = []
    for k in contexts:
        scores = [r["psnr"] for r in runs[k]]
        gains = [a - b["psnr"] for a, b in zip(scores, runs[0], strict=True)]
        rows.append(
            {
                "k": k,
                "psnr": scores,
                "psnr_mean": float(np.mean(scores)),
                "gain": gains,
                "gain_mean": float(np.mean(gains)),
                "train_s_mean": float(np.mean([r["train_s"] for r in runs[k]])),
                "fit_args": runs[k][0]["fit_args"],
                "runs": runs[k],
            }
        )
    best = max(rows, key=lambda r: r["gain_mean"])
    verdict = (
        f"best K={best['k']} gains {best['gain_mean']:+.2f} dB (mean over seeds {seeds}) over "
        "plane by plane through the product path."
        if best["k"]
        else "no K beats plane by plane through the product path."
    )
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": _versions(),
        "command": command,
        "seeds": seeds,
        "steps": opts.epochs * opts.steps_per_epoch,
        "epochs": opts.epochs,
        "steps_per_epoch": opts.steps_per_epoch,
        "batch": opts.batch,
        "patch": opts.patch,
        "threads": 1,
        "features": FEATURES,
        "storage": {"dtype": "float32", "offset": OFFSET, "span": SPAN, "axes": "ZYX"},
        "psnr_peak": 1.0,
        "planes": opts.planes,
        "split": data["split"],
        "clipped_voxels": clipped,
        "z_correlation_dz1": float(np.mean(corr)),
        "noisy_psnr": noisy,
        "noisy_psnr_mean": float(np.mean(noisy)),
        "rows": rows,
        "reference_gain": _reference_gain(),
        "verdict": verdict,
        "elapsed_s": time.perf_counter() - t0,
    }


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contexts", default="0,1,2", help="z-context K values, comma-separated")
    ap.add_argument("--seeds", default="0,1", help="seeds, comma-separated")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--steps-per-epoch", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--planes", type=int, default=PLANES, help="keep the volume's first N")
    ap.add_argument("--out", type=Path, default=OUT, help="results stem (.json and .md)")
    return ap


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    opts = parser().parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    command = "OMP_NUM_THREADS=1 python -m bench.zcontext_product " + shlex.join(argv)
    result = run_bench(opts, command.rstrip())
    write_results(opts.out, result, table(result))
    print(table(result))
    return result


if __name__ == "__main__":
    main()
