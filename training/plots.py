"""PNG figures: loss curves, per-image PSNR box plot, noisy/denoised/clean grid.

matplotlib is imported inside each function (Agg backend), so importing this
module is cheap. Images are float N×3×H×W in [0, 1].
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import torch


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a ``metrics.jsonl`` file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_loss_curves(rows: Sequence[dict], out: str | Path, title: str = "") -> Path:
    """Train and validation loss per epoch (log scale) and validation PSNR, as one PNG."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(epochs, [r["train_loss"] for r in rows], label="train loss")
    ax.plot(epochs, [r["val_loss"] for r in rows], label="validation loss")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if any("val_psnr" in r for r in rows):
        ax2 = ax.twinx()
        pts = [(r["epoch"], r["val_psnr"]) for r in rows if "val_psnr" in r]
        ax2.plot(*zip(*pts, strict=True), "g.--", label="validation PSNR")
        ax2.set_ylabel("PSNR (dB)", color="g")
    ax.legend(loc="center right")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)


def plot_psnr_box(
    groups: dict[str, Sequence[float]], out: str | Path, title: str = "per-image PSNR"
) -> Path:
    """Box plot of per-image PSNR (dB), one box per named group (as the study's figure 2)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(groups), 3.6))
    ax.boxplot([list(v) for v in groups.values()], tick_labels=list(groups))
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)


def plot_samples(
    noisy: torch.Tensor, denoised: torch.Tensor, clean: torch.Tensor, out: str | Path
) -> Path:
    """A grid: one row per image, columns noisy / denoised / clean (the study's figure 3)."""
    plt = _pyplot()
    n = noisy.shape[0]
    fig, axes = plt.subplots(n, 3, figsize=(4.5, 1.5 * n), squeeze=False)
    for i in range(n):
        for j, (name, img) in enumerate(
            (("noisy", noisy), ("denoised", denoised), ("clean", clean))
        ):
            ax = axes[i][j]
            ax.imshow(img[i].clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)
