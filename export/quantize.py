"""The int8 variant: onnxruntime static quantization (QDQ, per-channel int8 weights)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from n2n_infer.metadata import INPUT_NAME

log = logging.getLogger(__name__)


class _Reader(CalibrationDataReader):
    def __init__(self, batches: list[np.ndarray]) -> None:
        self._it: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {INPUT_NAME: batch}


def output_head(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes from the last Conv to the graph output (walking back).

    At each node the walk follows the first input that a node produces, so a
    residual ``Add(noisy, head)`` leads to the head rather than stopping at the
    graph input.
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    names: list[str] = []
    node = producers.get(model.graph.output[0].name)
    while node is not None:
        names.append(node.name)
        if node.op_type == "Conv":
            break
        node = next((producers[name] for name in node.input if name in producers), None)
    return names


def float_head(model: onnx.ModelProto, head: list[str]) -> None:
    """Let the ``head`` nodes compute in float on float inputs, in place.

    onnxruntime's quantizer leaves them float but still rounds around them: the
    head convolution's output to uint8 before the residual add, and the add's
    image input to the input's 8-bit grid (exact for 8-bit files, not for
    16-bit ones). Both roundings buy no int8 kernel; this removes the first
    QuantizeLinear/DequantizeLinear pair and points the head at the graph
    input itself for the second.
    """
    head_outputs = {out for node in model.graph.node if node.name in head for out in node.output}
    graph_inputs = {i.name for i in model.graph.input}
    quants = {n.output[0]: n for n in model.graph.node if n.op_type == "QuantizeLinear"}
    everywhere: dict[str, str] = {}  # DequantizeLinear output -> the float tensor to read
    in_head: dict[str, str] = {}
    drop: list[onnx.NodeProto] = []
    for dq in [n for n in model.graph.node if n.op_type == "DequantizeLinear"]:
        q = quants.get(dq.input[0])
        if q is not None and q.input[0] in head_outputs:
            everywhere[dq.output[0]] = q.input[0]
            drop += [q, dq]
        elif q is not None and q.input[0] in graph_inputs:
            in_head[dq.output[0]] = q.input[0]
    for node in model.graph.node:
        table = {**everywhere, **in_head} if node.name in head else everywhere
        node.input[:] = [table.get(name, name) for name in node.input]
    for node in drop:
        model.graph.node.remove(node)


def quantize_int8(
    fp32_model: Path,
    out: Path,
    calibration: list[np.ndarray],
    *,
    head_float: bool = True,
    reduce_range: bool = True,
    method: str = "MinMax",
    exclude: tuple[str, ...] = (),
) -> None:
    """Write an int8 QDQ copy of ``fp32_model`` to ``out``.

    Weights are int8 per output channel; activations uint8 with ranges from the
    ``calibration`` batches (float32 N×3×H×W noisy images in [0, 1]).
    Inputs and outputs stay float32. The output head (the nodes from the last
    convolution to the graph output, :func:`output_head`) stays float32, with
    no rounding between the head and the residual add: quantizing it costs
    0.04 dB on the photo model (bench/int8_search.py) and buys no speed.

    The keyword options are the shipped recipe; ``bench/int8_search.py`` varies
    them: ``head_float``, ``reduce_range`` (7-bit weights), ``method``
    (onnxruntime's ``CalibrationMethod`` name: MinMax, Entropy, Percentile)
    and ``exclude`` (more node names to keep float).

    Raises:
        ValueError: no calibration batch, or an unknown ``method``.
    """
    if not calibration:
        raise ValueError("int8 quantization needs at least one calibration image")
    if method not in CalibrationMethod.__members__:
        raise ValueError(
            f"method {method!r}: expected one of {list(CalibrationMethod.__members__)}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_model), str(prepared), skip_symbolic_shape=True)
        head = output_head(onnx.load(str(prepared))) if head_float else []
        quantized = Path(tmp) / "quantized.onnx"
        quantize_static(
            str(prepared),
            str(quantized),
            _Reader(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            # 7-bit weights: without VNNI, x86 u8s8 kernels saturate (measured: 1.33 dB lost on
            # an AMD EPYC without AVX512-VNNI, against the 0.75 dB limit); with it, same result
            reduce_range=reduce_range,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            nodes_to_exclude=[*head, *exclude],
            calibrate_method=CalibrationMethod[method],
        )
        model = onnx.load(str(quantized))
        float_head(model, head)
        onnx.save(model, str(out))
    log.info("quantized %s -> %s on %d calibration batches", fp32_model, out, len(calibration))
