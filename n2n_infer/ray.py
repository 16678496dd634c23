"""The runtime on Ray Data: denoise folders (or your own datasets) on many workers.

Needs the ``ray`` extra (``pip install "n2n[ray]"``); nothing else in
:mod:`n2n_infer` imports this module, so the runtime stays usable without Ray.

>>> from n2n_infer.ray import DenoiserSpec, denoise_folder_ray
>>> report = denoise_folder_ray(DenoiserSpec("photo"), "in/", "out/", workers=4)

:func:`denoise_folder_ray` runs the folder job of :mod:`n2n_infer.batch` with
its own steps (folder checks, the file list, existing outputs, the
input-folder guard, :func:`~n2n_infer.batch.convert_file`, atomic writes, the
report), so its outputs are byte-identical to the local engine's. The driver
owns the files: input (and reference) bytes are read by tasks pinned to the
driver's node, workers decode, denoise and encode in a private scratch folder,
and the driver writes the encoded bytes atomically into the output folder. No
file system is shared with the workers: a bundled model is named, a model file
is shipped to them as bytes. The workers are the callable classes of
:mod:`n2n_infer.workers` (re-exported here); :class:`DenoiseImages` plugs a
:class:`~n2n_infer.Denoiser` into your own ``map_batches`` pipelines.

TIFF stacks (:mod:`n2n_infer.stacks`) go one of two ways. *Whole*: a stack is
one file and so one task, its bytes travel whole (up to :data:`MAX_FILE_BYTES`)
and one worker denoises it plane by plane through
:func:`~n2n_infer.batch.convert_file`. *Split*: the driver runs the local
engine's stack path itself (:func:`~n2n_infer.batch.convert_file` with
:class:`_RemotePlanes` as its Denoiser): it reads the stack from disk, finds the
levels once over the whole stack, maps each plane by them, sends the planes to
:class:`DenoisePlanes` actors in chunks of whole Denoiser batches (at most
:data:`CHUNKS_PER_WORKER` chunks per worker and :data:`IN_FLIGHT_BYTES` in
flight), and writes the results, in order, through the same TIFF writer into
one atomic output: the same bytes as the local engine's. ``split_stacks``
chooses (see :func:`denoise_folder_ray`): by default a job's stacks are split
when they are fewer than its workers (whole, they would leave workers idle) and
always when a stack is too large to travel whole; never for a model that takes
neighbouring planes (``z_context``). Measured in ``bench/ray_stacks.py``
(docs/scaling.md).
"""

from __future__ import annotations

import logging
import os
import stat
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import ray
import ray.data
from ray.util.annotations import RayDeprecationWarning

from n2n_infer import stacks, tiff16
from n2n_infer.arrays import MAX_PIXELS
from n2n_infer.batch import (
    BatchReport,
    FileJob,
    FileResult,
    check_destination,
    convert_file,
    existing_output,
    plan_jobs,
    run_guarded,
    start_job,
)
from n2n_infer.errors import N2NError
from n2n_infer.files import kind_of, write_atomic
from n2n_infer.workers import (
    OUT_COLUMNS,
    DenoiseFiles,
    DenoiseImages,
    DenoisePlanes,
    DenoiserSpec,
    ShippedModel,
    object_column,
    result_of,
)

if TYPE_CHECKING:
    from n2n_infer.denoiser import Denoiser

__all__ = [
    "DenoiseFiles",
    "DenoiseImages",
    "DenoisePlanes",
    "DenoiserSpec",
    "RayJobError",
    "connect",
    "denoise_folder_ray",
    "silence_ray",
]

log = logging.getLogger(__name__)

#: Files per Ray block and per ``map_batches`` call: few, so that images of mixed sizes
#: spread evenly over the workers (one image takes 10 ms to seconds).
FILES_PER_BATCH = 2
#: Read tasks running at once on the driver's node.
READ_TASKS = 2
#: How often Ray restarts a worker that died (and retries its batch) before the job fails.
MAX_RESTARTS = 3
#: Bytes read of one input file at most: more than any image of ``MAX_PIXELS`` pixels
#: holds (4 channels of 8 bytes, uncompressed, and 64 MiB of metadata).
MAX_FILE_BYTES = MAX_PIXELS * 4 * 8 + (64 << 20)
#: A split stack's planes go to the workers in chunks of one Denoiser batch
#: (``batch_size`` planes), fewer when a batch would hold more bytes than this.
CHUNK_MAX_BYTES = 256 << 20
#: Chunks of a split stack in flight (sent, not yet written) per worker...
CHUNKS_PER_WORKER = 2
#: ...and at most this many bytes of them in flight (two chunks at least).
IN_FLIGHT_BYTES = 1 << 30


class RayJobError(N2NError):
    """The Ray job stopped (a worker died too often, the cluster went away).

    The files finished before it are written; a rerun with ``skip_existing``
    finishes the job.
    """


def _read_files(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """On the driver's node: the bytes of each ``src`` (and ``ref``), or why they cannot be read."""
    data, refs, has_refs, errors = [], [], [], []
    for src, ref in zip(batch["src"], batch["ref"], strict=True):
        content, error = _read_bytes(Path(src), "")
        has_ref = bool(ref)  # "" when the job has no reference image (FileJob.has_reference)
        ref_content, ref_error = (
            _read_bytes(Path(ref), f"reference {ref}: ") if has_ref else (b"", "")
        )
        data.append(content)
        refs.append(ref_content)
        has_refs.append(has_ref)
        errors.append(error or ref_error)
    return {"name": batch["name"], "data": object_column(data), "ref": object_column(refs),
            "has_ref": np.array(has_refs), "read_error": object_column(errors)}  # fmt: skip


def _read_bytes(path: Path, label: str) -> tuple[bytes, str]:
    """A file's bytes and ``""``, or ``b""`` and why it cannot be read (after ``label``).

    Only a regular file is read (opened without waiting, so that a FIFO cannot
    hang the task, and checked once open), and at most its size when opened,
    never more than :data:`MAX_FILE_BYTES`.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        return b"", f"{label}cannot read: {exc.strerror or exc}"
    try:
        st = os.fstat(fd)
        refused = _refusal(st.st_mode, st.st_size)
        if refused:
            return b"", f"{label}{refused}"
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(st.st_size)  # a file that grows meanwhile is read as it was
        return data, ""
    except OSError as exc:
        return b"", f"{label}cannot read: {exc.strerror or exc}"
    finally:
        os.close(fd)


def _refusal(mode: int, size: int) -> str:
    """Why a file of ``st_mode`` ``mode`` and ``size`` bytes is not read, or ``""``."""
    if not stat.S_ISREG(mode):
        return f"not a regular file (a {kind_of(mode)}): only image files are read"
    if size > MAX_FILE_BYTES:
        return (
            f"{size} bytes, more than any image file of at most {MAX_PIXELS} pixels holds "
            "(a larger TIFF stack: denoise it with the local engine, which streams it)"
        )
    return ""


def _unreadable(job: FileJob) -> FileResult | None:
    """On the driver, before any task: an error result for a job whose input (or
    reference) exists but is not a regular file (a FIFO, a device, a folder) or is
    too large; ``None`` otherwise (a missing file is left to the read task)."""
    paths = [(job.src, "")]
    if job.has_reference and job.ref is not None:
        paths.append((job.ref, f"reference {job.ref}: "))
    for path, label in paths:
        try:
            st = path.stat()
        except OSError:
            continue
        refused = _refusal(st.st_mode, st.st_size)
        if refused:
            log.info("%s: %s", path, refused)
            return FileResult(job.name, "error", f"{label}{refused}")
    return None


@dataclass(frozen=True)
class _RayJob:
    """What every file of one Ray folder job shares."""

    spec: DenoiserSpec
    model: ShippedModel
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    tile: bool | None
    overwrite: bool
    skip_existing: bool


def connect(address: str | None = None, num_cpus: int | None = None, quiet: bool = False) -> None:
    """Connect to the Ray cluster at ``address``, or start a local one (``num_cpus`` CPUs).

    Does nothing when this process is already connected. Ray's dashboard is
    not started and its own log level is WARNING. With ``quiet``, Ray's own
    output is kept off this process's terminal (see :func:`silence_ray`): its
    log level is ERROR and the workers' output is not sent here (it stays in
    the log files of Ray's session folder). The error lines that Ray's C++ core
    worker writes to this process's stderr are not stopped here (``n2n-infer
    batch`` captures them).

    Raises:
        RayJobError: the cluster cannot be reached; the message names ``address``.
    """
    if ray.is_initialized():
        return
    if quiet:
        silence_ray()
    try:
        ray.init(
            address=address,
            num_cpus=num_cpus,
            include_dashboard=False,
            logging_level=logging.ERROR if quiet else logging.WARNING,
            log_to_driver=not quiet,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"at {address}" if address else "(local)"
        raise RayJobError(f"cannot connect to the Ray cluster {where}: {exc}") from None
    if quiet:
        silence_ray()  # again: ray.init set the "ray" logger up


def silence_ray() -> None:
    """Keep Ray's own output off this process's terminal, for the rest of the process.

    The ``ray`` logger (and Ray Data's console handlers; its log files in the
    session folder are kept) show errors only, and Ray's Python warnings (an
    operator's concurrency, deprecations) are ignored. ``n2n-infer batch
    --engine ray`` calls it (through :func:`connect`) unless ``-v`` is given.
    """
    logging.getLogger("ray").setLevel(logging.ERROR)
    data = logging.getLogger("ray.data")
    for handler in data.handlers:
        if not isinstance(handler, logging.FileHandler) and "File" not in type(handler).__name__:
            handler.setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"ray(\.|$)")


def denoise_folder_ray(
    spec: DenoiserSpec,
    in_dir: str | Path,
    out_dir: str | Path,
    overwrite: bool = False,
    skip_existing: bool = False,
    reference_dir: str | Path | None = None,
    on_file: Callable[[FileResult], None] | None = None,
    recursive: bool = False,
    tile: bool | None = None,
    workers: int = 1,
    cpus_per_worker: float = 1,
    gpus_per_worker: float = 0,
    split_stacks: bool | None = None,
) -> tuple[BatchReport, list[str]]:
    """:func:`n2n_infer.batch.denoise_folder` on Ray Data, with ``workers`` Denoiser actors.

    Uses the Ray cluster this process is connected to (see :func:`connect`; a
    local one is started when none is). Each worker reserves
    ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs; with
    ``spec.intra_op_threads`` 0, onnxruntime uses ``cpus_per_worker`` threads.
    Files stream through the cluster: at no time does the driver hold more
    than a few blocks of images. Returns the report (in name order, as the
    local engine's) and the execution providers the workers used.

    ``split_stacks`` says how TIFF stacks run (see the module): ``None`` (the
    default) splits them by planes over the workers when the job's stacks are
    fewer than ``workers`` (and any stack larger than :data:`MAX_FILE_BYTES`,
    which cannot travel whole), else each stack is one task; ``True`` splits
    every stack; ``False`` none (a stack over :data:`MAX_FILE_BYTES` then fails
    by name). Split stacks run first, on actors of their own, then the other
    files; a model that takes neighbouring planes (``z_context``) never splits.
    Either way the outputs and the report are the local engine's.

    Raises:
        N2NError: the folders are unusable (as the local engine).
        ModelLoadError: the model is neither bundled nor a file.
        RayJobError: the Ray job stopped; the finished files are written and
            listed in the message's count.
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    ref_dir = None if reference_dir is None else Path(reference_dir)
    start_job(in_dir, out_dir, ref_dir, recursive)
    if spec.intra_op_threads == 0:
        spec = replace(spec, intra_op_threads=max(1, int(cpus_per_worker)))
    ray_job = _RayJob(
        spec,
        ShippedModel.of(spec.model),
        workers,
        cpus_per_worker,
        gpus_per_worker,
        tile,
        overwrite,
        skip_existing,
    )
    results: dict[str, FileResult] = {}
    todo: list[FileJob] = []
    split: list[FileJob] = []
    jobs = plan_jobs(in_dir, out_dir, ref_dir, recursive)
    to_split = _stacks_to_split(jobs, ray_job, split_stacks)
    for job in jobs:
        done = existing_output(job.name, job.dst, overwrite, skip_existing)
        if done is None and job.name in to_split:
            split.append(job)  # read by the driver, streamed: no size limit
            continue
        done = done or _unreadable(job)
        if done is None:
            todo.append(job)
        else:
            results[job.name] = done
            if on_file:
                on_file(done)
    providers: set[str] = set()
    if split:
        used, whole = _run_split(ray_job, split, results, on_file)
        providers.update(used)
        todo = _readable(whole, results, on_file) + todo
    if todo:
        providers.update(_run(ray_job, todo, results, on_file))
    return BatchReport([results[job.name] for job in jobs]), sorted(providers)


def _readable(
    jobs: list[FileJob],
    results: dict[str, FileResult],
    on_file: Callable[[FileResult], None] | None,
) -> list[FileJob]:
    """``jobs`` that can travel whole; the others' errors recorded (see :func:`_unreadable`)."""
    kept = []
    for job in jobs:
        done = _unreadable(job)
        if done is None:
            kept.append(job)
        else:
            results[job.name] = done
            if on_file:
                on_file(done)
    return kept


def _run(
    ray_job: _RayJob,
    todo: list[FileJob],
    results: dict[str, FileResult],
    on_file: Callable[[FileResult], None] | None,
) -> list[str]:
    """Denoise ``todo`` on the workers, write each output as it comes; the providers used."""
    by_name = {job.name: job for job in todo}
    providers: set[str] = set()
    rows = _stream(ray_job, todo)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except Exception as exc:  # whatever stops Ray's stream stops the job
            raise _stopped(exc, results) from exc
        job = by_name[str(row["name"])]
        results[job.name] = _finish(job, row, ray_job)
        providers.update(p for p in str(row["providers"]).split(",") if p)
        if on_file:
            on_file(results[job.name])
    return sorted(providers)


def _stopped(exc: Exception, results: dict[str, FileResult]) -> RayJobError:
    done = sum(r.status == "ok" for r in results.values())
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return RayJobError(
        f"the Ray job stopped after {done} files were written ({type(exc).__name__}: {first}); "
        "rerun with --skip-existing to finish it"
    )


def _stream(ray_job: _RayJob, todo: list[FileJob]) -> Iterator[dict[str, Any]]:
    """Result rows as the workers finish them: read on this node, denoise anywhere."""
    connect()
    ray.data.DataContext.get_current().enable_progress_bars = False
    here = ray.get_runtime_context().get_node_id()
    items = [
        {"name": j.name, "src": str(j.src), "ref": str(j.ref) if j.has_reference else ""}
        for j in todo
    ]
    blocks = -(-len(items) // FILES_PER_BATCH)
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    ds = ds.map_batches(
        _read_files,
        batch_size=FILES_PER_BATCH,
        batch_format="numpy",
        num_cpus=0,  # reading is I/O; the CPUs are the workers'
        compute=ray.data.TaskPoolStrategy(size=READ_TASKS),  # 0 CPUs: no limit without this
        label_selector={"ray.io/node-id": here},  # the files are on this node
    )
    with warnings.catch_warnings():  # no named parameter bounds the restarts yet (Ray 2.60)
        warnings.simplefilter("ignore", RayDeprecationWarning)
        ds = ds.map_batches(
            DenoiseFiles,
            fn_constructor_kwargs={
                "spec": ray_job.spec,
                "model": ray_job.model,
                "tile": ray_job.tile,
            },
            batch_size=FILES_PER_BATCH,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=ray_job.workers),
            num_cpus=ray_job.cpus_per_worker,
            num_gpus=ray_job.gpus_per_worker,
            max_restarts=MAX_RESTARTS,
            max_task_retries=MAX_RESTARTS,
        )
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for i in range(len(batch["name"])):
            yield {k: batch[k][i] for k in OUT_COLUMNS}


def _finish(job: FileJob, row: dict[str, Any], ray_job: _RayJob) -> FileResult:
    """Write a worker's output for ``job`` (atomically, checked as the local engine does)."""
    result = result_of(row)
    if result.status != "ok":
        log.info("%s: %s", job.src, result.error)
        return result
    data = bytes(row["output"])

    def write() -> FileResult:
        existing = existing_output(job.name, job.dst, ray_job.overwrite, ray_job.skip_existing)
        if existing is not None:  # appeared while the workers ran
            return existing
        check_destination(job.dst, job.in_root, job.src)
        write_atomic(job.dst, lambda f: f.write(data))
        return job.noted(result)

    worker_seconds = result.seconds
    finished = run_guarded(job.name, job.dst, write)
    finished.seconds += worker_seconds
    return finished


# --- TIFF stacks split by planes ----------------------------------------------------------


def _is_stack(path: Path) -> bool:
    """Whether ``path`` is a TIFF stack that the driver may split (a TIFF name: a stack
    under another name fails on its output's name, which is left to
    :func:`~n2n_infer.batch.convert_file` on whichever path)."""
    return path.suffix.lower() in tiff16.FORMAT.suffixes and stacks.is_stack(path)


def _too_large(path: Path) -> bool:
    """Whether ``path`` is larger than a file that travels whole may be."""
    try:
        return path.stat().st_size > MAX_FILE_BYTES
    except OSError:
        return False


def _stacks_to_split(jobs: list[FileJob], ray_job: _RayJob, split_stacks: bool | None) -> set[str]:
    """The names of the stacks among ``jobs`` (those still to do) that run split by planes.

    ``split_stacks`` True: all; False: none; None: all when they are fewer than the
    workers (whole, they would leave some idle), else those too large to travel whole.
    """
    if split_stacks is False:
        return set()
    found = [
        job
        for job in jobs
        if existing_output(job.name, job.dst, ray_job.overwrite, ray_job.skip_existing) is None
        and _is_stack(job.src)
    ]
    if split_stacks or len(found) < ray_job.workers:
        chosen = found
    else:
        chosen = [job for job in found if _too_large(job.src)]
    if chosen:
        log.info(
            "%d of %d TIFF stacks split by planes over %d workers",
            len(chosen),
            len(found),
            ray_job.workers,
        )
    return {job.name for job in chosen}


def _run_split(
    ray_job: _RayJob,
    jobs: list[FileJob],
    results: dict[str, FileResult],
    on_file: Callable[[FileResult], None] | None,
) -> tuple[list[str], list[FileJob]]:
    """Denoise the stacks ``jobs`` split by planes over actors of their own, one stack
    after another; (the providers used, the jobs to run whole instead: all of them
    for a model that takes neighbouring planes).

    Raises:
        RayJobError: the actors cannot start, or the Ray job stopped (the stacks
            finished before are written).
    """
    connect()
    actors = _plane_actors(ray_job)
    try:
        try:
            facts = ray.get([actor.facts.remote() for actor in actors])
        except Exception as exc:  # the actors could not start (a model the workers refuse)
            raise _stopped(exc, results) from exc
        if any(f["z_context"] for f in facts):
            log.info("the model takes neighbouring planes: each stack is one task, not split")
            return [], jobs
        for job in jobs:
            planes = _RemotePlanes(actors, ray_job.spec)
            result = run_guarded(
                job.name, job.src, lambda j=job, p=planes: _convert_split(j, p, ray_job)
            )
            if planes.stopped is not None:
                raise _stopped(planes.stopped, results) from planes.stopped
            results[job.name] = result
            if on_file:
                on_file(result)
        return sorted({p for f in facts for p in f["providers"].split(",") if p}), []
    finally:
        _release(actors)


def _plane_actors(ray_job: _RayJob) -> list[Any]:
    """``ray_job.workers`` :class:`DenoisePlanes` actors, each with a worker's resources."""
    remote = ray.remote(DenoisePlanes).options(
        num_cpus=ray_job.cpus_per_worker,
        num_gpus=ray_job.gpus_per_worker,
        max_restarts=MAX_RESTARTS,
        max_task_retries=MAX_RESTARTS,
    )
    return [remote.remote(ray_job.spec, ray_job.model) for _ in range(ray_job.workers)]


def _release(actors: list[Any]) -> None:
    """Let the actors remove their scratch folders, then end them."""
    try:
        ray.get([actor.close.remote() for actor in actors], timeout=30)
    except Exception as exc:  # a dead actor has nothing left to remove
        log.debug("closing the stack actors: %s", exc)
    for actor in actors:
        ray.kill(actor)


def _convert_split(job: FileJob, planes: _RemotePlanes, ray_job: _RayJob) -> FileResult:
    """The local engine's steps for one file (:func:`~n2n_infer.batch.convert_file`, here
    on the driver), with the planes denoised on the workers."""
    existing = existing_output(job.name, job.dst, ray_job.overwrite, ray_job.skip_existing)
    if existing is not None:  # appeared meanwhile
        return existing
    ref = job.ref if job.has_reference else None
    denoiser = cast("Denoiser", planes)  # all the stack path asks of its Denoiser
    result = convert_file(
        denoiser, job.src, job.dst, job.name, ref, ray_job.tile, job.in_root, None, job.single
    )
    return job.noted(result)


def _chunking(plane_bytes: int, batch_size: int, workers: int) -> tuple[int, int]:
    """(planes per chunk, chunks in flight) for planes of ``plane_bytes`` bytes: a
    Denoiser batch a chunk (fewer planes past :data:`CHUNK_MAX_BYTES`), two chunks per
    worker in flight, at most :data:`IN_FLIGHT_BYTES` of them (two at least)."""
    plane_bytes = max(1, plane_bytes)
    per_chunk = batch_size
    if plane_bytes * batch_size > CHUNK_MAX_BYTES:
        per_chunk = max(1, CHUNK_MAX_BYTES // plane_bytes)
    in_flight = min(CHUNKS_PER_WORKER * workers, IN_FLIGHT_BYTES // (per_chunk * plane_bytes))
    return per_chunk, max(2, in_flight)


class _RemotePlanes:
    """A :class:`~n2n_infer.Denoiser`'s stand-in on the driver for one split stack.

    :func:`~n2n_infer.stacks.denoise_stack_file` asks its Denoiser for ``levels``
    and :meth:`denoise_iter` only: the driver reads the stack, finds its levels
    once and maps the planes as the local engine does, and this sends them to
    the :class:`DenoisePlanes` actors in chunks (the least busy actor first),
    giving the results back in order. At most ``in_flight`` chunks are sent and
    not yet given back (:func:`_chunking`), so the driver holds a few chunks,
    never the stack. ``peak`` is the most chunks that were in flight at once,
    ``chunks`` how many were sent; ``stopped`` the Ray failure (an actor gone for
    good, the cluster lost) that stopped it, if any.
    """

    def __init__(self, actors: list[Any], spec: DenoiserSpec) -> None:
        self.levels = spec.levels
        self.batch_size = spec.batch_size
        self._actors = actors
        self._busy = [0] * len(actors)
        self.chunks = 0
        self.peak = 0
        self.stopped: Exception | None = None

    def denoise(
        self,
        image: Any,
        tile: bool | None = None,
        on_tile: Callable[[int, int], None] | None = None,
    ) -> Any:
        """One image on a worker (a file planned as a stack that is one image by now)."""
        return next(iter(self.denoise_iter([image], tile=tile)))

    def denoise_iter(
        self,
        images: Iterable[Any],
        layout: str = "hwc",
        tile: bool | None = None,
        levels: str | None = None,
    ) -> Iterator[Any]:
        """The denoised ``images``, in order, denoised on the workers chunk by chunk
        (``levels``: as :meth:`~n2n_infer.Denoiser.denoise_iter` takes it).

        Raises:
            N2NError: a chunk failed on its worker (the message says why).
            ray.exceptions.RayError: Ray failed (``stopped`` is set).
        """
        window: deque[tuple[Any, int, int, int]] = deque()  # (result, actor, first, count)
        chunk: list[Any] = []
        per_chunk = in_flight = 0
        sent = 0
        for image in images:
            if not per_chunk:  # from the first plane: they are all alike
                nbytes = int(getattr(image, "nbytes", 0))
                per_chunk, in_flight = _chunking(nbytes, self.batch_size, len(self._actors))
            chunk.append(image)
            if len(chunk) == per_chunk:
                if len(window) == in_flight:
                    yield from self._collect(window.popleft())
                window.append(self._send(chunk, sent, (tile, layout, levels), len(window) + 1))
                sent, chunk = sent + len(chunk), []
        if chunk:
            if len(window) == in_flight:
                yield from self._collect(window.popleft())
            window.append(self._send(chunk, sent, (tile, layout, levels), len(window) + 1))
        while window:
            yield from self._collect(window.popleft())

    def _send(
        self,
        chunk: list[Any],
        first: int,
        how: tuple[bool | None, str, str | None],
        in_flight: int,
    ) -> tuple[Any, int, int, int]:
        actor = min(range(len(self._actors)), key=self._busy.__getitem__)
        self._busy[actor] += 1
        self.chunks += 1
        self.peak = max(self.peak, in_flight)
        result = self._actors[actor].denoise.remote(chunk, *how)  # tile, layout, levels
        return result, actor, first, len(chunk)

    def _collect(self, sent: tuple[Any, int, int, int]) -> list[Any]:
        result, actor, first, count = sent
        try:
            planes, error = ray.get(result)
        except ray.exceptions.RayError as exc:
            if not isinstance(exc, ray.exceptions.RayTaskError):
                self.stopped = exc
            raise
        finally:
            self._busy[actor] -= 1
        if error:
            raise N2NError(f"{error} (planes {first}-{first + count - 1}, on a Ray worker)")
        return list(planes)
