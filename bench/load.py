"""Load cost of ``Denoiser()``: seconds and peak memory, for device ``auto`` and ``cpu``.

    .venv/bin/python -m bench.load          # 7 runs each; writes bench/results/load.{json,md}

Each run is a fresh subprocess (nothing cached, peaks do not mix) that times
``import n2n_infer.denoiser`` (which imports numpy and onnxruntime), then
``Denoiser(device=...)`` with the bundled default model (session creation,
metadata and signature checks and the test run on a tiny image), and reports
the peak resident set size (``ru_maxrss``) after each. The table shows
medians over the runs. The target on a CPU-only machine: under 0.1 s and
150 MiB for ``Denoiser()`` (issue 20).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from bench.report import write_results

REPO = Path(__file__).resolve().parent.parent
DEVICES = ("auto", "cpu")
#: The issue's budget for ``Denoiser()`` on a CPU-only machine.
TARGET_SECONDS, TARGET_MIB = 0.1, 150

CHILD = r"""
import json, resource, sys, time
def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
t0 = time.perf_counter()
from n2n_infer.denoiser import Denoiser
t1 = time.perf_counter()
rss_import = rss_mib()
d = Denoiser(device=sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "construct_s": t2 - t1, "total_s": t2 - t0,
                  "import_mib": rss_import, "peak_mib": rss_mib(), "providers": d.providers}))
"""


def measure(device: str) -> dict:
    """One fresh process: import, construct on ``device``; seconds and MiB.

    Raises:
        RuntimeError: the child failed (its last stderr line is the message).
    """
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, device],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"device {device}: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout)


def summarise(device: str, runs: list[dict]) -> dict:
    """Medians over ``runs`` (and the providers the last one used)."""
    keys = ("import_s", "construct_s", "total_s", "import_mib", "peak_mib")
    return {
        "device": device,
        "runs": len(runs),
        **{key: statistics.median(r[key] for r in runs) for key in keys},
        "providers": runs[-1]["providers"],
    }


def markdown(result: dict) -> str:
    """The table of :func:`main`'s result, with the date and machine."""
    lines = [
        f"Measured {result['date']} on {result['machine']} ({result['platform']}), "
        f"onnxruntime {result['onnxruntime']}, {result['nvidia_driver']}, load average "
        f"{result['load_average']} at the end (a shared machine); medians of "
        f"{result['rows'][0]['runs']} fresh processes each. Target for `Denoiser()` on a "
        f"CPU-only machine: under {TARGET_SECONDS} s and {TARGET_MIB} MiB.",
        "",
        "| device | `Denoiser()` s | import + `Denoiser()` s | RSS after import MiB "
        "| peak RSS MiB | providers |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['device']} | {r['construct_s']:.3f} | {r['total_s']:.3f} "
            f"| {r['import_mib']:.0f} | {r['peak_mib']:.0f} | {', '.join(r['providers'])} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per device")
    parser.add_argument("--machine", default="2-core AMD EPYC VM, no GPU")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "load")
    args = parser.parse_args()
    import onnxruntime

    from n2n_infer.providers import nvidia_driver_present

    rows = []
    for device in DEVICES:
        runs = [measure(device) for _ in range(args.runs)]
        rows.append(summarise(device, runs))
        print(rows[-1], flush=True)
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": args.machine,
        "platform": f"{platform.machine()} {platform.system()}, {os.cpu_count()} logical CPUs",
        "onnxruntime": onnxruntime.__version__,
        "nvidia_driver": "NVIDIA driver present" if nvidia_driver_present() else "no NVIDIA driver",
        "load_average": round(os.getloadavg()[0], 1),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.out, result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
