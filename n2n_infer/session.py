"""Session options, session creation, the model's signature check and model calls.

Which providers a session asks for is decided in :mod:`n2n_infer.providers`; whether
to fall back to the CPU, in :func:`n2n_infer.engines.open_engine`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from n2n_infer.errors import InferenceError, ModelLoadError
from n2n_infer.metadata import INPUT_NAME, OUTPUT_NAME
from n2n_infer.providers import CPU, ProviderSpec, stdout_to_log

log = logging.getLogger(__name__)

GRAPH_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
CONV_SEARCH = ("HEURISTIC", "EXHAUSTIVE", "DEFAULT")
#: Model calls keep onnxruntime's own console quiet: a failure becomes an InferenceError
#: that carries the first line of onnxruntime's message.
_QUIET_RUN = ort.RunOptions()
_QUIET_RUN.log_severity_level = 4
_LOGGER_LOCK = threading.Lock()
#: Phrases of onnxruntime's allocation failures (CUDA arena, cudaMalloc, CPU allocator).
_OUT_OF_MEMORY = ("Available memory of", "out of memory", "Failed to allocate")
#: The run option that gives a device arena's unused memory back after each call.
ARENA_SHRINK_KEY = "memory.enable_memory_arena_shrinkage"


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
            shape. Off by default: on the CPU it about doubled peak memory for
            no measurable speed-up.
        io_binding: bind inputs and outputs on the device (an ``OrtValue`` input,
            a device-allocated output, one copy back) instead of letting
            ``session.run`` stage both. Off by default: on a GPU it was slower,
            not faster, with numpy in and numpy out.
        shape_bucket: untiled images are padded (reflected) up to multiples of
            this many pixels before a model call, so that images of nearby
            sizes share one input shape; rounded up to a multiple of the
            stride. ``None``: the stride. On a GPU, buckets did not make first
            calls of new sizes faster and changed border pixels (the model sees
            the reflected padding), so they are off unless asked for.
        gpu_arena_shrink: give the CUDA arena's unused memory back after every
            model call, so that memory does not grow with the number of
            distinct image sizes. Off by default: on a GPU it kept a fraction
            of the memory held across many sizes, but made every call several
            times as long. A ``gpu_mem_limit_mb`` cap does not replace it: the
            cap bounds the arena, and a call whose peak exceeds it fails (tile
            instead).

    The measurements behind each default: docs/runtime.md, the ``SessionConfig``
    table under "Devices and session options".
    """

    intra_op_threads: int = 0
    graph_optimization: str = "all"
    cudnn_conv_algo_search: str = "HEURISTIC"
    gpu_mem_limit_mb: int = 0
    memory_pattern: bool = False
    io_binding: bool = False
    shape_bucket: int | None = None
    gpu_arena_shrink: bool = False

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
        if self.shape_bucket is not None and not 1 <= self.shape_bucket <= 1024:
            raise ValueError(f"shape_bucket must be in 1..1024 or None, got {self.shape_bucket}")
        if self.gpu_mem_limit_mb < 0:
            raise ValueError(f"gpu_mem_limit_mb must be >= 0, got {self.gpu_mem_limit_mb}")

    def cuda_options(self, device_id: str = "0") -> dict[str, str]:
        """The CUDA provider options for this config."""
        opts = {
            "device_id": device_id,
            "cudnn_conv_algo_search": self.cudnn_conv_algo_search,
            "arena_extend_strategy": "kSameAsRequested",
        }
        if self.gpu_mem_limit_mb:
            opts["gpu_mem_limit"] = str(self.gpu_mem_limit_mb * 1024 * 1024)
        return opts

    def run_options(self, cuda_device_id: int | None) -> ort.RunOptions:
        """Quiet run options; on CUDA with arena shrinking, the shrink entry for that device."""
        if cuda_device_id is None or not self.gpu_arena_shrink:
            return _QUIET_RUN
        opts = ort.RunOptions()
        opts.log_severity_level = 4
        opts.add_run_config_entry(ARENA_SHRINK_KEY, f"gpu:{cuda_device_id}")
        return opts


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
    with _LOGGER_LOCK:  # the level is process-wide: two sessions built at once must not race
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


def open_session(
    path: Path, config: SessionConfig, requested: Sequence[ProviderSpec]
) -> ort.InferenceSession:
    """One ``InferenceSession`` of ``path`` on the ``requested`` providers, as they are.

    Whether to go on on the CPU when an accelerator cannot start is decided by
    :func:`n2n_infer.engines.open_engine`, which calls this.

    Raises:
        ModelLoadError: the file is missing, or only the CPU was asked for and
            onnxruntime cannot load the file.
        ValueError: a setting of ``config`` is out of range.
        Exception: onnxruntime's own, when a session with an accelerator could
            not be started.
    """
    config.check()
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file not found")
    try:
        return _new_session(path, config, requested)
    except Exception as exc:  # onnxruntime raises its own, unexported exception types
        if list(requested) == [CPU]:
            raise ModelLoadError(
                f"{path}: onnxruntime cannot load this model: {first_line(exc)}"
            ) from exc
        raise


def _new_session(
    path: Path, config: SessionConfig, requested: Sequence[ProviderSpec]
) -> ort.InferenceSession:
    """One ``InferenceSession``, without onnxruntime's own fallback (it prints to stdout)."""
    with _quiet_provider_errors(requested != [CPU]), stdout_to_log():
        return ort.InferenceSession(
            str(path),
            sess_options=session_options(config),
            providers=list(requested),
            enable_fallback=0,
        )


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (onnxruntime's can be long)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_metadata(session: Any, path: Path) -> dict[str, str]:
    """The model's ``metadata_props`` as a dict of strings.

    Raises:
        ModelLoadError: a key or value is not valid UTF-8 (a damaged file).
    """
    try:
        return dict(session.get_modelmeta().custom_metadata_map)
    except UnicodeDecodeError as exc:
        raise ModelLoadError(f"{path}: the model's metadata is not valid UTF-8 ({exc})") from None


def tiny_input(stride: int, channels: int = 3) -> np.ndarray:
    """The load-time test input: float32 1×3×(3·stride)×(2·stride), non-square (a model
    that transposes is caught) and larger than the stride both ways (pooling and
    upsampling run on more than one cell)."""
    h, w = 3 * stride, 2 * stride
    # a golden-ratio sequence in [0.05, 0.95): varied, without importing numpy.random, whose
    # import alone costs more than the test run (docs/runtime.md, "Load cost")
    steps = np.arange(channels * h * w, dtype=np.float32) * np.float32(0.618034) % 1
    return (0.05 + 0.9 * steps).astype(np.float32).reshape(1, channels, h, w)


def check_signature(session: Any, path: Path, channels: int = 3) -> None:
    """One required float32 input ``noisy`` of N×C×H×W (C: ``channels``, the count the
    model states); an output ``denoised`` of rank 4.

    Raises:
        ModelLoadError: anything else; the message names the file and what it has.
    """
    try:
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = {o.name: o for o in session.get_outputs()}
    except UnicodeDecodeError as exc:
        raise ModelLoadError(
            f"{path}: an input or output name is not valid UTF-8 ({exc})"
        ) from None
    if INPUT_NAME not in inputs or OUTPUT_NAME not in outputs:
        raise ModelLoadError(
            f"{path}: expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}, found "
            f"inputs {sorted(inputs)} and outputs {sorted(outputs)}"
        )
    if len(inputs) != 1:
        raise ModelLoadError(
            f"{path}: expected one required input {INPUT_NAME!r}, found {len(inputs)}: "
            f"{sorted(inputs)}"
        )
    for what, arg in (("input", inputs[INPUT_NAME]), ("output", outputs[OUTPUT_NAME])):
        if arg.type != "tensor(float)":
            raise ModelLoadError(f"{path}: {what} {arg.name!r} must be float32, found {arg.type}")
    shape = inputs[INPUT_NAME].shape
    want = f"N×{channels}×H×W"
    if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != channels):
        raise ModelLoadError(
            f"{path}: input {INPUT_NAME!r} must be {want}, found shape {shape} (its metadata "
            f"states {channels} channel(s))"
        )
    out_shape = outputs[OUTPUT_NAME].shape
    if isinstance(out_shape, list) and len(out_shape) != 4:
        raise ModelLoadError(
            f"{path}: output {OUTPUT_NAME!r} must be {want}, found shape {out_shape}"
        )


def run_model(
    session: Any,
    noisy: np.ndarray,
    binding_device: str = "",
    device_id: int = 0,
    run_options: ort.RunOptions | None = None,
) -> np.ndarray:
    """Run the model once on float32 N×3×H×W; returns its float32 output of the same shape.

    With ``binding_device`` (``"cuda"`` or ``"cpu"``), the input is copied to
    that device once and the output is allocated there (I/O binding), then
    copied back; otherwise ``session.run`` does the transfers.

    Raises:
        InferenceError: onnxruntime failed (out of memory included; its
            message's first line is kept), or the output is not finite float32
            of the input's shape.
    """
    return model_call(session, "", binding_device, device_id, run_options)(noisy)


def model_call(
    session: Any,
    name: str = "",
    binding_device: str = "",
    device_id: int = 0,
    run_options: ort.RunOptions | None = None,
    out_channels: int | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """:func:`run_model` with its settings bound once: a function of the N×3×H×W batch
    alone, which calls ``session.run`` directly (one frame on the way to the engine).
    ``name`` (the model file's name), when given, starts every error message.
    ``out_channels``: the output's channels when they differ from the input's (a
    z-context model: ``2K + 1`` planes in, 1 out); ``None``: the input's shape."""
    options = run_options or _QUIET_RUN
    prefix = f"{name}: " if name else ""
    names, feed_name = [OUTPUT_NAME], INPUT_NAME

    def call(noisy: np.ndarray) -> np.ndarray:
        try:
            if binding_device:
                out = _run_bound(session, noisy, binding_device, device_id, options)
            else:
                out = session.run(names, {feed_name: noisy}, options)[0]
            if out_channels is None:
                check_output(out, noisy.shape)
            else:
                n, _, h, w = noisy.shape
                check_output(out, (n, out_channels, h, w), noisy.shape)
        except InferenceError as exc:
            raise InferenceError(f"{prefix}{exc}") from exc
        except Exception as exc:  # onnxruntime's own types, and MemoryError from its allocator
            raise InferenceError(f"{prefix}{_failure(exc, noisy.shape)}") from exc
        return out

    return call


def _failure(exc: BaseException, shape: tuple[int, ...]) -> str:
    """What an engine's failure on a batch of ``shape`` says: its first line, and a hint
    when it ran out of memory."""
    hint = ""
    if isinstance(exc, MemoryError) or any(s in str(exc) for s in _OUT_OF_MEMORY):
        hint = (
            " (out of memory: tile the image, use a smaller tile_size or batch_size, "
            "or a larger gpu_mem_limit_mb)"
        )
    return f"onnxruntime failed on a {'×'.join(map(str, shape))} batch: {first_line(exc)}{hint}"


def check_output(
    out: Any, shape: tuple[int, ...], input_shape: tuple[int, ...] | None = None
) -> None:
    """Raise :class:`InferenceError` unless ``out`` is finite float32 of ``shape`` (the
    input's shape, or with ``input_shape`` given, the output expected for that input:
    a z-context model's one plane for its ``2K + 1``)."""
    want = "×".join(map(str, input_shape or shape))
    if not isinstance(out, np.ndarray) or out.shape != shape:
        found = "×".join(map(str, getattr(out, "shape", ()))) or type(out).__name__
        expected = (
            "the input's shape"
            if input_shape is None
            else f"{'×'.join(map(str, shape))}: one plane for the input's planes"
        )
        raise InferenceError(f"the model returned {found} for a {want} input (expected {expected})")
    if out.dtype != np.float32:
        raise InferenceError(f"the model returned {out.dtype} for a {want} input, not float32")
    if out.size and not (np.isfinite(out.min()) and np.isfinite(out.max())):
        raise InferenceError(f"the model returned NaN or infinite values for a {want} input")


def _run_bound(
    session: Any, noisy: np.ndarray, binding_device: str, device_id: int, options: ort.RunOptions
) -> np.ndarray:
    binding = session.io_binding()
    value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(noisy), binding_device, device_id)
    binding.bind_ortvalue_input(INPUT_NAME, value)
    binding.bind_output(OUTPUT_NAME, binding_device, device_id)
    session.run_with_iobinding(binding, options)
    return binding.copy_outputs_to_cpu()[0]
