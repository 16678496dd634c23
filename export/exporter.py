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
from n2n_train.checkpoint import Checkpoint, load_checkpoint
from n2n_train.noise import (
    BernoulliNoise,
    CorrelatedNoise,
    GaussianNoise,
    ImpulseNoise,
    MixedNoise,
    NoiseModel,
    PixelatedNoise,
    PoissonNoise,
    parse_noise,
)

log = logging.getLogger(__name__)

#: ONNX opset of the exported graphs.
OPSET = 20


#: The precisions the exporter writes; inputs and outputs are float32 for all.
PRECISIONS = ("fp32", "fp16", "int8")
#: The architecture the exporter writes (``n2n.architecture``): training's UNet
#: (``n2n_train.unet.UNet``, shaped by ``n2n.config``), the only one it builds.
ARCHITECTURE = "unet"

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
    [0, 1]; N×C×H×W for a model of C channels, N×(2K+1)×H×W in and N×1×H×W out for
    a z-context model) with dynamic N, H and W, is checked by ``onnx.checker`` (full
    check), and carries the metadata of :mod:`n2n_infer.metadata`. The file is
    written atomically. ``precision`` is ``fp32``, ``fp16`` (the network runs
    in float16 inside the graph, for GPUs) or ``int8`` (static quantization
    calibrated on ``calibration``: float32 N×3×H×W noisy batches).
    ``reproduce`` is the command that rebuilds the model (kept in the metadata).
    The metadata states the model's facts (:func:`stated_facts`).

    Raises:
        training.checkpoint.CheckpointError: the checkpoint cannot be loaded.
        ValueError: unknown precision, int8 without calibration data, or a network
            whose input and output channel counts differ.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {list(PRECISIONS)}")
    checkpoint, out = Path(checkpoint), Path(out)
    ckpt = load_checkpoint(checkpoint)
    facts = stated_facts(ckpt)  # refuses what the runtime's contract cannot describe
    wrapper = OnnxDenoiser(ckpt.build_model(), half=precision == "fp16")
    stride = ckpt.config.stride
    example = torch.rand(1, ckpt.config.in_channels, 2 * stride, 2 * stride)
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
        **facts,
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
    strip_node_metadata(model)
    onnx.checker.check_model(model, full_check=True)
    _atomic_save(model, out)
    log.info(
        "exported %s -> %s (%s, opset %d, stride %d)", checkpoint, out, precision, OPSET, stride
    )
    return out


def stated_facts(ckpt: Checkpoint) -> dict[str, str]:
    """The facts a model states in its metadata (format 2), from its checkpoint.

    The format version, the architecture's name, the channel count, the
    receptive radius (``UNetConfig.receptive_radius``: the tile overlap and a
    package's halo), the grey handling (:func:`grey_handling`) and the training
    noise in words (:func:`noise_description`). ``scripts/upgrade_metadata.py``
    adds them to files exported before format 2.

    A z-context model (``UNetConfig.z_context`` K > 0: ``2K + 1`` planes in, one
    out) is written as format 3 (:data:`n2n_infer.metadata.Z_CONTEXT_FORMAT`): the
    facts of format 2 with ``n2n.channels`` 1 (its planes and its output are grey) and
    ``n2n.z_context`` K, so that a runtime that reads format 2 refuses it by its
    version rather than running it wrong. Every other model stays format 2, readable
    by those runtimes.

    Raises:
        ValueError: the network's input and output channel counts differ (the
            contract has one count for both), unless it is a z-context model.
    """
    config, summary = ckpt.config, ckpt.summary
    if config.in_channels != config.out_channels and not config.z_context:
        raise ValueError(
            f"{config.in_channels} input and {config.out_channels} output channels: an n2n "
            "model gives back an image of its input's channels"
        )
    channels = config.out_channels
    facts = {
        md.KEY_FORMAT_VERSION: str(md.FORMAT_VERSION),
        md.KEY_ARCHITECTURE: ARCHITECTURE,
        md.KEY_CHANNELS: str(channels),
        md.KEY_RECEPTIVE_RADIUS: str(config.receptive_radius),
        md.KEY_GREY: md.GREY_NATIVE if channels == 1 else grey_handling(summary),
        md.KEY_NOISE_DESCRIPTION: noise_description(str(summary.get("noise", ""))),
    }
    if config.z_context:
        facts[md.KEY_FORMAT_VERSION] = str(md.Z_CONTEXT_FORMAT)
        facts[md.KEY_Z_CONTEXT] = str(config.z_context)
    return facts


def grey_handling(summary: dict[str, Any]) -> str:
    """How grey images should go through a colour model (``n2n.grey``), from its training
    summary (a 1-channel model states ``native``).

    ``replicate`` (the grey copied into R, G and B) when the model learned grey
    images copied so (photo patches made grey, ``train_config.grey_fraction``, or
    own data with grey scenes, ``data.grey_scenes``), or when its training noise,
    read by training's own parser, is not independent from pixel to pixel
    (:func:`pixel_independent`): the pixel phases would then share it. Else
    ``phases``. A noise the parser does not know (own data's, the course's)
    gives ``phases``, as the runtime did for it before models stated this.
    """
    if trained_on_grey(summary):
        return "replicate"
    try:
        noise = parse_noise(str(summary.get("noise", "")))
    except ValueError:
        return "phases"
    return "phases" if pixel_independent(noise) else "replicate"


def pixel_independent(noise: NoiseModel) -> bool:
    """Whether ``noise`` draws each pixel independently of its neighbours.

    Pixelated noise with blocks of more than one pixel and correlated noise do
    not; a mix does only if every part does. A noise model this does not know
    counts as dependent (grey images then go whole, the safe way).
    """
    if isinstance(noise, MixedNoise):
        return all(pixel_independent(part) for part in noise.parts)
    if isinstance(noise, PixelatedNoise):
        return noise.block == 1 or noise.coarse_fraction == 0.0
    return isinstance(noise, GaussianNoise | PoissonNoise | BernoulliNoise | ImpulseNoise)


def trained_on_grey(summary: dict[str, Any]) -> bool:
    """Whether a training summary says the model learned grey images copied into RGB (the
    runtime's reading of the same summary, :func:`n2n_infer.metadata.trained_on_grey`)."""
    return md.trained_on_grey(summary)


def noise_description(spec: str) -> str:
    """A noise spec in words (``n2n.noise_description``), read by training's own parser.

    ``gaussian:0-50`` -> ``Gaussian noise, sigma 0–50 (of 255)``; a mix reads as
    "one of: ...; ..."; a spec the parser does not know (own data's noise, which
    training already words, or the course's) is kept as it is.
    """
    try:
        noise = parse_noise(spec)
    except ValueError:
        return spec
    parts = noise.parts if isinstance(noise, MixedNoise) else (noise,)
    words = [_noise_words(part) for part in parts]
    return words[0] if len(words) == 1 else "one of: " + "; ".join(words)


def _noise_words(noise: NoiseModel) -> str:
    if isinstance(noise, GaussianNoise):
        return f"Gaussian noise, sigma {_span(noise.sigma_lo_255, noise.sigma_hi_255)} (of 255)"
    if isinstance(noise, CorrelatedNoise):
        span = _span(noise.sigma_lo_255, noise.sigma_hi_255)
        return f"spatially correlated Gaussian noise, sigma {span} (of 255)"
    if isinstance(noise, PoissonNoise):
        return f"Poisson (shot) noise, lambda {_span(noise.lam_lo, noise.lam_hi)}"
    if isinstance(noise, PixelatedNoise):
        return (
            f"pixelated Gaussian noise ({noise.coarse_fraction:.0%} of it in blocks), sigma "
            f"{_number(noise.sigma_255)} (of 255), blocks {noise.block}"
        )
    if isinstance(noise, BernoulliNoise):
        return f"Bernoulli (dropped pixel) noise, probability {_span(noise.p_lo, noise.p_hi)}"
    if isinstance(noise, ImpulseNoise):
        return f"impulse (salt and pepper) noise, probability {_span(noise.p_lo, noise.p_hi)}"
    return type(noise).__name__


def _span(lo: float, hi: float) -> str:
    return _number(lo) if lo == hi else f"{_number(lo)}–{_number(hi)}"


def _number(value: float) -> str:
    """``value`` as written in a spec: ``25`` rather than ``25.0``, all its digits kept."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


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


def strip_node_metadata(model: onnx.ModelProto) -> int:
    """Remove every node's ``metadata_props`` (torch's exporter records each node's Python
    stack trace there, with the exporting machine's source paths); returns how many were
    removed. The graph's computation is unchanged."""
    removed = 0
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            removed += len(node.metadata_props)
            del node.metadata_props[:]
            for attribute in node.attribute:  # subgraphs (If, Loop, Scan)
                if attribute.HasField("g"):
                    graphs.append(attribute.g)
                graphs.extend(attribute.graphs)
    for function in model.functions:
        for node in function.node:
            removed += len(node.metadata_props)
            del node.metadata_props[:]
    return removed


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
