"""Ray Data engine against the local engine: images per second and the fixed start-up cost.

    .venv/bin/python -m bench.scaling            # 200 images, 3 runs each; needs the ray extra
    .venv/bin/python -m bench.scaling --images 40 --runs 1     # a quick look

Writes ``bench/results/scaling.{json,md}``. The images are generated (seeded
smooth colour fields with Gaussian noise, sides 64 to 320 pixels, two thirds
PNG and one third JPEG) into a temporary folder. Each configuration denoises
the whole folder into a fresh output folder with the bundled ``photo`` model
on the CPU:

- ``local``: :func:`n2n_infer.batch.denoise_folder` in this process
  (onnxruntime picks its threads);
- ``ray WxC``: :func:`n2n_infer.ray.denoise_folder_ray` with W workers of C
  CPUs (and C onnxruntime threads) each, on a local Ray cluster of all the
  machine's CPUs.

The job's wall time includes everything a user waits for (listing, reading,
writing; for Ray the actors' start and the model's load in each). The fixed
cost of a configuration is the wall time of the same job on one small image;
``steady img/s`` is ``images / (wall - fixed)``. ``ray.init`` is timed once and
reported apart, as is a first Ray job on one image that starts Ray's worker
processes (a long-lived cluster pays both once). Medians over ``--runs``.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.report import write_results

REPO = Path(__file__).resolve().parent.parent
#: (workers, CPUs per worker) of the Ray configurations.
RAY_CONFIGS = ((1, 1), (1, 2), (2, 1))


def make_images(folder: Path, count: int, seed: int = 0) -> None:
    """``count`` noisy images of mixed sizes (64 to 320 px a side), PNG and JPEG, in ``folder``."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        h, w = (int(v) for v in rng.integers(64, 321, 2))
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        base = rng.uniform(0.2, 0.6, 3) + 0.4 * np.stack([xx, yy, (xx + yy) / 2], axis=-1)
        noisy = base + rng.normal(0, 25 / 255, (h, w, 3))
        img = np.rint(np.clip(noisy, 0, 1) * 255).astype(np.uint8)
        if i % 3 == 2:
            Image.fromarray(img).save(folder / f"{i:04d}.jpg", quality=92)
        else:
            Image.fromarray(img).save(folder / f"{i:04d}.png")


def _timed(run: Callable[[Path], Any], out_root: Path) -> float:
    out = Path(tempfile.mkdtemp(dir=out_root))
    t0 = time.perf_counter()
    run(out)
    seconds = time.perf_counter() - t0
    shutil.rmtree(out)
    return seconds


def _engines(in_dir: Path) -> dict[str, Callable[[Path], Any]]:
    from n2n_infer.batch import denoise_folder
    from n2n_infer.denoiser import Denoiser
    from n2n_infer.ray import DenoiserSpec, denoise_folder_ray

    def local(out: Path) -> None:
        report = denoise_folder(Denoiser("photo", device="cpu"), in_dir, out)
        assert report.ok, report.failed

    def ray_job(workers: int, cpus: int) -> Callable[[Path], None]:
        def run(out: Path) -> None:
            spec = DenoiserSpec("photo", device="cpu")
            report, _ = denoise_folder_ray(spec, in_dir, out, workers=workers, cpus_per_worker=cpus)
            assert report.ok, report.failed

        return run

    engines = {"local": local}
    engines.update({f"ray {w}x{c}": ray_job(w, c) for w, c in RAY_CONFIGS})
    return engines


def measure(images: int, runs: int, work: Path) -> dict[str, Any]:
    """Median wall times of every configuration on ``images`` images and on one."""
    import ray

    big, small = work / "images", work / "one"
    big.mkdir()
    small.mkdir()
    make_images(big, images)
    make_images(small, 1, seed=1)
    t0 = time.perf_counter()
    ray.init(include_dashboard=False, logging_level=logging.WARNING)
    init_s = time.perf_counter() - t0
    warm_up = _timed(_engines(small)["ray 1x1"], work)  # Ray's first job starts its workers
    rows = []
    for name in _engines(big):
        walls, fixed = [], []
        for _ in range(runs):
            fixed.append(_timed(_engines(small)[name], work))
            walls.append(_timed(_engines(big)[name], work))
        wall, fix = statistics.median(walls), statistics.median(fixed)
        rows.append(
            {
                "config": name,
                "wall_s": round(wall, 2),
                "img_per_s": round(images / wall, 2),
                "fixed_s": round(fix, 2),
                "steady_img_per_s": round(images / max(wall - fix, 1e-9), 2),
                "walls_s": [round(w, 2) for w in walls],
                "fixed_runs_s": [round(f, 2) for f in fixed],
            }
        )
    pixels = sum(_pixels(p) for p in big.iterdir())
    ray.shutdown()
    return {
        "ray_init_s": round(init_s, 2),
        "ray_first_job_s": round(warm_up, 2),
        "megapixels": round(pixels / 1e6, 2),
        "rows": rows,
    }


def _pixels(path: Path) -> int:
    with Image.open(path) as im:
        return im.width * im.height


def table(result: dict[str, Any]) -> str:
    """The Markdown table of :func:`measure`'s result, with the machine and date."""
    lines = [
        f"Ray engine vs local engine, {result['images']} images "
        f"({result['megapixels']} megapixels, PNG and JPEG, 64-320 px a side), "
        f"bundled photo model on the CPU; {result['date']}, {result['machine']}; "
        f"medians of {result['runs']} runs; load average {result['load_before']} before, "
        f"{result['load_after']} after (a shared machine). Paid once per cluster, not in "
        f"the table: `ray.init` {result['ray_init_s']} s, the first Ray job (1 image, "
        f"starts Ray's worker processes) {result['ray_first_job_s']} s.",
        "",
        "| engine | wall (s) | img/s | fixed cost, 1 image (s) | steady img/s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['config']} | {r['wall_s']} | {r['img_per_s']} | {r['fixed_s']} "
            f"| {r['steady_img_per_s']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scaling")
    args = parser.parse_args()
    load_before = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="n2n-scaling-") as work:
        measured = measure(args.images, args.runs, Path(work))
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "images": args.images,
        "runs": args.runs,
        "load_before": load_before,
        "load_after": [round(v, 2) for v in os.getloadavg()],
        **measured,
    }
    write_results(args.out, result, table(result))
    print(table(result))


if __name__ == "__main__":
    main()
