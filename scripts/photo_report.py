"""Learning curves of the photo model and its Noise2Clean twin (scripts/train_default.sh).

Usage: python scripts/photo_report.py [RUNS_DIR]   (RUNS_DIR holds photo/ and photo-n2c/,
and optionally photo-seed1/ and photo-swap/, plotted too when present)

Copies both runs' ``metrics.jsonl`` to ``docs/training/``, plots validation PSNR
(held-out TRAIN_CORE photos, blind sigma 0-50) against training hours to
``docs/training/photo_curves.png``, and writes ``docs/training/photo.json``: per run,
the best validation PSNR, the training time, and the gain over the last quarter of
the epochs (how much the run was still improving when its schedule ended), and the
kept checkpoint's (``averaged.pt`` if the run has one, else ``best.pt``) mean PSNR
on the held-out set of ``bench/quality.py`` at sigma 25
(same photos, same noise draw, torch fp32): unlike validation PSNR, which is measured
on each run's own validation photos (the split follows the seed), it compares runs
of different seeds on equal terms.

A fine-tuning run (``n2n-train fit --init``, ``INIT_FROM=`` in train_default.sh) is
plotted and summarised after the run it started from, read from the folder of the
checkpoint its summary names; its rows carry ``"stage": "fine-tune"``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from n2n_train.checkpoint import Checkpoint, load_checkpoint  # noqa: E402

RUNS = {"photo": "Noise2Noise (shipped)", "photo-n2c": "Noise2Clean twin"}
#: Runs plotted and summarised when RUNS_DIR has them.
OPTIONAL_RUNS = {
    "photo-seed1": "Noise2Noise, seed 1 (no fine-tune)",
    "photo-swap": "Noise2Noise with --swap (an earlier model)",
}


def load(run: Path) -> list[dict]:
    """The run's metrics rows, after those of the run it fine-tuned, if any."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    import torch

    raw = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    init = raw["summary"].get("data", {}).get("init")  # a file name (a path before issue 20)
    if not init:
        return rows
    local = run / "local_paths.json"  # fit records there where --init lies on this machine
    if local.is_file():
        init = json.loads(local.read_text()).get("init", init)
    base = load(Path(init).parent)
    offset = base[-1]["epoch"]
    return base + [dict(r, epoch=r["epoch"] + offset, stage="fine-tune") for r in rows]


def summary(rows: list[dict]) -> dict[str, float]:
    hours, total = [], 0.0
    for r in rows:
        total += r["seconds"]
        hours.append(total / 3600)
    quarter = max(1, len(rows) // 4)
    before = max(r["val_psnr"] for r in rows[:-quarter]) if len(rows) > quarter else float("nan")
    best = max(r["val_psnr"] for r in rows)
    out = {
        "epochs": len(rows),
        "training_hours": hours[-1],
        "best_val_psnr": best,
        "gain_last_quarter_db": best - before,
    }
    tuned = [r for r in rows if r.get("stage") == "fine-tune"]
    if tuned and len(tuned) < len(rows):
        out["fine_tune_epochs"] = len(tuned)
        out["fine_tune_gain_db"] = best - max(r["val_psnr"] for r in rows[: -len(tuned)])
    return out


def held_out_psnr(checkpoint: Path | Checkpoint, sigma: int = 25) -> float:
    """Mean PSNR of ``checkpoint`` (a file or a loaded one) on bench/quality.py's
    held-out set at ``sigma``."""
    import numpy as np
    import torch

    from bench.quality import to_u8
    from bench.variants import held_out_images
    from n2n_infer.metrics import psnr
    from n2n_train.noise import gaussian_u8

    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    model = ckpt.build_model().eval()
    rng = np.random.default_rng(sigma)  # bench.quality's draw: default_rng(seed 0 + sigma)
    scores = []
    for clean in held_out_images():
        noisy = gaussian_u8(clean, sigma, rng)
        x = torch.from_numpy(noisy.transpose(2, 0, 1)[None].astype(np.float32) / 255)
        with torch.no_grad():
            out = model(x)[0].numpy().transpose(1, 2, 0)
        scores.append(psnr(to_u8(out), clean))
    return float(np.mean(scores))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="?", default=REPO / "runs")
    args = ap.parse_args()
    out = REPO / "docs" / "training"
    out.mkdir(parents=True, exist_ok=True)
    curves = {}
    labels = {**RUNS, **{k: v for k, v in OPTIONAL_RUNS.items() if (args.runs / k).is_dir()}}
    for name in labels:
        curves[name] = load(args.runs / name)
        text = "".join(json.dumps(r) + "\n" for r in curves[name])
        (out / f"{name}.metrics.jsonl").write_text(text)
    result = {name: summary(rows) for name, rows in curves.items()}
    for name in result:
        # the checkpoint train_default.sh ships: the weight average when AVERAGE= made one
        kept = next(p for p in ("averaged.pt", "best.pt") if (args.runs / name / p).is_file())
        result[name]["checkpoint"] = kept
        result[name]["held_out_psnr_sigma25"] = held_out_psnr(args.runs / name / kept)
        if kept == "averaged.pt":
            averaged = load_checkpoint(args.runs / name / kept).summary
            result[name]["averaged_epochs"] = averaged["averaged"]["count"]
            result[name]["averaged_val_psnr"] = averaged.get("val_psnr")
    (out / "photo.json").write_text(json.dumps(result, indent=2) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, rows in curves.items():
        t, hours = 0.0, []
        for r in rows:
            t += r["seconds"]
            hours.append(t / 3600)
        line = ax.plot(hours, [r["val_psnr"] for r in rows], marker=".", label=labels[name])
        starts = [i for i, r in enumerate(rows) if r.get("stage") == "fine-tune"][:1]
        for i in starts:  # where the fine-tune began
            ax.axvline(hours[i - 1], color=line[0].get_color(), ls=":", lw=1)
        if result[name].get("averaged_val_psnr") is not None:  # the shipped weight average
            ax.plot(
                hours[-1],
                result[name]["averaged_val_psnr"],
                marker="*",
                ms=11,
                color=line[0].get_color(),
                ls="none",
                label=f"{labels[name]}, mean of last {result[name]['averaged_epochs']} epochs",
            )
    ax.set_xlabel("training time (hours, one CPU core each)")
    ax.set_ylabel("validation PSNR (dB)")
    ax.set_title("photo model: held-out TRAIN_CORE patches, sigma 0-50", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "photo_curves.png", dpi=110)
    plt.close(fig)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
