"""Write one self-contained ONNX file per checkpoint, with the contract's metadata."""

from __future__ import annotations

import json
import logging
import re
import tempfile
import warnings
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from n2n_export.onnx_model import OnnxDenoiser
from n2n_export.quantize import quantize_int8
from n2n_infer import metadata as md
from n2n_infer.files import sha256_file, write_atomic
from n2n_train.checkpoint import load_checkpoint

log = logging.getLogger(__name__)

#: ONNX opset of the exported graphs.
OPSET = 20


#: The precisions the exporter writes; inputs and outputs are float32 for all.
PRECISIONS = ("fp32", "fp16", "int8")

#: Keys of a summary's ``data`` that older checkpoints filled with paths -> the name's key.
_PATH_KEYS = {"path": "name", "val_path": "val_name"}
#: An absolute path: POSIX, home-relative, UNC or a Windows drive.
_ABSOLUTE = re.compile(r"^(?:/|~|\\\\|[A-Za-z]:[\\/])")


def export_onnx(
    checkpoint: str | Path,
    out: str | Path,
    name: str | None = None,
    precision: str = "fp32",
    calibration: list[np.ndarray] | None = None,
    reproduce: str = "",
) -> Path:
    """Export ``checkpoint`` to the single ONNX file ``out`` and return its path.

    The graph has input ``noisy`` and output ``denoised`` (float32 N×3×H×W in
    [0, 1]) with dynamic N, H and W, is checked by ``onnx.checker`` (full
    check), and carries the metadata of :mod:`n2n_infer.metadata`. The file is
    written atomically. ``precision`` is ``fp32``, ``fp16`` (the network runs
    in float16 inside the graph, for GPUs) or ``int8`` (static quantization
    calibrated on ``calibration``: float32 N×3×H×W noisy batches).
    ``reproduce`` is the command that rebuilds the model (kept in the metadata).

    Raises:
        training.checkpoint.CheckpointError: the checkpoint cannot be loaded.
        ValueError: unknown precision, or int8 without calibration data.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {list(PRECISIONS)}")
    checkpoint, out = Path(checkpoint), Path(out)
    ckpt = load_checkpoint(checkpoint)
    wrapper = OnnxDenoiser(ckpt.build_model(), half=precision == "fp16")
    stride = ckpt.config.stride
    example = torch.rand(1, 3, 2 * stride, 2 * stride)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        _torch_export(wrapper, example, raw)
        if precision == "int8":
            quantized = Path(tmp) / "int8.onnx"
            quantize_int8(raw, quantized, calibration or [])
            raw = quantized
        model = onnx.load(str(raw))
    summary = ckpt.summary
    props = {
        md.KEY_FORMAT_VERSION: str(md.FORMAT_VERSION),
        md.KEY_STRIDE: str(stride),
        md.KEY_NAME: name or out.stem,
        md.KEY_PRECISION: precision,
        md.KEY_CONFIG: json.dumps(ckpt.config.to_dict()),
        md.KEY_NOISE: str(summary.get("noise", "")),
        md.KEY_TRAINING: json.dumps(portable_summary(summary), default=str),
        md.KEY_PSNR: json.dumps({"val_psnr_torch": summary.get("val_psnr")}),
        md.KEY_EXPORTER: json.dumps(exporter_versions()),
        md.KEY_CHECKPOINT_SHA256: sha256_file(checkpoint),
        md.KEY_REPRODUCE: reproduce,
    }
    onnx.helper.set_model_props(model, props)
    model.producer_name = "n2n-export"
    onnx.checker.check_model(model, full_check=True)
    _atomic_save(model, out)
    log.info(
        "exported %s -> %s (%s, opset %d, stride %d)", checkpoint, out, precision, OPSET, stride
    )
    return out


def portable_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """A copy of a training summary that names files and folders, never their paths.

    Summaries record data by name and checksum (``data.name``, ``data.files``
    or ``data.sha256``); older checkpoints held paths of the machine that
    trained them (``data.path``, ``data.val_path``, ``data.init``,
    ``averaged.checkpoints[].file``). Those become names (``data.name``,
    ``data.val_name``), and any other string that is an absolute path becomes
    its last part, so no exported file carries a path of the machine it was made on.
    """
    out = _without_paths(summary)
    data = out.get("data")
    if isinstance(data, dict):
        for old, new in _PATH_KEYS.items():
            if old in data:
                data.setdefault(new, _last_part(str(data.pop(old))))
    return out


def _without_paths(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_paths(v) for v in value]
    if isinstance(value, str) and _ABSOLUTE.match(value):
        return _last_part(value)
    return value


def _last_part(path: str) -> str:
    """The file or folder name at the end of ``path`` (POSIX or Windows separators)."""
    return re.split(r"[\\/]", path.rstrip("/\\"))[-1]


def _torch_export(wrapper: OnnxDenoiser, example: torch.Tensor, path: Path) -> None:
    dims = {0: torch.export.Dim("N"), 2: torch.export.Dim("H"), 3: torch.export.Dim("W")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            input_names=[md.INPUT_NAME],
            output_names=[md.OUTPUT_NAME],
            dynamic_shapes={"noisy": dims},
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def _atomic_save(model: onnx.ModelProto, out: Path) -> None:
    # the bytes, not onnx.save_model(model, f): that reads f.name, an int for a descriptor
    write_atomic(out, lambda f: f.write(model.SerializeToString()))


def exporter_versions() -> dict[str, str]:
    """Versions of the packages that produced the file (those installed), and the opset."""
    out = {}
    for n in ("n2n", "torch", "onnx", "onnxscript", "onnxruntime", "onnxruntime-gpu"):
        try:
            out[n] = importlib_metadata.version(n)
        except importlib_metadata.PackageNotFoundError:
            continue
    out["opset"] = str(OPSET)
    return out


def update_metadata(path: str | Path, props: dict[str, str]) -> None:
    """Set (add or replace) metadata entries of an exported file, atomically."""
    path = Path(path)
    model = onnx.load(str(path))
    merged = {p.key: p.value for p in model.metadata_props} | props
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, merged)
    _atomic_save(model, path)
