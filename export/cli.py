"""``n2n-export``: checkpoint -> ONNX, and the torch vs onnxruntime parity check."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from n2n_train.cli import ExtraGroup

if TYPE_CHECKING:
    from n2n_export.data import ParityCase
    from n2n_export.parity import ParityReport


@click.group(
    "n2n-export",
    cls=ExtraGroup,
    needs=("torch", "onnx"),
    extra="train",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option("-v", "--verbose", count=True, help="More log output.")
def main(verbose: int) -> None:
    """Export n2n checkpoints to ONNX and prove they match torch."""
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # torch's ONNX exporter warns about torchvision ops that n2n never uses.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)


def _data_options(f: Any) -> Any:
    options = [
        click.option(
            "--val-data",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Course-format val_data.pkl: (noisy, clean) uint8 N×3×H×W.",
        ),
        click.option(
            "--images",
            type=click.Path(path_type=Path, file_okay=False),
            help="Folder of clean images, noised with --noise, cropped to each case.",
        ),
        click.option(
            "--noise",
            default="gaussian:25",
            show_default=True,
            help="Noise applied to --images (clipped and rounded like an 8-bit file).",
        ),
        click.option("--seed", default=0, show_default=True, help="Seed of crops and noise."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--name", default=None, help="Model name in the metadata [default: OUT's stem].")
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "int8"]),
    default="fp32",
    show_default=True,
    help="fp16 for GPUs, int8 for CPUs; I/O stays float32.",
)
@click.option(
    "--calibration",
    type=click.Path(path_type=Path, file_okay=False),
    help="Clean images for int8 calibration, noised like the training data.",
)
@click.option(
    "--card/--no-card",
    default=True,
    show_default=True,
    help="Write a Markdown model card OUT.md from the metadata.",
)
@click.option("--reproduce", default="", help="Command that rebuilds the model, for the card.")
@_data_options
def onnx(
    checkpoint: Path,
    out: Path,
    name: str | None,
    precision: str,
    calibration: Path | None,
    card: bool,
    reproduce: str,
    val_data: Path | None,
    images: Path | None,
    noise: str,
    seed: int,
) -> None:
    """Write CHECKPOINT as one self-contained ONNX file OUT.

    With --val-data or --images, parity is checked right after the export, its
    figures are stored in the model's metadata and card, and a model that fails
    parity is not written (exit status 1). The model is made and checked beside
    OUT and only then put in its place: an existing OUT is replaced by a checked
    model or not at all.
    """
    import tempfile

    from n2n_export.card import write_model_card
    from n2n_export.exporter import export_onnx, update_metadata
    from n2n_infer.metadata import KEY_PSNR

    inputs = [p.resolve() for p in (checkpoint, val_data, calibration) if p is not None]
    if out.resolve() in inputs:
        click.echo(f"error: OUT {out} is one of the input files: choose another name", err=True)
        sys.exit(2)
    try:
        cases = _cases(val_data, images, noise, seed) if (val_data or images) else None
        calib = _calibration(checkpoint, calibration, seed) if precision == "int8" else None
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=".n2n-export-") as tmp:
            made = Path(tmp) / out.name
            export_onnx(
                checkpoint,
                made,
                name=name or out.stem,
                precision=precision,
                calibration=calib,
                reproduce=reproduce,
            )
            if cases is not None:
                report = _check_cases(checkpoint, made, cases)
                if not report.passed:
                    click.echo(f"error: the export failed parity; {out} was not written", err=True)
                    sys.exit(1)
                update_metadata(made, {KEY_PSNR: json.dumps(_headline(checkpoint, report))})
            made.replace(out)
        if card:
            write_model_card(out)
    except _input_errors() as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB, {precision})")


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@_data_options
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

    Cases: batch 1 and batch > 1 at 32×32, 256×256, 480×320 and 33×47 (padded
    by the runtime), the images at their own sizes, and the course-format data
    when given. Exit status 1 when a case fails (fp32: |ΔPSNR| > 0.01 dB or a
    largest absolute difference > 1e-4) or the metadata does not describe
    CHECKPOINT; 2 for unusable inputs.
    """
    if not (val_data or images):
        raise click.UsageError("give --val-data or --images")
    try:
        result = _check(checkpoint, model, val_data, images, noise, seed)
    except _input_errors() as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if report:
        report.write_text(result.to_json())
    sys.exit(0 if result.passed else 1)


def _check(
    checkpoint: Path, model: Path, val_data: Path | None, images: Path | None, noise: str, seed: int
) -> ParityReport:
    return _check_cases(checkpoint, model, _cases(val_data, images, noise, seed))


def _check_cases(checkpoint: Path, model: Path, cases: list[ParityCase]) -> ParityReport:
    from n2n_export.parity import check_parity

    result = check_parity(checkpoint, model, cases)
    _print_report(result)
    return result


def _cases(val_data: Path | None, images: Path | None, noise: str, seed: int) -> list[ParityCase]:
    from n2n_export.data import ParityCase, course_pairs, load_clean_images, parity_cases

    cases = []
    if images:
        label = f"{images.name} + {noise}"
        cases += [
            ParityCase(f"{c.name} ({label})", c.pairs)
            for c in parity_cases(load_clean_images(images), noise, seed)
        ]
    if val_data:
        cases.append(ParityCase(f"course {val_data.name}", course_pairs(val_data)))
    return cases


def _headline(checkpoint: Path, report: ParityReport) -> dict[str, Any]:
    """The figures stored in the metadata: the last case (course data, or full-size images)."""
    from n2n_train.checkpoint import load_checkpoint

    case = report.cases[-1]
    return {
        "val_psnr_torch": load_checkpoint(checkpoint).summary.get("val_psnr"),
        "eval_set": case.name,
        "images": case.images,
        "psnr_noisy": case.psnr_noisy,
        "psnr_torch": case.psnr_torch,
        "psnr_onnx": case.psnr_onnx,
    }


def _print_report(r: ParityReport) -> None:
    click.echo(f"parity of {r.model} ({r.precision}) against {r.checkpoint}")
    click.echo(
        f"thresholds: |ΔPSNR| <= {r.thresholds.max_delta_psnr_db} dB, "
        f"max |diff| <= {r.thresholds.max_abs_diff:g}"
    )
    width = max(len(c.name) for c in r.cases)
    click.echo(
        f"{'case':<{width}}  {'n':>4}  {'noisy':>7}  {'torch':>8}  {'onnx':>8}  "
        f"{'ΔPSNR':>9}  {'max|d|':>8}  {'mean|d|':>8}"
    )
    for c in r.cases:
        if c.error:
            click.echo(f"{c.name:<{width}}  {c.images:>4}  FAILED: {c.error}")
            continue
        flag = "" if c.passed(r.thresholds) else "  FAILED"
        click.echo(
            f"{c.name:<{width}}  {c.images:>4}  {c.psnr_noisy:7.3f}  {c.psnr_torch:8.4f}  "
            f"{c.psnr_onnx:8.4f}  {c.delta_psnr:+9.6f}  {c.max_abs_diff:8.2e}  "
            f"{c.mean_abs_diff:8.2e}{flag}"
        )
    for problem in r.problems:
        click.echo(f"metadata: {problem}")
    click.echo("parity: PASSED" if r.passed else "parity: FAILED")


def _calibration(checkpoint: Path, folder: Path | None, seed: int) -> list[Any]:
    """Noisy calibration crops: the clean images noised like the model's training data."""
    from n2n_export.data import calibration_batches, load_clean_images
    from n2n_train.checkpoint import load_checkpoint

    if folder is None:
        raise click.UsageError("--precision int8 needs --calibration DIR (clean images)")
    noise = str(load_checkpoint(checkpoint).summary.get("noise", ""))
    if not noise.startswith("gaussian"):
        noise = "gaussian:25"
    return calibration_batches(load_clean_images(folder), noise, seed=seed)


def _input_errors() -> tuple[type[Exception], ...]:
    from n2n_infer.errors import N2NError
    from n2n_train.checkpoint import CheckpointError
    from n2n_train.data import DataError

    return (CheckpointError, DataError, N2NError, ValueError, OSError)


if __name__ == "__main__":
    main()
