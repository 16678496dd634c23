"""Before/after crops for docs/own_data.md: camera-like noise, the shipped model, a fine-tune.

Usage: python scripts/own_data_crops.py FINE_TUNED.pt [--image examples/clean/chelsea.png]
       [--out docs/own_data/crops_camera.png]

The image (a CC0 sample of ``examples/clean``) goes through the camera-like pipeline
of ``bench/own_noise.py`` (noisy, and its noise-free output as the reference); the
shipped ``photo`` checkpoint and FINE_TUNED (e.g. the bench's ``camera/pairs/best.pt``)
denoise it. The figure shows one crop of each, titled with the whole image's PSNR.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.own_noise import camera, denoise_torch  # noqa: E402
from n2n_infer.imageio import read_image  # noqa: E402
from n2n_infer.metrics import psnr  # noqa: E402


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--image", type=Path, default=REPO / "examples" / "clean" / "chelsea.png")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "own_data" / "crops_camera.png")
    ap.add_argument("--crop", default="10,90,128", help="y,x,size of the crop")
    args = ap.parse_args()
    img = read_image(args.image)
    h, w = (s - s % 4 for s in img.shape[:2])  # the checkpoints need multiples of 4
    img = np.ascontiguousarray(img[:h, :w])
    noisy, reference = camera(img, np.random.default_rng(0)), camera(img, None)
    panels = {
        "noisy": noisy,
        "shipped photo": denoise_torch(REPO / "models" / "photo.pt", [noisy])[0],
        "fine-tuned (pairs)": denoise_torch(args.checkpoint, [noisy])[0],
        "noise-free pipeline": reference,
    }
    y, x, s = (int(v) for v in args.crop.split(","))
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.3))
    for ax, (name, im) in zip(axes, panels.items(), strict=True):
        ax.imshow(im[y : y + s, x : x + s], interpolation="nearest")
        title = name if im is reference else f"{name}\n{psnr(im, reference):.2f} dB"
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{args.image.name}: camera-like noise, crop {s}×{s} px", fontsize=9)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
