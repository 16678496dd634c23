"""Execution providers, session options and session creation (all onnxruntime plumbing)."""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import importlib.util
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from n2n_infer.elfdeps import needed_libraries
from n2n_infer.errors import InferenceError, ModelLoadError, ProviderError
from n2n_infer.metadata import INPUT_NAME, OUTPUT_NAME

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")
GRAPH_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
CONV_SEARCH = ("HEURISTIC", "EXHAUSTIVE", "DEFAULT")
#: Libraries the CUDA provider loads at run time rather than links against.
RUNTIME_LOADED = {"NVIDIA driver": "libcuda.so.1", "cuDNN 9": "libcudnn.so.9"}
#: Used when the provider library cannot be read (onnxruntime-gpu 1.31 links CUDA 13).
FALLBACK_LINKED = {"CUDA runtime": "libcudart.so.13", "cuBLAS": "libcublasLt.so.13"}


def cuda_libraries() -> dict[str, str]:
    """The shared libraries this onnxruntime's CUDA provider needs on Linux, by description.

    The CUDA ones are read from the provider library's own ELF dependencies,
    so the names follow the installed onnxruntime-gpu (CUDA 12 or 13 builds).
    """
    provider = Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
    linked = {
        name.removeprefix("lib").split(".so")[0]: name
        for name in needed_libraries(provider)
        if name.startswith(("libcu", "libnv")) and name != RUNTIME_LOADED["NVIDIA driver"]
    }
    return {
        "NVIDIA driver": RUNTIME_LOADED["NVIDIA driver"],
        **(linked or FALLBACK_LINKED),
        "cuDNN 9": RUNTIME_LOADED["cuDNN 9"],
    }


@dataclass(frozen=True)
class SessionConfig:
    """onnxruntime settings, with defaults that suit denoising images of many sizes.

    Attributes:
        intra_op_threads: CPU threads per model call; 0 lets onnxruntime use one
            per physical core.
        graph_optimization: ``"disable"``, ``"basic"``, ``"extended"`` or ``"all"``.
        cudnn_conv_algo_search: ``"HEURISTIC"`` (default: cheap for every new
            image size), ``"EXHAUSTIVE"`` (benchmarks every new input shape once:
            pays off only when shapes repeat, e.g. fixed tiles) or ``"DEFAULT"``.
        gpu_mem_limit_mb: cap on the CUDA memory arena in MiB; 0 means no cap.
        memory_pattern: let onnxruntime pre-plan one memory block per input
            shape. Off by default: on the CPU it doubled peak memory (897 vs
            465 MiB for 4×512×512 tiles) for no measurable speed-up.
        io_binding: bind inputs and outputs on the device; ``None`` turns it on
            when the session runs on CUDA.
    """

    intra_op_threads: int = 0
    graph_optimization: str = "all"
    cudnn_conv_algo_search: str = "HEURISTIC"
    gpu_mem_limit_mb: int = 0
    memory_pattern: bool = False
    io_binding: bool | None = None

    def check(self) -> None:
        """Raise ``ValueError`` naming the first setting that is out of range."""
        if self.intra_op_threads < 0:
            raise ValueError(f"intra_op_threads must be >= 0, got {self.intra_op_threads}")
        if self.graph_optimization not in GRAPH_LEVELS:
            raise ValueError(
                f"graph_optimization {self.graph_optimization!r}: expected one of "
                f"{', '.join(GRAPH_LEVELS)}"
            )
        if self.cudnn_conv_algo_search not in CONV_SEARCH:
            raise ValueError(
                f"cudnn_conv_algo_search {self.cudnn_conv_algo_search!r}: expected one of "
                f"{', '.join(CONV_SEARCH)}"
            )
        if self.gpu_mem_limit_mb < 0:
            raise ValueError(f"gpu_mem_limit_mb must be >= 0, got {self.gpu_mem_limit_mb}")

    def cuda_options(self, device_id: str) -> dict[str, str]:
        """The CUDA provider options for this config."""
        opts = {
            "device_id": device_id,
            "cudnn_conv_algo_search": self.cudnn_conv_algo_search,
            "arena_extend_strategy": "kSameAsRequested",
        }
        if self.gpu_mem_limit_mb:
            opts["gpu_mem_limit"] = str(self.gpu_mem_limit_mb * 1024 * 1024)
        return opts


def parse_device(device: str) -> tuple[str, str]:
    """``"cuda:1"`` -> ``("cuda", "1")``; ``"auto"`` -> ``("auto", "")``.

    Raises:
        ProviderError: not ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    """
    kind, _, index = device.partition(":")
    if (
        kind not in DEVICES
        or (index and (kind != "cuda" or not index.isdigit()))
        or (not index and device.endswith(":"))
    ):
        raise ProviderError(f"device {device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return kind, index


def requested_providers(
    device: str, config: SessionConfig | None = None
) -> list[str | tuple[str, dict[str, str]]]:
    """The providers to ask onnxruntime for, in order of preference.

    ``auto`` asks for CUDA first when this onnxruntime build has it, then CPU;
    ``cuda`` or ``cuda:N`` asks for CUDA (device N) then CPU, and the caller
    checks that CUDA was really used; ``cpu`` asks for the CPU only.

    Raises:
        ProviderError: ``device`` is not one of these forms, or CUDA was asked for
            and this onnxruntime build has no CUDA provider.
    """
    kind, index = parse_device(device)
    if kind == "cpu":
        return [CPU]
    available = ort.get_available_providers()
    if CUDA not in available:
        if kind == "cuda":
            raise ProviderError(
                f"device {device!r}: this onnxruntime build ({ort.__version__}) has no CUDA "
                f"provider (available: {', '.join(available)}); {_package_advice()}"
            )
        log.info("onnxruntime %s has no CUDA provider; running on CPU", ort.__version__)
        return [CPU]
    preload_cuda_libraries()
    return [(CUDA, (config or SessionConfig()).cuda_options(index or "0")), CPU]


def _package_advice() -> str:
    """What to do about the installed onnxruntime packages when CUDA is missing."""
    installed = set()
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            importlib.metadata.version(dist)
            installed.add(dist)
    if installed == {"onnxruntime", "onnxruntime-gpu"}:
        return (
            "the CPU-only 'onnxruntime' package is installed beside 'onnxruntime-gpu' and "
            "shadows it: pip uninstall -y onnxruntime onnxruntime-gpu && "
            "pip install onnxruntime-gpu"
        )
    return "install onnxruntime-gpu (pip install 'n2n[cuda]') instead of onnxruntime"


def preload_cuda_libraries() -> None:
    """Load pip-installed CUDA/cuDNN libraries (``n2n[cuda]``) before the session.

    Uses ``onnxruntime.preload_dlls`` when the ``nvidia`` pip packages are
    present; otherwise the system's libraries are found by the loader as usual.
    """
    if importlib.util.find_spec("nvidia") is None or not hasattr(ort, "preload_dlls"):
        return
    try:
        ort.preload_dlls()
    except Exception as exc:  # a best effort: the session reports what is really missing
        log.debug("onnxruntime.preload_dlls failed: %s", exc)


def missing_cuda_libraries() -> list[str]:
    """Which of :func:`cuda_libraries` cannot be loaded (Linux only; else empty)."""
    if not sys.platform.startswith("linux"):
        return []
    missing = []
    for what, soname in cuda_libraries().items():
        try:
            ctypes.CDLL(soname)
        except OSError:
            missing.append(f"{what} ({soname})")
    return missing


def cuda_failure_reason() -> str:
    """A one-line reason why onnxruntime's CUDA provider did not start."""
    missing = missing_cuda_libraries()
    if missing:
        return (
            f"missing {', '.join(missing)}; install the NVIDIA driver and "
            "pip install 'n2n[cuda]' for the CUDA and cuDNN libraries that the installed "
            f"onnxruntime-gpu {ort.__version__} needs"
        )
    return "the CUDA libraries load but no usable GPU was found (check nvidia-smi)"


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


def session_options(config: SessionConfig) -> ort.SessionOptions:
    """onnxruntime ``SessionOptions`` for ``config``."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = config.intra_op_threads
    opts.graph_optimization_level = GRAPH_LEVELS[config.graph_optimization]
    opts.enable_mem_pattern = config.memory_pattern
    opts.log_severity_level = 3
    return opts


def create_session(
    path: Path,
    device: str = "auto",
    intra_op_threads: int = 0,
    config: SessionConfig | None = None,
) -> ort.InferenceSession:
    """Create an inference session for ``path`` on ``device``.

    ``config`` (default :class:`SessionConfig`) sets threads, graph optimisation
    and CUDA options; a non-zero ``intra_op_threads`` overrides its thread count.
    With ``auto``, a CUDA provider that onnxruntime could not start is replaced
    by the CPU with one warning that says why.

    Raises:
        ModelLoadError: the file is missing or onnxruntime cannot load it.
        ProviderError: ``device`` asks for CUDA and CUDA cannot be used.
        ValueError: a setting of ``config`` is out of range.
    """
    config = config or SessionConfig()
    if intra_op_threads:
        config = SessionConfig(**{**config.__dict__, "intra_op_threads": intra_op_threads})
    config.check()
    providers = requested_providers(device, config)
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file not found")
    try:
        with _quiet_provider_errors(providers[0] != CPU):
            session = ort.InferenceSession(
                str(path), sess_options=session_options(config), providers=providers
            )
    except Exception as exc:  # onnxruntime raises its own, unexported exception types
        raise ModelLoadError(f"{path}: onnxruntime cannot load this model: {_first(exc)}") from exc
    _check_cuda_used(session, providers, device, path)
    return session


def _check_cuda_used(session: Any, providers: list, device: str, path: Path) -> None:
    if providers[0] == CPU or CUDA in session.get_providers():
        return
    reason = cuda_failure_reason()
    if device.startswith("cuda"):
        raise ProviderError(
            f"device {device!r}: onnxruntime could not start CUDA for {path.name}: {reason}"
        )
    log.warning("CUDA is not usable (%s); running on CPU", reason)


def _first(exc: BaseException) -> str:
    """The first line of an exception's message (onnxruntime's can be long)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_model(
    session: Any, noisy: np.ndarray, binding_device: str = "", device_id: int = 0
) -> np.ndarray:
    """Run the model once on float32 N×3×H×W; returns the output as a numpy array.

    With ``binding_device`` (``"cuda"`` or ``"cpu"``), the input is copied to
    that device once and the output is allocated there (I/O binding), then
    copied back; otherwise ``session.run`` does the transfers.

    Raises:
        InferenceError: onnxruntime failed (its message's first line is kept).
    """
    try:
        if not binding_device:
            return session.run([OUTPUT_NAME], {INPUT_NAME: noisy})[0]
        return _run_bound(session, noisy, binding_device, device_id)
    except Exception as exc:
        if not type(exc).__module__.startswith("onnxruntime"):
            raise
        shape = "×".join(map(str, noisy.shape))
        raise InferenceError(f"onnxruntime failed on a {shape} batch: {_first(exc)}") from exc


def _run_bound(session: Any, noisy: np.ndarray, binding_device: str, device_id: int) -> np.ndarray:
    binding = session.io_binding()
    value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(noisy), binding_device, device_id)
    binding.bind_ortvalue_input(INPUT_NAME, value)
    binding.bind_output(OUTPUT_NAME, binding_device, device_id)
    session.run_with_iobinding(binding)
    return binding.copy_outputs_to_cpu()[0]
