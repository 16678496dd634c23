"""Tiny ONNX graphs with the n2n metadata of ``models/seedlike.onnx``, for hostile-model tests.

Each builder returns an ``onnx.ModelProto``; :func:`save` writes it with the
seedlike model's ``metadata_props`` (or edited ones). Built with ``onnx.helper``
only: no torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import REPO

SEEDLIKE = REPO / "models" / "seedlike.onnx"
NCHW = ["N", 3, "H", "W"]


def seedlike_props() -> dict[str, str]:
    """The shipped seedlike model's n2n metadata (stride 4)."""
    return {
        p.key: p.value for p in onnx.load(str(SEEDLIKE), load_external_data=False).metadata_props
    }


def graph_model(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto] | None = None,
    out_shape: list | None = None,
    initializers: list[onnx.TensorProto] | None = None,
) -> onnx.ModelProto:
    """A model from ``nodes`` that read ``noisy`` (N×3×H×W float) and write ``denoised``."""
    inputs = inputs or [helper.make_tensor_value_info("noisy", TensorProto.FLOAT, NCHW)]
    out = helper.make_tensor_value_info("denoised", TensorProto.FLOAT, out_shape)
    graph = helper.make_graph(nodes, "g", inputs, [out], initializer=initializers or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    return model


def const(name: str, value: object, dtype: type = np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def identity() -> onnx.ModelProto:
    return graph_model([helper.make_node("Identity", ["noisy"], ["denoised"])], out_shape=NCHW)


def cropping(rows: int = 1) -> onnx.ModelProto:
    """Output ``rows`` rows shorter than the input."""
    inits = [const("s", [0], np.int64), const("e", [-rows], np.int64), const("a", [2], np.int64)]
    node = helper.make_node("Slice", ["noisy", "s", "e", "a"], ["denoised"])
    return graph_model([node], initializers=inits)


def first_rows(rows: int) -> onnx.ModelProto:
    """Output at most the first ``rows`` rows: right on small images, wrong on larger ones."""
    inits = [const("s", [0], np.int64), const("e", [rows], np.int64), const("a", [2], np.int64)]
    node = helper.make_node("Slice", ["noisy", "s", "e", "a"], ["denoised"])
    return graph_model([node], initializers=inits)


def transposing() -> onnx.ModelProto:
    node = helper.make_node("Transpose", ["noisy"], ["denoised"], perm=[0, 1, 3, 2])
    return graph_model([node], out_shape=NCHW)


def doubling_channels() -> onnx.ModelProto:
    node = helper.make_node("Concat", ["noisy", "noisy"], ["denoised"], axis=1)
    return graph_model([node])


def flat_output() -> onnx.ModelProto:
    node = helper.make_node("Flatten", ["noisy"], ["denoised"], axis=1)
    return graph_model([node], out_shape=["N", "K"])


def two_inputs() -> onnx.ModelProto:
    inputs = [
        helper.make_tensor_value_info("noisy", TensorProto.FLOAT, NCHW),
        helper.make_tensor_value_info("sigma", TensorProto.FLOAT, [1]),
    ]
    node = helper.make_node("Add", ["noisy", "sigma"], ["denoised"])
    return graph_model([node], inputs=inputs, out_shape=NCHW)


def nan_everywhere() -> onnx.ModelProto:
    """(x - x) / 0: NaN for every input."""
    nodes = [
        helper.make_node("Sub", ["noisy", "noisy"], ["zero"]),
        helper.make_node("Div", ["zero", "z"], ["denoised"]),
    ]
    return graph_model(nodes, out_shape=NCHW, initializers=[const("z", 0.0)])


def nan_on_black() -> onnx.ModelProto:
    """x + 0 * log(x): the input where x > 0, NaN where x == 0 (black pixels)."""
    nodes = [
        helper.make_node("Log", ["noisy"], ["log"]),
        helper.make_node("Mul", ["log", "z"], ["zeroed"]),
        helper.make_node("Add", ["noisy", "zeroed"], ["denoised"]),
    ]
    return graph_model(nodes, out_shape=NCHW, initializers=[const("z", 0.0)])


def save(model: onnx.ModelProto, path: Path, **props: str | None) -> Path:
    """Write ``model`` with the seedlike metadata, overridden by ``props`` (``None`` deletes).

    Keys are the metadata names without the ``n2n.`` prefix (``stride="8"``).
    """
    meta = seedlike_props()
    for key, value in props.items():
        if value is None:
            meta.pop(f"n2n.{key}", None)
        else:
            meta[f"n2n.{key}"] = value
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path
