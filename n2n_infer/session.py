"""Execution providers, session options and session creation (all onnxruntime plumbing)."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path

import onnxruntime as ort

from n2n_infer.errors import ModelLoadError, ProviderError

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")


def requested_providers(device: str) -> list[str | tuple[str, dict[str, str]]]:
    """The providers to ask onnxruntime for, in order of preference.

    ``auto`` asks for CUDA first when this onnxruntime build has it, then CPU;
    ``cuda`` or ``cuda:N`` asks for CUDA (device N) then CPU, and the caller
    checks that CUDA was really used; ``cpu`` asks for the CPU only.

    Raises:
        ProviderError: ``device`` is not one of these forms, or CUDA was asked for
            and this onnxruntime build has no CUDA provider.
    """
    kind, _, index = device.partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise ProviderError(f"device {device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if kind == "cpu":
        return [CPU]
    available = ort.get_available_providers()
    if CUDA not in available:
        if kind == "cuda":
            raise ProviderError(
                f"device {device!r}: this onnxruntime build ({ort.__version__}) has no CUDA "
                f"provider (available: {', '.join(available)}); install onnxruntime-gpu and "
                "make sure the CPU-only 'onnxruntime' package is not installed beside it"
            )
        return [CPU]
    _preload_cuda_libraries()
    return [(CUDA, {"device_id": index or "0"}), CPU]


def _preload_cuda_libraries() -> None:
    """Load pip-installed CUDA/cuDNN libraries (``n2n[cuda]``) before the session."""
    if importlib.util.find_spec("nvidia") is None or not hasattr(ort, "preload_dlls"):
        return
    try:
        ort.preload_dlls()
    except Exception as exc:
        log.debug("onnxruntime.preload_dlls failed: %s", exc)


@contextlib.contextmanager
def _quiet_provider_errors(active: bool) -> Iterator[None]:
    """Hide onnxruntime's own multi-line console errors while CUDA is tried.

    When CUDA cannot start, onnxruntime writes several lines to stderr from its
    C++ logger; this module reports the fallback itself (one log line, or a
    :class:`ProviderError`). The default logger is set back to warnings after.
    """
    if not active:
        yield
        return
    ort.set_default_logger_severity(4)
    try:
        yield
    finally:
        ort.set_default_logger_severity(2)


def create_session(
    path: Path, device: str = "auto", intra_op_threads: int = 0
) -> ort.InferenceSession:
    """Create an inference session for ``path`` on ``device``.

    ``intra_op_threads`` of 0 lets onnxruntime use one thread per physical core.
    With ``auto``, a CUDA provider that onnxruntime could not start (missing
    CUDA or cuDNN libraries, no GPU) is replaced by the CPU with one warning.

    Raises:
        ModelLoadError: the file is missing or onnxruntime cannot load it.
        ProviderError: ``device`` asks for CUDA and CUDA cannot be used.
    """
    providers = requested_providers(device)
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file not found")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    try:
        with _quiet_provider_errors(providers[0] != CPU):
            session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own, unexported exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{path}: onnxruntime cannot load this model: {first}") from exc
    used = session.get_providers()
    if providers[0] != CPU and CUDA not in used:
        if device.startswith("cuda"):
            raise ProviderError(
                f"device {device!r}: onnxruntime could not start CUDA for {path.name} and fell "
                "back to CPU; check the NVIDIA driver and that CUDA 12 and cuDNN 9 libraries "
                "are installed (pip install 'n2n[cuda]')"
            )
        log.warning("CUDA is not usable (no GPU or CUDA/cuDNN libraries); running on CPU")
    return session
