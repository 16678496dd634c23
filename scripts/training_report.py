"""Write docs/training.md from the seed-like runs: PSNR table, N2N-N2C gap, throughput, figures.

Evaluates each run's best.pt on the seed-like val_data.pkl, copies the runs'
metrics.jsonl next to the page, draws their loss curves, a per-image PSNR box
plot, and a noisy/denoised/clean grid cut from the CC0 images in
examples/clean (never from the training photos). Usage:

    .venv/bin/python scripts/training_report.py \\
        --n2n ~/.cache/n2n/runs/seedlike --n2c ~/.cache/n2n/runs/seedlike-n2c \\
        --data ~/.cache/n2n/seedlike --bench docs/training/bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
from datetime import datetime, timezone
from pathlib import Path

import torch

from n2n_train.checkpoint import Checkpoint, load_checkpoint
from n2n_train.data import load_course_pairs, load_photo_folder, quantize, to_float
from n2n_train.evaluate import EvalResult, evaluate
from n2n_train.noise import parse_noise
from n2n_train.plots import plot_loss_curves, plot_psnr_box, plot_samples, read_metrics

REPO = Path(__file__).resolve().parent.parent
USAGE = """\
# Training

`n2n-train` reproduces and extends the original study (a small UNet trained with
Noise2Noise on 50,000 noisy 32×32 pairs). Every option is a field of one of two
frozen configs saved in every checkpoint: `UNetConfig` (model) and `TrainConfig`
(training) in `training/config.py`.

```bash
n2n-train corpus                               # photos -> ~/.cache/n2n/photos/SET
n2n-train make-seedlike ~/.cache/n2n/seedlike  # course-format stand-in, ~600 MB
n2n-train fit --course ~/.cache/n2n/seedlike/train_data.pkl \\
    --course-val ~/.cache/n2n/seedlike/val_data.pkl --out runs/n2n --epochs 50 --study
n2n-train fit --course ~/.cache/n2n/seedlike/train_clean.pkl --target clean \\
    --course-val ~/.cache/n2n/seedlike/val_data.pkl --out runs/n2c --epochs 50 --study
n2n-train fit ... --resume                     # continue runs/n2n from last.pt (same options)
n2n-train eval runs/n2n/best.pt ~/.cache/n2n/seedlike/val_data.pkl --out runs/n2n/eval
n2n-train fit --photos DIR --noise poisson:5-50 --out runs/p   # clean photos, noised on the fly
```

- **Model** (`UNetConfig`): `--features 16,32,64` (2–5 levels), `--convs-per-level 1|2`,
  `--batch-norm`, `--dropout P`, `--pooling avg|max`, `--upsampling nearest|bilinear|transposed`,
  `--activation relu|leaky_relu`, `--residual` (the output is the input plus the network's
  1×1 head: the network predicts the noise, as in DnCNN, which trains several times faster
  on photos); `--preset study` is the study's final model.
- **Optimisation**: `--optimizer sgd|adam|adagrad` with the study's settings (SGD lr 0.01
  momentum 0.9; Adam lr 0.001 betas 0.9/0.999; Adagrad lr 0.01; `--lr` overrides),
  `--schedule none|cosine|step`; `--loss mse|l1|l0` (l0: the paper's annealed L0, gamma 2 → 0;
  validation then uses L1).
- **Augmentation**: `--swap` (exchange input and target in half the pairs), `--dihedral`
  (the 8 flips/rotations), `--blur-prob P` (blur one side of a pair with a random Gaussian,
  sigma 0.5–1.5 px); `--study` turns on all three (P = 0.1), as the study's "augmented" set.
- **Photos at several scales**: `--pyramid N` (photo folders) also trains on each photo
  halved up to N times (2×2 average) while its shorter side stays ≥ max(patch, 256) px.
  Large wallpapers are mostly smooth at full size; their halved copies show the dense
  detail of ordinary, smaller photos. The train/validation split is made by photo first,
  so every scale of a photo stays on one side.
- **Noise2Clean**: `--target clean` trains on clean targets (photos: the clean patch; course
  format: a (noisy, clean) file such as `train_clean.pkl`), to measure the Noise2Noise gap.
- **Noises** (`--noise`, photos only; `training/noise.py`): `gaussian:25`, `gaussian:0-50`
  (blind), `poisson:30`, `poisson:5-50`, `pixelated:SIGMA[,BLOCK]` (the seed-like noise),
  `bernoulli:P` and `impulse:P`. Gaussian, Poisson and pixelated are zero-mean (use MSE);
  Bernoulli is not (median is clean for P < 0.5: use `--loss l1`), nor is impulse (mode is
  clean: use `--loss l0`).
- **Runs**: seeded (`--seed`) and repeatable; `--resume` continues from `OUT/last.pt`
  (optimizer and random states included; `--epochs` may grow, other options must match);
  `--device cpu|cuda`; `--precision bf16` and `--channels-last` (see the throughput table);
  `--threads N`. Each run writes `best.pt` (lowest validation loss), `last.pt`,
  `metrics.jsonl` (per epoch: train/validation loss, validation PSNR, lr, images/s) and
  `loss.png`, with a progress bar showing the current loss.
- **Evaluation**: `n2n-train eval CHECKPOINT DATA` on a (noisy, clean) course file or a folder
  of clean photos (`--noise`, default the model's) prints the mean per-image PSNR, the
  global-MSE PSNR (labelled), the noisy input's PSNR, and with `--out` writes
  `psnr_box.png`, `samples.png` (noisy / denoised / clean) and `eval.json`.
- **make-seedlike**: 50,000 pairs of 32×32 patches from TRAIN_CORE photos scaled to short
  sides 48/96/192/384 px and full size, each turned by a random flip/rotation, noised twice
  with `pixelated` noise; 1,000 (noisy, clean) validation pairs from TRAIN_EXTRA; the noise
  level is bisected so the noisy validation inputs score 20.7 dB mean per-image PSNR; also
  writes `train_clean.pkl` (noisy, clean) and `seedlike.json`.

"""
STUDY_PSNR = 24.77  # the study's final model on the course's test set (mean per-image)
COURSE_NOISY_PSNR = 20.72


def run_facts(name: str, run: Path, noisy: torch.Tensor, clean: torch.Tensor, out: Path) -> dict:
    """Evaluate ``run/best.pt``; copy its metrics and draw its loss curve into ``out``."""
    ckpt = load_checkpoint(run / "best.pt")
    result, _ = evaluate(ckpt.build_model(), noisy, clean)
    rows = read_metrics(run / "metrics.jsonl")
    shutil.copy(run / "metrics.jsonl", out / f"{name}.metrics.jsonl")
    plot_loss_curves(rows, out / f"{name}_loss.png", title=name)
    return {
        "name": name,
        "result": result,
        "best_epoch": ckpt.summary.get("best_epoch"),
        "epochs_done": len(rows),
        "epochs_planned": ckpt.summary["train_config"]["epochs"],
        "images_per_s": statistics.median(r["images_per_s"] for r in rows),
        "train_config": ckpt.summary["train_config"],
        "model": ckpt,
    }


def example_grid(ckpt: Checkpoint, noise_spec: str, out: Path) -> None:
    """Six 32×32 patches of the CC0 examples, noised like the seed-like data, denoised."""
    photos = load_photo_folder(REPO / "examples" / "clean")
    clean = torch.stack(
        [to_float(p[:, y : y + 32, x : x + 32]) for p in photos for y, x in ((60, 60), (100, 40))]
    )[:6]
    noisy = quantize(parse_noise(noise_spec)(clean, torch.Generator().manual_seed(0)))
    _, denoised = evaluate(ckpt.build_model(), noisy, clean)
    plot_samples(noisy, denoised, clean, out / "samples_examples.png")


def psnr_row(label: str, r: EvalResult | None, per_image: float, note: str) -> str:
    glob = f"{r.global_mse_psnr:.2f}" if r is not None else "–"
    return f"| {label} | {per_image:.2f} | {glob} | {note} |"


def write_page(
    facts: list[dict], noisy_result: EvalResult, bench: dict, meta: dict, docs: Path
) -> str:
    n2n, n2c = facts
    gap = n2c["result"].mean_psnr - n2n["result"].mean_psnr
    cfg = n2n["train_config"]
    lines = [
        USAGE,
        "## Results on the seed-like data",
        "",
        f"Generated by `scripts/training_report.py` on {meta['date']} on {meta['machine']}.",
        "The seed-like data set is a stand-in built by `n2n-train make-seedlike` from the",
        "training photos; **it is not the course's data**, so the study's figure",
        "is a reference point, not a like-for-like comparison.",
        "",
        f"Data: `{meta['data']}` ({meta['seedlike']['n_train']} training pairs, "
        f"{meta['seedlike']['n_val']} validation pairs, noise `{meta['seedlike']['noise']}`).",
        "Model: the study's final UNet (`--preset study`); training: "
        f"{cfg['optimizer'].upper()} lr {cfg['lr']} momentum {cfg['momentum']}, MSE, batch "
        f"{cfg['batch_size']}, swap half the pairs, 8 flips/rotations, blur one side with "
        f"probability {cfg['blur_prob']}, 80/20 split, best epoch by validation loss,",
        f"precision {cfg['precision']}, channels-last {cfg['channels_last']}.",
        "",
        "| | PSNR, mean per image (dB) | PSNR, global MSE (dB) | note |",
        "| --- | --- | --- | --- |",
        psnr_row(
            "noisy input (seed-like val)",
            noisy_result,
            noisy_result.mean_psnr,
            f"the course's inputs: {COURSE_NOISY_PSNR} dB",
        ),
    ]
    for f in facts:
        note = f"best epoch {f['best_epoch']} of {f['epochs_done']} run" + (
            "" if f["epochs_done"] == f["epochs_planned"] else f" (of {f['epochs_planned']})"
        )
        lines.append(psnr_row(f["name"], f["result"], f["result"].mean_psnr, note))
    lines += [
        f"| the study, course test set | {STUDY_PSNR:.2f} | – | different data |",
        "",
        f"Noise2Noise − Noise2Clean gap: **{-gap:+.2f} dB** (Noise2Clean "
        f"{n2c['result'].mean_psnr:.2f} dB; the paper reports ≤ 0.1 dB).",
        "",
        *unfinished_lines(facts),
        "![loss curves, Noise2Noise](training/noise2noise_loss.png)",
        "![loss curves, Noise2Clean](training/noise2clean_loss.png)",
        "![per-image PSNR](training/psnr_box.png)",
        "",
        "Samples (32×32 patches of the CC0 images in `examples/clean`, seed-like noise; columns",
        "noisy / Noise2Noise output / clean):",
        "",
        "![samples](training/samples_examples.png)",
        "",
        "Per-epoch metrics: `training/noise2noise.metrics.jsonl`, "
        "`training/noise2clean.metrics.jsonl`.",
        "",
        *throughput_lines(bench, facts),
        *precision_lines(docs),
    ]
    return "\n".join(lines) + "\n"


def unfinished_lines(facts: list[dict]) -> list[str]:
    """A warning when a run had not reached its planned epochs when the page was made."""
    late = [f for f in facts if f["epochs_done"] < f["epochs_planned"]]
    if not late:
        return []
    done = ", ".join(f"{f['name']} {f['epochs_done']}/{f['epochs_planned']}" for f in late)
    return [
        f"**Interim figures**: the runs were still training when this page was generated "
        f"(epochs done: {done}). They continue with the same command plus `--resume`; rerun "
        "this script when they finish.",
        "",
    ]


def throughput_lines(bench: dict, facts: list[dict]) -> list[str]:
    med = bench["images_per_s_median"]
    base = med["fp32"]
    lines = [
        "## Training throughput",
        "",
        f"`scripts/bench_training.py` ({bench['date']}, {bench['machine']}, "
        f"{bench['threads']} torch threads, torch {bench['torch']}): training steps of the",
        f"study's UNet on batches of 50 32×32 images, median of {bench['repeats']} interleaved "
        f"repeats of {bench['steps']} steps.",
        "",
        "| variant | images/s | vs fp32 |",
        "| --- | --- | --- |",
        *[f"| {k} | {v:.0f} | ×{v / base:.2f} |" for k, v in med.items()],
        "",
        "To raise it: bf16 autocast with channels-last memory format (the fastest variant above,",
        "with no PSNR cost, below), and one torch thread per run (`--threads 1`) so the two",
        "long runs share the 2 cores without oversubscribing them.",
        "",
        "In the long runs (median over epochs, one torch thread each, two runs side by side",
        "with other jobs on the same 2 cores): "
        + ", ".join(f"{f['name']} {f['images_per_s']:.0f} images/s" for f in facts)
        + ".",
    ]
    return lines


def precision_lines(docs: Path) -> list[str]:
    """The fp32 vs bf16+channels-last PSNR check (metrics copied into docs/training/)."""
    fp32 = read_metrics(docs / "training" / "precision_fp32.metrics.jsonl")
    fast = read_metrics(docs / "training" / "precision_bf16_channels_last.metrics.jsonl")
    lines = [
        "",
        "bf16 autocast with channels-last is adopted for the long runs because it costs no",
        "PSNR: the same 4-epoch run on the first 10,000 seed-like pairs (`n2n-train fit",
        "--course ... --epochs 4 --study --threads 1`, with and without `--precision bf16",
        "--channels-last`, side by side) gives (validation PSNR, dB; images/s):",
        "",
        "| epoch | fp32 PSNR | bf16 + channels-last PSNR | fp32 images/s | bf16 + CL images/s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for a, b in zip(fp32, fast, strict=True):
        lines.append(
            f"| {a['epoch']} | {a['val_psnr']:.3f} | {b['val_psnr']:.3f} | "
            f"{a['images_per_s']:.0f} | {b['images_per_s']:.0f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n2n", type=Path, required=True)
    parser.add_argument("--n2c", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="make-seedlike's folder")
    parser.add_argument("--bench", type=Path, required=True)
    parser.add_argument("--docs", type=Path, default=REPO / "docs")
    args = parser.parse_args()
    out = args.docs / "training"
    out.mkdir(parents=True, exist_ok=True)
    noisy, clean = (to_float(t) for t in load_course_pairs(args.data / "val_data.pkl"))
    facts = [
        run_facts("noise2noise", args.n2n.expanduser(), noisy, clean, out),
        run_facts("noise2clean", args.n2c.expanduser(), noisy, clean, out),
    ]
    noisy_result = evaluate(torch.nn.Identity(), noisy, clean)[0]  # the inputs themselves
    groups = {"noisy": noisy_result.noisy_psnr}
    groups |= {f["name"]: f["result"].denoised_psnr for f in facts}
    plot_psnr_box(groups, out / "psnr_box.png", title="per-image PSNR, seed-like validation")
    seedlike = json.loads((args.data / "seedlike.json").read_text())
    example_grid(facts[0]["model"], seedlike["noise"], out)
    meta = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"this project's shared 2-core {platform.machine()} VM (no GPU)",
        "data": "n2n-train make-seedlike --seed 0",
        "seedlike": seedlike,
    }
    bench = json.loads(args.bench.read_text())
    (args.docs / "training.md").write_text(write_page(facts, noisy_result, bench, meta, args.docs))
    summary = {f["name"]: f["result"].mean_psnr for f in facts}
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
