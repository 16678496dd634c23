"""Where the photo model and its Noise2Clean twin differ: error by clean intensity.

Usage: python scripts/photo_bias.py [--sigma 25] [--images 8] [--also NAME=CHECKPOINT ...]

On the held-out TRAIN_EXTRA photos (480×320, as bench/quality.py), noised at
``--sigma`` (clipped and rounded), runs ``models/photo.pt`` and
``bench/models/photo-n2c.pt`` in torch and reports, for five bands of the clean
pixel value (0-255 scale), the mean error (output − clean: the bias) and the RMSE.
``--also`` adds other checkpoints (e.g. an earlier photo model) to the table.
Writes ``docs/training/photo_bias.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.variants import held_out_images, machine  # noqa: E402
from n2n_train.checkpoint import load_checkpoint  # noqa: E402
from n2n_train.noise import gaussian_u8  # noqa: E402

MODELS = {
    "photo (Noise2Noise)": "models/photo.pt",
    "twin (Noise2Clean)": "bench/models/photo-n2c.pt",
}
BANDS = 5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sigma", type=float, default=25)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument(
        "--also", action="append", default=[], metavar="NAME=CHECKPOINT", help="another model"
    )
    args = ap.parse_args()
    models = {name: REPO / path for name, path in MODELS.items()}
    for spec in args.also:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            ap.error(f"--also {spec!r}: expected NAME=CHECKPOINT")
        models[name] = Path(path)
    images = held_out_images()[: args.images]
    result: dict[str, list[dict[str, float]]] = {}
    for name, path in models.items():
        model = load_checkpoint(path).build_model()
        rng = np.random.default_rng(0)
        diffs: list[list[np.ndarray]] = [[] for _ in range(BANDS)]
        for im in images:
            noisy = gaussian_u8(im, args.sigma, rng)
            x = torch.from_numpy(noisy.transpose(2, 0, 1)[None].astype(np.float32) / 255)
            with torch.no_grad():
                out = model(x)[0].clamp(0, 1).numpy().transpose(1, 2, 0) * 255
            d = out - im.astype(np.float32)
            band = np.minimum(im.astype(int) * BANDS // 256, BANDS - 1)
            for b in range(BANDS):
                diffs[b].append(d[band == b])
        result[name] = []
        for b in range(BANDS):
            d = np.concatenate(diffs[b])
            result[name].append(
                {"bias": float(d.mean()), "rmse": float(np.sqrt((d**2).mean())), "n": d.size}
            )
    edges = [round(256 * b / BANDS) for b in range(BANDS + 1)]
    bands = [f"{lo}–{hi - 1}" for lo, hi in itertools.pairwise(edges)]
    head = "| model | " + " | ".join(bands) + " |"
    lines = [head, "|---" * (BANDS + 1) + "|"]
    for name, rows in result.items():
        cells = [f"{r['bias']:+.2f} / {r['rmse']:.2f}" for r in rows]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    share = [r["n"] for r in next(iter(result.values()))]
    lines.append("| share of pixels | " + " | ".join(f"{n / sum(share):.0%}" for n in share) + " |")
    table = "\n".join(lines) + "\n"
    out = REPO / "docs" / "training"
    command = " ".join(["python scripts/photo_bias.py", *(f"--also '{a}'" for a in args.also)])
    meta = {"date": datetime.date.today().isoformat(), "machine": machine(), "sigma": args.sigma}
    (out / "photo_bias.json").write_text(json.dumps({**meta, "bands": result}, indent=2) + "\n")
    (out / "photo_bias.md").write_text(
        f"Error by clean intensity (bias / RMSE, 0-255 scale), sigma {args.sigma:g}, "
        f"{len(images)} held-out photos; {meta['date']}, `{command}`.\n\n" + table
    )
    print(table)


if __name__ == "__main__":
    main()
