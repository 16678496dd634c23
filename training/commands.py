"""The bodies of ``n2n-train fit``, ``eval`` and ``average`` (kept out of ``cli.py``).

Each returns the exit status: 0 success, 1 failure during the run, 2 unusable
arguments or data. They print with ``n2n_infer.cli.echo`` (control characters escaped;
errors to stderr).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shlex
from pathlib import Path
from typing import Any

import click
import torch

from n2n_infer.cli import echo, echo_lines
from n2n_infer.files import sha256_file, write_text_atomic
from n2n_train.checkpoint import (
    Checkpoint,
    CheckpointError,
    deepened,
    find_checkpoint,
    load_checkpoint,
    widened_to_context,
    with_channels,
)
from n2n_train.config import PRESETS, ConfigError, TrainConfig, UNetConfig, with_z_context
from n2n_train.data import (
    CoursePairs,
    DataError,
    PhotoPairs,
    check_out_apart,
    load_course_pairs,
    load_photo_folder,
)
from n2n_train.distributed import Dist
from n2n_train.evaluate import EvalResult
from n2n_train.noise import parse_noise
from n2n_train.owndata import NoisyScenes, load_noisy_scenes

log = logging.getLogger(__name__)

#: ``n2n-train fit`` options that override fields of the preset's UNetConfig.
_MODEL_OPTIONS = (
    "convs_per_level",
    "batch_norm",
    "dropout",
    "pooling",
    "upsampling",
    "activation",
    "residual",
)

#: The run folder's record of where its inputs lie on this machine (never in a checkpoint).
LOCAL_PATHS = "local_paths.json"
#: The ``fit`` options that locate data, as :func:`load_data` reads them.
_DATA_OPTIONS = ("photos", "course", "course_val")
#: The ``fit`` options naming the user's own noisy data (:mod:`training.owndata`).
_OWN_OPTIONS = ("pairs", "bursts", "singles")


def check_device(device: str) -> None:
    """Raise click.BadParameter unless ``device`` is ``cpu`` or a usable ``cuda[:N]``."""
    if device == "cpu":
        return
    if not device.startswith("cuda"):
        raise click.BadParameter(f"expected cpu or cuda[:N], got {device!r}", param_hint="--device")
    if not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available to this torch build", param_hint="--device")


def model_config(opts: dict[str, Any], base: UNetConfig | None = None) -> UNetConfig:
    """The preset named by ``opts["preset"]`` (else ``base``, else ``study``) with the
    options that were given.

    Raises:
        click.BadParameter: unknown preset or malformed ``--features``.
        ValueError: an invalid combination (from :class:`UNetConfig`).
    """
    preset = opts.get("preset")
    if preset and preset not in PRESETS:
        raise click.BadParameter(
            f"unknown preset {preset!r}; known: {sorted(PRESETS)}", param_hint="--preset"
        )
    changes: dict[str, Any] = {k: opts[k] for k in _MODEL_OPTIONS if opts.get(k) is not None}
    if "convs_per_level" in changes:
        changes["convs_per_level"] = int(changes["convs_per_level"])
    if opts.get("features"):
        try:
            changes["features"] = tuple(int(f) for f in opts["features"].split(","))
        except ValueError as exc:
            raise click.BadParameter(
                "expected integers like 16,32,64", param_hint="--features"
            ) from exc
    start = PRESETS[preset] if preset else base if base is not None else PRESETS["study"]
    return dataclasses.replace(start, **changes)


def shape_given(opts: dict[str, Any]) -> bool:
    """Whether the ``fit`` options ask for a model shape (a preset or a shape option)."""
    return bool(opts.get("preset") or opts.get("features")) or any(
        opts.get(k) is not None for k in _MODEL_OPTIONS
    )


def own_source(opts: dict[str, Any]) -> str | None:
    """Which own-data option (``pairs``, ``bursts``, ``singles``) the ``fit`` options use."""
    return next((k for k in _OWN_OPTIONS if opts.get(k)), None)


def train_config(opts: dict[str, Any], course: bool) -> TrainConfig:
    """The :class:`TrainConfig` of the ``fit`` options (``--study`` turns on its augmentation)."""
    lr = opts["lr"] if opts["lr"] is not None else (0.001 if opts["optimizer"] == "adam" else 0.01)
    study = opts["study"]
    noise = "course" if course else "own" if own_source(opts) else opts["noise"]
    return TrainConfig(
        epochs=opts["epochs"],
        batch_size=opts["batch_size"],
        optimizer=opts["optimizer"],
        lr=lr,
        patch_size=opts["patch_size"],
        noise=noise,
        steps_per_epoch=opts["steps_per_epoch"],
        seed=opts["seed"],
        loss=opts["loss"],
        target=opts["target"],
        swap=opts["swap"] or (study and opts["target"] == "noisy"),
        dihedral=opts["dihedral"] or study,
        blur_prob=opts["blur_prob"] or (0.1 if study else 0.0),
        schedule=opts["schedule"],
        precision="fp32" if opts["precision"] == "auto" else opts["precision"],
        channels_last=opts["channels_last"],
        pyramid=opts.get("pyramid") or 0,
        init=opts.get("init_sha256") or "",
        grey_fraction=opts.get("grey_fraction") or 0.0,
        limit_pairs=opts.get("limit_pairs") or 0,
        minutes=opts.get("minutes") or 0.0,
        regulariser=2.0 if opts.get("regulariser") is None else opts["regulariser"],
    )


def file_record(path: str | Path) -> dict[str, str]:
    """A data file as the summary records it: its name and sha256, never where it lies.

    Raises:
        OSError: the file cannot be read.
    """
    return {"name": Path(path).name, "sha256": sha256_file(path)}


def write_local_paths(out_dir: Path, opts: dict[str, Any]) -> Path:
    """Write where this machine keeps the run's data and ``--init`` to ``OUT/local_paths.json``.

    The summary (checkpoints, exported models) names them only by name and
    checksum; this file, which stays in the run folder, lets ``n2n-train
    average`` find the data again to validate an average (and reports find the
    run a fine-tune started from). Returns its path.

    Raises:
        OSError: the run folder cannot be written.
    """
    keys = (*_DATA_OPTIONS, "init")
    paths: dict[str, Any] = {
        k: str(Path(opts[k]).resolve()) for k in keys if opts.get(k) is not None
    }
    if opts.get("init_path") is not None:  # a bundled name resolved to its file
        paths["init"] = str(Path(opts["init_path"]).resolve())
    for k in _OWN_OPTIONS:
        if opts.get(k):
            folders = opts[k] if isinstance(opts[k], (list, tuple)) else [opts[k]]
            paths[k] = [str(Path(f).resolve()) for f in folders]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCAL_PATHS
    write_text_atomic(path, json.dumps(paths, indent=2) + "\n")
    return path


def load_data(
    opts: dict[str, Any], cfg: TrainConfig
) -> tuple[CoursePairs | PhotoPairs | NoisyScenes, dict[str, Any]]:
    """The training data named by ``--photos``, ``--course`` (and ``--course-val``),
    ``--pairs``, ``--bursts`` or ``--singles``.

    Returns the data and its description for the summary: the source, the
    folder's name and image count (photos), the files' names, sha256 and pair
    count (course), or the folders' names with file and scene counts (own
    data), never an absolute path.

    Raises:
        DataError: the data cannot be read; for own data, one error lists every
            unmatched, mis-sized or unreadable file.
    """
    mode = own_source(opts)
    if mode is not None:
        folders = opts[mode] if mode == "pairs" else (opts[mode],)
        clean = cfg.target == "clean"
        channels = int(opts["channels"]) if opts.get("channels") else None
        return load_noisy_scenes(
            mode,
            folders,
            cfg.patch_size,
            cfg.val_fraction,
            cfg.seed,
            clean_targets=clean,
            channels=channels,
            burst_axis=str(opts.get("burst_axis") or "T").upper(),
            z_context=z_context(opts),
        )
    gen = torch.Generator().manual_seed(cfg.seed)
    clean_targets = cfg.target == "clean"
    if opts["photos"] is not None:
        if cfg.swap and not clean_targets:
            log.warning(
                "--swap with --photos: each photo pair is drawn fresh, so swapping adds no "
                "data, and it makes the clipped, rounded input copy the target half the "
                "time, whose mean is not the clean pixel near black and white (it caused most "
                "of an earlier photo model's gap to Noise2Clean; see docs/photo_model.md)"
            )
        photos = load_photo_folder(opts["photos"])
        data = PhotoPairs(
            photos,
            parse_noise(cfg.noise),
            cfg.patch_size,
            cfg.val_fraction,
            gen,
            clean_targets=clean_targets,
            pyramid=cfg.pyramid,
            grey_fraction=cfg.grey_fraction,
            channels=int(opts.get("channels") or 3),
        )
        name = Path(opts["photos"]).resolve().name
        info = {"source": "photos", "name": name, "files": len(photos)}
        if data.channels == 1:
            info["channels"] = 1  # grey versions of the photos
        return data, info
    val = load_course_pairs(opts["course_val"]) if opts["course_val"] else None
    pairs = load_course_pairs(opts["course"])
    total = int(pairs[0].shape[0])
    if cfg.limit_pairs:
        if cfg.limit_pairs > total:
            raise DataError(
                f"{opts['course']}: --limit-pairs {cfg.limit_pairs} asks for more than its "
                f"{total} pairs"
            )
        pairs = (pairs[0][: cfg.limit_pairs], pairs[1][: cfg.limit_pairs])
    data = CoursePairs(*pairs, cfg.val_fraction, gen, val, clean_targets=clean_targets)
    info = {"source": "course", **file_record(opts["course"]), "pairs": int(pairs[0].shape[0])}
    if cfg.limit_pairs:
        info["file_pairs"] = total
    if opts["course_val"]:
        info.update({f"val_{k}": v for k, v in file_record(opts["course_val"]).items()})
    made_by = Path(opts["course"]).parent / "seedlike.json"
    if made_by.is_file():  # written by make-seedlike: name the noise the pairs carry
        info["noise"] = json.loads(made_by.read_text()).get("noise", "course")
    return data, info


def z_context(opts: dict[str, Any]) -> int:
    """K of the ``fit`` options (``--z-context``; 0 without it)."""
    return int(opts.get("z_context") or 0)


def check_z_context(opts: dict[str, Any]) -> None:
    """Refuse ``fit`` options that a z-context model (``--z-context K``) cannot train with.

    Raises:
        click.UsageError: naming the option that does not fit.
    """
    k = z_context(opts)
    if not k:
        return
    flag = f"--z-context {k}"
    mode = own_source(opts)
    if mode not in ("pairs", "bursts"):
        given = f"--{mode}" if mode else "--photos" if opts.get("photos") else "--course"
        why = (
            "its Neighbor2Neighbor sub-images of one plane have no neighbouring planes"
            if mode == "singles"
            else "photos and course pairs are single images without neighbouring planes"
        )
        raise click.UsageError(
            f"{flag} needs --pairs or --bursts of TIFF stacks with a Z axis, not {given}: {why}"
        )
    if str(opts.get("burst_axis") or "T").upper() == "Z":
        raise click.UsageError(
            f"{flag} reads the neighbouring planes along Z: --burst-axis Z would make them the "
            "repeats; z-context bursts hold their repeats along T"
        )
    if opts.get("channels") == "3":
        raise click.UsageError(f"{flag} trains a grey model (one plane out): not --channels 3")
    if opts.get("swap") or opts.get("study"):
        raise click.UsageError(
            f"{flag}: --swap{' (part of --study)' if opts.get('study') else ''} does not apply: "
            "the input is 2K+1 planes and the target one, and the two captures already take "
            "the input and target roles at random"
        )


def check_fit_sources(opts: dict[str, Any]) -> None:
    """Refuse ``fit`` options that do not name exactly one data source, or that do not fit it.

    Raises:
        click.UsageError: no source or several; an option that needs another source.
    """
    sources = [k for k in ("photos", "course", *_OWN_OPTIONS) if opts.get(k)]
    if len(sources) != 1:
        raise click.UsageError(
            "give exactly one of --photos, --course, --pairs, --bursts or --singles"
            + (f" (got {', '.join('--' + k for k in sources)})" if sources else "")
        )
    if opts.get("channels") == "1" and opts.get("course"):
        raise click.UsageError("--channels 1 needs grey data: the course pairs are in colour")
    if opts.get("channels") == "1" and opts.get("grey_fraction"):
        raise click.UsageError(
            "--grey-fraction makes some colour patches grey; with --channels 1 all are grey"
        )
    if opts.get("limit_pairs") and opts["course"] is None:
        raise click.UsageError("--limit-pairs needs --course (it takes a file's first N pairs)")
    if opts.get("grey_fraction") and opts["photos"] is None:
        raise click.UsageError(
            "--grey-fraction needs --photos: other data comes noised, so its noise "
            "cannot be drawn again for grey patches"
        )
    mode = own_source(opts)
    if mode == "pairs" and Path(opts["pairs"][0]).resolve() == Path(opts["pairs"][1]).resolve():
        raise click.UsageError(
            "--pairs names one folder twice: each image would be its own target (the network "
            "would learn to copy its input); give the folders of the two captures"
        )
    if mode not in (None, "pairs") and opts.get("target") == "clean":
        raise click.UsageError(
            f"--{mode} holds noisy images only: --target clean needs --photos, or --pairs "
            "NOISY CLEAN"
        )
    if mode == "singles" and (opts.get("swap") or opts.get("blur_prob") or opts.get("study")):
        raise click.UsageError(
            "--singles trains on one image's two sub-images: --swap, --blur-prob and --study "
            "do not apply (--dihedral does)"
        )
    check_z_context(opts)


def data_folders(opts: dict[str, Any]) -> list[tuple[str, Path]]:
    """The own-data folders the ``fit`` options name, as ``(option, folder)`` pairs."""
    out = []
    for k in _OWN_OPTIONS:
        if opts.get(k):
            folders = opts[k] if isinstance(opts[k], (list, tuple)) else [opts[k]]
            out += [(f"--{k}", Path(f)) for f in folders]
    return out


def check_out_of_data(out_dir: Path, opts: dict[str, Any]) -> None:
    """Refuse a run folder that is, lies in or holds a data folder of the ``fit`` options:
    the own-data folders (their linked subfolders too: they are read recursively) and
    ``--photos`` (:func:`training.data.check_out_apart`).

    Raises:
        DataError: one line naming ``--out`` and the data folder.
    """
    check_out_apart(out_dir, data_folders(opts))
    if opts.get("photos"):
        check_out_apart(out_dir, [("--photos", Path(opts["photos"]))], links=False)


def _load_init(opts: dict[str, Any]) -> tuple[Checkpoint | None, dict[str, Any]]:
    """The ``--init`` checkpoint (a path or a bundled name) and the options it adds.

    Raises:
        CheckpointError: as :func:`find_checkpoint` and :func:`load_checkpoint`.
        OSError: the file cannot be read.
    """
    if opts.get("init") is None:
        return None, opts
    path, name = find_checkpoint(opts["init"])
    init = load_checkpoint(path)
    return init, dict(opts, init_path=path, init_name=name, init_sha256=sha256_file(path))


def run_fit_command(out_dir: Path, opts: dict[str, Any], argv: list[str] | None = None) -> int:
    """``n2n-train fit``: build config, data and model, train, print the summary.

    With ``--init`` and no shape option (``--preset``, ``--features``, ...),
    the model takes the starting checkpoint's shape. With ``--nproc`` N > 1
    (and not already inside a distributed run) it starts N copies of this
    command line (``argv``, the arguments after the program name) and returns
    the run's status; inside a run started by torchrun or by ``--nproc`` it
    trains its rank's share, and only rank 0 writes and prints.
    """
    from n2n_train import distributed

    check_fit_sources(opts)
    check_device(opts["device"])
    try:
        check_out_of_data(out_dir, opts)
    except DataError as exc:
        echo(f"error: {exc}", err=True)
        return 2
    nproc = int(opts.get("nproc") or 1)
    if nproc > 1 and not distributed.in_launched_run():
        try:
            distributed.check_nproc(nproc, opts["device"])
        except distributed.DistributedError as exc:
            echo(f"error: {exc}", err=True)
            return 2
        return _launch_fit(nproc, opts["threads"], argv)
    try:
        dist = distributed.init_from_environment(opts["device"])
    except distributed.DistributedError as exc:
        echo(f"error: {exc}", err=True)
        return 2
    try:
        status = _fit_rank(out_dir, opts, dist)
    except BaseException:
        distributed.shutdown(dist, finished=False)
        raise
    distributed.shutdown(dist, finished=status == 0)
    return status


#: What a run leaves in its folder that a new run would replace.
RUN_FILES = ("best.pt", "last.pt")


def check_run_folder(out_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run in a folder that holds one, unless ``overwrite``;
    with ``overwrite``, remove the old run's snapshots (``n2n-train average`` would
    mix them with the new run's).

    Raises:
        ConfigError: ``out_dir`` holds a run, without ``resume`` or ``overwrite``;
            both flags at once.
    """
    if resume and overwrite:
        raise ConfigError("--resume continues the run in OUT, --overwrite replaces it: not both")
    held = [name for name in RUN_FILES if (out_dir / name).exists()]
    if resume or not held:
        return
    if not overwrite:
        raise ConfigError(
            f"{out_dir} already holds a run ({', '.join(held)}): --resume continues it, "
            "--overwrite starts again (replacing its checkpoints, metrics and snapshots), "
            "or choose another --out"
        )
    for snap in sorted((out_dir / "snapshots").glob("epoch-*.pt")):
        snap.unlink(missing_ok=True)  # every rank checks; any may remove it first


def _launch_fit(nproc: int, threads: int | None, argv: list[str] | None) -> int:
    """Start ``nproc`` processes running ``n2n-train ARGV``; their status."""
    from n2n_train import distributed

    if not argv or "fit" not in argv:
        echo(
            "error: --nproc needs the n2n-train command line; from Python, start the "
            "processes with torchrun ... -m n2n_train.cli fit ...",
            err=True,
        )
        return 2
    threads = threads or int(os.environ.get("OMP_NUM_THREADS") or 1)
    cores = os.cpu_count() or 1
    if nproc * threads > cores:
        echo(
            f"warning: {nproc} processes × {threads} thread(s) on {cores} cores: "
            "oversubscribed, expect it to run slower than fewer processes",
            err=True,
        )
    status, lines = distributed.launch(nproc, argv)
    for line in lines:
        echo(line, err=True)
    return status


def _fit_rank(out_dir: Path, opts: dict[str, Any], dist: Dist) -> int:
    """The training of one process (all of it, or one rank's share)."""
    from n2n_train.distributed import DesyncError, DistributedError, rank_device
    from n2n_train.loop import fit
    from n2n_train.unet import UNet

    if not dist.is_main:  # the ranks would repeat rank 0's messages
        logging.getLogger().setLevel(max(logging.getLogger().level, logging.WARNING))
    if opts["threads"]:
        torch.set_num_threads(opts["threads"])
    try:
        nproc = int(opts.get("nproc") or 1)
        if nproc > 1 and nproc != dist.world:
            raise DistributedError(f"--nproc {nproc}, but this run has {dist.world} processes")
        device = rank_device(opts["device"], dist)
        check_run_folder(out_dir, bool(opts["resume"]), bool(opts.get("overwrite")))
        init, opts = _load_init(opts)
        if init is not None and init.config.z_context and not z_context(opts):
            opts = dict(opts, z_context=init.config.z_context)  # the checkpoint's shape
            check_z_context(opts)
        ucfg = model_config(opts, init.config) if init is not None else model_config(opts)
        if init is not None and _adds_levels(init.config.features, ucfg.features):
            log.info("--init: grown from features %s to %s", init.config.features, ucfg.features)
            init = deepened(init, ucfg.features, seed=int(opts.get("seed") or 0))
        cfg = train_config(opts, course=opts["course"] is not None)
        if opts["course"] is None and cfg.patch_size % ucfg.stride:
            raise ConfigError(
                f"--patch-size {cfg.patch_size} must be a multiple of the model's stride "
                f"{ucfg.stride}"
            )
        if opts.get("photos") and not opts.get("channels") and init is not None:
            opts = dict(opts, channels=str(init.config.in_channels))  # grey photos for a grey init
        data, info = load_data(opts, cfg)
        channels = _model_channels(opts, init, data)
        k = z_context(opts)
        if k:
            ucfg = with_z_context(ucfg, k)
            if init is not None and init.config.z_context != k:
                log.info("--init: weights widened to a z-context of %d (centre plane)", k)
                init = widened_to_context(init, k)
        elif channels != ucfg.in_channels or ucfg.z_context:
            ucfg = dataclasses.replace(
                ucfg, in_channels=channels, out_channels=channels, z_context=0
            )
        if not k and init is not None and init.config.in_channels != channels:
            was = init.config.in_channels
            log.info("--init: %d-channel weights converted to %d", was, channels)
            init = with_channels(init, channels)
        if opts["precision"] == "auto":
            cfg = dataclasses.replace(cfg, precision=_auto_precision(out_dir, opts, ucfg, dist))
    except (CheckpointError, ConfigError, DataError, DistributedError, ValueError, OSError) as exc:
        echo(f"error: {exc}", err=True)  # other ranks: shown only if rank 0 is silent
        return 2
    if init is not None:
        info["init"] = opts["init_name"]  # its sha256 is the summary's init.sha256
    torch.manual_seed(cfg.seed)  # the weights' initialisation
    try:
        summary = fit(
            UNet(ucfg),
            data,
            cfg,
            out_dir,
            device=device,
            data_info=info,
            progress=not opts["no_progress"],
            resume=opts["resume"],
            on_start=lambda: write_local_paths(out_dir, opts),  # once a resume is accepted
            init=init,
            snapshot_every=opts.get("snapshot_every") or 0,
            init_name=opts.get("init_name") or "",
            dist=dist,
            check_sync=opts.get("check_sync") or 0,
        )
    except (CheckpointError, DistributedError) as exc:
        echo(f"error: {exc}", err=True)
        return 1 if isinstance(exc, DesyncError) else 2
    if dist.is_main:
        if opts.get("json_out"):
            shown = {k: v for k, v in summary.items() if k != "train_config"}
            echo_lines(json.dumps(shown, indent=2))
        else:
            echo(closing_line(out_dir, summary, opts))
    return 0


def _auto_precision(out_dir: Path, opts: dict[str, Any], ucfg: UNetConfig, dist: Dist) -> str:
    """``--precision auto``: the precision a resumed run was started with, else the
    faster here (measured on rank 0, which every rank then follows)."""
    from n2n_train.loop import fastest_precision

    last = out_dir / "last.pt"
    if opts["resume"] and last.is_file():
        chosen = str(load_checkpoint(last).summary.get("train_config", {}).get("precision"))
        if chosen in ("fp32", "bf16"):
            log.info("--precision auto: %s, as the run being resumed", chosen)
            return chosen
    chosen = ""
    if dist.is_main:
        patch = 32 if opts["course"] is not None else int(opts["patch_size"])
        chosen, seconds = fastest_precision(
            ucfg, patch, int(opts["batch_size"]), opts["device"], bool(opts["channels_last"])
        )
        times = ", ".join(f"{k} {v:.3g} s" for k, v in seconds.items()) or "CUDA's bf16 support"
        log.info("--precision auto: %s (one training step: %s)", chosen, times)
    return str(dist.broadcast(chosen))


def _adds_levels(old: tuple[int, ...], new: tuple[int, ...]) -> bool:
    """Whether ``new`` is ``old`` with levels added at the bottom (a model to grow into)."""
    return len(new) > len(old) and tuple(new[: len(old)]) == tuple(old)


def _model_channels(opts: dict[str, Any], init: Checkpoint | None, data: object) -> int:
    """The channels of the model to train: ``--channels``; 3 for the course's colour
    pairs; for own data the data's (1 when every scene is grey); else ``--init``'s;
    else 3."""
    if opts.get("channels"):
        return int(opts["channels"])
    if opts.get("course"):
        return 3
    if own_source(opts):
        return int(getattr(data, "channels", 3))
    return init.config.in_channels if init is not None else 3


def closing_line(out_dir: Path, summary: dict[str, Any], opts: dict[str, Any]) -> str:
    """``fit``'s last line: the best epoch, its validation figures, where it is, and the
    command that exports it (with a parity check on the run's own data where it can)."""
    best = out_dir / "best.pt"
    line = f"best epoch {summary.get('best_epoch')}/{summary.get('epochs')}"
    loss = summary.get("best_val_loss")
    if isinstance(loss, (int, float)):
        line += f", val loss {loss:.6g}"
    psnr = summary.get("val_psnr")
    if isinstance(psnr, (int, float)):
        line += f" (PSNR {psnr:.2f} dB)"
    line += f" -> {best}"
    if summary.get("stopped"):
        line += f"; stopped: {summary['stopped']}"
    cmd = ["n2n-export", "onnx", str(best), str(out_dir / "model.onnx")]
    if opts.get("course_val"):
        cmd += ["--val-data", str(opts["course_val"])]
    elif opts.get("photos"):
        cmd += ["--images", str(opts["photos"])]
    elif (opts.get("pairs") or opts.get("singles")) and not z_context(opts):
        cmd += ["--images", str(opts["pairs"][0] if opts.get("pairs") else opts["singles"])]
    return f"{line}; next: {shlex.join(cmd)}"


def run_eval_command(
    checkpoint: Path,
    data: Path,
    noise: str | None,
    out_dir: Path | None,
    samples: int,
    seed: int,
    device: str,
) -> int:
    """``n2n-train eval``: print PSNR figures; optionally write the figures and JSON."""
    from n2n_train.data import to_float
    from n2n_train.evaluate import evaluate, photo_pairs

    check_device(device)
    try:
        ckpt = load_checkpoint(checkpoint)
        if ckpt.config.z_context:
            raise DataError(
                f"{checkpoint} is a z-context model (K={ckpt.config.z_context}: planes "
                f"z-{ckpt.config.z_context}..z+{ckpt.config.z_context} of a stack in, one "
                "plane out): n2n-train eval scores photos and course pairs, single images "
                "without neighbouring planes; its validation loss is in the run's metrics"
            )
        if data.is_dir():
            spec = noise or ckpt.summary.get("noise") or ""
            if spec.startswith("own noise") or spec == "course":
                raise DataError(
                    f"{checkpoint} was trained on {spec!r}, which cannot be drawn on clean "
                    f"images: give --noise (e.g. gaussian:25) to evaluate it on {data}"
                )
            noisy, clean = photo_pairs(data, spec, ckpt.config.stride, seed)
        else:
            noisy, clean = (to_float(t) for t in load_course_pairs(data))
        if noisy.shape[2] % ckpt.config.stride or noisy.shape[3] % ckpt.config.stride:
            raise DataError(f"{data}: image sides must be multiples of {ckpt.config.stride}")
    except (CheckpointError, DataError, ValueError) as exc:
        echo(f"error: {exc}", err=True)
        return 2
    result, denoised = evaluate(ckpt.build_model(), noisy, clean, device)
    echo(f"images:                         {len(result.noisy_psnr)}")
    echo(f"noisy input PSNR (mean/image):  {result.mean_noisy_psnr:.2f} dB")
    echo(f"denoised PSNR (mean/image):     {result.mean_psnr:.2f} dB")
    echo(f"denoised PSNR (global MSE):     {result.global_mse_psnr:.2f} dB")
    out_dir = out_dir or checkpoint.parent / f"eval-{data.stem}"
    _write_eval_outputs(out_dir, checkpoint, data, result, noisy, denoised, clean, samples)
    echo(f"figures and eval.json in {out_dir}")
    return 0


def _write_eval_outputs(
    out_dir: Path,
    checkpoint: Path,
    data: Path,
    result: EvalResult,
    noisy: torch.Tensor,
    denoised: torch.Tensor,
    clean: torch.Tensor,
    samples: int,
) -> None:
    from n2n_train.plots import plot_psnr_box, plot_samples

    out_dir.mkdir(parents=True, exist_ok=True)
    groups = {"noisy": result.noisy_psnr, "denoised": result.denoised_psnr}
    plot_psnr_box(groups, out_dir / "psnr_box.png")
    k = min(samples, len(noisy))
    if k > 0:
        plot_samples(noisy[:k], denoised[:k], clean[:k], out_dir / "samples.png")
    facts = {
        "checkpoint": str(checkpoint),
        "data": str(data),
        "images": len(result.noisy_psnr),
        "noisy_psnr": result.mean_noisy_psnr,
        "psnr": result.mean_psnr,
        "psnr_global_mse": result.global_mse_psnr,
    }
    (out_dir / "eval.json").write_text(json.dumps(facts, indent=2) + "\n")


def expand_checkpoints(paths: tuple[Path, ...], last: int | None) -> list[Path]:
    """Files as given; a folder stands for its ``*.pt`` files in name order (numbers by value).

    With ``last``, keep only the last ``last`` of them (snapshots are named by
    epoch, so these are the latest ones).

    Raises:
        click.BadParameter: a path that does not exist, an empty folder, or
            ``last`` below 1.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.pt"), key=_natural_key)
            if not found:
                raise click.BadParameter(f"{path}: folder holds no .pt files", param_hint="CKPT")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise click.BadParameter(f"{path}: no such file or folder", param_hint="CKPT")
    if last is not None:
        if last < 1:
            raise click.BadParameter(f"must be at least 1, got {last}", param_hint="--last")
        files = files[-last:]
    return files


def _natural_key(path: Path) -> list[int | str]:
    """Sort key putting ``epoch-9.pt`` before ``epoch-10.pt``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def run_validation_data(
    summary: dict[str, Any], run_dirs: tuple[Path, ...] = ()
) -> tuple[CoursePairs | PhotoPairs, TrainConfig]:
    """The data and training config of the run that wrote ``summary``, as ``fit`` built them.

    The summary names the data; where it lies is read from the first of
    ``run_dirs`` (the run's folders) holding a ``local_paths.json`` written by
    ``fit``. Summaries written before names replaced paths give the paths.

    Raises:
        DataError: the summary does not name its data, no run folder says where
            it is, or the data is not there (or has another name).
        ConfigError: the summary's training config is unreadable.
    """
    raw = summary.get("train_config")
    if not isinstance(raw, dict):
        raise ConfigError("the checkpoint's summary has no training config")
    cfg = TrainConfig.from_dict(raw, source="summary")
    data_info = summary.get("data") or {}
    source = data_info.get("source")
    if source in _OWN_OPTIONS:
        raise DataError(
            f"the checkpoint was trained on your own images (--{source}), whose validation "
            "split this command does not rebuild: compare the checkpoints with n2n-train eval "
            "on a folder of clean images and --noise, or average with --no-validate"
        )
    if source not in ("photos", "course") or not (data_info.get("name") or data_info.get("path")):
        raise DataError("the checkpoint's summary does not say which data it was trained on")
    where = _data_locations(data_info, run_dirs)
    if data_info.get("channels"):  # grey versions of the photos, for a grey model
        where["channels"] = str(data_info["channels"])
    data, _ = load_data(where, cfg)
    return data, cfg


def _data_locations(data_info: dict[str, Any], run_dirs: tuple[Path, ...]) -> dict[str, Any]:
    """``load_data``'s options for the data a summary names (see :func:`run_validation_data`)."""
    source = data_info["source"]
    if data_info.get("path"):  # an older summary, which recorded paths
        val = data_info.get("val_path")
        return {
            "photos": Path(data_info["path"]) if source == "photos" else None,
            "course": Path(data_info["path"]) if source == "course" else None,
            "course_val": Path(val) if val else None,
        }
    record = next((d / LOCAL_PATHS for d in run_dirs if (d / LOCAL_PATHS).is_file()), None)
    if record is None:
        raise DataError(
            f"the checkpoint names its {source} {data_info['name']!r} but not where it is, and "
            f"no run folder ({', '.join(map(str, run_dirs)) or 'none given'}) has {LOCAL_PATHS}"
        )
    try:
        paths = json.loads(record.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{record}: unreadable ({exc})") from exc
    key = "photos" if source == "photos" else "course"
    found = Path(paths.get(key) or "")
    if found.name != data_info["name"]:
        raise DataError(
            f"{record}: expected the {source} {data_info['name']!r} of the checkpoint's "
            f"summary, found {str(found)!r}"
        )
    return {k: Path(paths[k]) if paths.get(k) else None for k in _DATA_OPTIONS}


def measure_validation(
    ckpt: Checkpoint,
    device: str,
    data: tuple[CoursePairs | PhotoPairs, TrainConfig] | None = None,
    run_dirs: tuple[Path, ...] = (),
) -> dict[str, float]:
    """Validation loss and PSNR of ``ckpt`` on the validation set of the run it came from.

    The set is rebuilt from the summary and ``run_dirs``
    (:func:`run_validation_data`, unless ``data`` gives it), so the figures
    compare with the run's ``metrics.jsonl``.

    Raises:
        DataError, ConfigError: as :func:`run_validation_data`.
    """
    from n2n_train.loop import predict, validate
    from n2n_train.metrics import psnr

    pairs, cfg = data or run_validation_data(ckpt.summary, run_dirs)
    model = ckpt.build_model().to(device)
    facts = {"val_loss": validate(model, pairs.validation, device, cfg)}
    if pairs.psnr_set is not None:
        facts["val_psnr"] = psnr(predict(model, pairs.psnr_set[0], device), pairs.psnr_set[1])
    return facts


def run_folders(checkpoints: list[Path]) -> tuple[Path, ...]:
    """The folders that may hold the run's ``local_paths.json``: each file's, and above it.

    A snapshot ``RUN/snapshots/epoch-NNN.pt`` belongs to ``RUN``.
    """
    folders = [d for f in checkpoints for d in (f.parent, f.parent.parent)]
    return tuple(dict.fromkeys(folders))


def run_average_command(
    out: Path, paths: tuple[Path, ...], last: int | None, validate: bool, device: str
) -> int:
    """``n2n-train average``: write the mean of the checkpoints' weights to ``out``."""
    from n2n_train.average import average_checkpoints
    from n2n_train.checkpoint import save_checkpoint

    check_device(device)
    files = expand_checkpoints(paths, last)
    if out.resolve() in {f.resolve() for f in files}:
        raise click.BadParameter(f"{out} is one of the checkpoints to average", param_hint="OUT")
    for folder in (p for p in paths if p.is_dir()):
        if out.resolve().parent == folder.resolve():
            raise click.BadParameter(
                f"{out} lies in the checkpoint folder {folder}: a later average of that "
                "folder would take it as one of its checkpoints; write it beside the folder",
                param_hint="OUT",
            )
    try:
        sources = [(f, load_checkpoint(f), sha256_file(f)) for f in files]
        ckpt = average_checkpoints(sources)
    except CheckpointError as exc:
        echo(f"error: {exc}", err=True)
        return 2
    if validate:
        try:
            facts = measure_validation(ckpt, device, run_dirs=run_folders(files))
        except (ConfigError, DataError, ValueError) as exc:
            echo(f"error: cannot validate the average ({exc}); --no-validate skips it", err=True)
            return 2
        ckpt.summary.update(best_val_loss=facts["val_loss"], val_psnr=facts.get("val_psnr"))
        ckpt.summary["averaged"]["validation"] = facts
    save_checkpoint(out, ckpt.build_model(), ckpt.summary)
    epochs = [s[1].summary.get("epochs") for s in sources]
    echo(f"averaged {len(sources)} checkpoints (epochs {epochs}) into {out}")
    if validate:
        line = f"validation loss {facts['val_loss']:.6f}"
        if "val_psnr" in facts:
            line += f", validation PSNR {facts['val_psnr']:.3f} dB"
        echo(line)
    return 0
