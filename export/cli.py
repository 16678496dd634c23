"""``n2n-export``: checkpoint -> ONNX, and the torch vs onnxruntime parity check."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output.")
def main(verbose: int) -> None:
    """Export n2n checkpoints to ONNX and prove they match torch."""
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # torch's ONNX exporter warns about torchvision ops that n2n never uses.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)


_data_options = [
    click.option(
        "--val-data",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Course-format val_data.pkl: (noisy, clean) uint8 N×3×H×W.",
    ),
    click.option(
        "--images",
        type=click.Path(path_type=Path, file_okay=False),
        help="Folder of clean images, noised with --noise.",
    ),
    click.option(
        "--noise",
        default="gaussian:25",
        show_default=True,
        help="Noise applied to --images (clipped and rounded like an 8-bit file).",
    ),
    click.option("--seed", default=0, show_default=True, help="Seed of the noise."),
]


def _with_data_options(f):  # type: ignore[no-untyped-def]
    for option in reversed(_data_options):
        f = option(f)
    return f


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--name", default=None, help="Model name in the metadata [default: OUT's stem].")
@click.option(
    "--card/--no-card",
    default=True,
    show_default=True,
    help="Write a Markdown model card OUT.md from the metadata.",
)
@click.option("--reproduce", default="", help="Command that rebuilds the model, for the card.")
@_with_data_options
def onnx(
    checkpoint: Path,
    out: Path,
    name: str | None,
    card: bool,
    reproduce: str,
    val_data: Path | None,
    images: Path | None,
    noise: str,
    seed: int,
) -> None:
    """Write CHECKPOINT as one self-contained ONNX file OUT.

    With --val-data or --images, the parity figures are measured and stored in
    the model's metadata (and the export fails if parity fails).
    """
    from export.card import write_model_card
    from export.exporter import export_onnx, update_metadata
    from export.parity import check_parity
    from n2n_infer.errors import N2NError
    from n2n_infer.metadata import KEY_PSNR
    from training.checkpoint import CheckpointError, load_checkpoint
    from training.data import DataError

    try:
        export_onnx(checkpoint, out, name=name)
        if val_data or images:
            pairs, label = _load_pairs(val_data, images, noise, seed)
            report = check_parity(checkpoint, out, pairs)
            _print_report(report)
            if not report.passed:
                sys.exit(1)
            psnr = {
                "val_psnr_torch": load_checkpoint(checkpoint).summary.get("val_psnr"),
                "eval_set": label,
                **{
                    k: v
                    for k, v in report.to_dict().items()
                    if k.startswith("psnr") or k == "images"
                },
            }
            update_metadata(out, {KEY_PSNR: json.dumps(psnr)})
        if card:
            write_model_card(out, reproduce)
    except (CheckpointError, DataError, N2NError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@_with_data_options
@click.option(
    "--report",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the report as JSON.",
)
def parity(
    checkpoint: Path,
    model: Path,
    val_data: Path | None,
    images: Path | None,
    noise: str,
    seed: int,
    report: Path | None,
) -> None:
    """Run torch (CHECKPOINT) and onnxruntime (MODEL, CPU) on the same noisy images.

    Exit status 1 when |ΔPSNR| > 0.01 dB or the largest absolute output
    difference exceeds 1e-4; 2 for unusable inputs.
    """
    from export.parity import check_parity
    from n2n_infer.errors import N2NError
    from training.checkpoint import CheckpointError
    from training.data import DataError

    if not (val_data or images):
        raise click.UsageError("give --val-data or --images")
    try:
        pairs, label = _load_pairs(val_data, images, noise, seed)
        result = check_parity(checkpoint, model, pairs)
    except (CheckpointError, DataError, N2NError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    _print_report(result)
    if report:
        report.write_text(json.dumps({"data": label, **result.to_dict()}, indent=2) + "\n")
    sys.exit(0 if result.passed else 1)


def _print_report(r) -> None:  # type: ignore[no-untyped-def]
    click.echo(f"images:            {r.images}")
    click.echo(f"PSNR noisy input:  {r.psnr_noisy:.4f} dB")
    click.echo(f"PSNR torch:        {r.psnr_torch:.4f} dB")
    click.echo(f"PSNR onnxruntime:  {r.psnr_onnx:.4f} dB")
    click.echo(f"ΔPSNR:             {r.delta_psnr:+.6f} dB")
    click.echo(f"max |difference|:  {r.max_abs_diff:.3g}  (mean {r.mean_abs_diff:.3g})")
    click.echo("parity: PASSED" if r.passed else "parity: FAILED")


def _load_pairs(val_data: Path | None, images: Path | None, noise: str, seed: int):  # type: ignore[no-untyped-def]
    from export.data import course_pairs, noised_image_pairs

    if val_data:
        return course_pairs(val_data), f"course:{val_data.name}"
    assert images is not None
    return noised_image_pairs(images, noise, seed), f"images:{images.name}+{noise}"


if __name__ == "__main__":
    main()
