"""The folder job: denoise every image of a folder (tree) into another, file by file;
and the same job for one image file (:func:`denoise_file`). A TIFF stack (multi-page
TIFF, ImageJ hyperstack, OME-TIFF) is one file: denoised plane by plane, streamed
into one output TIFF (:mod:`n2n_infer.stacks`).

A bad file is reported and skipped; the job goes on. Outputs are written
atomically, never inside the input folder (for one file: never in the folder
that holds it), and never over an existing file unless asked.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from n2n_infer import stacks
from n2n_infer.denoiser import Denoiser
from n2n_infer.errors import ImageError, N2NError, first_line
from n2n_infer.files import (
    is_temp_name,
    kind_of,
    remove_stale_temp,
    resolve_target,
    temp_name,
    visible_files,
    write_text_atomic,
)
from n2n_infer.imageio import (
    SUFFIXES,
    UNSUPPORTED,
    as_rgb_u8,
    check_writable,
    read_file,
    read_image,
    write_file,
)
from n2n_infer.metrics import psnr

log = logging.getLogger(__name__)


@dataclass
class FileResult:
    """What happened to one input file (``name`` is relative to the input folder)."""

    name: str
    status: str  # "ok", "skipped" (output existed) or "error"
    error: str = ""
    seconds: float = 0.0
    size_hw: tuple[int, int] | None = None
    psnr_noisy: float | None = None
    psnr_denoised: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class BatchReport:
    """Per-file results of a folder job."""

    results: list[FileResult] = field(default_factory=list)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "error"]

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed

    def count(self, status: str) -> int:
        """How many files ended with ``status``."""
        return sum(r.status == status for r in self.results)

    def to_dict(self, **context: Any) -> dict[str, Any]:
        """JSON-ready: ``context`` (e.g. model, providers), totals, and one entry per file."""
        files = []
        for r in self.results:
            entry = asdict(r)
            entry["size_hw"] = list(r.size_hw) if r.size_hw else None
            entry["seconds"] = round(r.seconds, 4)
            files.append(entry)
        totals = {s: self.count(s) for s in ("ok", "skipped", "error")}
        return {**context, "totals": totals, "files": files}


def find_images(in_dir: Path, recursive: bool = False) -> list[Path]:
    """Image files in ``in_dir``, sorted: those the job reads (PNG, JPEG, TIFF, WebP,
    BMP, PPM/PGM, AVIF: :data:`~n2n_infer.imageio.SUFFIXES`) and those it refuses by name
    (HEIF, camera RAW, GIF, ...: :data:`~n2n_infer.imageio.UNSUPPORTED`), so that
    these are reported as failed files instead of passed over. Other files are left.

    With ``recursive``, subfolders are searched too (hidden ones are not), symbolic
    links to folders followed (each real folder once: a link back up the tree is
    not followed again). A name with an image suffix that is not a folder is
    listed even when it is not a readable file (a broken link, a FIFO), so that
    the job reports it.
    """
    wanted = (*SUFFIXES, *UNSUPPORTED)
    found = [p for p in visible_files(in_dir, recursive) if p.suffix.lower() in wanted]
    return sorted(found, key=lambda p: p.relative_to(in_dir).as_posix())


def check_folders(in_dir: Path, out_dir: Path, recursive: bool = False) -> None:
    """Refuse every layout where an output could land in the input folder.

    OUT may not be IN or lie inside it; with ``recursive``, IN may not lie inside
    OUT either (``IN/x/a.png`` would be written to ``OUT/x/a.png``, which can be an
    input). Symbolic links are followed. Outputs reached through a link inside
    OUT are checked file by file (see :func:`denoise_folder`).

    Raises:
        N2NError: with a message naming the folders.
    """
    if in_dir.exists() and not in_dir.is_dir():
        raise N2NError(f"{in_dir}: is a file, not a folder: give the folder that holds the images")
    if not in_dir.is_dir():
        what = "input file" if is_image_name(in_dir) else "input folder"
        raise N2NError(f"{in_dir}: {what} not found")
    src, dst = in_dir.resolve(), out_dir.resolve()
    if dst == src or src in dst.parents:
        raise N2NError(f"output folder {out_dir} is inside input folder {in_dir}; choose another")
    if recursive and dst in src.parents:
        raise N2NError(
            f"input folder {in_dir} is inside output folder {out_dir}: with --recursive, "
            "outputs could overwrite inputs; choose an output folder outside it"
        )


def prepare_output(out_dir: Path) -> None:
    """Create ``out_dir`` if needed and check that a file can be created in it.

    Raises:
        N2NError: it is a file, lies under a file, or is not writable.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise N2NError(f"output folder {out_dir} is an existing file, not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / temp_name("write-check")
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink(missing_ok=True)  # another job's cleanup may have taken it already
    except OSError as exc:
        raise N2NError(f"output folder {out_dir} is not writable: {exc.strerror or exc}") from None


def check_report_path(report: Path, in_dir: Path) -> Path:
    """``report``, checked as the place a JSON report will be written to (see
    :func:`write_report`); a symbolic link is followed to check what it leads to.
    ``in_dir`` is the input folder, or the input file of a single-file job (then
    the report may not be in the folder that holds it: see :func:`lands_in_input`).

    ``-``, ``/dev/stdout``, ``/dev/stderr`` and ``/dev/fd/N`` (the report goes to
    that open descriptor), a FIFO and a character device (written into) pass as
    they are; otherwise the report file's folder is created if needed.

    Raises:
        N2NError: it lies in the input folder, is a folder (or a socket, a block
            device), lies under a file, or its folder is not writable; the
            message names the report path.
    """
    if str(report) == "-":
        return report
    try:
        target, fd = resolve_target(report)
    except OSError as exc:
        raise N2NError(f"report file {report}: {exc.strerror or exc}") from None
    if fd is not None:
        return report
    if lands_in_input(target, in_dir):
        where = "input folder" if in_dir.is_dir() else "the folder of input file"
        raise N2NError(f"report file {report} is inside {where} {in_dir}; choose another")
    if target.is_dir():
        raise N2NError(f"report file {report} is a folder; give a file name such as report.json")
    kind = kind_of(target.stat().st_mode) if target.exists() else "regular file"
    if kind in ("FIFO", "character device"):
        return report
    if kind != "regular file":
        raise N2NError(
            f"report file {report} is a {kind}, not a regular file; "
            "give a file name such as report.json"
        )
    try:
        prepare_output(target.parent)
    except N2NError as exc:
        raise N2NError(f"report file {report}: its {exc}") from None
    return report


def check_reference(reference_dir: Path | None) -> None:
    """Refuse a ``reference_dir`` that is given but is not a folder.

    Raises:
        N2NError: naming the folder.
    """
    if reference_dir is None or Path(reference_dir).is_dir():
        return
    if Path(reference_dir).exists():
        raise N2NError(
            f"reference folder {reference_dir} is a file: with a folder as IN, give the "
            "folder of clean images with the same names"
        )
    raise N2NError(f"reference folder {reference_dir} not found (or not a folder)")


def remove_stale_temp_files(out_dir: Path, in_dir: Path, recursive: bool = False) -> list[Path]:
    """Delete the temporary files that a killed run left in ``out_dir``; those deleted.

    Only names that :func:`n2n_infer.files.temp_name` makes are removed, only in
    the folders the job writes to (``out_dir``, and its subfolders with
    ``recursive``), never inside ``in_dir`` and never through a symbolic link;
    and only those that are provably stale: a temporary file that another live
    job (or any live writer) is writing is locked by it and kept (see
    :func:`n2n_infer.files.remove_stale_temp`).
    """
    candidates, src = [], in_dir.resolve()
    for folder, dirs, files in os.walk(out_dir):
        here = Path(folder)
        dirs[:] = [d for d in dirs if recursive and (here / d).resolve() != src]
        real = here.resolve()
        if real == src or src in real.parents:
            continue
        candidates += [here / f for f in files if is_temp_name(f)]
    removed = [p for p in candidates if remove_stale_temp(p)]
    for p in removed:
        log.info("removed %s (left by an interrupted run)", p)
    return removed


def start_job(
    in_dir: Path, out_dir: Path, reference_dir: Path | None = None, recursive: bool = False
) -> None:
    """Check the folders, create ``out_dir`` and remove what an interrupted run left in it.

    The first step of a folder job on any engine (see :func:`denoise_folder`).

    Raises:
        N2NError: the folders are unusable (see :func:`check_folders`,
            :func:`prepare_output`, :func:`check_reference`).
    """
    check_folders(in_dir, out_dir, recursive)
    check_reference(reference_dir)
    prepare_output(out_dir)
    remove_stale_temp_files(out_dir, in_dir, recursive)


@dataclass(frozen=True)
class FileJob:
    """One input file of a folder job and where its output (and reference) are."""

    src: Path
    rel: Path
    dst: Path
    in_root: Path  # the input folder, resolved (a single file's: the folder holding it)
    ref: Path | None
    single: bool = False  # one file: only in_root and src's folder, not their subfolders

    @property
    def name(self) -> str:
        """The name the report uses: the path relative to the input folder, with ``/``."""
        return self.rel.as_posix()

    @property
    def has_reference(self) -> bool:
        """Whether a reference image is there to read (a broken link counts: it fails)."""
        return self.ref is not None and (self.ref.exists() or self.ref.is_symlink())

    def noted(self, result: FileResult) -> FileResult:
        """``result``, with a note when a reference folder was given but has no image here."""
        if result.status == "ok" and self.ref is not None and not self.has_reference:
            result.notes.append(f"no reference image {self.ref}: PSNR not measured")
        return result


def plan_jobs(
    in_dir: Path, out_dir: Path, reference_dir: Path | None = None, recursive: bool = False
) -> list[FileJob]:
    """One :class:`FileJob` per image of ``in_dir`` (see :func:`find_images`), in name order."""
    jobs, in_root = [], in_dir.resolve()
    for src in find_images(in_dir, recursive):
        rel = src.relative_to(in_dir)
        ref = reference_dir / rel if reference_dir is not None else None
        jobs.append(FileJob(src, rel, out_dir / rel, in_root, ref))
    return jobs


def denoise_folder(
    denoiser: Denoiser,
    in_dir: str | Path,
    out_dir: str | Path,
    overwrite: bool = False,
    skip_existing: bool = False,
    reference_dir: str | Path | None = None,
    on_file: Callable[[FileResult], None] | None = None,
    recursive: bool = False,
    tile: bool | None = None,
    on_tile: Callable[[str, int, int], None] | None = None,
    on_plane: Callable[[str, int, int], None] | None = None,
) -> BatchReport:
    """Denoise each image of ``in_dir`` into ``out_dir`` under the same relative name.

    An existing output is an error unless ``overwrite`` (replace it) or
    ``skip_existing`` (leave it) is set. With ``reference_dir``, a clean image
    of the same relative name there gives each file's PSNR before and after.
    ``recursive`` mirrors subfolders; ``tile`` is passed to
    :meth:`Denoiser.denoise`. ``on_file`` is called after each file;
    ``on_tile(name, done, total)`` after each tile of a tiled image, ``on_plane(name,
    done, total)`` after each plane of a TIFF stack.

    Nothing is ever written inside ``in_dir``: the folders are checked first
    (:func:`check_folders`), and each output's real location (links followed)
    again before it is written. A failure of any kind on one file is recorded
    in the report and the job goes on. :func:`n2n_infer.ray.denoise_folder_ray`
    runs the same job on Ray Data through the same steps.

    Raises:
        N2NError: the folders are unusable (see :func:`check_folders`,
            :func:`prepare_output`, :func:`check_reference`).
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    ref_dir = None if reference_dir is None else Path(reference_dir)
    start_job(in_dir, out_dir, ref_dir, recursive)
    report = BatchReport()
    for job in plan_jobs(in_dir, out_dir, ref_dir, recursive):
        result = run_guarded(
            job.name,
            job.src,
            lambda j=job: _denoise_file(
                denoiser, j, overwrite, skip_existing, tile, on_tile, on_plane
            ),
        )
        report.results.append(result)
        if on_file:
            on_file(result)
    return report


def file_reference(in_file: Path, reference: Path | None) -> Path | None:
    """The clean image for a single-file job: ``reference`` itself when it is a file,
    the image of ``in_file``'s name in it when it is a folder (missing there: a note).

    Raises:
        N2NError: ``reference`` is given but does not exist.
    """
    if reference is None:
        return None
    if reference.is_dir():
        return reference / in_file.name
    if not (reference.exists() or reference.is_symlink()):
        raise N2NError(f"reference {reference} not found (give a clean image, or a folder of them)")
    return reference


def start_file_job(in_file: Path, out: str | Path, reference: Path | None = None) -> Path:
    """Check a single-file job (:func:`check_file_job`, :func:`file_reference`), create
    the output's folder, remove what an interrupted run left in it; the output's path.

    Raises:
        N2NError: the input, the output or the reference is unusable.
    """
    dst = check_file_job(in_file, out)
    file_reference(in_file, reference)
    prepare_output(dst.parent)
    # dst.parent is not the folder of in_file (checked): its own stale files are removed
    remove_stale_temp_files(dst.parent, in_file)
    return dst


def denoise_file(
    denoiser: Denoiser,
    in_file: str | Path,
    out: str | Path,
    overwrite: bool = False,
    skip_existing: bool = False,
    reference: str | Path | None = None,
    on_file: Callable[[FileResult], None] | None = None,
    tile: bool | None = None,
    on_tile: Callable[[str, int, int], None] | None = None,
    on_plane: Callable[[str, int, int], None] | None = None,
) -> BatchReport:
    """Denoise the one image file ``in_file`` into ``out``: a folder (the output keeps
    the input's name) or an image file name of the input's format (see
    :func:`single_target`).

    The folder job's steps and rules for one file (see :func:`denoise_folder`): an
    existing output is an error unless ``overwrite`` or ``skip_existing``; the write
    is atomic; a failure is the report's one ``"error"`` result. Nothing is written
    in the folder that holds ``in_file`` (checked first and again before the write).
    ``reference`` is a clean image, or a folder holding one of the same name.

    Raises:
        N2NError: the input, the output or the reference is unusable (see
            :func:`start_file_job`).
    """
    in_file = Path(in_file)
    ref_path = None if reference is None else Path(reference)
    dst = start_file_job(in_file, out, ref_path)
    ref = file_reference(in_file, ref_path)
    job = FileJob(in_file, Path(in_file.name), dst, input_folders(in_file)[0], ref, single=True)
    result = run_guarded(
        job.name,
        job.src,
        lambda: _denoise_file(denoiser, job, overwrite, skip_existing, tile, on_tile, on_plane),
    )
    if on_file:
        on_file(result)
    return BatchReport([result])


def run_guarded(name: str, src: Path, work: Callable[[], FileResult]) -> FileResult:
    """``work()``, timed; any exception becomes an ``"error"`` result for ``name``.

    The error text is one line, without the leading ``src`` path (the report
    names the file); ``src`` is the path the work reads from.
    """
    t0 = time.perf_counter()
    try:
        result = work()
    except Exception as exc:  # any failure of one file is reported and the job goes on
        message = _message(exc, src)
        log.info("%s: %s", src, message)
        result = FileResult(name, "error", message)
    result.seconds = time.perf_counter() - t0
    return result


def existing_output(
    name: str, dst: Path, overwrite: bool, skip_existing: bool
) -> FileResult | None:
    """The result for a file whose output ``dst`` exists, or ``None`` when it is to be written.

    ``"skipped"`` with ``skip_existing``; an ``"error"`` unless ``overwrite``.
    """
    if not dst.exists() or overwrite:
        return None
    if skip_existing:
        return FileResult(name, "skipped")
    return FileResult(name, "error", f"{dst} exists (use --overwrite or --skip-existing)")


def check_destination(
    dst: Path, in_root: Path, src: Path | None = None, single: bool = False
) -> None:
    """Create ``dst``'s folder and refuse a ``dst`` whose real location (symbolic links
    followed, the last one included) is in ``in_root`` or in the real folder of
    ``src`` (an input reached through a linked folder).

    With ``single`` (a single-file job: ``in_root`` is the folder holding ``src``),
    only a location directly in those folders is refused, not one in a subfolder.

    Raises:
        N2NError: ``dst`` leads into the (resolved) input folder ``in_root``.
        OSError: the folder cannot be created.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    real, _ = resolve_target(dst)  # links followed to the end: the write follows them too
    roots = [in_root] if src is None else [in_root, src.resolve().parent]
    if _inside(real, roots, subfolders=not single):
        raise N2NError(f"refused to write {dst}: it leads into an input folder (as {real})")


def _inside(real: Path, roots: list[Path], subfolders: bool = True) -> bool:
    """Whether the resolved path ``real`` is one of ``roots`` or lies in one (directly,
    or at any depth with ``subfolders``)."""
    for root in roots:
        if real == root or real.parent == root or (subfolders and root in real.parents):
            return True
    return False


def input_folders(in_file: Path) -> list[Path]:
    """The folders a single-file job never writes into: the one holding ``in_file`` as
    named, and the one holding the file it is (symbolic links followed), both resolved."""
    named = Path(os.path.abspath(in_file)).parent.resolve()
    real = in_file.resolve().parent
    return [named] if real == named else [named, real]


def lands_in_input(real: Path, in_path: Path) -> bool:
    """Whether writing the resolved path ``real`` would write into the input ``in_path``:
    inside it at any depth when it is a folder; directly in the folder that holds it
    (:func:`input_folders`) when it is a file, a subfolder there being allowed."""
    if in_path.is_dir():
        return _inside(real, [in_path.resolve()])
    return _inside(real, input_folders(in_path), subfolders=False)


def is_image_name(path: Path) -> bool:
    """Whether ``path``'s suffix is one the job lists: read (:data:`SUFFIXES`) or refused
    by name (:data:`UNSUPPORTED`)."""
    return path.suffix.lower() in SUFFIXES or path.suffix.lower() in UNSUPPORTED


def _format_word(suffix: str) -> str:
    """The format a suffix is written as (``.jpeg`` and ``.jpg``: JPEG); a suffix that
    is not read stands for itself."""
    return SUFFIXES.get(suffix.lower(), suffix.lower())


def single_target(in_file: Path, out: str | Path) -> Path:
    """Where the single-file job writes ``in_file``: ``out/<its name>`` when ``out`` is a
    folder (an existing one, a name ending with a separator, or a new name without an
    image suffix: created), else ``out`` itself (an image file name: ``clean.png``; an
    existing file, which :func:`check_file_job` then judges)."""
    text = os.fspath(out)
    path = Path(text)
    ends_with_separator = text.endswith(os.sep) or bool(os.altsep and text.endswith(os.altsep))
    if ends_with_separator or path.is_dir():
        return path / in_file.name
    if path.exists() or path.is_symlink() or is_image_name(path):
        return path
    return path / in_file.name


def check_file_job(in_file: Path, out: str | Path) -> Path:
    """Check a single-file job (IN is one image file) and return the output file's path
    (see :func:`single_target`).

    IN must be a regular file (symbolic links followed) with an image suffix; an
    output file name must name IN's format (``.jpeg`` for a ``.jpg`` passes: the
    output keeps its input's format); the output may not land in the folder that
    holds IN (:func:`input_folders`; a subfolder such as ``out/`` beside it is fine).

    Raises:
        N2NError: with a message naming the path.
    """
    try:
        mode = in_file.stat().st_mode
    except OSError as exc:
        if in_file.is_symlink():
            raise N2NError(f"{in_file}: a symbolic link to nothing ({exc.strerror})") from None
        raise N2NError(f"{in_file}: input not found: {exc.strerror or exc}") from None
    kind = kind_of(mode)
    if kind != "regular file":
        raise N2NError(f"{in_file}: is a {kind}, not an image file or a folder of images")
    if not is_image_name(in_file):
        raise N2NError(
            f"{in_file}: not an image file name (known: {', '.join(sorted(SUFFIXES))}); "
            "give an image file or the folder that holds the images"
        )
    dst = single_target(in_file, out)
    fmt = _format_word(in_file.suffix)
    if _format_word(dst.suffix) != fmt:
        if (dst.exists() or dst.is_symlink()) and not is_image_name(dst):
            raise N2NError(f"output {dst} is an existing file, not a folder or an image file")
        raise N2NError(
            f"output {dst}: the input {in_file.name} is written as {fmt} (an output keeps "
            f"its input's format): name it {dst.with_suffix(in_file.suffix).name}, "
            "or give a folder"
        )
    try:
        real, _ = resolve_target(dst)
    except OSError as exc:
        raise N2NError(f"output {dst}: {exc.strerror or exc}") from None
    if _inside(real, input_folders(in_file), subfolders=False):
        raise N2NError(
            f"refused to write {dst} into {in_file.parent}, the folder of input {in_file}: "
            f"choose another folder (such as {Path('denoised') / dst.name})"
        )
    return dst


def convert_file(
    denoiser: Denoiser,
    src: Path,
    dst: Path,
    name: str,
    ref: Path | None = None,
    tile: bool | None = None,
    in_root: Path | None = None,
    on_tile: Callable[[int, int], None] | None = None,
    single: bool = False,
    on_plane: Callable[[int, int], None] | None = None,
) -> FileResult:
    """Read ``src``, denoise it, write ``dst`` like ``src`` (format, bit depth, ICC, EXIF).

    With ``in_root``, ``dst`` is checked with :func:`check_destination` (``single``:
    as for a single-file job) just before it is written. With a ``ref`` file, the
    result has the PSNR of the input and of the output against it; ``ref`` is read
    and checked before anything is denoised or written. ``on_tile(done, total)`` is called after
    each tile of a tiled image. The result is ``"ok"``, for ``name``.

    A TIFF stack (:func:`n2n_infer.stacks.is_stack`) goes to
    :func:`n2n_infer.stacks.denoise_stack_file` instead: its planes stream into
    ``dst``, checked as above before it is written; ``ref`` is not compared (a note
    says so), ``on_tile`` is not called and ``on_plane(done, total)`` is, after each
    plane.

    Raises:
        ImageError: ``src`` cannot be read or ``dst``'s format cannot hold the
            pixels; ``ref`` cannot be read or is of another size.
        N2NError: ``dst`` leads into ``in_root``; the denoiser fails.
        OSError: ``dst`` cannot be written.
    """
    if src.suffix.lower() not in UNSUPPORTED and stacks.is_stack(src):  # RAW files are TIFFs
        return _convert_stack(denoiser, src, dst, name, ref, tile, in_root, single, on_plane)
    k = getattr(denoiser, "z_context", 0)
    if k:
        raise ImageError(
            f"{src}: a single 2-D image, but the model is a z-context model (plane z of a "
            f"stack denoised from planes z-{k}..z+{k}): only TIFF stacks with a Z axis are "
            "denoised with it"
        )
    loaded = read_file(src)
    check_writable(dst, loaded, src)  # a 16-bit PNG named .jpg: refused before denoising
    clean = None if ref is None else _reference(ref, loaded.pixels)  # fails before any output
    denoised = denoiser.denoise(loaded.pixels, tile=tile, on_tile=on_tile)
    if in_root is not None:
        check_destination(dst, in_root, src, single)
    write_file(dst, loaded, denoised)
    result = FileResult(name, "ok", size_hw=loaded.pixels.shape[:2], notes=list(loaded.notes))
    if clean is not None:
        result.psnr_noisy = psnr(as_rgb_u8(loaded.pixels), clean)
        result.psnr_denoised = psnr(as_rgb_u8(denoised), clean)
    return result


def _convert_stack(
    denoiser: Denoiser,
    src: Path,
    dst: Path,
    name: str,
    ref: Path | None,
    tile: bool | None,
    in_root: Path | None,
    single: bool,
    on_plane: Callable[[int, int], None] | None = None,
) -> FileResult:
    """:func:`convert_file` for a TIFF stack: :func:`n2n_infer.stacks.denoise_stack_file`,
    ``dst`` checked with :func:`check_destination` once ``src`` is, before it is written.
    A reference is not compared (noted)."""

    def check() -> None:
        if in_root is not None:
            check_destination(dst, in_root, src, single)

    stack = stacks.denoise_stack_file(
        denoiser, src, dst, tile=tile, before_write=check, on_plane=on_plane
    )
    info = stack.info
    how = "with z-context" if getattr(denoiser, "z_context", 0) else "plane by plane"
    notes = [
        f"{info.kind} of {info.planes} planes ({info.axes} {'×'.join(map(str, info.shape))}), "
        f"denoised {how}",
        *stack.notes,
    ]
    if ref is not None:
        notes.append(f"reference {ref}: PSNR is not measured for stacks")
    return FileResult(name, "ok", size_hw=stack.size_hw, notes=notes)


def _denoise_file(
    denoiser: Denoiser,
    job: FileJob,
    overwrite: bool,
    skip_existing: bool,
    tile: bool | None,
    on_tile: Callable[[str, int, int], None] | None = None,
    on_plane: Callable[[str, int, int], None] | None = None,
) -> FileResult:
    existing = existing_output(job.name, job.dst, overwrite, skip_existing)
    if existing is not None:
        return existing
    ref = job.ref if job.has_reference else None
    progress = None if on_tile is None else lambda done, total: on_tile(job.name, done, total)
    planes = None if on_plane is None else lambda done, total: on_plane(job.name, done, total)
    result = convert_file(
        denoiser, job.src, job.dst, job.name, ref, tile, job.in_root, progress, job.single, planes
    )
    return job.noted(result)


def _message(exc: Exception, src: Path) -> str:
    """One line for a failed file, without repeating its path (the report names the file)."""
    text = str(exc).strip().removeprefix(f"{src}: ")
    text = first_line(text, src)
    if isinstance(exc, N2NError | OSError):
        return text or type(exc).__name__
    if isinstance(exc, MemoryError):
        return f"out of memory ({text or 'the image is too large'})"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _reference(ref: Path, noisy: np.ndarray) -> np.ndarray:
    """The clean image ``ref`` as 8-bit RGB, checked against the input's size.

    Raises:
        ImageError: ``ref`` cannot be read or has another size; names ``ref``.
    """
    try:
        clean = read_image(ref)
    except ImageError as exc:
        raise ImageError(f"reference {exc}; nothing written") from None
    if clean.shape[:2] != noisy.shape[:2]:
        raise ImageError(
            f"reference {ref}: size {clean.shape[:2]} differs from the input's "
            f"{noisy.shape[:2]}; nothing written"
        )
    return clean


def write_report(path: Path, report: BatchReport, **context: Any) -> None:
    """Write the report as JSON, atomically (a symbolic link is followed, not replaced).

    ``-``, ``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N``, a FIFO or a character
    device is written into, never replaced (see :func:`n2n_infer.files.write_atomic`).

    Raises:
        OSError: the file cannot be written (a socket or a folder is refused).
    """
    if str(path) != "-":
        target, fd = resolve_target(path)
        if fd is None:
            target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report.to_dict(**context), indent=2, default=_jsonable)
    write_text_atomic(path, text + "\n", stream_ok=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
