"""Host-side cost of Denoiser.denoise: everything but the model call, per megapixel.

    .venv/bin/python bench/host.py            # prints a table; --json FILE also writes it

On a GPU the model call is fast enough that this numpy work decides the end-to-end
speed (bench/results/gpu.md: 47 of the 65 ms of a 1080p image on an H200 before
the conversions were reworked). The model call is replaced by a copy of its input
(what a real call costs at least: one output buffer), so the figure is the same on
any machine with this CPU, GPU or not. Cases: one 1920×1080 8-bit image (untiled),
one 3840×2160 8-bit image (tiled), 16 images of 256×256, one 1920×1080 16-bit image.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from n2n_infer import Denoiser


def _copy_model(batch: np.ndarray) -> np.ndarray:
    return batch.copy()


def cases() -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    u8 = lambda h, w: rng.integers(0, 256, (h, w, 3), dtype=np.uint8)  # noqa: E731
    return {
        "1080p uint8": [u8(1080, 1920)],
        "4K uint8 (tiled)": [u8(2160, 3840)],
        "16 × 256×256 uint8": [u8(256, 256) for _ in range(16)],
        "1080p uint16": [rng.integers(0, 65536, (1080, 1920, 3), dtype=np.uint16)],
    }


def measure(repeats: int) -> list[dict[str, float | str]]:
    """Median seconds per case with the model call replaced by a copy."""
    d = Denoiser(device="cpu", batch_size=16)
    d.engine.run = _copy_model  # the engine's model call, replaced by a copy
    d._run = d._composed_run()
    rows = []
    for name, images in cases().items():
        d.denoise_batch(images)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            d.denoise_batch(images)
            times.append(time.perf_counter() - t0)
        mp = sum(img.shape[0] * img.shape[1] for img in images) / 1e6
        median = statistics.median(times)
        rows.append({"case": name, "seconds": median, "ms_per_mp": 1000 * median / mp})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = measure(args.repeats)
    print("| case | host ms | host ms per MP |\n| --- | ---: | ---: |")
    for r in rows:
        print(f"| {r['case']} | {1000 * r['seconds']:.1f} | {r['ms_per_mp']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
