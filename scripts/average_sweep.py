"""How many of a run's last epochs to average: validation and held-out PSNR per count.

Usage: python scripts/average_sweep.py NAME=SNAPSHOTS ... [--last 1,5,10,20] [--sigma 25]

For each run (a folder of per-epoch snapshots, ``n2n-train fit --snapshot-every 1``)
and each count K, averages the weights of the last K snapshots (K = 1: the last
one alone) and measures the average (a) on the run's own validation patches,
rebuilt as ``fit`` built them, which is what the count should be chosen on, and
(b) on the held-out TRAIN_EXTRA photos at 480×320 with Gaussian noise
``--sigma`` (clipped and rounded; ``bench/quality.py``'s draw, through
``photo_report.held_out_psnr``), which is what the choice is worth. With
``--save NAME=K:PATH`` it also writes that average as a checkpoint
(``n2n-train average`` writes the same weights).
Writes ``docs/training/average_sweep.{json,md}`` (``--render`` rewrites the .md alone).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "scripts"))

from photo_report import held_out_psnr  # noqa: E402

from bench.variants import machine  # noqa: E402
from n2n_infer.files import sha256_file  # noqa: E402
from n2n_train.average import average_checkpoints  # noqa: E402
from n2n_train.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from n2n_train.commands import (  # noqa: E402
    expand_checkpoints,
    measure_validation,
    run_folders,
    run_validation_data,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", metavar="NAME=SNAPSHOTS")
    ap.add_argument("--render", action="store_true", help="only rewrite the .md from the .json")
    ap.add_argument("--last", default="1,5,10,20", help="counts K, comma-separated")
    ap.add_argument("--sigma", type=float, default=25)
    ap.add_argument("--save", action="append", default=[], metavar="NAME=K:PATH")
    args = ap.parse_args()
    if args.render:
        print(write_table(REPO / "docs" / "training"))
        return
    if not args.runs:
        ap.error("give at least one NAME=SNAPSHOTS (or --render)")
    counts = [int(k) for k in args.last.split(",")]
    saves: dict[tuple[str, int], Path] = {}
    for spec in args.save:
        name, _, rest = spec.partition("=")
        k, _, path = rest.partition(":")
        if not name or not k.isdigit() or not path:
            ap.error(f"--save {spec!r}: expected NAME=K:PATH")
        saves[(name, int(k))] = Path(path)
    result: dict[str, list[dict[str, float]]] = {}
    for spec in args.runs:
        name, sep, folder = spec.partition("=")
        if not sep:
            ap.error(f"{spec!r}: expected NAME=SNAPSHOTS")
        files = expand_checkpoints((Path(folder),), None)
        loaded = [(f, load_checkpoint(f), sha256_file(f)) for f in files]
        data = run_validation_data(loaded[-1][1].summary, run_folders(files))
        result[name] = []
        for k in sorted({min(k, len(loaded)) for k in counts}):
            part = loaded[-k:]
            ckpt = part[0][1] if k == 1 else average_checkpoints(part)
            row = {
                "count": k,
                "epochs": [c.summary.get("epochs") for _, c, _ in part],
                **measure_validation(ckpt, "cpu", data),
                "held_out_psnr": held_out_psnr(ckpt, int(args.sigma)),
            }
            result[name].append(row)
            print(name, json.dumps(row), flush=True)
            if (name, k) in saves:
                save_checkpoint(saves[(name, k)], ckpt.build_model(), ckpt.summary)
    out = REPO / "docs" / "training"
    command = " ".join(["python scripts/average_sweep.py", *args.runs, "--last", args.last])
    meta = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "sigma": args.sigma,
        "command": command.replace(str(Path.home()), "~"),
    }
    (out / "average_sweep.json").write_text(json.dumps({**meta, "runs": result}, indent=2) + "\n")
    print(write_table(out))


def write_table(out: Path) -> str:
    """Write ``average_sweep.md`` from ``average_sweep.json`` in ``out``; return the table."""
    report = json.loads((out / "average_sweep.json").read_text())
    lines = [
        "| run | averaged epochs (K) | validation loss | validation PSNR (dB) | "
        f"held-out PSNR at σ={report['sigma']:g} (dB) |",
        "|---|---|---|---|---|",
    ]
    for name, rows in report["runs"].items():
        for r in rows:
            span = f"{r['epochs'][0]}–{r['epochs'][-1]}" if r["count"] > 1 else f"{r['epochs'][0]}"
            lines.append(
                f"| {name} | {span} ({r['count']}) | {r['val_loss']:.8f} | "
                f"{r['val_psnr']:.3f} | {r['held_out_psnr']:.3f} |"
            )
    table = "\n".join(lines) + "\n"
    (out / "average_sweep.md").write_text(
        "Weight averaging of the last K epochs; validation = the run's own validation "
        "patches (choose K on these; the loss is against noisy targets for Noise2Noise), "
        "held-out = the 8 TRAIN_EXTRA photos at 480×320 with bench/quality.py's noise draw; "
        f"{report['date']}, {report['machine']}, `{report.get('command', '')}`.\n\n" + table
    )
    return table


if __name__ == "__main__":
    main()
