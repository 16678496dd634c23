"""OpenVINO as a backend: ``Denoiser(device="openvino")`` runs the same ONNX file through
OpenVINO's CPU plugin (the optional extra ``n2n[openvino]``).

``openvino`` or ``openvino:f32`` runs in float32; ``openvino:bf16`` asks for bfloat16
inference, which only CPUs with native bf16 (AVX-512 BF16, AMX) have: elsewhere
OpenVINO would silently run float32, so the request is refused. An onnxruntime CPU
session of the same file still reads the metadata and checks the signature; the
model calls go to OpenVINO. ``auto`` picks this backend only where its timed probe
(:mod:`n2n_infer.probe`) measured it faster than onnxruntime on this machine, with
outputs inside the model's parity tolerance.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from n2n_infer.errors import InferenceError, ModelLoadError, ProviderError
from n2n_infer.session import check_output

#: ``openvino:PRECISION`` -> OpenVINO's inference precision hint.
PRECISIONS = {"f32": "f32", "bf16": "bf16"}


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

    def run(self, noisy: np.ndarray) -> np.ndarray:
        """The model on float32 N×3×H×W; its output of the same shape.

        The whole batch is one call with every thread on it (OpenVINO's latency
        mode). Splitting a batch into parallel streams (its throughput mode) was
        measured and dropped: with 2 threads, bf16 on 8×256×256 ran 10% slower than
        latency mode on an AMD EPYC Zen 4 and 5% faster on an Intel Xeon with AMX
        (docs/runtime.md, "Speed").
        """
        try:
            with self._lock:
                out = np.asarray(self._request.infer({0: noisy})[self._output])
            check_output(out, noisy.shape)
        except InferenceError as exc:
            raise InferenceError(f"{self._name}: {exc}") from exc
        except Exception as exc:  # OpenVINO's own RuntimeError subclasses
            text = str(exc).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            raise InferenceError(f"{self._name}: OpenVINO failed: {first}") from exc
        return out
