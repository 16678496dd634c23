"""Mutated copies of ``models/seedlike.onnx`` and the loader's contract on each of them.

Used by ``tests/infer/test_model_fuzz.py`` (a bounded run in CI) and by
``scripts/fuzz_models.py`` (a longer run). A case is a seeded mutation of one
kind (:data:`KINDS`): bytes flipped or truncated, a metadata prop removed or set
to a hostile value, or the graph edited. The contract (:func:`check_case`):
``Denoiser(path, device="cpu")`` either raises :class:`ModelLoadError`, or loads
and denoises a small image into an array of its shape and dtype, equal to the
unmutated model's output when only metadata other than the stride changed.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from n2n_infer import Denoiser, ModelLoadError
from tests.conftest import REPO

SEEDLIKE = REPO / "models" / "seedlike.onnx"
#: The image every loaded model denoises: not a multiple of the stride.
IMAGE = np.random.default_rng(0).integers(0, 256, (13, 9, 3), dtype=np.uint8)

HOSTILE_INTS = [
    "0", "-4", "3", "4.0", "", " ", "1e3", "0x4", "2" * 4000, "9" * 5000, str(2**20),
    str(2**63), "512", "256", "\u0664", "4\x00", "NaN", "inf",
]  # fmt: skip
HOSTILE_JSON = [
    "[]", "null", '"text"', "1", "{", "[" * 50_000, '{"a":' * 50_000, "{}" + "x" * 100,
    json.dumps({"features": [16] * 70}), json.dumps({"features": [1e308, 2]}),
    json.dumps({"features": []}), json.dumps({"features": [16, 32, 2**40]}),
    json.dumps({"convs_per_level": -1}), json.dumps({"convs_per_level": 10**9}),
    json.dumps({"features": [16, 32, 64], "convs_per_level": 4}),
    json.dumps({"features": [8] * 9, "convs_per_level": 4}),
    json.dumps({"x": "y" * 1_000_000}), '{"features": NaN}', '{"train_config": []}',
    '{"psnr_noisy": "a", "psnr_onnx": Infinity}', '{"data": {"source": null}}',
]  # fmt: skip
HOSTILE_TEXT = ["", "x" * 1_000_000, "\x00\x01", "gaussian:", "pixelated:abc,", "+", "é" * 1000]
PROPS = {
    "n2n.format_version": HOSTILE_INTS,
    "n2n.stride": [*HOSTILE_INTS, "1", "2", "8", "16"],
    "n2n.config": HOSTILE_JSON,
    "n2n.training": HOSTILE_JSON,
    "n2n.psnr": HOSTILE_JSON,
    "n2n.exporter": HOSTILE_JSON,
    "n2n.noise": HOSTILE_TEXT,
    "n2n.name": HOSTILE_TEXT,
    "n2n.precision": HOSTILE_TEXT,
}


@dataclass(frozen=True)
class Case:
    """One mutated model: how it was made, and its bytes."""

    kind: str
    detail: str
    data: bytes
    #: Whether only metadata other than the stride changed (the output must not change).
    same_output: bool = False


def _base() -> onnx.ModelProto:
    return onnx.load(str(SEEDLIKE))


def flip_bytes(rng: random.Random, data: bytes) -> Case:
    buf = bytearray(data)
    spots = [rng.randrange(len(buf)) for _ in range(rng.randint(1, 8))]
    for i in spots:
        buf[i] ^= 1 << rng.randrange(8)
    return Case("flip", f"bits at {spots}", bytes(buf))


def truncate(rng: random.Random, data: bytes) -> Case:
    cut = rng.randrange(len(data))
    return Case("truncate", f"first {cut} bytes", data[:cut])


def remove_prop(rng: random.Random, data: bytes) -> Case:
    model = _base()
    key = rng.choice([p.key for p in model.metadata_props])
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != key]
    _set_props(model, kept)
    optional = key not in ("n2n.format_version", "n2n.stride", "n2n.config")
    return Case("remove-prop", key, model.SerializeToString(), same_output=optional)


def hostile_prop(rng: random.Random, data: bytes) -> Case:
    key = rng.choice(sorted(PROPS))
    return _with_prop(_base(), key, rng.choice(PROPS[key]))


def every_hostile_prop() -> Iterator[Case]:
    """Each hostile value of :data:`PROPS` for each key, once."""
    base = _base()
    for key, values in sorted(PROPS.items()):
        for value in values:
            yield _with_prop(base, key, value)


def _with_prop(model: onnx.ModelProto, key: str, value: str) -> Case:
    """``model`` with metadata ``key`` set to ``value`` (``model`` is left as it was)."""
    original = [(p.key, p.value) for p in model.metadata_props]
    _set_props(model, [(k, value if k == key else v) for k, v in original])
    data = model.SerializeToString()
    _set_props(model, original)
    shown = f"{value[:40]!r}{'...' if len(value) > 40 else ''}"
    return Case("hostile-prop", f"{key}={shown}", data, same_output=key != "n2n.stride")


def edit_graph(rng: random.Random, data: bytes) -> Case:
    model = _base()
    name, edit = rng.choice(sorted(GRAPH_EDITS.items()))
    detail = edit(rng, model)
    return Case("graph", f"{name}: {detail}", model.SerializeToString())


def _set_props(model: onnx.ModelProto, props: list[tuple[str, str]]) -> None:
    del model.metadata_props[:]
    for key, value in props:
        model.metadata_props.add(key=key, value=value)


def _drop_node(rng: random.Random, model: onnx.ModelProto) -> str:
    i = rng.randrange(len(model.graph.node))
    node = model.graph.node[i]
    del model.graph.node[i]
    return f"removed node {i} ({node.op_type})"


def _rewire(rng: random.Random, model: onnx.ModelProto) -> str:
    node = rng.choice(list(model.graph.node))
    k = rng.randrange(len(node.input)) if node.input else 0
    if node.input:
        node.input[k] = "noisy"
    return f"{node.op_type} input {k} <- noisy"


def _input_type(rng: random.Random, model: onnx.ModelProto) -> str:
    elem = rng.choice([TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.UINT8])
    model.graph.input[0].type.tensor_type.elem_type = elem
    return f"input type {elem}"


def _input_shape(rng: random.Random, model: onnx.ModelProto) -> str:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    i = rng.randrange(len(dims))
    dims[i].dim_value = rng.choice([1, 2, 5, 64])
    return f"input dim {i} fixed to {dims[i].dim_value}"


def _second_input(rng: random.Random, model: onnx.ModelProto) -> str:
    model.graph.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1]))
    return "second input 'extra'"


def _rename(rng: random.Random, model: onnx.ModelProto) -> str:
    which = rng.choice(["input", "output"])
    value = model.graph.input[0] if which == "input" else model.graph.output[0]
    old = value.name
    value.name = "renamed"
    return f"{which} {old!r} renamed"


def _initializer(rng: random.Random, model: onnx.ModelProto) -> str:
    init = rng.choice(list(model.graph.initializer))
    if init.dims and rng.random() < 0.5:
        init.dims[0] = init.dims[0] + rng.choice([-1, 1, 1000])
        return f"{init.name} dims {list(init.dims)}"
    values = onnx.numpy_helper.to_array(init).copy()
    values.flat[rng.randrange(values.size)] = rng.choice([np.nan, np.inf, 1e30])
    init.CopyFrom(onnx.numpy_helper.from_array(values, init.name))
    return f"{init.name} has a NaN/inf/huge value"


def _versions(rng: random.Random, model: onnx.ModelProto) -> str:
    if rng.random() < 0.5:
        model.opset_import[0].version = rng.choice([1, 7, 99])
        return f"opset {model.opset_import[0].version}"
    model.ir_version = rng.choice([1, 99])
    return f"ir_version {model.ir_version}"


def _attribute(rng: random.Random, model: onnx.ModelProto) -> str:
    nodes = [n for n in model.graph.node if n.attribute]
    if not nodes:
        return "no attributes"
    node = rng.choice(nodes)
    attr = rng.choice(list(node.attribute))
    if attr.ints:
        attr.ints[rng.randrange(len(attr.ints))] = rng.choice([0, 3, 1000])
    elif attr.type == onnx.AttributeProto.INT:
        attr.i = rng.choice([0, -1, 1000])
    return f"{node.op_type}.{attr.name} changed"


GRAPH_EDITS: dict[str, Callable[[random.Random, onnx.ModelProto], str]] = {
    "drop-node": _drop_node,
    "rewire": _rewire,
    "input-type": _input_type,
    "input-shape": _input_shape,
    "second-input": _second_input,
    "rename": _rename,
    "initializer": _initializer,
    "versions": _versions,
    "attribute": _attribute,
}
KINDS: dict[str, Callable[[random.Random, bytes], Case]] = {
    "flip": flip_bytes,
    "truncate": truncate,
    "remove-prop": remove_prop,
    "hostile-prop": hostile_prop,
    "graph": edit_graph,
}


def make_case(seed: int, index: int) -> Case:
    """Case ``index`` of the run seeded ``seed``: kinds in turn, details at random."""
    rng = random.Random(seed * 1_000_003 + index)
    kind = sorted(KINDS)[index % len(KINDS)]
    return KINDS[kind](rng, SEEDLIKE.read_bytes())


def reference_output() -> np.ndarray:
    """The unmutated model's output on :data:`IMAGE`."""
    return Denoiser(SEEDLIKE, device="cpu", intra_op_threads=1).denoise(IMAGE)


def check_case(case: Case, folder: Path, reference: np.ndarray) -> tuple[str, float]:
    """Load and run one case; returns ("refused" | "ok", seconds).

    Raises:
        AssertionError: the contract is broken (another exception type escapes
            as itself).
    """
    path = folder / "case.onnx"
    path.write_bytes(case.data)
    t0 = time.perf_counter()
    try:
        d = Denoiser(path, device="cpu", intra_op_threads=1)
    except ModelLoadError as exc:
        assert str(exc).startswith(str(path)) or "model 'case'" in str(exc), str(exc)
        return "refused", time.perf_counter() - t0
    out = d.denoise(IMAGE)
    assert out.shape == IMAGE.shape and out.dtype == IMAGE.dtype, (out.shape, out.dtype)
    if case.same_output:
        np.testing.assert_array_equal(out, reference)
    return "ok", time.perf_counter() - t0
