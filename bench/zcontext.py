"""Z-context: do neighbouring planes as extra input channels help a Noise2Noise UNet?

Usage: python -m bench.zcontext [--contexts 0,1,2] [--seeds 0,1] [--steps 1500]
       [--batch 8] [--patch 64] [--threads 1] [--sigma-z 3] [--out STEM]

Writes ``bench/results/zcontext.json`` and ``.md`` (``--out``: another stem).

The question: with z-context ``K`` the network sees planes ``z-K .. z+K`` of a
noisy volume as ``2K+1`` input channels and denoises the centre plane ``z`` (one
output channel). Does that beat plane-by-plane denoising (``K`` = 0, one input
channel) by at least 0.3 dB on a volume with structure across planes?

The data: one synthetic volume (``PLANES`` planes of ``SIDE``×``SIDE``) of smooth
random 3-D structures, values in [0, 1]: Gaussian blobs of several sizes and
filaments (random 3-D polylines) drawn into the volume, then blurred with a
Gaussian of ``--sigma-z`` planes (:data:`SIGMA_Z`) along Z and ``SIGMA_XY``
pixels across, so that the structure is correlated over several planes. It is "captured" twice,
independently, with Poisson-Gaussian noise: ``(Poisson(PHOTONS·x) + N(0, READ²))
/ PHOTONS`` (a Noise2Noise pair). The first ``TRAIN_PLANES`` planes train, the
last ``TEST_PLANES`` are held out (a gap of ``GAP`` planes between them); the
context of a plane near the volume's ends is mirrored (as ``numpy.pad`` reflects).

Every run trains the same UNet (``features=(16, 32, 64)``, two convolutions per
level) with ``2K+1`` input channels and one output to which the centre noisy
plane is added (residual, as the product's models are), with the same budget:
``--steps`` Adam steps (lr 1e-3) of ``--batch`` random ``--patch``² patches, the
input from one capture and the target (the centre plane) from the other, the
captures' roles drawn at random. PSNR (peak 1) is measured on the whole held-out
planes of the first capture against the clean volume (mean squared error over
all of them). Each seed draws its own volume, noise and network.
"""

from __future__ import annotations

import argparse
import datetime
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from bench.report import write_results
from bench.variants import machine
from n2n_train.config import UNetConfig
from n2n_train.unet import UNet

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "results" / "zcontext"
#: The volume: planes, side (pixels) and its blur (correlation lengths).
PLANES, SIDE, SIGMA_Z, SIGMA_XY = 64, 128, 3.0, 1.5
#: Planes that train, held out, and the planes left out between them.
TRAIN_PLANES, GAP = 44, 4
TEST_PLANES = PLANES - TRAIN_PLANES - GAP
#: Photons at white and read noise (photons).
PHOTONS, READ = 20.0, 2.0
#: The bar for adding a ``--z-context`` option (dB over plane by plane).
BAR_DB = 0.3


def volume(rng: np.random.Generator, sigma_z: float = SIGMA_Z, z_step: int = 1) -> np.ndarray:
    """A PLANES×SIDE×SIDE float32 volume in [0, 1] of blurred 3-D blobs and filaments:
    every ``z_step``-th plane of one ``z_step`` times as deep (coarser axial sampling of
    the same kind of sample)."""
    depth = PLANES * z_step
    vol = np.zeros((depth, SIDE, SIDE), np.float64)
    zz, yy, xx = np.meshgrid(
        np.arange(depth), np.arange(SIDE), np.arange(SIDE), indexing="ij", sparse=True
    )
    for _ in range(60 * z_step):  # blobs: ellipsoids, longer along Z than a plane
        cz, cy, cx = rng.uniform(0, depth), rng.uniform(0, SIDE), rng.uniform(0, SIDE)
        rz, rxy = rng.uniform(2.0, 8.0), rng.uniform(2.0, 9.0)
        d2 = ((zz - cz) / rz) ** 2 + ((yy - cy) / rxy) ** 2 + ((xx - cx) / rxy) ** 2
        vol += rng.uniform(0.3, 1.0) * np.exp(-0.5 * d2)
    for _ in range(25 * z_step):  # filaments: random 3-D polylines, one voxel wide before the blur
        p = np.array([rng.uniform(0, depth), rng.uniform(0, SIDE), rng.uniform(0, SIDE)])
        step = rng.normal(size=3)
        brightness = rng.uniform(2.0, 5.0)
        for _ in range(300):
            step = 0.85 * step + 0.15 * rng.normal(size=3) * np.array([0.4, 1.0, 1.0])
            p = p + step / (np.linalg.norm(step) + 1e-9)
            z, y, x = np.round(p).astype(int)
            if not (0 <= z < depth and 0 <= y < SIDE and 0 <= x < SIDE):
                break
            vol[z, y, x] += brightness
    vol = gaussian_filter(vol, (sigma_z, SIGMA_XY, SIGMA_XY), mode="reflect")[::z_step]
    vol -= vol.min()
    vol /= np.quantile(vol, 0.999)
    return np.clip(vol, 0.0, 1.0).astype(np.float32)


def capture(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``clean`` with Poisson-Gaussian noise, on the signal scale (1 = PHOTONS)."""
    counts = rng.poisson(PHOTONS * clean.astype(np.float64)) + rng.normal(0.0, READ, clean.shape)
    return (counts / PHOTONS).astype(np.float32)


def stacked(noisy: np.ndarray, k: int) -> np.ndarray:
    """PLANES×(2k+1)×H×W: each plane's context, planes beyond the ends mirrored."""
    padded = np.pad(noisy, ((k, k), (0, 0), (0, 0)), mode="reflect")
    return np.stack([padded[z : z + 2 * k + 1] for z in range(noisy.shape[0])])


class ZNet(torch.nn.Module):
    """The UNet on ``2k+1`` planes, its one output added to the centre plane."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k
        cfg = UNetConfig(
            features=(16, 32, 64), convs_per_level=2, in_channels=2 * k + 1, out_channels=1
        )
        self.net = UNet(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.k : self.k + 1] + self.net(x)


def psnr(mse: float) -> float:
    return 10.0 * math.log10(1.0 / mse)


def train_and_score(
    k: int,
    captures: tuple[np.ndarray, np.ndarray],
    clean: np.ndarray,
    seed: int,
    steps: int,
    batch: int,
    patch: int,
) -> dict[str, float]:
    """Train z-context ``k`` on the training planes; PSNR on the held-out planes."""
    torch.manual_seed(seed)
    gen = np.random.default_rng(seed + 1000 * (k + 1))
    inputs = [torch.from_numpy(stacked(c, k)) for c in captures]  # Z×C×H×W each
    targets = [torch.from_numpy(c) for c in captures]  # Z×H×W
    model = ZNet(k)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    model.train()
    for _ in range(steps):
        z = gen.integers(0, TRAIN_PLANES, batch)
        y = gen.integers(0, SIDE - patch + 1, batch)
        x = gen.integers(0, SIDE - patch + 1, batch)
        src = gen.integers(0, 2, batch)
        inp = torch.stack(
            [
                inputs[s][zi, :, yi : yi + patch, xi : xi + patch]
                for s, zi, yi, xi in zip(src, z, y, x, strict=True)
            ]
        )
        tgt = torch.stack(
            [
                targets[1 - s][zi, yi : yi + patch, xi : xi + patch]
                for s, zi, yi, xi in zip(src, z, y, x, strict=True)
            ]
        ).unsqueeze(1)
        loss = torch.nn.functional.mse_loss(model(inp), tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    train_s = time.perf_counter() - t0
    model.eval()
    test = slice(PLANES - TEST_PLANES, PLANES)
    with torch.no_grad():
        out = torch.cat([model(inputs[0][test][i : i + 4]) for i in range(0, TEST_PLANES, 4)])
    out = out[:, 0].clamp(0.0, 1.0).numpy().astype(np.float64)
    mse = float(np.mean((out - clean[test]) ** 2))
    return {"psnr": psnr(mse), "train_s": train_s, "final_loss": float(loss.detach())}


def table(result: dict[str, Any]) -> str:
    """The Markdown report of ``result``."""
    vol, corr, n = result["volume"], result["z_correlation"], result["patch"]
    kept = "every plane" if vol["z_step"] == 1 else f"every {vol['z_step']}th plane"
    lines = [
        "# Z-context: neighbouring planes as input channels",
        "",
        f"Date: {result['date']}. Machine: {result['machine']}.",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Volume: {PLANES} planes of {SIDE}×{SIDE}, blobs and filaments blurred by "
        f"σ = {vol['sigma_z']:g} planes along Z and {SIGMA_XY:g} px across, "
        f"{kept} kept (clean planes "
        f"correlate {corr['dz=1']:.3f} with their neighbours, {corr['dz=2']:.3f} two planes "
        f"apart); Poisson-Gaussian noise, {PHOTONS:g} photons at white, read noise {READ:g} "
        f"photons. Trained on planes 0..{TRAIN_PLANES - 1}, scored on the held-out planes "
        f"{PLANES - TEST_PLANES}..{PLANES - 1} against the clean volume (noisy input: "
        f"{result['noisy_psnr_mean']:.2f} dB). UNet (16, 32, 64), two convolutions per "
        f"level, residual on the centre plane; {result['steps']} Adam steps (lr 1e-3) of "
        f"{result['batch']} patches {n}×{n}, {result['threads']} thread(s); seeds "
        f"{result['seeds']} (each its own volume, noise and network).",
        "",
        "| K (planes in) | PSNR (dB), mean ± half-range | per seed "
        "| gain vs K=0 (dB), mean ± half-range |",
        "|---|---|---|---|",
    ]
    for row in result["rows"]:
        per_seed = ", ".join(f"{p:.2f}" for p in row["psnr"])
        gain = "—" if row["k"] == 0 else f"{row['gain_mean']:+.2f} ± {row['gain_spread']:.2f}"
        psnr_text = f"{row['psnr_mean']:.2f} ± {row['psnr_spread']:.2f}"
        lines.append(f"| {row['k']} ({2 * row['k'] + 1}) | {psnr_text} | {per_seed} | {gain} |")
    lines += ["", f"Verdict: {result['verdict']}", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contexts", default="0,1,2", help="z-context K values, comma-separated")
    ap.add_argument("--seeds", default="0,1", help="seeds, comma-separated")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sigma-z", type=float, default=SIGMA_Z, help="the volume's blur along Z")
    ap.add_argument(
        "--z-step", type=int, default=1, help="keep every N-th plane of an N times deeper volume"
    )
    ap.add_argument("--out", type=Path, default=OUT, help="results stem (.json and .md)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    contexts = [int(k) for k in args.contexts.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    if 0 not in contexts:
        ap.error("--contexts must include 0 (the baseline)")
    scores: dict[int, list[float]] = {k: [] for k in contexts}
    noisy_psnr: list[float] = []
    corr: list[list[float]] = []
    runs = []
    test = slice(PLANES - TEST_PLANES, PLANES)
    for seed in seeds:
        rng = np.random.default_rng(seed)
        clean = volume(rng, args.sigma_z, args.z_step)
        captures = (capture(clean, rng), capture(clean, rng))
        corr.append(
            [float(np.corrcoef(clean[:-d].ravel(), clean[d:].ravel())[0, 1]) for d in (1, 2)]
        )
        noisy_mse = float(np.mean((captures[0][test].astype(np.float64) - clean[test]) ** 2))
        noisy_psnr.append(psnr(noisy_mse))
        for k in contexts:
            r = train_and_score(k, captures, clean, seed, args.steps, args.batch, args.patch)
            scores[k].append(r["psnr"])
            runs.append({"seed": seed, "k": k, **r})
            print(
                f"seed {seed} K={k}: {r['psnr']:.2f} dB (noisy {noisy_psnr[-1]:.2f}), "
                f"{r['train_s']:.0f} s",
                flush=True,
            )
    z_corr = {f"dz={d}": float(np.mean([c[i] for c in corr])) for i, d in enumerate((1, 2))}
    rows = []
    for k in contexts:
        gains = [a - b for a, b in zip(scores[k], scores[0], strict=True)]
        rows.append(
            {
                "k": k,
                "psnr": scores[k],
                "psnr_mean": float(np.mean(scores[k])),
                "psnr_spread": float(np.ptp(scores[k]) / 2),
                "gain": gains,
                "gain_mean": float(np.mean(gains)),
                "gain_spread": float(np.ptp(gains) / 2),
            }
        )
    best = max(rows[1:], key=lambda r: r["gain_mean"], default=None)
    if best is None:
        verdict = "only K=0 measured."
    elif best["gain_mean"] >= BAR_DB and min(best["gain"]) > 0:
        verdict = (
            f"K={best['k']} gains {best['gain_mean']:+.2f} dB (≥ {BAR_DB} dB): z-context is "
            "worth a training option."
        )
    else:
        verdict = (
            f"the best, K={best['k']}, gains {best['gain_mean']:+.2f} dB (< {BAR_DB} dB or not "
            "on every seed): no z-context option."
        )
    result: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "command": "python -m bench.zcontext " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "torch": torch.__version__,
        "steps": args.steps,
        "batch": args.batch,
        "patch": args.patch,
        "threads": args.threads,
        "seeds": seeds,
        "volume": {
            "planes": PLANES,
            "side": SIDE,
            "sigma_z": args.sigma_z,
            "z_step": args.z_step,
            "sigma_xy": SIGMA_XY,
        },
        "z_correlation": z_corr,
        "noise": {"photons": PHOTONS, "read": READ},
        "split": {"train_planes": TRAIN_PLANES, "gap": GAP, "test_planes": TEST_PLANES},
        "noisy_psnr": noisy_psnr,
        "noisy_psnr_mean": float(np.mean(noisy_psnr)),
        "rows": rows,
        "runs": runs,
        "bar_db": BAR_DB,
        "verdict": verdict,
    }
    write_results(args.out, result, table(result))
    print(table(result))


if __name__ == "__main__":
    main()
