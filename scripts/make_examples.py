"""Make the sample images in examples/: four public-domain/CC0 photos, halved, with noise.

Usage: python scripts/make_examples.py   (after `n2n-train corpus`, which caches the photos)
Writes examples/clean/NAME.png and examples/noisy/NAME.png (Gaussian noise, sigma 25
on the 0-255 scale, clipped and rounded; seed 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from n2n_infer.imageio import read_image
from n2n_train.corpus import default_cache_dir, fetch_corpus
from n2n_train.noise import gaussian_u8

PHOTOS = {
    "astronaut": "scikit-image__skimage_data_astronaut.png",
    "chelsea": "scikit-image__skimage_data_chelsea.png",
    "coffee": "scikit-image__skimage_data_coffee.png",
    "rocket": "scikit-image__skimage_data_rocket.jpg",
}
SIGMA_255 = 25.0


def main() -> None:
    fetch_corpus(("TRAIN_CORE",))
    src = default_cache_dir() / "photos" / "TRAIN_CORE"
    out = Path(__file__).resolve().parent.parent / "examples"
    rng = np.random.default_rng(0)
    for sub in ("clean", "noisy"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for name, filename in PHOTOS.items():
        im = Image.fromarray(read_image(src / filename))  # EXIF orientation applied
        clean = im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS)
        noisy = gaussian_u8(np.asarray(clean), SIGMA_255, rng)
        clean.save(out / "clean" / f"{name}.png", optimize=True)
        Image.fromarray(noisy).save(out / "noisy" / f"{name}.png", optimize=True)
        print(f"{name}: {clean.width}×{clean.height}")


if __name__ == "__main__":
    main()
