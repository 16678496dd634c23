"""PNG figures: loss curves, per-image PSNR box plot, noisy/denoised/clean grid.

matplotlib is imported inside each function (Agg backend), so importing this
module is cheap. Images are float N×3×H×W in [0, 1].
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import torch

log = logging.getLogger(__name__)


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a ``metrics.jsonl`` file; a line that is not a JSON object (torn by a
    full disk or a kill mid-write) is skipped with a warning."""
    rows = []
    for n, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict) and isinstance(row.get("epoch"), int):
            rows.append(row)
        else:
            log.warning("%s: line %d is not a metrics row (torn write?): skipped", path, n)
    return rows


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


def sweep_scale(doc: dict) -> str:
    """A sweep's scale in words, from its base options: "5,000 pairs" or "all pairs"."""
    limit = doc.get("base", {}).get("limit_pairs")
    return f"{int(limit):,} pairs" if limit else "all pairs"


def plot_sweeps(
    docs: Sequence[dict],
    out: str | Path,
    title: str = "",
    beside: Sequence[dict | None] = (),
) -> Path:
    """One bar-chart panel per ``sweep.json`` document: per run, the study's figure beside ours.

    Ours is the best checkpoint's mean per-image PSNR; a run not measured (or
    failed) has no bar and is labelled "not run"; a diverged run's bar is hatched.
    A dotted line marks the noisy inputs' PSNR where known. ``beside[i]``, when
    given, is another pass of panel ``i``'s spec (another scale, say): its runs,
    matched by name, are a third bar, and each of our two series is labelled
    with its scale (:func:`sweep_scale`).

    Raises:
        ValueError: more ``beside`` documents than panels.
    """
    if len(beside) > len(docs):
        raise ValueError(f"beside: {len(beside)} documents for {len(docs)} panels")
    plt = _pyplot()
    widths = [max(5.0, 0.8 * len(d["runs"]) + 2.0) for d in docs]
    fig, axes = plt.subplots(len(docs), 1, figsize=(max(widths), 3.4 * len(docs)), squeeze=False)
    for i, (ax, doc) in enumerate(zip(axes[:, 0], docs, strict=True)):
        runs = doc["runs"]
        other = beside[i] if i < len(beside) else None
        xs = list(range(len(runs)))
        series = [
            (
                "study (course data)",
                "#999999",
                [r.get("study_psnr") for r in runs],
                [False] * len(runs),
            )
        ]
        ours_label = "ours (seed-like data)" if other is None else f"ours, {sweep_scale(doc)}"
        series.append((ours_label, "#2a6fb0", *_measured(runs)))
        if other is not None:
            by_name = {r["name"]: r for r in other.get("runs", [])}
            matched = [by_name.get(r["name"], {}) for r in runs]
            series.append((f"ours, {sweep_scale(other)}", "#e08a1e", *_measured(matched)))
        width = 0.8 / len(series)
        for k, (label, colour, values, diverged) in enumerate(series):
            at = [x + (k - (len(series) - 1) / 2) * width for x in xs]
            bars = ax.bar(at, [v or 0 for v in values], width, label=label, color=colour)
            for bar, x, v, hatch in zip(bars, at, values, diverged, strict=True):
                if hatch:
                    bar.set_hatch("//")
                if v is not None:
                    ax.text(x, v + 0.3, f"{v:.1f}", ha="center", va="bottom", fontsize=6)
                else:
                    empty = "n/a" if k == 0 else "not run"
                    ax.text(x, 0.5, empty, ha="center", va="bottom", fontsize=7, rotation=90)
        noisy = [r.get("noisy_psnr") for r in runs if r.get("noisy_psnr")]
        if noisy:
            ax.axhline(noisy[0], color="k", ls=":", lw=1, label="noisy input")
        ax.set_xticks(xs)
        ax.set_xticklabels([r["label"] for r in runs], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("mean PSNR (dB)")
        top = max([v for _, _, values, _ in series for v in values if v] or [1.0])
        ax.set_ylim(0, top * 1.12)
        ax.set_title(doc.get("title", ""), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)


def _measured(runs: Sequence[dict]) -> tuple[list[float | None], list[bool]]:
    """Per run: its mean PSNR if done (else None), and whether it diverged."""
    values = [r.get("psnr") if r.get("status") == "done" else None for r in runs]
    return values, [bool(r.get("diverged")) for r in runs]
