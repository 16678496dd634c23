"""``n2n-export``: checkpoint -> ONNX, and the torch vs onnxruntime parity check."""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from n2n_export.bioimageio import bioimageio_command
from n2n_infer.cli import configure_logging, echo, quiet_option
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
@quiet_option()
def main(verbose: int, quiet: bool) -> None:
    """Export n2n checkpoints to ONNX and prove they match torch."""
    configure_logging(verbose, quiet)
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
            help="Folder of images, noised with --noise, cropped to each case; PSNR is "
            "measured against them as given [default without --val-data: built-in clean "
            "test patterns].",
        ),
        click.option(
            "--noise",
            default="gaussian:25",
            show_default=True,
            help="Noise applied to the images (clipped and rounded like an 8-bit file).",
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
    help="fp16 for GPUs; int8 for CPUs, a named choice that device 'auto' never makes for "
    "you: on the photo model it costs about 0.16 dB for 3.4-4.5x onnxruntime fp32 through "
    "OpenVINO on CPUs with VNNI (1.6-2.3x on onnxruntime; docs/runtime.md, 'Speed'). I/O "
    "stays float32.",
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
@click.option(
    "--parity/--no-parity",
    default=True,
    show_default=True,
    help="Check torch vs onnxruntime parity before writing OUT (without --images or "
    "--val-data: on built-in test patterns; int8: on the --calibration images); --no-parity "
    "writes an unchecked model, with a warning.",
)
@_data_options
def onnx(
    checkpoint: Path,
    out: Path,
    name: str | None,
    precision: str,
    calibration: Path | None,
    card: bool,
    reproduce: str,
    parity: bool,
    val_data: Path | None,
    images: Path | None,
    noise: str,
    seed: int,
) -> None:
    """Write CHECKPOINT as one self-contained ONNX file OUT.

    Parity is checked right after the export, on --val-data and --images, or
    without them on built-in clean test patterns (the same on every install;
    int8: on the --calibration images);
    its figures are stored in the model's metadata and card, and a model that
    fails parity is not written (exit status 1). The model is made and checked
    beside OUT and only then put in its place: an existing OUT is replaced by a
    checked model or not at all. An OUT (or its card OUT.md) that exists and is
    not a regular file (a folder, a named pipe, a device) is refused (exit 2).
    """
    import tempfile

    from n2n_export.card import write_model_card
    from n2n_export.exporter import export_onnx, update_metadata
    from n2n_infer.metadata import KEY_PSNR

    inputs = [p.resolve() for p in (checkpoint, val_data, calibration) if p is not None]
    if out.resolve() in inputs:
        echo(f"error: OUT {out} is one of the input files: choose another name", err=True)
        sys.exit(2)
    for target in (out, out.with_suffix(".md")) if card else (out,):
        problem = _not_a_regular_file(target)
        if problem:
            echo(f"error: {target}: {problem}", err=True)
            sys.exit(2)
    if not parity and (val_data or images):
        raise click.UsageError("--no-parity skips the check that --val-data and --images feed")
    checked = images
    if precision == "int8" and not (val_data or images):
        # int8's thresholds were measured on photos; the patterns' flat areas and saturated
        # edges cost int8 more (docs/export.md), so int8 is checked on its calibration photos
        checked = calibration
    try:
        reference = _reference(checkpoint, val_data, images)  # calibration images: clean
        channels, z_context = _channels(checkpoint)
        cases = (
            _cases(val_data, checked, noise, seed, reference, channels, z_context)
            if parity
            else None
        )
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
                    echo(f"error: the export failed parity; {out} was not written", err=True)
                    sys.exit(1)
                headline = _headline(checkpoint, report, reference)
                update_metadata(made, {KEY_PSNR: json.dumps(headline)})
                _echo_reference_note(headline)
            made.replace(out)
        if card:
            write_model_card(out)
    except _input_errors() as exc:
        echo(f"error: {exc}", err=True)
        sys.exit(2)
    echo(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB, {precision})")
    if precision == "int8":
        echo(
            "note: int8 trades quality for speed (the photo model: about 0.16 dB for 3.4-4.5x "
            "through OpenVINO on CPUs with VNNI); run it by naming the file, e.g. "
            f"n2n-infer batch IN OUT --model {out} --device openvino"
        )
    if not parity:
        echo(
            f"warning: --no-parity: {out} was not checked against torch; check it with "
            f"`n2n-export parity {checkpoint} {out}` before you use it",
            err=True,
        )


#: What os.stat's file types are called in messages.
_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_a_regular_file(path: Path) -> str:
    """Why ``path`` cannot be replaced by a written file, or "" when it can: it is missing,
    a regular file, or a symlink to one (a dangling symlink is replaced itself)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return f"cannot be checked ({exc.strerror})"
    if stat.S_ISREG(mode):
        return ""
    kind = next((word for test, word in _FILE_KINDS if test(mode)), "not a regular file")
    return (
        f"exists and is {kind}, not a regular file: refused (n2n-export writes a file "
        "and puts it in place of a regular file only); choose another name"
    )


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
    by the runtime), the images at their own sizes (--images, or built-in clean
    test patterns without --images and --val-data), and the course-format data
    when given. Exit status 1 when a case fails (fp32: |ΔPSNR| > 0.01 dB or a
    largest absolute difference > 1e-4) or the metadata does not describe
    CHECKPOINT; 2 for unusable inputs.
    """
    try:
        reference = _reference(checkpoint, val_data, images)
        cases = _cases(val_data, images, noise, seed, reference, *_channels(checkpoint))
        result = _check_cases(checkpoint, model, cases)
    except _input_errors() as exc:
        echo(f"error: {exc}", err=True)
        sys.exit(2)
    _echo_reference_note({"reference": reference})
    if report:
        report.write_text(result.to_json())
    sys.exit(0 if result.passed else 1)


def _check_cases(checkpoint: Path, model: Path, cases: list[ParityCase]) -> ParityReport:
    from n2n_export.parity import check_parity

    result = check_parity(checkpoint, model, cases)
    _print_report(result)
    return result


def _reference(checkpoint: Path, val_data: Path | None, images: Path | None) -> str:
    """What the last parity case's PSNR is measured against (it is the one stored):
    ``"clean"`` (the course data's clean images, the built-in patterns), ``"given images"``
    (--images as they are: clean only if they are), or ``"noisy images"`` (--images for a
    model trained on the user's own noisy data, which the documented recipe exports with
    its noisy captures as --images).

    Raises:
        CheckpointError: as :func:`n2n_train.checkpoint.load_checkpoint`.
    """
    from n2n_export.card import OWN_DATA
    from n2n_train.checkpoint import load_checkpoint

    if images is None or val_data is not None:
        return "clean"
    data = load_checkpoint(checkpoint).summary.get("data") or {}
    return "noisy images" if data.get("source") in OWN_DATA else "given images"


def _channels(checkpoint: Path) -> tuple[int, int]:
    """The checkpoint's model channels (1: a grey model, whose cases are grey) and its
    z-context (K > 0: its cases are 2K+1 noise draws of grey images)."""
    from n2n_train.checkpoint import load_checkpoint

    config = load_checkpoint(checkpoint).config
    return config.out_channels, config.z_context


def _cases(
    val_data: Path | None,
    images: Path | None,
    noise: str,
    seed: int,
    reference: str,
    channels: int = 3,
    z_context: int = 0,
) -> list[ParityCase]:
    """The parity cases of --images and --val-data; without either, of the built-in patterns
    (their luma for a 1-channel model; for a z-context model, 2K+1 noise draws of it).

    Raises:
        ValueError: course data (colour) for a 1-channel or z-context model.
    """
    from n2n_export.data import (
        PATTERNS_NAME,
        ParityCase,
        builtin_patterns,
        course_pairs,
        load_clean_images,
        parity_cases,
    )

    cases = []
    if images or not val_data:
        label = f"{images.name if images else PATTERNS_NAME} + {noise}"
        if channels == 1:
            label += ", grey"
        if z_context:
            label += f", {2 * z_context + 1} noise draws as planes"
        if images and reference == "noisy images":
            label += f", PSNR vs noisy {images.name}"
        clean = load_clean_images(images) if images else builtin_patterns(seed)
        cases += [
            ParityCase(f"{c.name} ({label})", c.pairs)
            for c in parity_cases(clean, noise, seed, channels, z_context)
        ]
    if val_data and (channels != 3 or z_context):
        raise ValueError(
            f"{val_data}: course pairs are in colour; this is a {channels}-channel model"
            + (f" of z-context {z_context}" if z_context else "")
        )
    if val_data:
        cases.append(ParityCase(f"course {val_data.name}", course_pairs(val_data)))
    return cases


def _headline(checkpoint: Path, report: ParityReport, reference: str) -> dict[str, Any]:
    """The figures stored in the metadata: the last case (course data, or full-size images),
    and what their PSNR is measured against (see :func:`_reference`)."""
    from n2n_train.checkpoint import load_checkpoint

    case = report.cases[-1]
    return {
        "val_psnr_torch": load_checkpoint(checkpoint).summary.get("val_psnr"),
        "eval_set": case.name,
        "reference": reference,
        "images": case.images,
        "psnr_noisy": case.psnr_noisy,
        "psnr_torch": case.psnr_torch,
        "psnr_onnx": case.psnr_onnx,
    }


def _echo_reference_note(headline: dict[str, Any]) -> None:
    """Say what the stored PSNR figures measure when their reference is not clean."""
    from n2n_export.card import reference_note

    note = reference_note(headline)
    if note:
        echo(f"note: {note}")


def _print_report(r: ParityReport) -> None:
    echo(f"parity of {r.model} ({r.precision}) against {r.checkpoint}")
    echo(
        f"thresholds: |ΔPSNR| <= {r.thresholds.max_delta_psnr_db} dB, "
        f"max |diff| <= {r.thresholds.max_abs_diff:g}"
    )
    width = max(len(c.name) for c in r.cases)
    echo(
        f"{'case':<{width}}  {'n':>4}  {'noisy':>7}  {'torch':>8}  {'onnx':>8}  "
        f"{'ΔPSNR':>9}  {'max|d|':>8}  {'mean|d|':>8}"
    )
    for c in r.cases:
        if c.error:
            echo(f"{c.name:<{width}}  {c.images:>4}  FAILED: {c.error}")
            continue
        flag = "" if c.passed(r.thresholds) else "  FAILED"
        echo(
            f"{c.name:<{width}}  {c.images:>4}  {c.psnr_noisy:7.3f}  {c.psnr_torch:8.4f}  "
            f"{c.psnr_onnx:8.4f}  {c.delta_psnr:+9.6f}  {c.max_abs_diff:8.2e}  "
            f"{c.mean_abs_diff:8.2e}{flag}"
        )
    for problem in r.problems:
        echo(f"metadata: {problem}")
    echo("parity: PASSED" if r.passed else "parity: FAILED")


def _calibration(checkpoint: Path, folder: Path | None, seed: int) -> list[Any]:
    """Noisy calibration crops: the clean images noised like the model's training data."""
    from n2n_export.data import calibration_batches, load_clean_images
    from n2n_train.checkpoint import load_checkpoint

    if folder is None:
        raise click.UsageError("--precision int8 needs --calibration DIR (clean images)")
    noise = str(load_checkpoint(checkpoint).summary.get("noise", ""))
    if not noise.startswith("gaussian"):
        noise = "gaussian:25"
    config = load_checkpoint(checkpoint).config
    return calibration_batches(
        load_clean_images(folder),
        noise,
        seed=seed,
        channels=config.out_channels,
        z_context=config.z_context,
    )


def _input_errors() -> tuple[type[Exception], ...]:
    from n2n_infer.errors import N2NError
    from n2n_train.checkpoint import CheckpointError
    from n2n_train.data import DataError

    return (CheckpointError, DataError, N2NError, ValueError, OSError)


main.add_command(bioimageio_command)

if __name__ == "__main__":
    main()
