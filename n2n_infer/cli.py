"""``n2n-infer``: denoise folders, show a model's metadata, check the installation.

Everything printed for people goes through :func:`echo` (and log lines through
:class:`PrintableFormatter`), which escapes control characters, so that a file
name or a model's metadata cannot drive the terminal or forge a line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

from n2n_infer.errors import N2NError, printable
from n2n_infer.options import DenoiserOptions

if TYPE_CHECKING:
    from n2n_infer.batch import BatchReport, FileResult
    from n2n_infer.denoiser import Denoiser
    from n2n_infer.probe import EngineChoice

F = TypeVar("F", bound=Callable[..., Any])


def echo(text: object = "", err: bool = False) -> None:
    """Print ``text`` as one line for people: ``click.echo`` of :func:`~n2n_infer.errors.printable`.

    A newline or an escape sequence inside ``text`` (a file name's, a model's
    metadata's, an exception's) is shown escaped (``\\n``, ``\\x1b``), never acted on.
    """
    click.echo(printable(text), err=err)


def echo_lines(text: object, err: bool = False) -> None:
    """Print a block of lines for people (a table, indented JSON): each line escaped as by
    :func:`echo`, the block's own line breaks kept (no newline added after a final one)."""
    lines = str(text).split("\n")
    click.echo("\n".join(printable(line) for line in lines), err=err, nl=lines[-1] != "")


def setup_printable_logging(level: int) -> None:
    """Log lines to stderr as ``LEVEL name: message``, control characters escaped."""
    handler = logging.StreamHandler()
    handler.setFormatter(PrintableFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


class PrintableFormatter(logging.Formatter):
    """A log formatter whose lines show control characters escaped (see :func:`echo`)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return "\n".join(printable(line) for line in super().formatException(ei).splitlines())


#: What ``-q``/``--quiet`` means, in every place of the three CLIs (``n2n-infer``,
#: ``n2n-infer batch``, ``n2n-train``, ``n2n-export``).
QUIET_HELP = (
    "Quiet: no progress bar, no per-file or per-step lines, no log lines below errors; "
    "failures, notes, results and the summary are still printed (wins over -v)."
)


def quiet_option(name: str = "quiet") -> Callable[[F], F]:
    """The ``-q``/``--quiet`` flag (:data:`QUIET_HELP`), passed as ``name``."""
    return click.option("-q", "--quiet", name, is_flag=True, help=QUIET_HELP)


def log_level(verbose: int, quiet: bool) -> int:
    """The log level of ``-v`` (INFO), ``-vv`` (DEBUG), ``-q`` (ERROR; it wins) or neither
    (WARNING): the same for every CLI."""
    if quiet:
        return logging.ERROR
    return logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING


def configure_logging(verbose: int, quiet: bool) -> None:
    """Log to stderr at :func:`log_level` (see :func:`setup_printable_logging`).

    The level is set on the root logger even where logging was set up before (a
    test runner's capture); inside a click command it is put back when the
    command's context closes.
    """
    level = log_level(verbose, quiet)
    setup_printable_logging(level)
    root = logging.getLogger()
    previous = root.level
    root.setLevel(level)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(lambda: root.setLevel(previous))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="n2n")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@quiet_option()
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Denoise images with an n2n ONNX model (onnxruntime; CUDA if usable, else CPU)."""
    configure_logging(verbose, quiet)
    ctx.obj = {"quiet": quiet, "verbose": verbose}


@main.command()
@click.argument("in_path", metavar="IN", type=click.Path(path_type=Path))
@click.argument("out", metavar="OUT", type=click.Path())
@click.option(
    "--model",
    default=None,
    help="Bundled model name or .onnx path [default: photo for colour images, grey for grey ones].",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto, cpu, cuda, cuda:N, openvino or openvino:bf16.",
)
@click.option(
    "--batch-size",
    default=8,
    show_default=True,
    type=click.IntRange(min=1),
    help="Images (or tiles) of one size sent to the model at once; more uses more memory.",
)
@click.option(
    "--tile",
    type=int,
    default=None,
    metavar="N",
    help="Denoise every image in N×N tiles (a multiple of the model's stride, above twice "
    "its tile overlap: `n2n-infer info` shows both) "
    "[default: 512-pixel tiles (larger for deep models) above 2.1 megapixels].",
)
@click.option(
    "--no-tile",
    is_flag=True,
    help="Never tile (large images then need more memory). "
    "--tile 0, its old spelling, still works, with a warning.",
)
@click.option(
    "--ensemble",
    type=click.Choice(["1", "2", "4", "8"]),
    default="1",
    show_default=True,
    help="Average over N flips/rotations of each image: N times slower, "
    "about +0.2 dB at N=4 (docs/quality.md).",
)
@click.option(
    "--grey",
    type=click.Choice(["auto", "phases", "replicate"]),
    default="auto",
    show_default=True,
    help="How grey images go through a colour model: as colour images made of "
    "their pixel phases, or copied into R, G and B (leaves most noise in); auto: "
    "with no --model, the grey model; else as the model states (docs/runtime.md). "
    "A grey model runs grey images as they are.",
)
@click.option(
    "--levels",
    type=click.Choice(["auto", "full"]),
    default="auto",
    show_default=True,
    help="How pixel values map to the model's range: auto maps a dim image (16-bit "
    "with no value above 16383: a microscope's counts; float with none above 0.25) by "
    "its own min..max and back; full always uses the type's full scale (docs/runtime.md).",
)
@click.option("--recursive", is_flag=True, help="Also denoise subfolders, mirrored in OUT.")
@click.option("--overwrite", is_flag=True, help="Replace outputs that already exist.")
@click.option("--skip-existing", is_flag=True, help="Leave outputs that already exist (resume).")
@click.option(
    "--reference",
    type=click.Path(path_type=Path),
    help="Folder of clean images with the same names (for a single file IN, also the clean "
    "image itself): print PSNR before/after.",
)
@click.option(
    "--report",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write a JSON report (per file: status, size, seconds, error); - or /dev/stdout "
    "adds it to standard output, a FIFO is written into.",
)
@quiet_option("quiet_here")
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: this process; ray: Ray Data workers (the ray extra; docs/scaling.md).",
)
@click.option(
    "--address",
    default=None,
    help="Ray cluster to join (e.g. ray://head:10001, auto) [default: a local one].",
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Ray workers [default: 1]."
)
@click.option(
    "--cpus-per-worker",
    type=click.IntRange(min=1),
    default=None,
    help="CPUs each Ray worker reserves, and its onnxruntime threads [default: 1].",
)
@click.option(
    "--gpus-per-worker",
    type=click.FloatRange(min=0),
    default=None,
    help="GPUs each Ray worker reserves (0.5 shares one GPU between two) [default: 0].",
)
@click.option(
    "--split-stacks/--whole-stacks",
    default=None,
    help="Ray: spread each TIFF stack's planes over the workers, or send each stack whole "
    "to one worker [default: split when the job has fewer stacks than workers, or a stack "
    "is over the per-file limit].",
)
@click.pass_context
def batch(
    ctx: click.Context,
    in_path: Path,
    out: str,
    model: str | None,
    device: str,
    batch_size: int,
    tile: int | None,
    no_tile: bool,
    ensemble: str,
    grey: str,
    levels: str,
    recursive: bool,
    overwrite: bool,
    skip_existing: bool,
    reference: Path | None,
    report: Path | None,
    quiet_here: bool,
    engine: str,
    address: str | None,
    workers: int | None,
    cpus_per_worker: int | None,
    gpus_per_worker: float | None,
    split_stacks: bool | None,
) -> None:
    """Denoise every PNG, JPEG, TIFF, WebP, BMP, PPM/PGM, AVIF and HEIC in the folder
    IN into the folder OUT; or the one image file IN into OUT.

    Outputs have the same names. Each keeps its input's format, bit depth
    (16-bit PNG/TIFF/PGM and 10-bit HEIC stay deep), alpha, ICC profile and
    resolution; EXIF orientation is applied. AVIF needs Pillow's codec, HEIC the
    heic extra (`n2n-infer doctor` lists what is read here). TIFF stacks
    (multi-page, ImageJ hyperstacks, OME-TIFF) are denoised plane by plane and
    keep their axes and metadata. RAW, GIF, animations and other image files fail
    by name. Outputs are written atomically and never inside IN.

    A single file IN goes into the folder OUT (created if needed), or onto OUT
    itself when OUT is an image file name of IN's format (batch noisy.jpg
    out/clean.jpg); never into the folder that holds IN (a subfolder of it is
    fine). The local engine only.

    Exit status: 0 when every file succeeded, 1 when any failed (the others are
    still written), 2 for unusable arguments (model, device, folders).

    With --engine ray the same job runs on Ray Data workers (the ray extra),
    with the same outputs, report and exit status; a Ray job that stops exits
    with 1 after writing what was finished (rerun with --skip-existing).
    """
    from tqdm import tqdm

    from n2n_infer import batch as job

    quiet = ctx.obj["quiet"] or quiet_here
    if quiet_here and not ctx.obj["quiet"]:  # the same as n2n-infer -q batch
        configure_logging(ctx.obj["verbose"], True)
    if overwrite and skip_existing:
        _fail("--overwrite and --skip-existing contradict each other; choose one", 2)
    tile_size, tiled = _tiling(tile, no_tile)
    cluster = {
        "address": address,
        "workers": workers,
        "cpus_per_worker": cpus_per_worker,
        "gpus_per_worker": gpus_per_worker,
        "split_stacks": split_stacks,
    }
    single = not in_path.is_dir() and (in_path.exists() or in_path.is_symlink())
    if not single:
        _check_engine(engine, cluster)
    out_dir = Path(out)  # a single file's OUT may be a file name (job.single_target)
    try:  # every argument is checked before any work
        if single:
            dst = job.check_file_job(in_path, out)
            _check_single(in_path, recursive, engine)  # before Ray would be imported
            _check_engine(engine, cluster)
            job.file_reference(in_path, reference)
        else:
            job.check_folders(in_path, out_dir, recursive)
            job.check_reference(reference)
        if report is not None:
            report = job.check_report_path(report, in_path)
        check_device = "cpu" if engine == "ray" else device  # the workers' device may differ
        spec = DenoiserOptions(
            model,
            check_device,
            batch_size,
            tile_size=tile_size or None,
            ensemble=int(ensemble),
            grey=grey,
            levels=levels,
        )
        denoiser = spec.build()
        job.prepare_output(dst.parent if single else out_dir)
        total = 1 if single else len(job.find_images(in_path, recursive))
    except (N2NError, ValueError) as exc:
        _fail(str(exc), 2)
    options = {
        "overwrite": overwrite,
        "skip_existing": skip_existing,
        "tile": tiled,
    }
    quiet_ray = engine == "ray" and ctx.obj["verbose"] == 0
    native = _native_stderr_captured() if quiet_ray else contextlib.nullcontext()
    with native as captured, tqdm(total=total, unit="img", disable=quiet, file=sys.stderr) as bar:

        def on_file(_: FileResult) -> None:
            bar.set_postfix_str("", refresh=False)
            bar.update(1)

        def on_tile(name: str, done: int, tiles: int) -> None:
            bar.set_postfix_str(printable(f"{_short(name)}: tile {done}/{tiles}"))  # redraws

        def on_plane(name: str, done: int, planes: int) -> None:
            bar.set_postfix_str(printable(f"{_short(name)}: plane {done}/{planes}"))

        options["on_file"] = on_file
        if single:
            result = job.denoise_file(
                denoiser,
                in_path,
                out,
                reference=reference,
                on_tile=on_tile,
                on_plane=on_plane,
                **options,
            )
            providers = denoiser.providers
        elif engine == "ray":
            options |= {"reference_dir": reference, "recursive": recursive}
            run = (in_path, out_dir, options, quiet_ray, captured)
            result, providers = _run_ray(replace(spec, device=device), cluster, *run)
        else:
            options |= {"reference_dir": reference, "recursive": recursive}
            result = job.denoise_folder(
                denoiser, in_path, out_dir, on_tile=on_tile, on_plane=on_plane, **options
            )
            providers = denoiser.providers
    _print_results(result, quiet)
    echo(
        f"{result.count('ok')} denoised, {result.count('skipped')} skipped, "
        f"{len(result.failed)} failed -> {out_dir} ({', '.join(providers) or 'no model ran'})"
    )
    gains = [r.psnr_denoised - r.psnr_noisy for r in result.results if r.psnr_noisy is not None]
    if gains:
        echo(f"mean PSNR gain: {sum(gains) / len(gains):+.2f} dB over {len(gains)} images")
    if report is not None:
        _write_report(report, result, denoiser, providers, in_path, out_dir)
    if result.failed:
        sys.exit(1)


def _tiling(tile: int | None, no_tile: bool) -> tuple[int | None, bool | None]:
    """``--tile N`` / ``--no-tile`` as (tile size, tile every image?): ``(N, True)``,
    ``(None, False)``, or ``(None, None)`` for the default (large images only).

    ``--tile 0`` is the old spelling of ``--no-tile``: it still works, with a warning
    on stderr (printed even with -q: it is about the command line, which will change).
    """
    if tile is not None and tile < 0:
        _fail(f"--tile {tile}: expected a tile size N > 0 (--no-tile never tiles)", 2)
    if no_tile and tile is not None:
        _fail(f"--tile {tile} and --no-tile contradict each other; choose one", 2)
    if tile == 0:
        echo("warning: --tile 0 is deprecated: use --no-tile", err=True)
        no_tile = True
    if no_tile:
        return None, False
    return tile, None if tile is None else True


def _check_single(in_file: Path, recursive: bool, engine: str) -> None:
    """Refuse the folder-only options for a single file IN (exit 2)."""
    if recursive:
        _fail(f"--recursive: IN {in_file} is a file; --recursive is for a folder", 2)
    if engine == "ray":
        _fail(
            f"--engine ray: IN {in_file} is a file; one file runs on the local engine "
            "(leave out --engine ray)",
            2,
        )


def _check_engine(engine: str, cluster: dict[str, Any]) -> None:
    """Refuse Ray options without ``--engine ray``, and ``--engine ray`` without Ray."""
    if engine != "ray":
        given = [_flag(k, v) for k, v in cluster.items() if v is not None]
        if given:
            _fail(f"{', '.join(given)}: only with --engine ray", 2)
        return
    try:
        import n2n_infer.ray  # noqa: F401
    except ImportError as exc:
        _fail(
            f"--engine ray needs Ray Data, which is not installed ({exc}); "
            'install it with: pip install "n2n[ray]"',
            2,
        )


def _short(name: str) -> str:
    """A file name cut to its last 40 characters for the progress bar."""
    return name if len(name) <= 40 else "…" + name[-39:]


def _flag(key: str, value: Any) -> str:
    """The option that set ``cluster[key]`` to ``value``, as the user spelt it."""
    if key == "split_stacks" and value is False:
        return "--whole-stacks"
    return f"--{key.replace('_', '-')}"


def _run_ray(
    spec: DenoiserOptions,
    cluster: dict[str, Any],
    in_dir: Path,
    out_dir: Path,
    options: dict[str, Any],
    quiet_ray: bool = True,
    captured: IO[bytes] | None = None,
) -> tuple[BatchReport, list[str]]:
    """The folder job on Ray Data: connect, run, and turn a stopped job into exit status 1.

    With ``quiet_ray`` (no ``-v``), Ray's own log lines, warnings and progress
    output are kept off the terminal (:func:`n2n_infer.ray.connect`); what Ray's
    native code wrote to ``captured`` (see :func:`_native_stderr_captured`) is
    shown when the job fails."""
    from n2n_infer.ray import RayJobError, connect, denoise_folder_ray

    cpus = cluster["cpus_per_worker"] or 1
    denoiser_spec = replace(spec, intra_op_threads=cpus)
    try:
        connect(cluster["address"], quiet=quiet_ray)
    except RayJobError as exc:
        _show_captured(captured)
        _fail(str(exc), 2)
    try:
        return denoise_folder_ray(
            denoiser_spec,
            in_dir,
            out_dir,
            workers=cluster["workers"] or 1,
            cpus_per_worker=cpus,
            gpus_per_worker=cluster["gpus_per_worker"] or 0,
            split_stacks=cluster["split_stacks"],
            **options,
        )
    except RayJobError as exc:
        _show_captured(captured)
        _fail(str(exc), 1)
        raise  # not reached: _fail exits


@contextlib.contextmanager
def _native_stderr_captured() -> Iterator[IO[bytes] | None]:
    """Within: what native code writes to descriptor 2 (Ray's C++ core worker: its
    error lines go to stderr whatever the log level) goes to a temporary file, which
    is yielded; Python's ``sys.stderr`` (the progress bar, ``echo(err=True)``, the
    log handlers writing to it) still reaches the terminal. Where ``sys.stderr`` is
    not descriptor 2 (a test runner's capture), nothing is done and ``None`` yielded.
    """
    old = sys.stderr
    try:
        redirect = old is not None and old.fileno() == 2
    except (AttributeError, OSError, ValueError):
        redirect = False
    if not redirect:
        yield None
        return
    old.flush()
    terminal = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        new = open(  # noqa: SIM115 (closed below, after the descriptors are put back)
            terminal, "w", encoding=old.encoding, errors=old.errors, buffering=1, closefd=False
        )
        handlers = [h for h in logging.getLogger().handlers if getattr(h, "stream", None) is old]
        sys.stderr = new
        for handler in handlers:
            handler.setStream(new)  # type: ignore[attr-defined]
        try:
            yield capture
        finally:
            new.flush()
            os.dup2(terminal, 2)
            sys.stderr = old
            for handler in handlers:
                handler.setStream(old)  # type: ignore[attr-defined]
            new.close()
            os.close(terminal)


def _show_captured(captured: IO[bytes] | None) -> None:
    """Print, escaped, what Ray's native code wrote while its output was captured."""
    if captured is None:
        return
    captured.seek(0)
    for line in captured.read().decode("utf-8", "replace").splitlines():
        if line.strip():
            echo(f"ray: {line}", err=True)


def _write_report(
    report: Path,
    result: BatchReport,
    denoiser: Denoiser,
    providers: list[str],
    in_dir: Path,
    out_dir: Path,
) -> None:
    from n2n_infer.batch import write_report

    try:
        write_report(
            report,
            result,
            model=str(denoiser.path),
            providers=providers,
            ensemble=denoiser.ensemble,
            grey=denoiser.grey,
            levels=denoiser.levels,
            in_dir=str(in_dir),
            out_dir=str(out_dir),
        )
    except N2NError as exc:  # names the path and what it is
        _fail(f"cannot write the report: {exc}", 1)
    except OSError as exc:
        _fail(f"{report}: cannot write the report: {exc.strerror or exc}", 1)


def _print_results(result: BatchReport, quiet: bool) -> None:
    width = max((len(printable(r.name)) for r in result.results), default=0)
    for r in result.results:
        if not quiet or r.status == "error":
            echo(_describe(r, width))
        for note in r.notes:
            echo(f"note    {r.name}: {note}", err=True)


def _describe(r: FileResult, width: int) -> str:
    """One line for ``r``; the name padded to ``width`` characters as printed (escaped)."""
    if r.status == "error":
        return f"FAILED  {r.name}: {r.error}"
    if r.status == "skipped":
        return f"skipped {r.name} (output exists)"
    size = f"{r.size_hw[1]}×{r.size_hw[0]}" if r.size_hw else "?"
    name = printable(r.name)
    text = f"ok      {name:<{width}}  {size:>9}  {r.seconds:5.2f} s"
    if r.psnr_noisy is not None:
        text += (
            f"  PSNR {r.psnr_noisy:.2f} -> {r.psnr_denoised:.2f} dB "
            f"({r.psnr_denoised - r.psnr_noisy:+.2f})"
        )
    return text


@main.command()
@click.argument("model_alias", metavar="[MODEL]", required=False)
@click.option("--model", default=None, help="Bundled model name or .onnx path [default: photo].")
@click.option("--json", "as_json", is_flag=True, help="Print all the metadata as JSON.")
def info(model_alias: str | None, model: str | None, as_json: bool) -> None:
    """Print a model's card: what it is for, architecture, stride, training, PSNR, tiles.

    MODEL, given without --model, is an alias of --model (the older spelling).
    """
    import onnxruntime as ort

    from n2n_infer.denoiser import Denoiser
    from n2n_infer.metadata import card
    from n2n_infer.probe import cached_choice

    if model_alias is not None:
        if model is not None and not _same_model(model_alias, model):
            _fail(
                f"MODEL {model_alias} and --model {model} name different models; "
                "give one (--model)",
                2,
            )
        model = model_alias
    try:
        d = Denoiser(model, device="cpu")
    except (N2NError, ValueError) as exc:
        _fail(str(exc), 2)
    meta = d.metadata
    sizes = {
        "file_bytes": d.path.stat().st_size,
        "features": meta["config"].get("features"),
        "tile_size": d.tiles.size,
        "tile_overlap": d.tiles.overlap,
        "grey_auto": d.grey,
    }
    available = ort.get_available_providers()
    auto = cached_choice(d.path)
    if as_json:  # JSON escapes every control character (and all non-ASCII) itself
        payload = {"path": str(d.path), **meta, "sizes": sizes, "providers_available": available}
        payload["auto_engine"] = None if auto is None else auto.summary()
        click.echo(json.dumps(payload, indent=2))
        return
    lines = card(d.info)
    lines.insert(1, ("file", f"{d.path} ({sizes['file_bytes'] / 1e6:.2f} MB)"))
    lines += [
        ("tiles", f"{d.tiles.size} px, overlap {d.tiles.overlap} px (large images)"),
        ("grey images", f"{d.grey} (what --grey auto does)"),
        ("providers", "available here: " + ", ".join(available)),
        ("engine (auto)", _auto_engine_text(auto)),
    ]
    width = max(len(label) for label, _ in lines)
    for label, text in lines:
        echo(f"{label:<{width}}  {text}")
    echo("(n2n-infer info --json for all the metadata)")


def _same_model(a: str, b: str) -> bool:
    """Whether two spellings of a model name the same one: equal, or the same file (a
    bundled name and its path, a link and its target)."""
    if a == b:
        return True
    from n2n_infer.registry import resolve_model

    try:
        return os.path.samefile(resolve_model(a), resolve_model(b))
    except (N2NError, OSError, ValueError):
        return False


def _auto_engine_text(auto: EngineChoice | None) -> str:
    """What ``info`` says of ``auto``'s engine: the cached verdict, never a new measurement."""
    from n2n_infer.probe import ENV_PROBE, probe_enabled

    if not probe_enabled():
        return f"onnxruntime fp32 on the CPU (the engine probe is off: {ENV_PROBE}=0)"
    if auto is None:
        return "not measured here yet (n2n-infer doctor measures it)"
    return auto.short()


@main.command()
@click.option("--model", default=None, help="Model to run [default: the bundled default].")
def doctor(model: str | None) -> None:
    """Print versions and providers, and run the model once on each usable provider.

    Exit status 0 when the CPU works (CUDA is optional), 1 otherwise.
    """
    from n2n_infer.doctor import diagnose

    lines, ok = diagnose(model)
    for line in lines:
        echo(line)
    sys.exit(0 if ok else 1)


def _fail(message: str, code: int) -> None:
    echo(f"error: {message}", err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
