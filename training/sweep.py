"""``n2n-train sweep``: run a study's runs from one spec file, resumably, and tabulate them.

A spec is a TOML file::

    title = "Round 2 (the study's table II)"
    [base]                      # the `n2n-train fit` options, by name (course_val, batch_norm, ...)
    course = "~/.cache/n2n/seedlike/train_data.pkl"
    course_val = "~/.cache/n2n/seedlike/val_data.pkl"
    convs_per_level = 1
    epochs = 15

    [[runs]]
    name = "baseline2"          # its folder OUT/<name>/
    label = "baseline 2"        # optional: the table's row name
    study_psnr = 24.53          # optional: the study's figure for the row, dB
    [[runs]]
    name = "max_pooling"
    study_psnr = 24.53
    pooling = "max"             # any other key overrides the base

Paths in a spec are relative to the spec file (``~`` expands), each of a list
too (``pairs = ["a", "b"]``, the two folders of ``--pairs``); ``--set
KEY=VALUE`` on the command line overrides the base of every run (paths there
are relative to the working folder), so that specs stay machine-independent.
A list is the values of an option that takes several (``pairs``), else one
comma-separated value (``features = [16, 32]``). Run names are folder names:
letters, digits, ``_``, ``.``, ``+`` and ``-``, starting with a letter, digit or
``_``, at most :data:`MAX_NAME` bytes.

Everything that can be checked is checked before any run starts: the spec's
options as ``fit`` would parse them (``nproc`` at most
:func:`n2n_train.distributed.max_processes`), that each run has its data and
the ``course_val`` pairs it is scored on, that no run folder is, lies in or
holds a data folder, and that the run folders agree with the spec.

Each run is a separate process, ``python -m n2n_train.cli fit ... --out
OUT/<name>``, as many at once as ``jobs``, with its own torch thread count. A run
is *done* when ``OUT/<name>/sweep_run.json`` exists (the sweep writes it after
scoring) or when its ``last.pt`` has trained all its epochs (it is then scored
again); a run with an unfinished ``last.pt`` is resumed (``fit --resume``); any
other run starts afresh. The marker records the run's options (data paths left
out): a done run whose options changed is refused, except for more epochs,
which resumes it.

Each run's ``best.pt`` (lowest loss on the 20 % validation split of the
training pairs) is scored on the ``course_val`` (noisy, clean) pairs: mean
per-image PSNR and global-MSE PSNR (:mod:`n2n_train.evaluate`). A run
**diverged** when a training or validation loss in its ``metrics.jsonl`` is
not finite, or when its best checkpoint's mean PSNR is not above the noisy
inputs' PSNR (the network does no better than handing back its input). The
sweep writes ``OUT/sweep.json`` and ``OUT/sweep.md`` after every finished run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from n2n_infer.errors import N2NError
from n2n_infer.files import write_text_atomic

log = logging.getLogger(__name__)

#: The per-run marker the sweep writes after scoring a finished run.
MARKER = "sweep_run.json"
#: Keys of a ``[[runs]]`` entry that describe the row rather than override ``fit``.
ROW_KEYS = ("name", "label", "study_psnr", "note")
#: Top-level keys of a spec.
SPEC_KEYS = ("title", "note", "base", "runs")
#: ``fit`` options that the sweep sets itself and a spec may not.
RESERVED = ("out_dir", "resume", "overwrite", "no_progress", "threads")
#: The options a run was started with (written before ``fit`` runs, compared before
#: a stopped or unscored run is resumed or scored).
STARTED = "sweep_started.json"
#: ``fit`` options that are files: resolved against the spec's folder, left out of the marker.
PATH_OPTIONS = ("photos", "course", "course_val", "init", "pairs", "bursts", "singles")
#: The longest run name, in UTF-8 bytes (a folder name; file systems allow 255).
MAX_NAME = 100
#: A run name: a plain folder name that is neither hidden nor taken for an option.
_NAME = re.compile(r"\w[\w.+-]*")


class SweepError(N2NError, ValueError):
    """A spec file or a sweep folder is unusable; the message names the file."""


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its name, its table row facts and its ``fit`` options."""

    name: str
    options: dict[str, Any]
    label: str = ""
    study_psnr: float | None = None
    note: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepSpec:
    """A parsed spec file: its title and runs (each with the base merged in)."""

    path: Path
    title: str
    runs: tuple[RunSpec, ...]
    base: dict[str, Any]
    note: str = ""


def fit_params() -> dict[str, click.Option]:
    """``n2n-train fit``'s options by name (the one list of what a spec may set)."""
    from n2n_train.cli import fit

    return {p.name: p for p in fit.params if isinstance(p, click.Option) and p.name}


def parse_set(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings to a dict; a VALUE is read as TOML (``3``, ``true``) or a string.

    Raises:
        SweepError: an item without ``=``.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SweepError(f"--set: expected KEY=VALUE, got {item!r}")
        try:
            out[_key(key.strip())] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[_key(key.strip())] = value
    return out


def _key(name: str) -> str:
    return name.replace("-", "_")


def load_spec(path: str | Path, sets: dict[str, Any] | None = None) -> SweepSpec:
    """Read and check a sweep spec; ``sets`` override its base (paths relative to the cwd).

    Raises:
        SweepError: unreadable TOML, unknown keys, no base, no runs, duplicate or
            unusable run names, reserved options, or values ``fit`` would refuse;
            the message names the file and the run.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SweepError(f"{path}: not a readable TOML sweep spec ({exc})") from exc
    unknown = sorted(set(raw) - set(SPEC_KEYS))
    if unknown:
        raise SweepError(f"{path}: unknown top-level keys {unknown}; expected {list(SPEC_KEYS)}")
    if not isinstance(raw.get("base"), dict):
        raise SweepError(f"{path}: missing [base] table (the fit options shared by all runs)")
    runs = raw.get("runs")
    if not isinstance(runs, list) or not runs or not all(isinstance(r, dict) for r in runs):
        raise SweepError(f"{path}: expected one or more [[runs]] tables")
    params = fit_params()
    base = _options(raw["base"], params, path, "[base]", path.parent)
    base.update(_options(sets or {}, params, path, "--set", Path.cwd()))
    seen: set[str] = set()
    out = []
    for i, entry in enumerate(runs, 1):
        name = entry.get("name")
        _check_name(name, path, f"[[runs]] #{i}")
        if name in seen:
            raise SweepError(f"{path}: duplicate run name {name!r}")
        seen.add(name)
        where = f"run {name!r}"
        study = entry.get("study_psnr")
        if study is not None and (
            isinstance(study, bool)
            or not isinstance(study, (int, float))
            or not math.isfinite(study)
        ):
            raise SweepError(f"{path}: {where}: study_psnr must be a finite number, got {study!r}")
        changes = {k: v for k, v in entry.items() if k not in ROW_KEYS}
        overrides = _options(changes, params, path, where, path.parent)
        options = {**base, **overrides}
        _check_with_fit(options, path, where)
        out.append(
            RunSpec(
                name=name,
                options=options,
                label=str(entry.get("label") or name),
                study_psnr=float(study) if study is not None else None,
                note=str(entry.get("note") or ""),
                overrides=overrides,
            )
        )
    return SweepSpec(
        path=path,
        title=str(raw.get("title") or path.stem),
        runs=tuple(out),
        base=base,
        note=str(raw.get("note") or ""),
    )


def _check_name(name: Any, path: Path, where: str) -> None:
    """Refuse a run name that is not a plain, visible folder name of at most MAX_NAME bytes.

    Raises:
        SweepError: one line; a long or odd name is shown shortened and escaped.
    """
    ok = (
        isinstance(name, str)
        and _NAME.fullmatch(name) is not None
        and len(name.encode("utf-8")) <= MAX_NAME
    )
    if ok:
        return
    shown = repr(name)
    if len(shown) > 40:
        shown = f"{shown[:37]}... ({len(name)} characters)"
    raise SweepError(
        f"{path}: {where}: expected a run name of letters, digits, _ . + - (a plain folder "
        f"name: not starting with . + or -, at most {MAX_NAME} bytes), got {shown}"
    )


def _options(
    table: dict[str, Any], params: dict[str, click.Option], path: Path, where: str, root: Path
) -> dict[str, Any]:
    """Check a table of ``fit`` options: known, not reserved; resolve paths against ``root``."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = _key(key)
        if name in RESERVED:
            raise SweepError(f"{path}: {where}: {key!r} is set by the sweep itself")
        if name not in params:
            raise SweepError(
                f"{path}: {where}: unknown key {key!r}; expected fit options "
                f"({', '.join(sorted(set(params) - set(RESERVED)))}) or {list(ROW_KEYS)}"
            )
        if params[name].is_flag and not isinstance(value, bool):
            raise SweepError(
                f"{path}: {where}: {key!r} is a flag: expected true or false, got {value!r}"
            )
        nargs = params[name].nargs
        if nargs > 1 and (
            not isinstance(value, list)
            or len(value) != nargs
            or not all(isinstance(v, (str, int, float)) for v in value)
        ):
            raise SweepError(
                f"{path}: {where}: {key!r} takes {nargs} values: expected a list of {nargs} "
                f'(e.g. {key} = ["a", "b"]), got {value!r}'
            )
        bundled = name == "init" and isinstance(value, str) and _bare_name(value, root)
        if name in PATH_OPTIONS and not bundled:
            value = _resolved(value, root)
        out[name] = value
    return out


def _resolved(value: Any, root: Path) -> Any:
    """A path (or each path of a list) resolved against ``root`` (``~`` expanded)."""
    if isinstance(value, list):
        return [_resolved(v, root) for v in value]
    if isinstance(value, str):
        return str((root / Path(value).expanduser()).resolve())
    return value


def _bare_name(value: str, root: Path) -> bool:
    """A bundled model's name (``init = "photo"``): no folder, no suffix, no such file."""
    return Path(value).name == value and not Path(value).suffix and not (root / value).exists()


def fit_args(options: dict[str, Any]) -> list[str]:
    """The ``n2n-train fit`` command-line arguments for ``options`` (without ``--out``)."""
    params = fit_params()
    args: list[str] = []
    for name, value in options.items():
        param = params[name]
        flag = param.opts[0]
        if param.is_flag:
            if value:
                args.append(flag)
            elif param.secondary_opts:
                args.append(param.secondary_opts[0])
        elif isinstance(value, (list, tuple)) and param.nargs > 1:  # --pairs A B
            args += [flag, *(str(v) for v in value)]
        elif isinstance(value, (list, tuple)) and param.multiple:  # --x a --x b
            args += [a for v in value for a in (flag, str(v))]
        elif isinstance(value, (list, tuple)):  # --features 16,32
            args += [flag, ",".join(str(v) for v in value)]
        else:
            args += [flag, str(value)]
    return args


def _check_with_fit(options: dict[str, Any], path: Path, where: str) -> None:
    """Parse and check the options as ``fit`` would (types, choices, the model and
    training configs' ranges), without running it or reading its data."""
    from n2n_train.cli import fit
    from n2n_train.commands import check_fit_sources, model_config, shape_given, train_config
    from n2n_train.config import ConfigError
    from n2n_train.distributed import DistributedError, check_nproc

    try:
        ctx = fit.make_context("fit", [*fit_args(options), "--out", "x"], resilient_parsing=False)
        params = ctx.params
        check_fit_sources(params)
        check_nproc(int(params.get("nproc") or 1), params.get("device") or "cpu")
        if not params.get("init") or shape_given(params):
            model_config(params)
        train_config(params, course=params.get("course") is not None)
    except click.ClickException as exc:
        raise SweepError(f"{path}: {where}: {exc.format_message()}") from exc
    except (ConfigError, DistributedError, ValueError) as exc:
        raise SweepError(f"{path}: {where}: {exc}") from exc


def marker_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options a marker records and compares: all but the data paths (machine-specific)."""
    return {k: v for k, v in sorted(options.items()) if k not in PATH_OPTIONS}


def run_state(run: RunSpec, run_dir: Path) -> str:
    """``done``, ``score`` (trained, not yet scored), ``resume`` or ``new``.

    Raises:
        SweepError: the folder's marker (or, for a run not yet scored, its
            ``sweep_started.json``) records other options (other than more
            epochs), or is unreadable; or its ``last.pt`` is unreadable.
    """
    marker = run_dir / MARKER
    epochs = int(run.options.get("epochs", 15))
    if marker.is_file():
        recorded = _recorded_options(run, marker, "made", "delete it to score the run again")
        if int(recorded.get("epochs", 15)) >= epochs:
            return "done"
    last = run_dir / "last.pt"
    if not last.is_file():
        return "new"
    started = run_dir / STARTED
    if started.is_file():  # absent for a run started before this record existed
        _recorded_options(run, started, "started", "delete the run's folder")
    from n2n_train.checkpoint import CheckpointError, load_checkpoint

    try:
        trained = int(load_checkpoint(last).summary.get("epochs") or 0)
    except CheckpointError as exc:
        raise SweepError(
            f"{last}: {exc}; delete the folder to start run {run.name!r} again"
        ) from exc
    return "score" if trained >= epochs else "resume"


def _recorded_options(run: RunSpec, record: Path, verb: str, fix: str) -> dict[str, Any]:
    """The options ``record`` (a run's marker or start record) holds, if they are the
    spec's (more epochs allowed).

    Raises:
        SweepError: ``record`` is unreadable (the message says ``fix``), or holds
            other options.
    """
    try:
        recorded = dict(json.loads(record.read_text()).get("options") or {})
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise SweepError(f"{record}: unreadable ({exc}); {fix}") from exc
    wanted = marker_options(run.options)

    def fixed(opts: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in opts.items() if k != "epochs"}

    if fixed(recorded) != fixed(wanted):
        raise SweepError(
            f"{record}: run {run.name!r} was {verb} with other options ({recorded}); the "
            f"spec now gives {wanted}: rename the run or delete its folder"
        )
    return recorded


def train_run(run: RunSpec, run_dir: Path, resume: bool, threads: int) -> int:
    """Run ``fit`` for ``run`` in a child process, its output appended to ``fit.log``.

    Returns the process's exit status.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "n2n_train.cli", "fit", *fit_args(run.options)]
    cmd += ["--out", str(run_dir), "--no-progress", "--threads", str(threads)]
    # a new run starts afresh: what a run killed before its first last.pt left is replaced
    cmd.append("--resume" if resume else "--overwrite")
    if not resume:
        write_text_atomic(
            run_dir / STARTED, json.dumps({"options": marker_options(run.options)}, indent=2)
        )
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with (run_dir / "fit.log").open("a") as logf:
        logf.write(f"$ {' '.join(cmd)}\n")
        logf.flush()
        return subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env).returncode


def score_run(run: RunSpec, run_dir: Path) -> dict[str, Any]:
    """Score ``run_dir/best.pt`` on ``course_val`` and read its metrics; see the module doc.

    Raises:
        SweepError: no ``course_val`` in the options, or an unreadable checkpoint or file.
    """
    from n2n_train.checkpoint import CheckpointError, load_checkpoint
    from n2n_train.data import DataError, load_course_pairs, to_float
    from n2n_train.evaluate import evaluate
    from n2n_train.plots import read_metrics

    val = run.options.get("course_val")
    if not val:
        raise SweepError(f"run {run.name!r}: the sweep scores on course_val, which is not set")
    try:
        ckpt = load_checkpoint(run_dir / "best.pt")
        noisy, clean = (to_float(t) for t in load_course_pairs(val))
        rows = read_metrics(run_dir / "metrics.jsonl")
    except (CheckpointError, DataError, OSError, ValueError) as exc:
        raise SweepError(f"run {run.name!r}: cannot score {run_dir}: {exc}") from exc
    result, _ = evaluate(ckpt.build_model(), noisy, clean)
    nan_epochs = [
        r["epoch"]
        for r in rows
        if not all(math.isfinite(float(r.get(k, math.nan))) for k in ("train_loss", "val_loss"))
    ]
    diverged, reason = False, ""
    if nan_epochs:
        diverged, reason = True, f"non-finite loss from epoch {nan_epochs[0]}"
    elif not result.mean_psnr > result.mean_noisy_psnr:
        diverged, reason = True, "best PSNR not above the noisy input's"
    return {
        "psnr": _finite(result.mean_psnr),
        "psnr_global_mse": _finite(result.global_mse_psnr),
        "noisy_psnr": result.mean_noisy_psnr,
        "best_epoch": ckpt.summary.get("best_epoch"),
        "epochs": ckpt.summary.get("epochs") if not rows else rows[-1]["epoch"],
        "best_val_loss": _finite(ckpt.summary.get("best_val_loss")),
        "last_val_psnr": _finite(rows[-1].get("val_psnr")) if rows else None,
        "diverged": diverged,
        "diverged_reason": reason,
        "train_seconds": round(sum(float(r.get("seconds", 0.0)) for r in rows), 1),
        "pairs": (ckpt.summary.get("data") or {}).get("pairs"),
    }


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def write_marker(run: RunSpec, run_dir: Path, scores: dict[str, Any]) -> None:
    """Write ``run_dir/sweep_run.json``: the run's options (no paths) and scores."""
    facts = {"name": run.name, "options": marker_options(run.options), "scores": scores}
    write_text_atomic(run_dir / MARKER, json.dumps(facts, indent=2) + "\n")


def read_marker(run_dir: Path) -> dict[str, Any] | None:
    """The scores in ``run_dir``'s marker, or None without a readable one."""
    try:
        return json.loads((run_dir / MARKER).read_text()).get("scores")
    except (OSError, ValueError):
        return None


#: Where a sweep's progress lines go (one per run as it starts and as it ends).
Report = Callable[[str], None]

_STARTING = {"new": "training", "resume": "resuming its training", "score": "scoring"}


@dataclass
class Sweep:
    """A sweep in progress: the spec, the output folder and the runs' results so far.

    ``report`` (the CLI: stderr) gets a line per run as it starts and as it ends,
    ``[k/N] NAME: ...`` with ``k`` its place among the ``order`` runs brought to done.
    """

    spec: SweepSpec
    out: Path
    threads: int = 1
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    report: Report | None = None
    order: tuple[str, ...] = ()
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run_one(self, run: RunSpec) -> dict[str, Any]:
        """Bring one run to done (train, resume or only score it); returns its row facts."""
        run_dir = self.out / run.name
        t0 = time.perf_counter()
        state = run_state(run, run_dir)
        facts: dict[str, Any] = {"state_before": state}
        if state == "done":
            facts.update(status="done", **(read_marker(run_dir) or {}))
            return self._record(run, facts)
        self._say(run, _STARTING[state])
        if state in ("new", "resume"):
            log.info("%s: %s", run.name, "resuming" if state == "resume" else "starting")
            code = train_run(run, run_dir, state == "resume", self.threads)
            if code != 0:
                facts.update(status="failed", exit=code, log=f"{run.name}/fit.log")
                return self._record(run, facts)
        scores = score_run(run, run_dir)
        write_marker(run, run_dir, scores)
        facts.update(status="done", wall_seconds=round(time.perf_counter() - t0, 1), **scores)
        return self._record(run, facts)

    def _say(self, run: RunSpec, what: str) -> None:
        if self.report is None:
            return
        k = self.order.index(run.name) + 1 if run.name in self.order else 0
        self.report(f"[{k}/{len(self.order)}] {run.name}: {what}")

    def _record(self, run: RunSpec, facts: dict[str, Any]) -> dict[str, Any]:
        log.info("%s: %s", run.name, facts.get("status"))
        with self._lock:  # one writer at a time, so the last tables written hold every run
            self.results[run.name] = facts
            write_tables(self.spec, self.out, self.results)
            self._say(run, _outcome(facts, self.out / run.name))
        return facts


def _outcome(facts: dict[str, Any], run_dir: Path) -> str:
    """A run's end as its progress line says it: its PSNR, or why it has none."""
    if facts.get("status") == "failed":
        return f"failed (exit {facts.get('exit')}; see {run_dir / 'fit.log'})"
    already = "done already" if facts.get("state_before") == "done" else "done"
    psnr = facts.get("psnr")
    if not isinstance(psnr, (int, float)):
        return f"{already}, no PSNR (diverged: {facts.get('diverged_reason') or 'unknown'})"
    line = f"{already}, PSNR {psnr:.2f} dB"
    if isinstance(facts.get("noisy_psnr"), (int, float)):
        line += f" (noisy input {facts['noisy_psnr']:.2f} dB)"
    line += f", best epoch {facts.get('best_epoch')} of {facts.get('epochs')}"
    if facts.get("diverged"):
        line += f", diverged: {facts.get('diverged_reason')}"
    return line


def check_runs(spec: SweepSpec, runs: Sequence[RunSpec], out: Path) -> None:
    """What can be checked of ``runs`` before any trains, so that a sweep does not spend
    hours training runs it cannot score: each has a training source whose file or
    folders exist, the ``course_val`` pairs it is scored on (readable), and a run
    folder ``out/<name>`` apart from its data folders.

    Raises:
        SweepError: names the spec, the run and the file or folder.
    """
    from n2n_train.commands import check_out_of_data
    from n2n_train.data import DataError, load_course_pairs

    readable: set[str] = set()
    for run in runs:
        where = f"{spec.path}: run {run.name!r}"
        opts = run.options
        val = opts.get("course_val")
        if not val:
            source = next((k for k in ("photos", "pairs", "bursts", "singles") if opts.get(k)), "")
            why = f" (it trains on {source}, which has no clean references)" if source else ""
            raise SweepError(
                f"{where}: cannot be scored: the sweep scores each run's best.pt on the "
                f"(noisy, clean) pairs of course_val, which is not set{why}; set course_val "
                "(e.g. make-seedlike's val_data.pkl) or train these runs with n2n-train fit"
            )
        if val not in readable:
            try:
                load_course_pairs(val)
            except DataError as exc:
                raise SweepError(f"{where}: course_val: {exc}") from exc
            readable.add(val)
        for key in ("course", "photos", "bursts", "singles", "pairs"):
            value = opts.get(key)
            paths = value if isinstance(value, list) else [value] if value else []
            for p in paths:
                want_file = key == "course"
                if not (Path(p).is_file() if want_file else Path(p).is_dir()):
                    what = "file" if want_file else "folder"
                    raise SweepError(f"{where}: {key}: {what} {p} not found")
        init = opts.get("init")
        if isinstance(init, str) and Path(init).is_absolute() and not Path(init).is_file():
            raise SweepError(f"{where}: init: checkpoint {init} not found")
        try:
            check_out_of_data(out / run.name, opts)
        except DataError as exc:
            raise SweepError(f"{where}: {exc}") from exc


def run_sweep(
    spec: SweepSpec,
    out: Path,
    jobs: int = 1,
    threads: int = 1,
    only: Sequence[str] = (),
    report: Report | None = None,
) -> dict[str, Any]:
    """Bring every run of ``spec`` (or the runs named in ``only``) to done in ``out``,
    ``jobs`` at once; returns sweep.json, whose other rows are those already done in
    ``out`` (or "not run"). ``report`` gets a line per run as it starts and ends.

    Raises:
        SweepError: a name in ``only`` is not a run of the spec; a run that cannot
            be trained or scored (:func:`check_runs`) or whose folder is
            inconsistent with the spec (all checked for all chosen runs before any
            starts), or a finished run cannot be scored.
    """
    chosen = select_runs(spec, only)
    # refuse a stale folder, or a run that cannot train or be scored, before spending
    # hours on the others (a done run needs neither its data nor its scoring pairs again)
    states = {run.name: run_state(run, out / run.name) for run in chosen}
    check_runs(spec, [run for run in chosen if states[run.name] != "done"], out)
    out.mkdir(parents=True, exist_ok=True)
    order = tuple(run.name for run in chosen)
    sweep = Sweep(spec, out, threads, report=report, order=order)
    names = {run.name for run in chosen}
    sweep.results.update(
        (run.name, _collected(out / run.name)) for run in spec.runs if run.name not in names
    )
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(sweep.run_one, chosen))
    return write_tables(spec, out, sweep.results)


def select_runs(spec: SweepSpec, only: Sequence[str] = ()) -> list[RunSpec]:
    """The runs of ``spec`` named in ``only`` (in the spec's order), or all of them.

    Raises:
        SweepError: a name that is not a run of the spec.
    """
    names = [run.name for run in spec.runs]
    unknown = [name for name in only if name not in names]
    if unknown:
        raise SweepError(
            f"{spec.path}: no run named {', '.join(map(repr, unknown))}; its runs: "
            f"{', '.join(names)}"
        )
    return [run for run in spec.runs if not only or run.name in only]


def _collected(run_dir: Path) -> dict[str, Any]:
    """A run's row facts from its marker, training nothing: done, or not run."""
    scores = read_marker(run_dir)
    return {"status": "done", **scores} if scores is not None else {"status": "not run"}


def collect_results(spec: SweepSpec, out: Path) -> dict[str, Any]:
    """Write the tables from the runs already done in ``out``, training nothing."""
    return write_tables(spec, out, {run.name: _collected(out / run.name) for run in spec.runs})


def write_tables(spec: SweepSpec, out: Path, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Write ``out/sweep.json`` and ``out/sweep.md`` for the runs in ``results``."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for run in spec.runs:
        facts = results.get(run.name, {"status": "not run"})
        rows.append(
            {
                "name": run.name,
                "label": run.label,
                "study_psnr": run.study_psnr,
                "note": run.note,
                "changes": {k: v for k, v in run.overrides.items() if k not in PATH_OPTIONS},
                **facts,
            }
        )
    doc = {
        "spec": spec.path.name,
        "title": spec.title,
        "note": spec.note,
        "base": marker_options(spec.base),
        "divergence": "non-finite training or validation loss, or best-checkpoint mean PSNR "
        "not above the noisy input's",
        "runs": rows,
    }
    write_text_atomic(out / "sweep.json", json.dumps(doc, indent=2) + "\n")
    write_text_atomic(out / "sweep.md", markdown_table(doc))
    return doc


def _db(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "–"


def markdown_table(doc: dict[str, Any]) -> str:
    """One Markdown table of a sweep.json document: one row per run."""
    lines = [
        f"### {doc['title']}",
        "",
        "| run | change | study (dB) | ours, mean/image (dB) | ours, global MSE (dB) "
        "| noisy input (dB) | best epoch | diverged |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in doc["runs"]:
        changes = ", ".join(f"{k}={_show(v)}" for k, v in r["changes"].items()) or "(base)"
        if r.get("status") != "done":
            tail = f"{r.get('status', 'not run')} | – | – | – | –"
        else:
            diverged = f"yes ({r['diverged_reason']})" if r.get("diverged") else "no"
            best = f"{r.get('best_epoch')} of {r.get('epochs')}"
            tail = (
                f"{_db(r.get('psnr'))} | {_db(r.get('psnr_global_mse'))} | "
                f"{_db(r.get('noisy_psnr'))} | {best} | {diverged}"
            )
        lines.append(f"| {r['label']} | {changes} | {_db(r['study_psnr'])} | {tail} |")
    return "\n".join(lines) + "\n"


def _show(value: Any) -> str:
    """A spec value as the spec writes it: ``true``, ``16,32,64``, ``0.001``."""
    if isinstance(value, bool):
        return str(value).lower()
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def seed_spread(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs of one or more ``sweep.json`` documents that differ only by their seed, grouped.

    A run's settings are its document's base with its changes applied; runs whose
    settings are equal but for ``seed`` form a group (across documents: a row of
    round 1 at seed 0 and its seeds 1-3 from another spec). Only finished runs
    count, and only groups of two or more seeds are returned, each with its
    label (the shortest of its runs', less any ", seed N"), ``n``, the seeds, and
    the mean, sample standard deviation, minimum and maximum of the runs' mean
    per-image PSNR, in the order their first run appears.
    """
    groups: dict[str, dict[str, Any]] = {}
    for doc in docs:
        for r in doc.get("runs", []):
            if r.get("status") != "done" or not isinstance(r.get("psnr"), (int, float)):
                continue
            settings = {**doc.get("base", {}), **r.get("changes", {})}
            seed = settings.pop("seed", 0)
            key = json.dumps(settings, sort_keys=True)
            label = re.sub(r",? seed \d+$", "", r.get("label") or r["name"])
            group = groups.setdefault(key, {"labels": [], "runs": {}})
            group["labels"].append(label)
            group["runs"].setdefault(seed, float(r["psnr"]))
    rows = []
    for group in groups.values():
        values = [group["runs"][s] for s in sorted(group["runs"])]
        if len(values) < 2:
            continue
        rows.append(
            {
                "label": min(group["labels"], key=len),
                "n": len(values),
                "seeds": sorted(group["runs"]),
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values),
                "min": min(values),
                "max": max(values),
            }
        )
    return rows


def spread_table(rows: list[dict[str, Any]]) -> str:
    """:func:`seed_spread`'s groups as a Markdown table."""
    lines = [
        "| run | seeds | mean (dB) | std (dB) | min (dB) | max (dB) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        seeds = ",".join(map(str, r["seeds"]))
        lines.append(
            f"| {r['label']} | {seeds} | {r['mean']:.2f} | {r['std']:.2f} | "
            f"{r['min']:.2f} | {r['max']:.2f} |"
        )
    return "\n".join(lines) + "\n"
