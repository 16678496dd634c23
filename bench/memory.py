"""Peak resident memory of n2n_infer while denoising one very large RGB image.

    .venv/bin/python bench/memory.py   # 8000×8000; writes bench/results/memory.{json,md}

Each measurement runs in a fresh subprocess (so that peaks do not mix) that
imports n2n_infer, creates the default model's CPU session, builds a seeded
uint8 RGB image and denoises it with the runtime's defaults (automatic
tiling). The child reports ``ru_maxrss`` after building the input (baseline:
interpreter, onnxruntime, session and the input array) and after denoising
(peak). The output array (as large as the input) is part of the peak.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, sys, time
import numpy as np
from n2n_infer import Denoiser, SessionConfig

h, w, tile, threads = (int(a) for a in sys.argv[1:5])
device = sys.argv[5]
def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
d = Denoiser(device=device, session_config=SessionConfig(intra_op_threads=threads))
rng = np.random.default_rng(0)
img = np.empty((h, w, 3), np.uint8)
for y in range(0, h, 1000):  # filled in strips, so no large temporary inflates the baseline
    img[y : y + 1000] = rng.integers(0, 256, img[y : y + 1000].shape, dtype=np.uint8)
base = rss_mib()
t0 = time.perf_counter()
out = d.denoise(img, tile={-1: None, 0: False}.get(tile, True))
seconds = time.perf_counter() - t0
print(json.dumps({"baseline_mib": base, "peak_mib": rss_mib(), "seconds": seconds,
                  "input_mib": img.nbytes / 2**20, "output_mib": out.nbytes / 2**20,
                  "tile_size": d.tiles.size, "tile_overlap": d.tiles.overlap,
                  "batch_size": d.batch_size, "max_batch_pixels": d.max_batch_pixels,
                  "engine": d.providers[0]}))
"""


def measure(h: int, w: int, tile: int, threads: int, device: str = "cpu") -> dict:
    """Run one child process; ``tile`` -1 = runtime default (auto), 0 = untiled."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(h), str(w), str(tile), str(threads), device],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    if proc.returncode != 0:
        return {"height": h, "width": w, "error": proc.stderr.strip().splitlines()[-1:]}
    return {"height": h, "width": w, "mode": _mode(tile), **json.loads(proc.stdout)}


def _mode(tile: int) -> str:
    return {-1: "default (auto tiling)", 0: "untiled"}.get(tile, f"tiled ({tile})")


def _cpu_name() -> str:
    """The CPU's model name and family/model numbers, and the core count."""
    sys.path.insert(0, str(REPO))
    from bench.throughput import machine

    return machine()


def markdown(result: dict) -> str:
    lines = [
        f"Measured {result['date']} on {result['machine']} ({result['platform']}), "
        f"onnxruntime {result['onnxruntime']}, CPU provider, {result['threads']} threads.",
        "",
        "| image | mode | engine | input MiB | baseline RSS MiB | peak RSS MiB "
        "| peak − baseline MiB | seconds |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['width']}×{r['height']} | failed: {r['error']} | | | | | | |")
            continue
        lines.append(
            f"| {r['width']}×{r['height']} RGB uint8 | {r['mode']} | {r.get('engine', '')} "
            f"| {r['input_mib']:.0f} "
            f"| {r['baseline_mib']:.0f} | {r['peak_mib']:.0f} "
            f"| {r['peak_mib'] - r['baseline_mib']:.0f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8000, help="edge of the square image")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--untiled-size",
        type=int,
        default=2048,
        help="also measure an image of this edge untiled and tiled, for comparison (0: skip)",
    )
    parser.add_argument(
        "--devices",
        nargs="+",
        default=["cpu", "auto"],
        help="devices for the large image (auto: what Denoiser() runs here)",
    )
    parser.add_argument("--machine", default=_cpu_name())
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "memory")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from bench.report import write_results

    rows = []
    if args.untiled_size:
        for tile in (0, 512):
            rows.append(measure(args.untiled_size, args.untiled_size, tile, args.threads))
            print(rows[-1], flush=True)
    for device in args.devices:
        rows.append(measure(args.size, args.size, -1, args.threads, device))
        print(rows[-1], flush=True)
    import onnxruntime

    result = {
        "date": datetime.date.today().isoformat(),
        "machine": args.machine,
        "platform": f"{platform.machine()} {platform.system()}, {os.cpu_count()} logical CPUs",
        "onnxruntime": onnxruntime.__version__,
        "threads": args.threads,
        "rows": rows,
    }
    write_results(args.out, result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
