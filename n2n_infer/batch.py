"""The folder job: denoise every image of a folder into another, file by file.

A bad file is reported and skipped; the job goes on. Outputs are written
atomically, never inside the input folder, and never over an existing file
unless asked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from n2n_infer.denoiser import Denoiser
from n2n_infer.errors import ImageError, N2NError
from n2n_infer.imageio import SUFFIXES, read_image, write_image
from n2n_infer.metrics import psnr

log = logging.getLogger(__name__)


@dataclass
class FileResult:
    """What happened to one input file."""

    name: str
    status: str  # "ok", "skipped" (output existed) or "error"
    error: str = ""
    seconds: float = 0.0
    size_hw: tuple[int, int] | None = None
    psnr_noisy: float | None = None
    psnr_denoised: float | None = None


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


def find_images(in_dir: Path) -> list[Path]:
    """The PNG and JPEG files directly inside ``in_dir``, sorted by name."""
    return sorted(p for p in in_dir.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)


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


def denoise_folder(
    denoiser: Denoiser,
    in_dir: str | Path,
    out_dir: str | Path,
    overwrite: bool = False,
    skip_existing: bool = False,
    reference_dir: str | Path | None = None,
    on_file: Callable[[FileResult], None] | None = None,
) -> BatchReport:
    """Denoise each PNG/JPEG of ``in_dir`` into ``out_dir`` under the same name.

    An existing output is an error unless ``overwrite`` (replace it) or
    ``skip_existing`` (leave it) is set. With ``reference_dir``, a clean image
    of the same name there gives each file's PSNR before and after.
    ``on_file`` is called after each file (progress bars, printing).

    Raises:
        N2NError: the folders are unusable (see :func:`check_folders`).
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    check_folders(in_dir, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = BatchReport()
    for src in find_images(in_dir):
        result = _one_file(
            denoiser, src, out_dir / src.name, overwrite, skip_existing, reference_dir
        )
        report.results.append(result)
        if on_file:
            on_file(result)
    return report


def _one_file(
    denoiser: Denoiser,
    src: Path,
    dst: Path,
    overwrite: bool,
    skip_existing: bool,
    reference_dir: str | Path | None,
) -> FileResult:
    t0 = time.perf_counter()
    if dst.exists() and not overwrite:
        if skip_existing:
            return FileResult(src.name, "skipped")
        return FileResult(src.name, "error", f"{dst} exists (use --overwrite or --skip-existing)")
    try:
        noisy = read_image(src)
        denoised = denoiser.denoise(noisy)
        write_image(dst, denoised)
        result = FileResult(src.name, "ok", size_hw=noisy.shape[:2])
        ref = _reference(reference_dir, src, noisy.shape)
        if ref is not None:
            result.psnr_noisy, result.psnr_denoised = psnr(noisy, ref), psnr(denoised, ref)
    except (N2NError, OSError) as exc:
        log.warning("%s: %s", src, exc)
        result = FileResult(src.name, "error", str(exc))
    result.seconds = time.perf_counter() - t0
    return result


def _reference(
    reference_dir: str | Path | None, src: Path, shape: tuple[int, ...]
) -> np.ndarray | None:
    """The clean image of ``src``'s name in ``reference_dir``, if there is one."""
    if reference_dir is None or not (Path(reference_dir) / src.name).is_file():
        return None
    ref = read_image(Path(reference_dir) / src.name)
    if ref.shape != shape:
        raise ImageError(f"{Path(reference_dir) / src.name}: size {ref.shape} differs from {src}")
    return ref
