"""Fine-tuning on 16-bit grey images (a microscope's or a scientific camera's), end to end.

Usage: python -m bench.own_noise_grey16 [--minutes 8] [--threads 1] [--work DIR] [--rescore]
       [--modes photo-full,photo,pairs,clean]

Needs the photo corpus (``n2n-train corpus``) and its train extra. Writes
``bench/results/own_noise_grey16.json`` and ``.md``; ``docs/own_data.md`` quotes
the table.

Everything goes through the product's own commands, as a user would run them:
``n2n-train fit --pairs A B --init photo``, ``n2n-export onnx``, then
``n2n-infer batch`` on 16-bit TIFF files, with each ``--grey`` mode. The rows:
``photo-full`` is the shipped model with ``--levels full`` (every image at the
type's full scale, as the runtime did before dim 16-bit images got their own
levels), ``photo`` the shipped model as it runs by default, ``pairs`` the
model fine-tuned on the 16-bit pairs, ``clean`` fine-tuned with the clean
means as targets (``--target clean``: the ceiling of fine-tuning).

The data: the ``TRAIN_CORE`` photos (training) and the held-out ``TRAIN_EXTRA``
photos (scoring), resized and centre-cropped to 480×320, turned grey (luma), and
"captured" like a dim fluorescence image on a camera that writes 16-bit files:
``x`` in [0, 1] becomes ``OFFSET + Poisson(PHOTONS·x) + N(0, READ²)`` counts,
rounded and stored as uint16 (so the files use about ``OFFSET + PHOTONS`` of the
65,535 levels, as 12-bit data in a 16-bit file does). PSNR is measured on the
signal scale ``(counts - OFFSET) / PHOTONS`` against the clean ``x`` (peak 1),
per image, then the mean.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from bench.own_noise import FIT_OPTIONS
from bench.report import write_results
from bench.variants import held_out_images, machine
from n2n_export.data import load_clean_images, resized_crops
from n2n_train.corpus import fetch_corpus

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "results" / "own_noise_grey16"
#: Photons at white, the camera's offset and read noise (counts; gain 1 count per photon).
PHOTONS, OFFSET, READ = 300.0, 100.0, 3.0
MODES = ("photo-full", "photo", "pairs", "clean")
GREY_MODES = ("auto", "phases", "replicate")


def luma(rgb_u8: np.ndarray) -> np.ndarray:
    """uint8 H×W×3 sRGB -> float H×W in [0, 1] (Rec. 601 luma)."""
    return rgb_u8.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0


def capture(x: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """A 16-bit capture of the grey signal ``x``; noise-free (the mean) when ``rng`` is None."""
    counts = OFFSET + PHOTONS * x
    if rng is not None:
        counts = OFFSET + rng.poisson(PHOTONS * x) + rng.normal(0.0, READ, x.shape)
    return np.clip(np.rint(counts), 0, 65535).astype(np.uint16)


def signal(counts: np.ndarray) -> np.ndarray:
    """Counts back to the signal scale of ``x``."""
    return (counts.astype(np.float64) - OFFSET) / PHOTONS


def psnr01(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of ``a`` against ``b``, peak 1, nothing clipped: on the signal scale a noisy
    count can lie below 0 or above 1, which ``n2n_infer.metrics.psnr`` would clip."""
    return float(10.0 * np.log10(1.0 / np.mean((a - b) ** 2)))


def build(photos: list[np.ndarray], held_out: list[np.ndarray], root: Path, seed: int) -> None:
    """``root/{a,b,clean}`` (training pairs and their clean means) and ``root/test``."""
    rng = np.random.default_rng(seed)
    for folder in ("a", "b", "clean", "test", "test_clean"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i, photo in enumerate(photos):
        x = luma(photo)
        name = f"scene{i:03d}.tif"
        tifffile.imwrite(root / "a" / name, capture(x, rng))
        tifffile.imwrite(root / "b" / name, capture(x, rng))
        tifffile.imwrite(root / "clean" / name, capture(x, None))
    rng = np.random.default_rng(seed + 1000)
    for i, photo in enumerate(held_out):
        x = luma(photo)
        tifffile.imwrite(root / "test" / f"held{i:03d}.tif", capture(x, rng))
        np.save(root / "test_clean" / f"held{i:03d}.npy", x)


def score_folder(out: Path, root: Path) -> dict[str, object]:
    """Mean per-image PSNR of the 16-bit TIFFs in ``out`` (the test images' names) against
    the clean signals."""
    per_image = []
    for ref in sorted((root / "test_clean").glob("*.npy")):
        img = tifffile.imread(out / f"{ref.stem}.tif")
        if img.dtype != np.uint16 or img.ndim != 2:
            raise SystemExit(
                f"{out / ref.stem}.tif: expected 16-bit grey, got {img.dtype} {img.shape}"
            )
        per_image.append(psnr01(signal(img), np.load(ref)))
    return {"psnr": float(np.mean(per_image)), "psnr_per_image": per_image}


def run(cmd: list[str], log: Path) -> None:
    with log.open("w") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)


def infer(model: Path, root: Path, grey: str, work: Path, levels: str) -> dict[str, object]:
    """``n2n-infer batch`` on the test TIFFs with ``--grey grey --levels levels``; the scores."""
    out = work / f"out-{model.stem}-{grey}-{levels}"
    cmd = [
        sys.executable, "-m", "n2n_infer.cli", "batch", str(root / "test"), str(out),
        "--model", str(model), "--grey", grey, "--levels", levels, "--overwrite", "--quiet",
        "--device", "cpu",
    ]  # fmt: skip
    run(cmd, work / f"infer-{model.stem}-{grey}-{levels}.log")
    return score_folder(out, root)


def fine_tune(mode: str, root: Path, work: Path, args: argparse.Namespace) -> Path:
    """Fine-tune ``photo`` on the pairs (``clean``: with clean targets); the exported model."""
    run_dir = work / mode
    target = ["--target", "clean"] if mode == "clean" else []
    second = root / ("clean" if mode == "clean" else "b")
    if not (args.rescore and (run_dir / "best.pt").is_file()):
        cmd = [
            sys.executable, "-m", "n2n_train.cli", "fit", "--pairs", str(root / "a"), str(second),
            *target, "--init", "photo", "--out", str(run_dir), "--minutes", f"{args.minutes:g}",
            "--threads", str(args.threads), *FIT_OPTIONS,
        ]  # fmt: skip
        run(cmd, work / f"fit-{mode}.log")
    model = work / f"{mode}.onnx"
    cmd = [
        sys.executable, "-m", "n2n_export.cli", "onnx", str(run_dir / "best.pt"), str(model),
        "--images", str(REPO / "examples" / "clean"), "--no-card",
    ]  # fmt: skip
    run(cmd, work / f"export-{mode}.log")
    return model


def markdown(result: dict) -> str:
    lines = [
        "| model | " + " | ".join(f"`--grey {g}` (dB)" for g in GREY_MODES) + " |",
        "|---" * (len(GREY_MODES) + 1) + "|",
        f"| noisy input | {result['noisy']['psnr']:.2f} | – | – |",
    ]
    for mode, rows in result["results"].items():
        cells = [f"{rows[g]['psnr']:.2f}" if g in rows else "–" for g in GREY_MODES]
        lines.append(f"| {LABELS[mode]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


LABELS = {
    "photo-full": "shipped `photo`, `--levels full` (the runtime before levels)",
    "photo": "shipped `photo` (no fine-tuning)",
    "pairs": "fine-tuned on the 16-bit pairs",
    "clean": "fine-tuned with clean targets (ceiling)",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=8.0, help="training budget per run")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--threads", type=int, default=1, help="torch threads per training run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="", help="keep the data and runs here [default: temp]")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument(
        "--rescore", action="store_true", help="with --work: reuse the runs already there"
    )
    args = ap.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="own-grey16-"))
    core = fetch_corpus(("TRAIN_CORE",))["TRAIN_CORE"]
    photos = resized_crops(load_clean_images(core), 320, 480)
    held_out = held_out_images()
    root = work / "data"
    build(photos, held_out, root, args.seed)
    result: dict[str, object] = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "command": " ".join(["python -m bench.own_noise_grey16", *sys.argv[1:]]),
        "minutes_per_run": args.minutes,
        "threads": args.threads,
        "train_photos": len(photos),
        "held_out_photos": len(held_out),
        "capture": {"photons": PHOTONS, "offset": OFFSET, "read": READ},
        "fit_options": FIT_OPTIONS,
        "noisy": score_folder(root / "test", root),
        "results": {},
    }
    for mode in args.modes.split(","):
        t0 = time.perf_counter()
        shipped = mode.startswith("photo")
        model = REPO / "models" / "photo.onnx" if shipped else fine_tune(mode, root, work, args)
        levels = "full" if mode == "photo-full" else "auto"
        rows = {g: infer(model, root, g, work, levels) for g in GREY_MODES}
        rows["seconds"] = time.perf_counter() - t0  # type: ignore[assignment]
        result["results"][mode] = rows  # type: ignore[index]
        print(
            f"{mode}: " + ", ".join(f"{g} {rows[g]['psnr']:.2f} dB" for g in GREY_MODES),
            file=sys.stderr,
        )  # type: ignore[index]
        write_results(args.out, result, markdown(result))
    print(json.dumps({k: v for k, v in result.items() if k != "results"}, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()
