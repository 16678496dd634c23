"""Fine-tuning on your own noise: pairs, bursts and single images against the shipped model.

Usage: python -m bench.own_noise [--minutes 20] [--noises camera,poisson-gaussian]
       [--modes photo,pairs,bursts,singles,clean,cbm3d] [--train-photos 66] [--threads 1]

Needs the photo corpus (``n2n-train corpus``) and the train extra; CBM3D rows need the
``bm3d`` package (skipped when missing). Writes ``bench/results/own_noise.json`` and
``.md``; ``docs/own_data.md`` quotes the table.

What it does, per noise:

1. Builds, in a temporary folder, the three layouts a user would have from the
   ``TRAIN_CORE`` photos (resized and centre-cropped to 480×320): ``pairs`` (two
   folders, two independent noisy captures per photo), ``bursts`` (a subfolder per
   photo with :data:`BURST_FRAMES` captures) and ``singles`` (one capture per photo),
   plus ``clean`` (the noise-free output of the same pipeline, as the second folder of
   ``--pairs NOISY CLEAN --target clean``: the clean-target ceiling).
2. Fine-tunes the shipped ``photo`` model on each, one ``n2n-train fit --init photo``
   process per mode, all with the same ``--minutes`` budget and ``--threads``
   (``--rescore`` with ``--work``: score the runs already there instead).
3. Scores every result, the shipped model and CBM3D (its sigma estimated from each
   noisy image with ``skimage.restoration.estimate_sigma``) on the ``TRAIN_EXTRA``
   photos at 480×320, noised by the same pipeline with a fixed seed, against the
   noise-free output of that pipeline (a denoiser removes noise; it cannot undo the
   demosaicking both captures share). PSNR: per image on uint8 outputs, the mean.
   Each run is scored from its best checkpoint (the table) and its last one.

The noises (uint8 H×W×3 sRGB in, uint8 out; clipped and rounded like a file):

- ``camera``: a camera-like pipeline. sRGB is linearised (gamma 2.2), sampled on an
  RGGB Bayer mosaic, given shot and read noise (variance ``SHOT·x + READ²`` on the
  linear signal), demosaicked bilinearly and tone-mapped back (gamma 1/2.2). After
  demosaicking, neighbouring pixels share noise: it is spatially correlated.
- ``poisson-gaussian``: ``Poisson(LAMBDA·x)/LAMBDA + N(0, SIGMA_READ²)`` per pixel and
  channel on sRGB values in [0, 1]: signal-dependent, independent between pixels.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import convolve

from bench.report import write_results
from bench.variants import held_out_images, machine
from n2n_export.data import load_clean_images, resized_crops
from n2n_infer.metrics import psnr
from n2n_train.checkpoint import load_checkpoint
from n2n_train.corpus import fetch_corpus

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "results" / "own_noise"
#: Frames per scene in the bursts layout.
BURST_FRAMES = 4
#: Camera pipeline: shot-noise gain and read-noise std on the linear signal in [0, 1].
SHOT, READ = 0.015, 0.006
GAMMA = 2.2
#: Poisson-Gaussian: photons at white, and the read noise's std on [0, 1].
LAMBDA, SIGMA_READ = 100.0, 0.02
#: Training: the same for every mode (fine-tuning the shipped model).
FIT_OPTIONS = [
    "--optimizer", "adam", "--lr", "1e-4", "--batch-size", "8", "--patch-size", "64",
    "--steps-per-epoch", "40", "--epochs", "100000", "--dihedral", "--no-progress",
]  # fmt: skip
MODES = ("photo", "pairs", "bursts", "singles", "clean", "cbm3d")
Noise = Callable[[np.ndarray, np.random.Generator | None], np.ndarray]


def _u8(img01: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(img01, 0.0, 1.0) * 255.0).astype(np.uint8)


def _bayer_masks(h: int, w: int) -> np.ndarray:
    """H×W×3 masks of an RGGB mosaic."""
    masks = np.zeros((h, w, 3), bool)
    masks[0::2, 0::2, 0] = True
    masks[0::2, 1::2, 1] = True
    masks[1::2, 0::2, 1] = True
    masks[1::2, 1::2, 2] = True
    return masks


_K_GREEN = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]]) / 4.0
_K_RB = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 4.0


def demosaic(mosaic: np.ndarray) -> np.ndarray:
    """Bilinear demosaicking of an H×W RGGB mosaic -> H×W×3."""
    masks = _bayer_masks(*mosaic.shape)
    out = np.empty((*mosaic.shape, 3))
    for c, k in ((0, _K_RB), (1, _K_GREEN), (2, _K_RB)):
        out[:, :, c] = convolve(mosaic * masks[:, :, c], k, mode="mirror")
    return out


def camera(clean_u8: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """The camera-like pipeline; ``rng=None`` gives its noise-free output."""
    linear = (clean_u8 / 255.0) ** GAMMA
    mosaic = (linear * _bayer_masks(*linear.shape[:2])).sum(axis=2)
    if rng is not None:
        mosaic = mosaic + rng.standard_normal(mosaic.shape) * np.sqrt(SHOT * mosaic + READ**2)
    return _u8(np.clip(demosaic(mosaic), 0.0, 1.0) ** (1.0 / GAMMA))


def poisson_gaussian(clean_u8: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Poisson-Gaussian noise per pixel and channel; ``rng=None`` gives the clean image."""
    if rng is None:
        return clean_u8
    x = clean_u8 / 255.0
    noisy = rng.poisson(LAMBDA * x) / LAMBDA + rng.normal(0.0, SIGMA_READ, x.shape)
    return _u8(noisy)


NOISES: dict[str, Noise] = {"camera": camera, "poisson-gaussian": poisson_gaussian}


def build_layouts(photos: list[np.ndarray], noise: Noise, root: Path, seed: int) -> None:
    """Write ``root/{pairs_a,pairs_b,bursts/<scene>,singles,clean}`` as a user would have them."""
    rng = np.random.default_rng(seed)
    for i, photo in enumerate(photos):
        name = f"scene{i:03d}.png"
        frames = [noise(photo, rng) for _ in range(BURST_FRAMES)]
        for folder, img in (
            ("pairs_a", frames[0]),
            ("pairs_b", frames[1]),
            ("singles", frames[0]),
            ("clean", noise(photo, None)),
        ):
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / folder / name)
        for k, img in enumerate(frames):
            (root / "bursts" / name[:-4]).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / "bursts" / name[:-4] / f"frame{k}.png")


def fit_command(mode: str, data: Path, out: Path, minutes: float, threads: int) -> list[str]:
    """The ``n2n-train fit`` command line of one mode."""
    source = {
        "pairs": ["--pairs", str(data / "pairs_a"), str(data / "pairs_b")],
        "bursts": ["--bursts", str(data / "bursts")],
        "singles": ["--singles", str(data / "singles")],
        "clean": ["--pairs", str(data / "pairs_a"), str(data / "clean"), "--target", "clean"],
    }[mode]
    return [
        sys.executable, "-m", "n2n_train.cli", "fit", *source, "--init", "photo",
        "--out", str(out), "--minutes", f"{minutes:g}", "--threads", str(threads),
        *FIT_OPTIONS,
    ]  # fmt: skip


@torch.no_grad()
def denoise_torch(checkpoint: Path, images: list[np.ndarray]) -> list[np.ndarray]:
    """Run a checkpoint on uint8 H×W×3 images (sides multiples of its stride); uint8 out."""
    model = load_checkpoint(checkpoint).build_model()
    out = []
    for img in images:
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
        out.append(_u8(model(x)[0].permute(1, 2, 0).numpy()))
    return out


def cbm3d(images: list[np.ndarray]) -> tuple[list[np.ndarray], list[float]]:
    """CBM3D with sigma estimated from each noisy image (0-255 scale); outputs and sigmas."""
    import bm3d
    from skimage.restoration import estimate_sigma

    outs, sigmas = [], []
    for img in images:
        x = img / 255.0
        sigma = float(estimate_sigma(x, channel_axis=-1, average_sigmas=True))
        outs.append(_u8(bm3d.bm3d_rgb(x, sigma)))
        sigmas.append(255.0 * sigma)
    return outs, sigmas


def score(outputs: list[np.ndarray], targets: list[np.ndarray]) -> dict[str, object]:
    per_image = [psnr(o, t) for o, t in zip(outputs, targets, strict=True)]
    return {"psnr": float(np.mean(per_image)), "psnr_per_image": per_image}


def run_noise(
    name: str, args: argparse.Namespace, photos: list[np.ndarray], held_out: list[np.ndarray]
) -> dict[str, object]:
    """Every mode of one noise: the table's row values and the runs' facts."""
    noise = NOISES[name]
    rng = np.random.default_rng(args.seed + 1000)
    noisy = [noise(img, rng) for img in held_out]
    targets = [noise(img, None) for img in held_out]
    row: dict[str, object] = {"noisy": score(noisy, targets)}
    work = Path(args.work) / name if args.work else Path(tempfile.mkdtemp(prefix=f"own-{name}-"))
    build_layouts(photos, noise, work / "data", args.seed)
    for mode in args.modes:
        t0 = time.perf_counter()
        if mode == "photo":
            row[mode] = score(denoise_torch(REPO / "models" / "photo.pt", noisy), targets)
        elif mode == "cbm3d":
            outs, sigmas = cbm3d(noisy)
            row[mode] = {**score(outs, targets), "sigma_255": sigmas}
        else:
            run = work / mode
            if not (args.rescore and (run / "last.pt").is_file()):
                cmd = fit_command(mode, work / "data", run, args.minutes, args.threads)
                with (work / f"{mode}.log").open("w") as log:
                    subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
            summary = load_checkpoint(run / "best.pt").summary
            row[mode] = {
                **score(denoise_torch(run / "best.pt", noisy), targets),
                "last_psnr": score(denoise_torch(run / "last.pt", noisy), targets)["psnr"],
                "epochs_run": len((run / "metrics.jsonl").read_text().splitlines()),
                "best_epoch": summary.get("best_epoch"),
                "best_val_loss": summary.get("best_val_loss"),
                "start_val_loss": (summary.get("init") or {}).get("val_loss"),
            }
        row[mode]["seconds"] = time.perf_counter() - t0  # type: ignore[index]
        print(f"{name} {mode}: {row[mode]['psnr']:.2f} dB", file=sys.stderr)  # type: ignore[index]
    return row


def markdown(result: dict) -> str:
    noises = list(result["results"])
    names = list(result["results"][noises[0]])
    lines = [
        "| method | " + " | ".join(f"{n} PSNR (dB)" for n in noises) + " |",
        "|---" * (len(noises) + 1) + "|",
    ]
    for n in names:
        cells = [
            f"{result['results'][k][n]['psnr']:.2f}" if n in result["results"][k] else "–"
            for k in noises
        ]
        lines.append(f"| {LABELS.get(n, n)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Best checkpoint (lowest validation loss) against the last one, and epochs run:",
        "",
    ]
    lines.append("| mode | " + " | ".join(f"{k} best / last (epochs)" for k in noises) + " |")
    lines.append("|---" * (len(noises) + 1) + "|")
    for n in (m for m in names if m in ("pairs", "bursts", "singles", "clean")):
        cells = []
        for k in noises:
            v = result["results"][k].get(n)
            cells.append(
                f"{v['psnr']:.2f} / {v['last_psnr']:.2f} ({v['epochs_run']})" if v else "–"
            )
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


LABELS = {
    "noisy": "noisy input",
    "photo": "shipped `photo` (no fine-tuning)",
    "pairs": "fine-tuned on pairs",
    "bursts": f"fine-tuned on bursts ({BURST_FRAMES} frames)",
    "singles": "fine-tuned on singles (Neighbor2Neighbor)",
    "clean": "fine-tuned with clean targets (ceiling)",
    "cbm3d": "CBM3D, sigma estimated per image",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="training budget per mode")
    ap.add_argument("--noises", default=",".join(NOISES))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--train-photos", type=int, default=0, help="first N TRAIN_CORE photos")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per training run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="", help="keep the data and runs here [default: temp]")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument(
        "--rescore",
        action="store_true",
        help="with --work: score runs already there instead of training them again",
    )
    args = ap.parse_args()
    args.modes = [m for m in args.modes.split(",") if m]
    if "cbm3d" in args.modes and importlib.util.find_spec("bm3d") is None:
        print("bm3d is not installed: no CBM3D row", file=sys.stderr)
        args.modes.remove("cbm3d")
    torch.set_num_threads(args.threads)
    core = fetch_corpus(("TRAIN_CORE",))["TRAIN_CORE"]
    photos = resized_crops(load_clean_images(core), 320, 480)
    photos = photos[: args.train_photos] if args.train_photos else photos
    held_out = held_out_images()
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "command": " ".join(["python -m bench.own_noise", *sys.argv[1:]]),
        "minutes_per_mode": args.minutes,
        "threads": args.threads,
        "train_photos": len(photos),
        "held_out_photos": len(held_out),
        "noise_params": {"camera": {"shot": SHOT, "read": READ, "gamma": GAMMA},
                         "poisson-gaussian": {"lambda": LAMBDA, "sigma_read": SIGMA_READ}},
        "fit_options": FIT_OPTIONS,
        "results": {},
    }  # fmt: skip
    for name in args.noises.split(","):
        result["results"][name] = run_noise(name, args, photos, held_out)
        write_results(args.out, result, markdown(result))  # after each noise: partial results
    print(json.dumps({k: v for k, v in result.items() if k != "results"}, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()
