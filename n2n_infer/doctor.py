"""``n2n-infer doctor``: what is installed, which providers work, and a timed run on each."""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from n2n_infer.denoiser import Denoiser, model_file
from n2n_infer.errors import N2NError, first_line
from n2n_infer.imageio import HAS_AVIF, HAS_HEIF, SUFFIXES
from n2n_infer.probe import ENV_PROBE
from n2n_infer.providers import (
    CPU,
    CUDA,
    DRIVER_LIBRARY,
    cuda_libraries,
    missing_cuda_libraries,
    nvidia_driver_present,
)

PACKAGES = (
    *("n2n", "onnxruntime", "onnxruntime-gpu", "numpy", "Pillow", "click", "tqdm"),
    "pillow-heif",
)
#: The probe image: small, with sizes that are not multiples of the stride.
PROBE_HW = (17, 23)


def versions() -> list[str]:
    """``name version`` for Python and each installed package of :data:`PACKAGES`."""
    found = [f"python {platform.python_version()} ({platform.machine()}, {platform.system()})"]
    for dist in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{dist} {importlib.metadata.version(dist)}")
    return found


def torch_cuda_major() -> str | None:
    """The CUDA major version the installed torch was built for, read from its
    ``version.py`` without importing torch; None without torch or for a CPU build."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        return None
    try:
        text = (Path(spec.origin).parent / "version.py").read_text()
    except OSError:
        return None
    found = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"](\d+)\.", text, re.MULTILINE)
    return found.group(1) if found else None


def onnxruntime_cuda_major() -> str | None:
    """The CUDA major version of the installed onnxruntime-gpu (from ``libcudart.so.N``)."""
    if CUDA not in ort.get_available_providers():
        return None
    for soname in cuda_libraries().values():
        found = re.match(r"libcudart\.so\.(\d+)", soname)
        if found:
            return found.group(1)
    return None


def cuda_mismatch() -> str:
    """A warning when torch and onnxruntime-gpu are built for different CUDA majors; else ""."""
    ours, theirs = onnxruntime_cuda_major(), torch_cuda_major()
    if ours is None or theirs is None or ours == theirs:
        return ""
    return (
        f"warning: onnxruntime-gpu is built for CUDA {ours} and torch for CUDA {theirs}: their "
        f"pip packages nvidia-cudnn-cu{ours} and nvidia-cudnn-cu{theirs} install the same "
        "libcudnn.so.9, and whichever was installed last is the one both load; use one CUDA "
        "major for both (or separate environments)"
    )


def probe(model: str | None, device: str) -> str:
    """Run the model once on a small image on ``device``; a one-line result.

    Raises:
        N2NError: the model or the device cannot be used.
    """
    d = Denoiser(model, device=device)
    img = np.random.default_rng(0).integers(0, 256, (*PROBE_HW, 3), dtype=np.uint8)
    t0 = time.perf_counter()
    d.denoise(img)
    ms = (time.perf_counter() - t0) * 1000
    return f"ok, {PROBE_HW[1]}×{PROBE_HW[0]} image in {ms:.1f} ms ({', '.join(d.providers)})"


def check_model_file(model: str | None) -> str:
    """The model file ``model`` names, loaded once on the CPU; ``""`` when it loads.

    Returns a one-line reason when it cannot be used (never raises).
    """
    try:
        Denoiser(model_file(model), device="cpu")
    except (N2NError, ValueError) as exc:
        return first_line(str(exc), model or "") or type(exc).__name__
    return ""


def image_formats() -> str:
    """The image formats the batch job reads and writes here, and those it lacks and why."""
    line = ", ".join(sorted(set(SUFFIXES.values())))
    lacking = []
    if not HAS_AVIF:
        lacking.append("AVIF (needs Pillow >= 11.3 with its codec)")
    if not HAS_HEIF:
        lacking.append('HEIF/HEIC (pip install "n2n[heic]")')
    return line + (f"; not here: {', '.join(lacking)}" if lacking else "")


def diagnose(model: str | None = None) -> tuple[list[str], bool]:
    """The doctor's report lines, and whether the CPU path works.

    A model that cannot be loaded ends the report with a ``model:`` line that
    says why. Never raises: any failure of a probe is a line of the report.
    The lines hold text from the model file and from exceptions as it is: print
    them escaped (``n2n-infer doctor`` prints each through :func:`n2n_infer.cli.echo`).
    """
    lines = ["versions: " + ", ".join(versions()), f"image formats: {image_formats()}"]
    available = ort.get_available_providers()
    lines.append(f"available providers: {', '.join(available)}")
    driver = DRIVER_LIBRARY.get(sys.platform, "none on this platform")
    lines.append(f"NVIDIA driver: {'found' if nvidia_driver_present() else 'not found'} ({driver})")
    mismatch = cuda_mismatch()
    if mismatch:
        lines.append(mismatch)
    reason = check_model_file(model)
    if reason:
        lines.append(f"model: not usable: {reason}")
        return lines, False
    usable, cpu_ok = [], False
    for device, provider in (("cpu", CPU), ("cuda", CUDA)):
        try:
            lines.append(f"{device}: {probe(model, device)}")
            usable.append(provider)
            cpu_ok = cpu_ok or device == "cpu"
        except (N2NError, ValueError) as exc:
            lines.append(f"{device}: not usable: {exc}")
    lines.append(f"usable providers: {', '.join(usable) or 'none'}")
    if CUDA in available and CUDA not in usable:
        missing = missing_cuda_libraries()
        lines.append(f"CUDA libraries missing: {', '.join(missing) or 'none'}")
    if cpu_ok:
        lines.extend(engine_lines(model))
    return lines, cpu_ok


#: What an int8 export costs and gains (docs/runtime.md, "Speed"); never chosen by ``auto``.
INT8_NOTE = (
    "int8: a named choice, never made by auto: n2n-export onnx --precision int8 (the photo "
    "model: about 0.16 dB for 3.4-6.7x onnxruntime fp32 through OpenVINO on CPUs with VNNI)"
)


def engine_lines(model: str | None) -> list[str]:
    """What ``device="auto"`` runs on this CPU: each engine's measured speed and parity, and
    the choice (the probe's cached verdict, or a measurement made now)."""
    try:
        d = Denoiser(model)
    except (N2NError, ValueError) as exc:
        return [f"auto: not usable: {exc}"]
    choice = d.engine_choice
    if choice is None:  # CUDA runs: the CPU engines are not compared
        return [f"auto: {', '.join(d.providers)}"]
    how = {"probe": "measured now", "cache": f"measured {choice.measured}"}
    head = f"auto on this CPU: {choice.engine} ({', '.join(d.providers)}"
    if choice.source == "off":
        return [f"{head}; the engine probe is off: {ENV_PROBE}=0)", INT8_NOTE]
    lines = [f"{head}; {how.get(choice.source, choice.source)})"]
    for r in choice.results:
        if r.error:
            lines.append(f"  {r.engine:<14} failed: {r.error}")
            continue
        verdict = "parity ok" if r.passed else "parity failed"
        lines.append(
            f"  {r.engine:<14} {r.speed:5.2f}x  {verdict} ({r.delta_psnr_db:+.4f} dB, "
            f"max diff {r.max_abs_diff:.2g})"
        )
    if len(choice.results) <= 1 and importlib.util.find_spec("openvino") is None:
        lines.append('  OpenVINO fp32 and bf16 are measured too with pip install "n2n[openvino]"')
    lines.append(INT8_NOTE)
    return lines
