"""``n2n-infer doctor``: what is installed, which providers work, and a timed run on each."""

from __future__ import annotations

import contextlib
import importlib.metadata
import platform
import time

import numpy as np
import onnxruntime as ort

from n2n_infer.denoiser import Denoiser
from n2n_infer.errors import N2NError
from n2n_infer.session import CPU, CUDA, missing_cuda_libraries

PACKAGES = ("n2n", "onnxruntime", "onnxruntime-gpu", "numpy", "Pillow", "click", "tqdm")
#: The probe image: small, with sizes that are not multiples of the stride.
PROBE_HW = (17, 23)


def versions() -> list[str]:
    """``name version`` for Python and each installed package of :data:`PACKAGES`."""
    found = [f"python {platform.python_version()} ({platform.machine()}, {platform.system()})"]
    for dist in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{dist} {importlib.metadata.version(dist)}")
    return found


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


def diagnose(model: str | None = None) -> tuple[list[str], bool]:
    """The doctor's report lines, and whether the CPU path works."""
    lines = ["versions: " + ", ".join(versions())]
    available = ort.get_available_providers()
    lines.append(f"available providers: {', '.join(available)}")
    usable, cpu_ok = [], False
    for device, provider in (("cpu", CPU), ("cuda", CUDA)):
        try:
            lines.append(f"{device}: {probe(model, device)}")
            usable.append(provider)
            cpu_ok = cpu_ok or device == "cpu"
        except N2NError as exc:
            lines.append(f"{device}: not usable: {exc}")
    lines.append(f"usable providers: {', '.join(usable) or 'none'}")
    if CUDA in available and CUDA not in usable:
        missing = missing_cuda_libraries()
        lines.append(f"CUDA libraries missing: {', '.join(missing) or 'none'}")
    return lines, cpu_ok
