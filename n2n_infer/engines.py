"""The backend seam: an :class:`Engine` runs the model on an N×3×H×W array, and
:func:`open_engine` is the one place that opens a model on a device (or a providers
list), runs the load-time test run and decides any fallback from an accelerator to
the CPU.

An engine is small: ``run`` (float32 N×C×H×W in, the model's output of that shape
out, :class:`~n2n_infer.errors.InferenceError` on failure, the model file named),
``providers`` (what really runs it), ``io_binding`` and ``session`` (the onnxruntime
session of the same file: metadata and signature). :class:`OrtEngine` wraps an
onnxruntime session (CPU, CUDA, and any execution provider: ROCm, TensorRT, CoreML
run through it as ``providers``); :class:`~n2n_infer.ov_backend.OpenVINOEngine`
runs OpenVINO. A new backend is one class of this shape and one branch in
:func:`open_engine` (docs/design.md, "Extending → A backend").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from n2n_infer.errors import ModelLoadError, ProviderError
from n2n_infer.metadata import ModelInfo
from n2n_infer.providers import (
    CPU,
    CUDA,
    ProviderSpec,
    check_providers_used,
    parse_device,
    requested_providers,
)
from n2n_infer.session import (
    SessionConfig,
    check_signature,
    first_line,
    model_call,
    open_session,
    read_metadata,
    tiny_input,
)

log = logging.getLogger(__name__)


class Engine(Protocol):
    """What the :class:`~n2n_infer.Denoiser` needs of a backend."""

    #: The onnxruntime session of the same file (metadata, signature).
    session: Any
    #: The providers (or engine) really in use, the first one running the model.
    providers: list[str]
    #: Whether model calls bind inputs and outputs on the device.
    io_binding: bool
    #: float32 N×C×H×W (sides multiples of the stride; C the model's channels) -> its output.
    run: Callable[[np.ndarray], np.ndarray]


def binding_device(session: Any, io_binding: bool) -> tuple[str, int]:
    """I/O binding, when asked for: on CUDA when CUDA is the first provider in use,
    else on the CPU (``("", 0)``: none)."""
    if not io_binding:
        return "", 0
    if session.get_providers()[0] != CUDA:
        return "cpu", 0
    return "cuda", cuda_device_id(session)


def cuda_device_id(session: Any) -> int:
    """The CUDA device a session runs on (0 when it says nothing)."""
    return int(session.get_provider_options().get(CUDA, {}).get("device_id", "0"))


class OrtEngine:
    """An onnxruntime session as an :class:`Engine`: ``run`` calls ``session.run`` (or
    runs with I/O binding) directly, its settings bound once."""

    def __init__(
        self,
        session: Any,
        path: Path,
        config: SessionConfig | None = None,
        out_channels: int | None = None,
    ) -> None:
        config = config or SessionConfig()
        self.session = session
        self.providers: list[str] = list(session.get_providers())
        binding, device_id = binding_device(session, config.io_binding)
        self.io_binding = bool(binding)
        on_cuda = self.providers[0] == CUDA
        options = config.run_options(cuda_device_id(session) if on_cuda else None)
        self.run = model_call(session, path.name, binding, device_id, options, out_channels)


def output_channels(info: ModelInfo) -> int | None:
    """The channels of the model's output where they differ from its input's (a z-context
    model: one plane for its ``2K + 1``); ``None`` where the output has the input's shape."""
    return info.channels if info.z_context else None


def check_engine(engine: Engine, path: Path, stride: int, channels: int = 3) -> None:
    """The load-time check: the signature, then one run on a tiny image of ``channels``
    (see :func:`~n2n_infer.session.tiny_input`).

    Raises:
        ModelLoadError: a wrong signature, or the test run fails; the message
            names the file and what was found.
    """
    check_signature(engine.session, path, channels)
    noisy = tiny_input(stride, channels)
    try:
        engine.run(noisy)
    except Exception as exc:  # InferenceError, or a backend's own error
        shape = "×".join(map(str, noisy.shape))
        raise ModelLoadError(f"{path}: the test run on a {shape} input failed: {exc}") from exc


def open_engine(
    path: Path,
    device: str = "auto",
    providers: Sequence[ProviderSpec] | None = None,
    config: SessionConfig | None = None,
) -> Engine:
    """The engine for ``path`` on ``device`` (or ``providers``), checked by a test run.

    The one place that decides a fallback to the CPU. An accelerator that cannot
    start a session, or whose session fails the load-time test run (onnxruntime
    lists CUDA as in use before any kernel has run: cuDNN, for one, loads at the
    first convolution), is tried on the CPU: if the CPU loads (and runs) the
    model, ``auto`` goes on on the CPU with one warning that says why, and a
    named device or explicit ``providers`` raise ``ProviderError``; if it does
    not, the model is at fault. A CUDA provider that onnxruntime silently left
    out is judged by :func:`~n2n_infer.providers.check_providers_used`.

    Raises:
        ModelLoadError: missing file, a file onnxruntime cannot load, not an n2n
            model, or a test run that fails on the CPU.
        ProviderError: the accelerator asked for cannot be used.
        ValueError: a setting of ``config`` is out of range.
    """
    config = config or SessionConfig()
    config.check()
    requested = requested_providers(device, config.cuda_options(), providers)
    named = device != "auto" or providers is not None
    info: ModelInfo | None = None
    try:
        session = open_session(path, config, requested)
    except ModelLoadError:
        raise
    except Exception as exc:  # an accelerator could not start a session
        accelerators = ", ".join(s if isinstance(s, str) else s[0] for s in requested if s != CPU)
        wanted = f"device {device!r}" if providers is None else f"providers {accelerators}"
        reason = first_line(exc)
        refusal = f"{wanted}: onnxruntime could not start a session for {path.name}: {reason}"
        engine = _on_cpu(
            path, config, named, refusal, f"CUDA could not start a session ({reason})", exc
        )
    else:
        check_providers_used(
            session.get_providers(), requested, device, path, providers is not None
        )
        kind, option = parse_device(device)
        info = ModelInfo.from_props(read_metadata(session, path), path)
        if kind == "openvino":
            from n2n_infer.ov_backend import OpenVINOEngine

            if info.z_context:
                raise ProviderError(
                    f"device {device!r}: {path.name} is a z-context model ({info.in_channels} "
                    "planes in, 1 out), which n2n's OpenVINO engine does not run (it expects an "
                    "output of its input's shape); use device 'cpu' or 'auto' (onnxruntime)"
                )
            engine = OpenVINOEngine(session, path, option or "f32", config.intra_op_threads)
        else:
            engine = OrtEngine(session, path, config, output_channels(info))
    if info is None:  # the engine's session is the CPU's (see _on_cpu)
        info = ModelInfo.from_props(read_metadata(engine.session, path), path)
    stride, channels = info.stride, info.in_channels
    try:
        check_engine(engine, path, stride, channels)
    except ModelLoadError as exc:
        if engine.providers[0] == CPU:
            raise
        reason = str(exc.__cause__ or exc)
        used = engine.providers
        wanted = f"providers {', '.join(used)}" if providers is not None else f"device {device!r}"
        refusal = f"{wanted}: the first run of {path.name} on {used[0]} failed: {reason}"
        warning = f"{used[0]} failed its first run ({reason})"
        engine = _on_cpu(path, config, named, refusal, warning, exc, (stride, channels))
    return engine


def _on_cpu(
    path: Path,
    config: SessionConfig,
    named: bool,
    refusal: str,
    warning: str,
    exc: Exception,
    shape: tuple[int, int] | None = None,
) -> Engine:
    """An accelerator failed: a CPU engine (``auto``) or ``ProviderError(refusal)`` (a named
    device or providers), once the CPU has shown the model itself is sound: it loads, and
    with ``shape`` (its stride and input channels) it also passes the test run.

    Raises:
        ModelLoadError: the CPU cannot load or run the model either.
        ProviderError: ``named``.
    """
    session = open_session(path, config, [CPU])
    info = ModelInfo.from_props(read_metadata(session, path), path)
    cpu = OrtEngine(session, path, config, output_channels(info))
    if shape is not None:
        check_engine(cpu, path, *shape)
    if named:
        raise ProviderError(refusal) from exc
    log.warning("%s; running on CPU", warning)
    return cpu
