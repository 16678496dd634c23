"""The folder job: denoise every image of a folder (tree) into another, file by file.

A bad file is reported and skipped; the job goes on. Outputs are written
atomically, never inside the input folder, and never over an existing file
unless asked.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from n2n_infer.denoiser import Denoiser
from n2n_infer.errors import ImageError, N2NError
from n2n_infer.imageio import (
    SUFFIXES,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    as_rgb_u8,
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
    """Image files (PNG, JPEG, TIFF, WebP, BMP) in ``in_dir``, sorted.

    With ``recursive``, subfolders are searched too (hidden ones are not).
    """
    pattern = "**/*" if recursive else "*"
    found = []
    for p in in_dir.glob(pattern):
        rel = p.relative_to(in_dir)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.is_file() and p.suffix.lower() in SUFFIXES:
            found.append(p)
    return sorted(found, key=lambda p: p.relative_to(in_dir).as_posix())


def check_folders(in_dir: Path, out_dir: Path) -> None:
    """Refuse a missing input folder, and an output folder equal to or inside it.

    Raises:
        N2NError: with a message naming the folders.
    """
    if not in_dir.is_dir():
        raise N2NError(f"{in_dir}: input folder not found")
    src, dst = in_dir.resolve(), out_dir.resolve()
    if dst == src or src in dst.parents:
        raise N2NError(f"output folder {out_dir} is inside input folder {in_dir}; choose another")


def remove_stale_temp_files(out_dir: Path) -> list[Path]:
    """Delete temporary files that a killed run left in ``out_dir`` (see imageio)."""
    stale = [p for p in out_dir.rglob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}") if p.is_file()]
    for p in stale:
        log.info("removing %s (left by an interrupted run)", p)
        p.unlink()
    return stale


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
) -> BatchReport:
    """Denoise each image of ``in_dir`` into ``out_dir`` under the same relative name.

    An existing output is an error unless ``overwrite`` (replace it) or
    ``skip_existing`` (leave it) is set. With ``reference_dir``, a clean image
    of the same relative name there gives each file's PSNR before and after.
    ``recursive`` mirrors subfolders; ``tile`` is passed to
    :meth:`Denoiser.denoise`. ``on_file`` is called after each file.

    Raises:
        N2NError: the folders are unusable (see :func:`check_folders`).
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    check_folders(in_dir, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(out_dir)
    report = BatchReport()
    for src in find_images(in_dir, recursive):
        rel = src.relative_to(in_dir)
        ref = Path(reference_dir) / rel if reference_dir is not None else None
        result = _one_file(denoiser, src, rel, out_dir / rel, overwrite, skip_existing, ref, tile)
        report.results.append(result)
        if on_file:
            on_file(result)
    return report


def _one_file(
    denoiser: Denoiser,
    src: Path,
    rel: Path,
    dst: Path,
    overwrite: bool,
    skip_existing: bool,
    ref: Path | None,
    tile: bool | None,
) -> FileResult:
    t0 = time.perf_counter()
    name = rel.as_posix()
    if dst.exists() and not overwrite:
        if skip_existing:
            return FileResult(name, "skipped")
        return FileResult(name, "error", f"{dst} exists (use --overwrite or --skip-existing)")
    try:
        loaded = read_file(src)
        denoised = denoiser.denoise(loaded.pixels, tile=tile)
        dst.parent.mkdir(parents=True, exist_ok=True)
        write_file(dst, loaded, denoised)
        result = FileResult(name, "ok", size_hw=loaded.pixels.shape[:2], notes=loaded.notes)
        if ref is not None and ref.is_file():
            result.psnr_noisy, result.psnr_denoised = _psnr_pair(loaded.pixels, denoised, ref)
    except (N2NError, OSError) as exc:
        log.warning("%s: %s", src, exc)
        result = FileResult(name, "error", str(exc))
    result.seconds = time.perf_counter() - t0
    return result


def _psnr_pair(noisy: np.ndarray, denoised: np.ndarray, ref: Path) -> tuple[float, float]:
    """PSNR (as 8-bit RGB) of the noisy input and of its denoised result against ``ref``."""
    clean = read_image(ref)
    noisy, denoised = as_rgb_u8(noisy), as_rgb_u8(denoised)
    if clean.shape != noisy.shape:
        raise ImageError(
            f"{ref}: size {clean.shape[:2]} differs from the input's {noisy.shape[:2]}"
        )
    return psnr(noisy, clean), psnr(denoised, clean)


def write_report(path: Path, report: BatchReport, **context: Any) -> None:
    """Write the report as JSON, atomically.

    Raises:
        OSError: the file cannot be written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report.to_dict(**context), indent=2, default=_jsonable)
    fd, tmp = tempfile.mkstemp(
        prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent
    )
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
