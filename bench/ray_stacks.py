"""The Ray engine on TIFF stacks: each stack as one task against split by planes.

    .venv/bin/python -m bench.ray_stacks            # 64 planes of 512×512 uint16; 4 stacks of 16
    .venv/bin/python -m bench.ray_stacks --planes 32 --height 256 --width 256 --runs 2

Two cases, the same planes in each: (a) one stack of ``--planes`` planes; (b) a
folder of ``--stacks`` stacks of ``planes / stacks`` planes each; and a third,
one stack of two 64×64 planes, whose wall time is each configuration's fixed
cost (``steady MP/s`` = megapixels / (wall - fixed cost)). The stacks are
dim uint16 ZYX TIFFs (values below 16384, so the levels pass runs; written by
:func:`bench.stack_memory.write_stack`), denoised by the bundled ``grey`` model on
the CPU with :func:`n2n_infer.ray.denoise_folder_ray` on a local Ray cluster of
the machine's CPUs, in four configurations of W workers × C CPUs (and C
onnxruntime threads) each:

- ``whole WxC``: ``split_stacks=False``, each stack one task (one worker
  denoises it, its bytes travel whole);
- ``split WxC``: ``split_stacks=True``, the driver reads each stack and sends
  its planes to the workers in chunks of one Denoiser batch (8 planes), and
  writes the output.

``whole 1x2`` and ``whole 2x1``, ``split 2x1`` and ``split 1x2`` use the same two
threads. The wall time is the whole job as a user waits for it (actors started,
the model loaded in each, reading, levels, denoising, writing), with the cluster
up and Ray's worker processes already started by one warm-up job. Runs are
interleaved (every configuration of every case once, then again), so the ratios
come from one run on one machine; the table gives medians. The split outputs are
checked byte for byte against the whole ones. Last, the driver's own share of a
split stack is timed without Ray or a model (:func:`driver_rate`: the local stack
path with planes given back unchanged: read, levels, mapping, writing), on
case (a)'s stack as written (uncompressed) and Deflate-compressed: a split stack
goes no faster than that, however many workers. Writes
``bench/results/ray_stacks.{json,md}`` (``--out``), with the date, the CPU model
(``/proc/cpuinfo``), the load average and the versions.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
#: (mode, workers, CPUs per worker), in the order they run within a repeat.
CONFIGS = (("whole", 1, 2), ("whole", 2, 1), ("split", 2, 1), ("split", 1, 2))
#: The case that measures a configuration's fixed cost: a stack of 2 small planes.
FIXED = "fixed cost: 1 stack of 2×64×64"


def make_cases(work: Path, planes: int, stacks: int, height: int, width: int) -> dict[str, Path]:
    """The input folders: one stack of ``planes`` planes, ``stacks`` stacks sharing them, and
    one tiny stack (:data:`FIXED`)."""
    from bench.stack_memory import write_stack

    one, many, tiny = work / "one-stack", work / "many-stacks", work / "tiny"
    for folder in (one, many, tiny):
        folder.mkdir()
    write_stack(one / "stack.tif", planes, height, width)
    for i in range(stacks):
        write_stack(many / f"stack{i}.tif", planes // stacks, height, width)
    write_stack(tiny / "stack.tif", 2, 64, 64)
    return {
        f"1 stack of {planes}": one,
        f"{stacks} stacks of {planes // stacks}": many,
        FIXED: tiny,
    }


def _tree(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def run_once(in_dir: Path, out: Path, mode: str, workers: int, cpus: int) -> float:
    """Wall seconds of one Ray folder job on ``in_dir`` into the new folder ``out``."""
    from n2n_infer.ray import DenoiserSpec, denoise_folder_ray

    spec = DenoiserSpec("grey", device="cpu")
    t0 = time.perf_counter()
    report, _ = denoise_folder_ray(
        spec, in_dir, out, workers=workers, cpus_per_worker=cpus, split_stacks=mode == "split"
    )
    seconds = time.perf_counter() - t0
    if not report.ok:
        raise RuntimeError(f"{in_dir}: {[(r.name, r.error) for r in report.failed]}")
    return seconds


class _Unchanged:
    """A Denoiser's stand-in that gives every plane back as it came."""

    levels = "auto"

    def denoise_iter(
        self,
        images: Iterable[np.ndarray],
        layout: str = "hwc",
        tile: bool | None = None,
        levels: str | None = None,
    ) -> Iterator[np.ndarray]:
        for image in images:
            yield np.array(image)


def driver_rate(stack: Path, work: Path, repeats: int = 2) -> dict[str, float]:
    """Megapixels per second of the driver's work on ``stack`` when it is split: the local
    stack path with the planes given back unchanged (best of ``repeats``), for the stack
    as it is (``uncompressed``) and Deflate-compressed (``deflate``)."""
    import tifffile

    from n2n_infer.stacks import denoise_stack_file, read_stack_info

    info = read_stack_info(stack)
    deflate = work / "deflate.tif"
    with tifffile.TiffFile(stack) as tif:
        tifffile.imwrite(
            deflate, tif.series[0].asarray(), compression="zlib", predictor=True,
            photometric="minisblack", metadata={"axes": info.axes},
        )  # fmt: skip
    megapixels = info.planes * info.size_hw[0] * info.size_hw[1] / 1e6
    rates = {}
    for name, path in (("uncompressed", stack), ("deflate", deflate)):
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            denoise_stack_file(_Unchanged(), path, work / f"driver-{name}.tif")
            best = min(best, time.perf_counter() - t0)
        rates[name] = round(megapixels / best, 1)
    return rates


def measure(cases: dict[str, Path], runs: int, work: Path, megapixels: float) -> dict[str, Any]:
    """Interleaved wall times of every configuration on every case; outputs compared.
    ``megapixels``: of each case but :data:`FIXED`; its steady rate is
    ``megapixels / (wall - fixed cost)``."""
    import ray

    t0 = time.perf_counter()
    ray.init(include_dashboard=False, logging_level=logging.WARNING)
    init_s = time.perf_counter() - t0
    warm = work / "warm"
    first = next(iter(cases.values()))
    warm_up = run_once(first, warm, "whole", 1, 1)  # Ray's first job starts its workers
    shutil.rmtree(warm)
    walls: dict[tuple[str, str], list[float]] = {}
    outputs: dict[str, dict[str, dict[str, str]]] = {}
    for repeat in range(runs):
        for case, folder in cases.items():
            for mode, workers, cpus in CONFIGS:
                name = f"{mode} {workers}x{cpus}"
                out = work / "out"
                seconds = run_once(folder, out, mode, workers, cpus)
                walls.setdefault((case, name), []).append(seconds)
                if repeat == 0:
                    outputs.setdefault(case, {})[name] = _tree(out)
                shutil.rmtree(out)
                print(f"{case}, {name}: {seconds:.2f} s", flush=True)
    ray.shutdown()
    rows = []
    fixed = {n: statistics.median(w) for (c, n), w in walls.items() if c == FIXED}
    for case in cases:
        base = {n: statistics.median(w) for (c, n), w in walls.items() if c == case}
        for name, wall in base.items():
            row = {
                "case": case,
                "config": name,
                "wall_s": round(wall, 2),
                "walls_s": [round(w, 2) for w in walls[case, name]],
                "vs_whole_1x2": round(base["whole 1x2"] / wall, 2),
                "vs_whole_2x1": round(base["whole 2x1"] / wall, 2),
            }
            if case != FIXED:
                row["mp_per_s"] = round(megapixels / wall, 3)
                row["steady_mp_per_s"] = round(megapixels / max(wall - fixed[name], 1e-9), 3)
            rows.append(row)
    identical = all(len({str(t) for t in trees.values()}) == 1 for trees in outputs.values())
    return {
        "driver_mp_per_s": driver_rate(next(first.iterdir()), work),
        "ray_init_s": round(init_s, 2),
        "ray_first_job_s": round(warm_up, 2),
        "outputs_identical": identical,
        "rows": rows,
    }


def versions() -> dict[str, str]:
    """The versions of what decides the figures."""
    import numpy
    import onnxruntime
    import ray
    import tifffile

    import n2n_infer

    return {
        "n2n": n2n_infer.__version__,
        "ray": ray.__version__,
        "onnxruntime": onnxruntime.__version__,
        "tifffile": tifffile.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def table(result: dict[str, Any]) -> str:
    """The Markdown table of the result, with the date, machine, command and versions."""
    v = result["versions"]
    megapixels = result["megapixels"]
    lines = [
        f"Ray engine on TIFF stacks, each stack one task (`whole`) or split by planes "
        f"(`split`); {result['planes']} dim uint16 planes of {result['width']}×"
        f"{result['height']} ({megapixels} megapixels) per case, bundled `grey` model on "
        f"the CPU; measured {result['date']} on {result['cpu']}; medians of "
        f"{result['runs']} interleaved runs; load average {result['load_before']} before, "
        f"{result['load_after']} after. `WxC`: W workers of C CPUs (C onnxruntime threads) "
        f"on a local Ray cluster. Paid once per cluster, not in the table: `ray.init` "
        f"{result['ray_init_s']} s, a first job (starts Ray's workers) "
        f"{result['ray_first_job_s']} s. Split outputs byte-identical to whole ones: "
        f"{'yes' if result['outputs_identical'] else 'NO'}.",
        "",
        f"Command: `{result['command']}`; n2n {v['n2n']}, Ray {v['ray']}, onnxruntime "
        f"{v['onnxruntime']}, tifffile {v['tifffile']}, numpy {v['numpy']}, "
        f"Python {v['python']}.",
        "",
        "| case | config | wall (s) | runs (s) | MP/s | steady MP/s | speed vs whole 1x2 "
        "| speed vs whole 2x1 |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        runs = ", ".join(f"{w:.1f}" for w in r["walls_s"])
        rates = f"{r['mp_per_s']:.3f} | {r['steady_mp_per_s']:.3f}" if "mp_per_s" in r else "| "
        lines.append(
            f"| {r['case']} | {r['config']} | {r['wall_s']:.2f} | {runs} | {rates} "
            f"| {r['vs_whole_1x2']:.2f}× | {r['vs_whole_2x1']:.2f}× |"
        )
    lines += [
        "",
        "Wall: the whole job (actors started, the model loaded in each, reading, levels, "
        "denoising, writing). Steady: megapixels / (wall - the configuration's fixed cost, "
        "its wall on the tiny stack).",
        "",
        "The driver's own work on a split stack (read, levels, mapping, writing; no model, "
        f"no Ray), on case (a)'s stack: {result['driver_mp_per_s']['uncompressed']} MP/s "
        f"uncompressed, {result['driver_mp_per_s']['deflate']} MP/s Deflate-compressed: "
        "a split stack goes no faster, however many workers.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planes", type=int, default=64, help="planes of each case")
    parser.add_argument("--stacks", type=int, default=4, help="stacks of the folder case")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3, help="interleaved repeats")
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the stacks")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ray_stacks")
    args = parser.parse_args()
    if args.planes % args.stacks:
        parser.error(f"--planes {args.planes} is not a multiple of --stacks {args.stacks}")
    sys.path.insert(0, str(REPO))
    from bench.report import write_results
    from bench.stack_memory import cpu_model

    load_before = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="n2n-ray-stacks-", dir=args.tmp) as work:
        cases = make_cases(Path(work), args.planes, args.stacks, args.height, args.width)
        megapixels = args.planes * args.height * args.width / 1e6
        measured = measure(cases, args.runs, Path(work), megapixels)
    command = (
        f"python -m bench.ray_stacks --planes {args.planes} --stacks {args.stacks} "
        f"--height {args.height} --width {args.width} --runs {args.runs}"
    )
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "platform": f"{platform.machine()} {platform.system()}",
        "command": command,
        "versions": versions(),
        "planes": args.planes,
        "stacks": args.stacks,
        "height": args.height,
        "width": args.width,
        "megapixels": round(args.planes * args.height * args.width / 1e6, 2),
        "runs": args.runs,
        "load_before": load_before,
        "load_after": [round(v, 2) for v in os.getloadavg()],
        **measured,
    }
    write_results(args.out, result, table(result))
    print(table(result))


if __name__ == "__main__":
    main()
