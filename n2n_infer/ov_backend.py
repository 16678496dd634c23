"""OpenVINO as a backend: ``Denoiser(device="openvino")`` runs the same ONNX file through
OpenVINO's CPU plugin (the optional extra ``n2n[openvino]``).

``openvino`` or ``openvino:f32`` runs in float32; ``openvino:bf16`` asks for bfloat16
inference, which only CPUs with native bf16 (AVX-512 BF16, AMX) have: elsewhere
OpenVINO would silently run float32, so the request is refused. An onnxruntime CPU
session of the same file still reads the metadata and checks the signature; the
model calls go to OpenVINO. Nothing is chosen automatically: ``auto`` never picks
this backend (docs/runtime.md, "Speed", says why).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from n2n_infer.errors import InferenceError, ModelLoadError, ProviderError
from n2n_infer.session import check_output

#: ``openvino:PRECISION`` -> OpenVINO's inference precision hint.
PRECISIONS = {"f32": "f32", "bf16": "bf16"}
#: Parallel streams for batches at most (each gets one or more of the threads).
MAX_STREAMS = 4


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on macOS or Windows
        return os.cpu_count() or 1


def cpu_capabilities() -> list[str]:
    """OpenVINO's optimisation capabilities of this CPU (``FP32``, ``INT8``, ``BF16``...).

    Raises:
        ProviderError: the ``openvino`` package is not installed.
    """
    return list(_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def _core() -> Any:
    try:
        import openvino
    except ImportError:
        raise ProviderError(
            "device 'openvino': the openvino package is not installed (pip install 'n2n[openvino]')"
        ) from None
    return openvino.Core()


class OpenVINOEngine:
    """OpenVINO as an :class:`~n2n_infer.engines.Engine`: model calls on OpenVINO's CPU
    plugin; metadata and signature come from ``ort_session`` (onnxruntime, same file).

    Calls are serialised (one infer request), so one instance is safe to share
    between threads.

    Raises:
        ProviderError: openvino is missing, the precision is unknown, or bf16 was
            asked for on a CPU without it.
        ModelLoadError: OpenVINO cannot compile the file.
    """

    def __init__(self, ort_session: Any, path: Path, precision: str = "f32", threads: int = 0):
        if precision not in PRECISIONS:
            raise ProviderError(
                f"device 'openvino:{precision}': expected a precision of {', '.join(PRECISIONS)}"
            )
        core = _core()
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": PRECISIONS[precision],
            "PERFORMANCE_HINT": "LATENCY",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self._compiled = core.compile_model(str(path), "CPU", config)
        except Exception as exc:  # OpenVINO raises its own RuntimeError subclasses
            text = str(exc).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            raise ModelLoadError(f"{path}: OpenVINO cannot compile this model: {first}") from exc
        # OpenVINO answers with an element type whose text differs across versions and
        # CPUs ("bf16", "<Type: 'bfloat16'>"): compare its name, not its spelling
        got = str(self._compiled.get_property("INFERENCE_PRECISION_HINT")).lower()
        if precision == "bf16" and "bf16" not in got and "bfloat16" not in got:
            caps = ", ".join(cpu_capabilities())
            raise ProviderError(
                f"device 'openvino:bf16': this CPU has no native bf16 (OpenVINO reports {caps}) "
                "and would run float32; use 'openvino' or 'cpu'"
            )
        self.precision = precision
        self.session = ort_session
        self.providers = [f"OpenVINO CPU {precision}"]
        self.io_binding = False
        self._name = path.name
        self._request = self._compiled.create_infer_request()
        self._output = self._compiled.output(0)
        self._lock = threading.Lock()
        self._core, self._path, self._config = core, path, config
        #: Batches of several images run as this many parallel streams (see :meth:`run`).
        self.streams = min(MAX_STREAMS, threads or _usable_cores())
        self._stream_requests: list[Any] | None = None

    def run(self, noisy: np.ndarray) -> np.ndarray:
        """The model on float32 N×3×H×W; its output of the same shape.

        One image runs with every thread on it (OpenVINO's latency mode); a batch of
        several is split into :attr:`streams` parts run at once, one stream each
        (its throughput mode, compiled on first use): with 2 threads on an AMD EPYC
        (Zen 4), bf16 on 8×256×256 went from 1.96× to 2.46× onnxruntime fp32
        (docs/runtime.md, "Speed").
        """
        try:
            with self._lock:
                if self.streams < 2 or noisy.shape[0] < 2:
                    out = np.asarray(self._request.infer({0: noisy})[self._output])
                else:
                    out = self._run_streams(noisy)
            check_output(out, noisy.shape)
        except InferenceError as exc:
            raise InferenceError(f"{self._name}: {exc}") from exc
        except Exception as exc:  # OpenVINO's own RuntimeError subclasses
            text = str(exc).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            raise InferenceError(f"{self._name}: OpenVINO failed: {first}") from exc
        return out

    def _run_streams(self, noisy: np.ndarray) -> np.ndarray:
        if self._stream_requests is None:
            config = {**self._config, "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": self.streams}
            compiled = self._core.compile_model(str(self._path), "CPU", config)
            self._stream_requests = [compiled.create_infer_request() for _ in range(self.streams)]
        parts = np.array_split(noisy, min(self.streams, noisy.shape[0]))
        requests = self._stream_requests[: len(parts)]
        for request, part in zip(requests, parts, strict=True):
            request.start_async({0: np.ascontiguousarray(part)})
        for request in requests:
            request.wait()
        return np.concatenate([np.array(r.get_output_tensor(0).data) for r in requests])
