"""``n2n-infer``: denoise folders, show a model's metadata, check the installation."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from n2n_infer.errors import N2NError

if TYPE_CHECKING:
    from n2n_infer.batch import FileResult


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = (
        logging.ERROR
        if quiet
        else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    )
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="n2n")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Denoise images with an n2n ONNX model (onnxruntime; CUDA if usable, else CPU)."""
    _setup_logging(verbose, quiet)
    ctx.obj = {"quiet": quiet}


@main.command()
@click.argument("in_dir", type=click.Path(path_type=Path))
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--model", default=None, help="Bundled model name or .onnx path [default: photo].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--overwrite", is_flag=True, help="Replace outputs that already exist.")
@click.option("--skip-existing", is_flag=True, help="Leave outputs that already exist.")
@click.option(
    "--reference",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder of clean images with the same names: print PSNR before/after.",
)
@click.pass_context
def batch(
    ctx: click.Context,
    in_dir: Path,
    out_dir: Path,
    model: str | None,
    device: str,
    batch_size: int,
    overwrite: bool,
    skip_existing: bool,
    reference: Path | None,
) -> None:
    """Denoise every PNG and JPEG in IN_DIR into OUT_DIR under the same names.

    Exit status: 0 when every file succeeded, 1 when any failed (the others are
    still written), 2 for unusable arguments (model, device, folders).
    """
    from tqdm import tqdm

    from n2n_infer.batch import check_folders, denoise_folder, find_images
    from n2n_infer.denoiser import Denoiser

    quiet = ctx.obj["quiet"]
    try:
        check_folders(in_dir, out_dir)
        denoiser = Denoiser(model, device=device, batch_size=batch_size)
        total = len(find_images(in_dir))
    except N2NError as exc:
        _fail(str(exc), 2)
    with tqdm(total=total, unit="img", disable=quiet, file=sys.stderr) as bar:
        report = denoise_folder(
            denoiser,
            in_dir,
            out_dir,
            overwrite,
            skip_existing,
            reference,
            on_file=lambda _: bar.update(1),
        )
    width = max((len(r.name) for r in report.results), default=0)
    for r in report.results:
        click.echo(_describe(r, width))
    n_ok = sum(r.status == "ok" for r in report.results)
    n_skip = sum(r.status == "skipped" for r in report.results)
    click.echo(
        f"{n_ok} denoised, {n_skip} skipped, {len(report.failed)} failed "
        f"-> {out_dir} ({', '.join(denoiser.providers)})"
    )
    gains = [r.psnr_denoised - r.psnr_noisy for r in report.results if r.psnr_noisy is not None]
    if gains:
        click.echo(f"mean PSNR gain: {sum(gains) / len(gains):+.2f} dB over {len(gains)} images")
    if report.failed:
        sys.exit(1)


def _describe(r: FileResult, width: int) -> str:
    if r.status == "error":
        return f"FAILED  {r.name}: {r.error}"
    if r.status == "skipped":
        return f"skipped {r.name} (output exists)"
    size = f"{r.size_hw[1]}×{r.size_hw[0]}" if r.size_hw else "?"
    text = f"ok      {r.name:<{width}}  {size:>9}  {r.seconds:5.2f} s"
    if r.psnr_noisy is not None:
        text += (
            f"  PSNR {r.psnr_noisy:.2f} -> {r.psnr_denoised:.2f} dB "
            f"({r.psnr_denoised - r.psnr_noisy:+.2f})"
        )
    return text


@main.command()
@click.argument("model", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the metadata as JSON.")
def info(model: str | None, as_json: bool) -> None:
    """Print a model's metadata (default: the bundled default model)."""
    from n2n_infer.denoiser import Denoiser

    try:
        d = Denoiser(model, device="cpu")
    except N2NError as exc:
        _fail(str(exc), 2)
    meta = d.metadata
    if as_json:
        click.echo(json.dumps({"path": str(d.path), **meta}, indent=2))
        return
    click.echo(f"model:    {d.path}")
    for key in ("name", "format_version", "stride", "noise"):
        click.echo(f"{key + ':':9} {meta[key]}")
    for key in ("config", "psnr", "exporter"):
        click.echo(f"{key + ':':9} {json.dumps(meta[key])}")


@main.command()
def doctor() -> None:
    """Print versions and providers, and run the default model once on each usable provider."""
    import numpy as np
    import onnxruntime as ort

    from n2n_infer import __version__
    from n2n_infer.denoiser import Denoiser

    click.echo(f"n2n_infer {__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}")
    click.echo(f"available providers: {', '.join(ort.get_available_providers())}")
    ok = True
    for device in ("cpu", "cuda"):
        try:
            d = Denoiser(device=device)
            d.denoise(np.zeros((17, 23, 3), np.uint8))
            click.echo(f"{device}: ok ({', '.join(d.providers)})")
        except N2NError as exc:
            click.echo(f"{device}: not usable: {exc}")
            ok = ok and device != "cpu"
    sys.exit(0 if ok else 1)


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
