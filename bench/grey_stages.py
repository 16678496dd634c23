"""Score grey checkpoints quickly against a stored ``bench.grey`` run, to choose among
training stages before exporting one.

Usage: python -m bench.grey_stages CHECKPOINT... [--against bench/results/grey.json]
       [--threads N]

Each checkpoint (``models/grey.pt``, ``runs/grey/averaged.pt``, a snapshot) runs in
torch, fp32, on the photos and the seeded noise draws that the stored ``bench.grey``
run used (its sets, photo limit, noises and seed, read from its JSON), and its mean
PSNR per noise is given beside that run's BM3D figure: ``grey − BM3D`` as in the
bench's table, in half a minute instead of BM3D's ten. The exported ONNX file gives
the same PSNR to 1e-7 (``n2n-export parity``), so these figures stand for the
export's; the speed, and the figures that ship, still come from ``bench.grey`` on
the export itself.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.grey import OUT, Photos, grey_photos, noise_rng, parse_noise, to_u8
from n2n_infer.metrics import psnr


def score(
    models: Mapping[str, Any], photos: Photos, noises: Sequence[str], seed: int
) -> dict[str, dict[str, float]]:
    """Mean PSNR (dB, against the clean uint8) of each torch model per noise spec, on
    ``photos`` with ``bench.grey``'s noise draws: ``{name: {spec: psnr}}``."""
    import torch

    out: dict[str, dict[str, float]] = {name: {} for name in models}
    with torch.inference_mode():
        for spec in noises:
            noise = parse_noise(spec)
            draws = [
                (clean, noise.apply(clean, noise_rng(seed, noise, set_name, i)))
                for set_name, items in photos.items()
                for i, (_, clean) in enumerate(items)
            ]
            for name, model in models.items():
                values = []
                for clean, noisy in draws:
                    x = torch.from_numpy(noisy.astype(np.float32) / 255.0)[None, None]
                    values.append(psnr(to_u8(model(x)[0, 0].numpy()), clean))
                out[name][spec] = float(np.mean(values))
    return out


def against_bm3d(scores: Mapping[str, float], stored: Mapping[str, Any]) -> dict[str, float]:
    """``score``'s figures for one model minus the stored run's BM3D (over all photos)."""
    summary = stored["summary"]
    diffs = {}
    for spec, value in scores.items():
        entry = summary[spec]
        diffs[spec] = value - entry["groups"]["all"]["psnr"][entry["bm3d_used"]]
    return diffs


def main() -> None:
    from n2n_train.checkpoint import load_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--against", type=Path, default=OUT.with_suffix(".json"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    stored = json.loads(args.against.read_text())
    sets = stored["sets"]
    photos = {s: grey_photos(s, len(info["names"])) for s, info in sets.items()}
    for s, items in photos.items():  # the same photos as the stored run, or no comparison
        if [n for n, _ in items] != sets[s]["names"]:
            raise SystemExit(f"{args.against}: set {s} holds other photos than here")
    models = {str(p): load_checkpoint(p).build_model() for p in args.checkpoints}
    scores = score(models, photos, list(stored["summary"]), int(stored["seed"]))
    labels = {spec: parse_noise(spec).label for spec in stored["summary"]}
    print(f"grey − BM3D (dB) against {args.against} ({stored['date']}):")
    for name, per_noise in scores.items():
        diffs = against_bm3d(per_noise, stored)
        cells = ", ".join(f"{labels[s]} {per_noise[s]:.2f} ({d:+.2f})" for s, d in diffs.items())
        print(f"{name}: {cells}")


if __name__ == "__main__":
    main()
