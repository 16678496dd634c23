"""Peak resident memory of ``n2n-infer batch`` on a uint16 TIFF stack, against its depth.

    .venv/bin/python bench/stack_memory.py            # 256 planes of 2048×1024: 1 GiB, slow
    .venv/bin/python bench/stack_memory.py --quick    # 32 planes of 256×256: checks it works
    .venv/bin/python bench/stack_memory.py --planes 16 --setting "" --setting "--batch-size 1" \
        --setting "--tile 512"                        # the memory/time trade-off of CLI options

Writes a seeded uint16 stack (dim: values below 16384, so that the levels pass
over the whole stack runs too; uncompressed, plane by plane, so that this script
never holds it) to a temporary folder, and runs ``n2n-infer batch IN OUT
--device cpu`` on it in a subprocess. Each run goes through its own wrapper
process, whose ``RUSAGE_CHILDREN`` ``ru_maxrss`` is the CLI's peak resident set
(VmHWM). Three rows: one plane alone (a 2-D TIFF of the same size: the runtime
and one image), the stack with ``--factor`` times fewer planes, and the full
stack; when memory does not grow with depth the last two peaks match (give both
at least the Denoiser's batch of planes, 8: a shorter stack fills a smaller batch). With
``--setting`` (repeatable: extra ``n2n-infer batch`` options, ``""`` for none), the rows are
instead the full stack under each setting, run one after the other on the same file. Results
go to ``bench/results/stack_memory.{json,md}`` (``--quick``:
``stack_memory-quick``; ``--setting``: ``stack_memory-settings``), with the date and the CPU
model (``/proc/cpuinfo``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

REPO = Path(__file__).resolve().parent.parent

#: Runs the command it is given and prints its exit status and peak resident set.
WRAPPER = r"""
import json, resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB
print(json.dumps({"rc": proc.returncode, "peak_kib": peak_kib,
                  "tail": (proc.stdout + proc.stderr).strip().splitlines()[-3:]}))
"""


def planes(count: int, height: int, width: int, seed: int = 0) -> Iterator[np.ndarray]:
    """``count`` seeded uint16 planes: a smooth pattern plus noise, all below 16384 (dim)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(seed)
    for i in range(count):
        base = 3000 + 2000 * np.sin(xx / (40 + i % 7)) * np.cos(yy / 55)
        noisy = base + rng.normal(0, 400, (height, width)).astype(np.float32)
        yield np.clip(np.rint(noisy), 0, 16383).astype(np.uint16)


def write_stack(path: Path, count: int, height: int, width: int) -> int:
    """Write a stack of ``count`` planes to ``path`` plane by plane; its size in bytes."""
    shape = (count, height, width) if count > 1 else (height, width)
    with tifffile.TiffWriter(path, bigtiff=count * height * width * 2 > 2**32 - 2**25) as tw:
        tw.write(
            planes(count, height, width),
            shape=shape,
            dtype=np.uint16,
            photometric="minisblack",
            metadata={"axes": "ZYX" if count > 1 else "YX"},
        )
    return path.stat().st_size


def measure(
    count: int, height: int, width: int, scratch: Path, settings: tuple[str, ...] = ("",)
) -> list[dict[str, Any]]:
    """Write the stack, denoise it with ``n2n-infer batch`` in a wrapped subprocess, once
    per setting (extra CLI options); one row each."""
    folder = scratch / f"in-{count}"
    folder.mkdir()
    size = write_stack(folder / "stack.tif", count, height, width)
    rows = [
        run_cli(folder, scratch / f"out-{count}", size, count, height, width, setting)
        for setting in settings
    ]
    shutil.rmtree(folder)
    return rows


def run_cli(
    folder: Path, out: Path, size: int, count: int, height: int, width: int, setting: str
) -> dict[str, Any]:
    """One ``n2n-infer batch`` run on ``folder``: its peak resident set and time."""
    cli = Path(sys.executable).with_name("n2n-infer")
    command = [str(cli), "batch", str(folder), str(out), "--device", "cpu", "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, *command, *shlex.split(setting)],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    row: dict[str, Any] = {
        "planes": count,
        "height": height,
        "width": width,
        "bytes": size,
        "setting": setting,
    }
    if proc.returncode != 0:
        return {**row, "error": proc.stderr.strip().splitlines()[-1:]}
    child = json.loads(proc.stdout)
    if child["rc"] != 0:
        return {**row, "error": child["tail"]}
    megapixels = count * height * width / 1e6
    return {
        **row,
        "peak_rss_mib": round(child["peak_kib"] / 1024, 1),
        "seconds": round(seconds, 1),
        "megapixels_per_second": round(megapixels / seconds, 3),
    }


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, and the logical CPU count."""
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{name}, {os.cpu_count()} logical CPUs"


def markdown(result: dict[str, Any]) -> str:
    """The results as a table, with the date, the machine and the command."""
    lines = [
        f"Measured {result['date']} on {result['cpu']} ({result['platform']}), "
        f"`n2n-infer batch --device cpu`, n2n {result['n2n']}, tifffile {result['tifffile']}.",
        "",
        f"Command: `{result['command']}`",
        "",
        "| input | options | planes | plane | file MiB | peak RSS MiB | seconds | MP/s |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        what = "one plane (2-D TIFF)" if r["planes"] == 1 else "uint16 stack (ZYX)"
        what += f" | {'`' + r['setting'] + '`' if r.get('setting') else 'defaults'}"
        plane = f"{r['width']}×{r['height']}"
        size = f"{r['bytes'] / 2**20:.0f}"
        if "error" in r:
            failed = f"failed: {r['error']}"
            lines.append(f"| {what} | {r['planes']} | {plane} | {size} | {failed} | | |")
            continue
        lines.append(
            f"| {what} | {r['planes']} | {plane} | {size} | {r['peak_rss_mib']:.0f} "
            f"| {r['seconds']:.1f} | {r['megapixels_per_second']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planes", type=int, default=256, help="planes of the full stack")
    parser.add_argument("--height", type=int, default=2048)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument(
        "--factor", type=int, default=4, help="the comparison stack has this many times fewer"
    )
    parser.add_argument(
        "--quick", action="store_true", help="32 planes of 256×256 (a check that it works)"
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=None,
        help="extra n2n-infer batch options for a row on the full stack (repeatable)",
    )
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the stacks")
    parser.add_argument("--out", type=Path, default=None, help="results stem")
    args = parser.parse_args()
    if args.quick:
        args.planes, args.height, args.width = 32, 256, 256
    name = "stack_memory-settings" if args.setting else "stack_memory"
    stem = args.out or REPO / "bench" / "results" / ("stack_memory-quick" if args.quick else name)
    sys.path.insert(0, str(REPO))
    import n2n_infer
    from bench.report import write_results

    counts = [1, max(2, args.planes // args.factor), args.planes]
    rows = []
    with tempfile.TemporaryDirectory(prefix="n2n-stack-", dir=args.tmp) as scratch:
        if args.setting:
            size = (args.planes, args.height, args.width)
            rows = measure(*size, Path(scratch), tuple(args.setting))
            print(rows, flush=True)
        for count in [] if args.setting else counts:
            rows.extend(measure(count, args.height, args.width, Path(scratch)))
            print(rows[-1], flush=True)
    command = (
        "bench/stack_memory.py"
        + (
            " --quick"
            if args.quick
            else f" --planes {args.planes} --height {args.height} "
            f"--width {args.width} --factor {args.factor}"
        )
        + "".join(f" --setting {shlex.quote(s)}" for s in args.setting or [])
    )
    result = {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu_model(),
        "platform": f"{platform.machine()} {platform.system()}",
        "n2n": n2n_infer.__version__,
        "tifffile": tifffile.__version__,
        "command": command,
        "rows": rows,
    }
    write_results(stem, result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
