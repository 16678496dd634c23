"""BioImage.IO model packages (format 0.5): the n2n model for Fiji, napari, ilastik and QuPath.

``n2n-export bioimageio CHECKPOINT|NAME OUT.zip`` writes one zip made by the
``bioimageio.spec`` library:

- ONNX weights: the file ``n2n-export onnx`` writes (a shipped model's own file, byte for
  byte), parity-gated against torch as that command is;
- TorchScript weights: the same wrapper traced (:class:`~n2n_export.onnx_model.OnnxDenoiser`,
  so it clamps to [0, 1] exactly as the ONNX graph does), checked against the ONNX
  weights; its debug records, which hold the exporting machine's source paths, are left out;
- axes batch, channel, y, x; y and x of size ``min + n·stride`` with the halo (the
  receptive radius rounded up to the stride) on the output, and reflect padding;
- preprocessing for the pixel levels (:data:`LEVELS`), test tensors made by the runtime
  (:mod:`n2n_infer`), a cover (noisy beside denoised), the model card as documentation,
  authors, licence, citations, the training data by name, and :data:`n2n_infer.package.MARKER`,
  which lets ``n2n_infer`` run the package.

A package is written only when ``bioimageio.core``'s own model test passes on it
(:func:`bioimageio_test`), offline. The ``bioimageio.*`` libraries are the optional extra
``n2n[bioimageio]``; they are imported only here.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from n2n_infer import metadata as md
from n2n_infer.errors import N2NError
from n2n_infer.files import sha256_file
from n2n_infer.package import MARKER, PackageMarker
from n2n_infer.registry import models_dir

if TYPE_CHECKING:  # torch, onnx and the training code load only when a package is made
    import torch
    from bioimageio.spec.summary import ValidationSummary

    from n2n_train.checkpoint import Checkpoint

log = logging.getLogger(__name__)

#: How pixel values become the model's [0, 1] (``--levels``), as BioImage.IO preprocessing:
#: ``range``: each image by its own minimum and maximum (``scale_range``, percentiles 0 and
#: 100 over channel, y and x): n2n_infer's rule for dim 16-bit images, the usual microscope
#: data; ``uint8`` / ``uint16``: the dtype's full scale (``scale_linear``), n2n_infer's rule
#: for 8-bit images and for 16-bit images with values above 16383.
LEVELS: dict[str, float | None] = {"range": None, "uint8": 255.0, "uint16": 65535.0}
#: The noise of the test input and the cover when the model's own cannot be drawn.
FALLBACK_NOISE = "gaussian:25"
#: The reproducibility tolerance written into the package (|output - test output|): fp32 CPU
#: engines agree within 1e-6 here; 1e-3 leaves room for GPUs' TF32 convolutions.
ABSOLUTE_TOLERANCE = 1e-3
#: TorchScript against ONNX at export, on the test input and a batch of another size.
TORCHSCRIPT_MAX_DIFF = 1e-4
#: Smallest side of the test input (the valid size at or above it is used).
TEST_SIDE = 64
COVER_SIDE = 256
#: Citations: Noise2Noise always; Neighbor2Neighbor for a model trained on single images.
NOISE2NOISE = (
    "Lehtinen J, Munkberg J, Hasselgren J, Laine S, Karras T, Aittala M, Aila T. "
    "Noise2Noise: Learning Image Restoration without Clean Data. ICML 2018. arXiv:1803.04189",
    "10.48550/arXiv.1803.04189",
)
NEIGHBOR2NEIGHBOR = (
    "Huang T, Li S, Jia X, Lu H, Liu J. Neighbor2Neighbor: Self-Supervised Denoising from "
    "Single Noisy Images. CVPR 2021. arXiv:2101.02824",
    "10.48550/arXiv.2101.02824",
)
DEFAULT_AUTHOR = "n2n contributors"
DEFAULT_LICENSE = "MIT"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class PackageExportError(N2NError):
    """A package cannot be made: unknown source or bad name."""


class PackageTestError(PackageExportError):
    """The package failed bioimageio.core's model test; it was not written."""


@dataclass(frozen=True)
class Geometry:
    """Sizes the package declares: stride (step), halo, smallest input side."""

    stride: int
    halo: int
    minimum: int

    @classmethod
    def of(cls, radius: int, stride: int) -> Geometry:
        """The halo is the receptive radius rounded up to the stride (so that blocks keep
        the pooling grid); the smallest side is the smallest multiple of the stride that
        leaves at least one pixel inside two halos, as BioImage.IO requires."""
        halo = max(1, math.ceil(radius / stride)) * stride
        return cls(stride, halo, 2 * halo + stride)

    def valid(self, at_least: int) -> int:
        """The smallest valid side (``minimum + n·stride``) of at least ``at_least``."""
        n = max(0, math.ceil((at_least - self.minimum) / self.stride))
        return self.minimum + n * self.stride


@dataclass(frozen=True)
class Source:
    """What a package is made from: the checkpoint, and a shipped model's own ONNX file."""

    checkpoint: Path
    onnx: Path | None
    name: str


def resolve_source(source: str | os.PathLike[str]) -> Source:
    """A checkpoint path, or a shipped model's name (``photo``: its ``.pt`` and ``.onnx``).

    Raises:
        PackageExportError: neither an existing file nor a shipped model's name.
    """
    path = Path(source)
    if path.is_file():
        return Source(path, None, path.stem)
    text = os.fspath(source)
    shipped = models_dir() / f"{text}.pt"
    if path.name == text and path.suffix == "" and shipped.is_file():
        onnx_file = shipped.with_suffix(".onnx")
        return Source(shipped, onnx_file if onnx_file.is_file() else None, text)
    names = sorted(p.stem for p in models_dir().glob("*.pt"))
    raise PackageExportError(
        f"{text}: expected a checkpoint file or a shipped model's name "
        f"({', '.join(names) or 'none shipped'}); found neither"
    )


def export_bioimageio(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    name: str | None = None,
    authors: tuple[str, ...] = (DEFAULT_AUTHOR,),
    license_id: str = DEFAULT_LICENSE,
    levels: str = "range",
    seed: int = 0,
    test: bool = True,
) -> tuple[Path, list[ValidationSummary]]:
    """Write the BioImage.IO package of ``source`` (checkpoint or shipped name) to ``out``.

    Built beside ``out`` and put in its place only when parity (ONNX vs torch), the
    TorchScript check and, with ``test``, ``bioimageio.core``'s model test pass. Returns
    the package's path and the test's summaries (one per weights format; none without
    ``test``).

    Raises:
        PackageExportError: unknown source or name.
        PackageTestError: the BioImage.IO test failed (nothing written).
        ParityError: the ONNX or TorchScript weights do not reproduce the checkpoint.
        ValueError: an unknown ``levels``.
        CheckpointError: the checkpoint cannot be loaded.
    """
    if levels not in LEVELS:
        raise ValueError(f"levels: expected one of {', '.join(LEVELS)}, got {levels!r}")
    src = resolve_source(source)
    out = Path(out)
    model_name = name or (src.name if src.onnx is not None else out.name.split(".")[0])
    if not _SAFE_NAME.fullmatch(model_name):
        raise PackageExportError(
            f"name {model_name!r}: expected letters, digits, '.', '_' or '-' (at most 64), "
            "starting with a letter or digit"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".n2n-export-") as tmp:
        work = Path(tmp)
        made = _build(src, work, model_name, tuple(authors), license_id, levels, seed)
        summaries = bioimageio_test(made) if test else []
        if test and not passed(summaries):
            raise PackageTestError(
                f"{out}: the BioImage.IO model test failed ({_failures(summaries)}); "
                "the package was not written"
            )
        made.replace(out)
    log.info("wrote BioImage.IO package %s", out)
    return out, summaries


def refuse_z_context(k: int, checkpoint: Path) -> None:
    """Refuse a z-context model: its input is planes z−K..z+K of a stack as channels and its
    output one plane, which the package's axes cannot say.

    Raises:
        PackageExportError: ``k`` > 0, naming the checkpoint.
    """
    if k:
        raise PackageExportError(
            f"{checkpoint}: a z-context model (K={k}: planes z-{k}..z+{k} in as {2 * k + 1} "
            "channels, plane z out) cannot be packaged for BioImage.IO: its spec's axes "
            "describe an input and an output over the same axes, and cannot say that the "
            "input's channels are neighbouring Z planes, mirrored at the ends; run it with "
            "n2n-infer batch on TIFF stacks instead"
        )


def bioimageio_test(package: str | os.PathLike[str]) -> list[ValidationSummary]:
    """``bioimageio.core``'s own model test of ``package`` on the CPU, run offline: one
    summary per weights format (ONNX, TorchScript).

    Each loads the package with its input/output checks on (``perform_io_checks``: the
    description, every file's sha256, the test tensors against the axes), reproduces the
    test output from the test input, and runs batch sizes 1 and 2 at three valid sizes. The
    formats run apart because bioimageio.core passes one ``devices`` list to both: onnxruntime
    names the CPU ``CPUExecutionProvider``, torch ``cpu``. The packages n2n writes hold no
    URL (citations by DOI), so nothing is fetched.
    """
    from bioimageio.core import test_model

    return [
        test_model(Path(package), weight_format=fmt, devices=[device])
        for fmt, device in (("onnx", "CPUExecutionProvider"), ("torchscript", "cpu"))
    ]


def passed(summaries: list[ValidationSummary]) -> bool:
    """Whether every summary of :func:`bioimageio_test` passed."""
    return bool(summaries) and all(s.status == "passed" for s in summaries)


# --- building -------------------------------------------------------------------------------


def _build(
    src: Source,
    work: Path,
    name: str,
    authors: tuple[str, ...],
    license_id: str,
    levels: str,
    seed: int,
) -> Path:
    """All files of the package in ``work``, then the zip ``work/package.zip``."""
    from n2n_train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(src.checkpoint)
    refuse_z_context(ckpt.config.z_context, src.checkpoint)
    onnx_path = work / f"{name}.onnx"
    report = _onnx_weights(src, ckpt, onnx_path, seed)
    (work / f"{name}.parity.json").write_text(report)
    card = _card(src, onnx_path)
    info = _info(onnx_path)
    geometry = Geometry.of(info.receptive_radius, info.stride)
    noise = _drawable_noise(info.noise)
    test_in, test_out = _test_tensors(onnx_path, geometry, levels, noise, seed, info.channels)
    np.save(work / "test_input.npy", test_in)
    np.save(work / "test_output.npy", test_out)
    ts_path = work / f"{name}.torchscript.pt"
    _torchscript(ckpt, test_in, test_out, levels, ts_path)
    _cover(onnx_path, noise, seed, work / "cover.png", info.channels)
    (work / "README.md").write_text(_documentation(info, geometry, levels, card))
    marker = PackageMarker(
        onnx_path.name, sha256_file(onnx_path), onnx_path.stat().st_size, _version("n2n")
    )
    (work / MARKER).write_text(marker.to_json())
    descr = _description(
        work, name, info, ckpt, geometry, levels, authors, license_id, onnx_path, ts_path
    )
    from bioimageio.spec import save_bioimageio_package

    package = work / "package.zip"
    save_bioimageio_package(descr, output_path=package)
    _check_marker_names(package, marker)
    return package


def _onnx_weights(src: Source, ckpt: Checkpoint, onnx_path: Path, seed: int) -> str:
    """Put the ONNX weights at ``onnx_path`` (a shipped model's file, or a new export) and
    gate them on parity with the checkpoint; returns the parity report (JSON)."""
    from n2n_export.data import builtin_patterns, parity_cases
    from n2n_export.exporter import export_onnx, update_metadata
    from n2n_export.parity import ParityError, check_parity

    if src.onnx is not None:
        shutil.copyfile(src.onnx, onnx_path)
    else:
        export_onnx(src.checkpoint, onnx_path, name=onnx_path.stem)
    cases = parity_cases(builtin_patterns(seed), FALLBACK_NOISE, seed, ckpt.config.in_channels)
    report = check_parity(src.checkpoint, onnx_path, cases)
    if not report.passed:
        raise ParityError(
            f"{onnx_path.name}: the ONNX weights failed parity with {src.checkpoint.name}; "
            "no package written"
        )
    if src.onnx is None:  # a new export records its figures as `n2n-export onnx` does
        case = report.cases[-1]
        headline = {
            "val_psnr_torch": ckpt.summary.get("val_psnr"),
            "eval_set": case.name,
            "reference": "clean",
            "images": case.images,
            "psnr_noisy": case.psnr_noisy,
            "psnr_torch": case.psnr_torch,
            "psnr_onnx": case.psnr_onnx,
        }
        update_metadata(onnx_path, {md.KEY_PSNR: json.dumps(headline)})
    named = json.loads(report.to_json())  # files by name: no path of this machine travels
    named.update(checkpoint=src.checkpoint.name, model=onnx_path.name)
    return json.dumps(named, indent=2) + "\n"


def _card(src: Source, onnx_path: Path) -> str:
    """The model card's text: a shipped model's own card, else one made from the metadata."""
    from n2n_export.card import write_model_card

    shipped = src.onnx.with_suffix(".md") if src.onnx is not None else None
    if shipped is not None and shipped.is_file():
        return shipped.read_text()
    card = write_model_card(onnx_path)
    text = card.read_text()
    card.unlink()
    return text


def _info(onnx_path: Path) -> md.ModelInfo:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    return md.ModelInfo.from_props(props, onnx_path)


def _drawable_noise(noise: str) -> str:
    """The model's noise if n2n can draw it (a spec), else :data:`FALLBACK_NOISE`."""
    from n2n_train.noise import parse_noise

    try:
        parse_noise(noise)
    except (ValueError, KeyError, TypeError):
        return FALLBACK_NOISE
    return noise


def _test_tensors(
    onnx_path: Path, geometry: Geometry, levels: str, noise: str, seed: int, channels: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """The test input (a noisy pattern as the levels mode expects it: dim 16-bit counts for
    ``range``, full-scale 8- or 16-bit otherwise) and the runtime's output for it: float32
    1×C×H×W in [0, 1], made by :class:`n2n_infer.Denoiser` after n2n_infer's own levels rule."""
    from n2n_export.data import builtin_patterns, noised_pairs
    from n2n_infer import Denoiser
    from n2n_infer.arrays import as_image, to_unit

    h, w = geometry.valid(TEST_SIDE), geometry.valid(TEST_SIDE + 32)
    pattern = builtin_patterns(seed)[0][:h, :w]
    noisy = noised_pairs([pattern], noise, seed, channels)[0][0]  # float C×H×W, 8-bit steps
    if levels == "range":
        pixels = np.rint(100 + noisy * 3900).astype(np.uint16)  # a camera's 12-bit counts
    elif levels == "uint8":
        pixels = np.rint(noisy * 255).astype(np.uint8)
    else:
        pixels = np.rint(noisy * 65535).astype(np.uint16)
    image = as_image(pixels.transpose(1, 2, 0), levels="auto")  # the runtime's levels rule
    unit = to_unit(image.rgb, image.levels).transpose(2, 0, 1)[None, :channels]
    runtime = Denoiser(onnx_path, device="cpu")
    out = runtime.denoise_nchw(np.ascontiguousarray(unit, dtype=np.float32))
    return pixels[None], out.astype(np.float32)


def _torchscript(
    ckpt: Checkpoint, test_in: np.ndarray, test_out: np.ndarray, levels: str, path: Path
) -> None:
    """Trace the ONNX wrapper (the same clamp) and check it against the ONNX output."""
    import torch

    from n2n_export.onnx_model import OnnxDenoiser
    from n2n_export.parity import ParityError

    wrapper = OnnxDenoiser(ckpt.build_model()).eval()
    scale = LEVELS[levels]
    x = torch.from_numpy(test_in.astype(np.float32))
    if scale is None:
        lo, hi = x.min(), x.max()
        x = (x - lo) / torch.clamp(hi - lo, min=1.0)
    else:
        x = x / scale
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace is deprecated; consumers still read it
        traced = torch.jit.trace(wrapper, x)
        other = torch.rand(2, x.shape[1], x.shape[2] + ckpt.config.stride, x.shape[3] // 2 * 2)
        diffs = [
            float((traced(x) - torch.from_numpy(test_out)).abs().max()),
            float((traced(other) - wrapper(other)).abs().max()),
        ]
        buffer = _jit_bytes(traced)
    if max(diffs) > TORCHSCRIPT_MAX_DIFF:
        raise ParityError(
            f"{path.name}: the traced TorchScript differs from the ONNX output by "
            f"{diffs[0]:.2e} and from torch on a batch of 2 by {diffs[1]:.2e} (limit "
            f"{TORCHSCRIPT_MAX_DIFF:g})"
        )
    path.write_bytes(buffer)


def _jit_bytes(traced: torch.jit.ScriptModule) -> bytes:
    """The saved TorchScript without its ``*.debug_pkl`` records (source ranges that name
    files on the exporting machine); TorchScript loads without them."""
    import io

    import torch

    raw = io.BytesIO()
    torch.jit.save(traced, raw)
    stripped = io.BytesIO()
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(stripped, "w") as dst:
        for entry in src.infolist():
            if not entry.filename.endswith(".debug_pkl"):
                dst.writestr(entry.filename, src.read(entry.filename))
    return stripped.getvalue()


def _cover(onnx_path: Path, noise: str, seed: int, path: Path, channels: int = 3) -> None:
    """A 2:1 PNG: a noisy pattern beside the runtime's result for it."""
    from PIL import Image

    from n2n_export.data import builtin_patterns, noised_pairs
    from n2n_infer import Denoiser

    pattern = builtin_patterns(seed)[1][:COVER_SIDE, :COVER_SIDE]
    noisy = noised_pairs([pattern], noise, seed + 1, channels)[0][0]
    noisy_u8 = np.rint(noisy.transpose(1, 2, 0) * 255).astype(np.uint8)
    if channels == 1:
        noisy_u8 = noisy_u8[..., 0]
    denoised = Denoiser(onnx_path, device="cpu").denoise(noisy_u8)
    Image.fromarray(np.concatenate([noisy_u8, denoised], axis=1)).save(path)


def _documentation(info: md.ModelInfo, geometry: Geometry, levels: str, card: str) -> str:
    """README.md of the package: how it runs, what it cannot express, validation, the card."""
    scale = LEVELS[levels]
    if scale is None:
        pre = (
            "`scale_range` over channel, y and x (percentiles 0 and 100): each image's "
            "minimum maps to 0 and its maximum to 1, as n2n_infer maps a dim 16-bit image "
            "(no value above 16383: a microscope's counts)"
        )
    else:
        pre = (
            f"`scale_linear` with gain 1/{scale:g}: the {levels} full scale maps to 1, as "
            f"n2n_infer maps {levels} images"
        )
    card_body = re.sub(r"(?m)^#", "##", card)
    return "\n".join(
        [
            f"# {info.name}: an n2n (Noise2Noise) denoiser",
            "",
            f"Removes {info.noise_description or 'noise'} from "
            f"{_images_word(info)} images. Written by `n2n-export bioimageio`.",
            "",
            "## Inputs and outputs",
            "",
            f"- input `noisy`: batch × channel ({_channel_words(info)}) × y × x, float32; y and x "
            f"of {geometry.minimum} + n·{geometry.stride} pixels (reflect padding).",
            f"- preprocessing: {pre}.",
            "- output `denoised`: the same axes and size, float32 in [0, 1] (clamped inside "
            f"the network); a halo of {geometry.halo} pixels on each side (the network's "
            f"receptive radius, {info.receptive_radius}, rounded up to its stride) "
            "for tiled prediction.",
            "- weights: ONNX (the file `n2n-export onnx` writes, parity-checked against "
            "torch) and TorchScript (traced from the same checkpoint, the same clamp).",
            "",
            "## What this package cannot express",
            "",
            "- The output stays in the model's [0, 1] scale: BioImage.IO 0.5 has no step "
            "that maps it back to each input's own range or dtype, which n2n_infer does. "
            "Multiply by the input's span and add its minimum to get counts back.",
            "- n2n_infer chooses the levels by dtype and content (8-bit: full scale; 16-bit: "
            "full scale, or its own range when no value exceeds 16383); a package has one "
            f"rule for every input (this one: `{levels}`).",
            f"- {_grey_words(info)}",
            "- n2n_infer pads only to the stride (bottom and right); consumers that pad "
            "by the halo on every side give slightly different outermost pixels.",
            "",
            "## Validation",
            "",
            "The ONNX weights passed n2n's parity check against the torch checkpoint (fp32: "
            "|ΔPSNR| <= 0.01 dB, max |difference| <= 1e-4) on built-in clean patterns with "
            "Gaussian noise; the report is attached. The test output was made by "
            "`n2n_infer` (onnxruntime) from the test input, and `bioimageio.core`'s model "
            "test reproduces it with both weights formats within "
            f"{ABSOLUTE_TOLERANCE:g}. The model card's figures follow.",
            "",
            card_body.rstrip(),
            "",
        ]
    )


def _grey_words(info: md.ModelInfo) -> str:
    """What a grey image needs in this package, by the model's channels and grey handling."""
    if info.channels == 1:
        return "Grey images: this is a one-channel model; a grey image goes in as it is."
    if info.grey == "replicate":
        return (
            "Grey images: copy the grey into the three channels; this model reads them so "
            "(it learned grey copies, or its noise is shared by neighbouring pixels), as "
            "n2n_infer feeds it."
        )
    return (
        "Grey images: the network takes three channels. n2n_infer denoises a grey image "
        "through the colour model as its four pixel phases stacked as colour images, a "
        "rearrangement no BioImage.IO step describes; here a grey image must be copied into "
        "three channels, which leaves much of the noise in (a model trained on noise that "
        "differs between channels reads it as colour detail). Use `n2n-infer` for grey images."
    )


def _description(
    work: Path,
    name: str,
    info: md.ModelInfo,
    ckpt: Checkpoint,
    geometry: Geometry,
    levels: str,
    authors: tuple[str, ...],
    license_id: str,
    onnx_path: Path,
    ts_path: Path,
) -> Any:
    """The ``bioimageio.spec`` 0.5 model description of the files in ``work``."""
    import torch
    from bioimageio.spec.model import v0_5 as b

    from n2n_export.exporter import portable_summary

    channels = ["red", "green", "blue"] if info.channels == 3 else ["grey"]
    scale = LEVELS[levels]
    if scale is None:
        pre: list[Any] = [
            b.ScaleRangeDescr(
                kwargs=b.ScaleRangeKwargs(
                    axes=[b.AxisId("channel"), b.AxisId("y"), b.AxisId("x")],
                    min_percentile=0.0,
                    max_percentile=100.0,
                )
            )
        ]
        value_range: tuple[float | None, float | None] = (None, None)
    else:
        pre = [b.ScaleLinearDescr(kwargs=b.ScaleLinearKwargs(gain=1.0 / scale))]
        value_range = (0.0, scale)
    size = b.ParameterizedSize(min=geometry.minimum, step=geometry.stride)
    input_id, output_id = b.TensorId(md.INPUT_NAME), b.TensorId(md.OUTPUT_NAME)
    inputs = b.InputTensorDescr(
        id=input_id,
        description="noisy image; pixel values as read (see preprocessing)",
        axes=[
            b.BatchAxis(),
            b.ChannelAxis(channel_names=[b.Identifier(c) for c in channels]),
            b.SpaceInputAxis(id=b.AxisId("y"), size=size),
            b.SpaceInputAxis(id=b.AxisId("x"), size=size),
        ],
        test_tensor=b.FileDescr(source=work / "test_input.npy"),
        data=b.IntervalOrRatioDataDescr(type="float32", range=value_range),
        preprocessing=pre,
        pad=b.ReflectPadding(mode="reflect"),  # set: a default-only one is written as {}
    )
    outputs = b.OutputTensorDescr(
        id=output_id,
        description="denoised image in [0, 1]",
        axes=[
            b.BatchAxis(),
            b.ChannelAxis(channel_names=[b.Identifier(c) for c in channels]),
            *(
                b.SpaceOutputAxisWithHalo(
                    id=b.AxisId(a),
                    halo=geometry.halo,
                    size=b.SizeReference(tensor_id=input_id, axis_id=b.AxisId(a)),
                )
                for a in ("y", "x")
            ),
        ],
        test_tensor=b.FileDescr(source=work / "test_output.npy"),
        data=b.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
    )
    summary = portable_summary(ckpt.summary)
    cites = citations(summary)
    neighbor = NEIGHBOR2NEIGHBOR in cites
    tolerance = b.ReproducibilityTolerance(
        absolute_tolerance=ABSOLUTE_TOLERANCE,
        relative_tolerance=0.0,
        mismatched_elements_per_million=0,
    )
    return b.ModelDescr(
        name=f"n2n {name} denoiser"[:64],
        description=_one_line(info),
        authors=[b.Author(name=a) for a in authors],
        cite=[b.CiteEntry(text=text, doi=b.Doi(doi)) for text, doi in cites],
        license=b.LicenseId(license_id),
        documentation=b.FileDescr(source=work / "README.md"),
        covers=[b.FileDescr(source=work / "cover.png")],
        attachments=[
            b.FileDescr(source=work / MARKER),
            b.FileDescr(source=work / f"{name}.parity.json"),
        ],
        tags=[
            "denoising",
            "image-restoration",
            "2d",
            "unet",
            "pytorch",
            "onnx",
            "other",
            "noise2noise",
        ]
        + (["neighbor2neighbor"] if neighbor else []),
        inputs=[inputs],
        outputs=[outputs],
        weights=b.WeightsDescr(
            onnx=b.OnnxWeightsDescr(
                source=onnx_path,
                opset_version=_opset(onnx_path),
                comment="the ONNX file n2n-export onnx writes; parity-checked against torch",
            ),
            torchscript=b.TorchscriptWeightsDescr(
                source=ts_path,
                pytorch_version=b.Version(torch.__version__.split("+")[0]),
                parent="onnx",
                comment="traced from the same checkpoint as the ONNX weights (same clamp), "
                f"checked against them within {TORCHSCRIPT_MAX_DIFF:g}",
            ),
        ),
        training_data=_training_data(summary, authors, license_id),
        config=b.Config(
            bioimageio=b.BioimageioConfig(
                reproducibility_tolerance=[tolerance],
                architecture_type="U-Net",
                architecture_description=dict(md.card(info)).get("architecture"),
                task="denoising",
                model_parameter_count=sum(p.numel() for p in ckpt.build_model().parameters()),
                training=_training_details(summary),
            ),
            n2n={
                "format_version": info.format_version,
                "stride": info.stride,
                "halo": geometry.halo,
                "levels": levels,
                "noise": info.noise,
                "config": info.config,
                "checkpoint_sha256": info.raw.get(md.KEY_CHECKPOINT_SHA256, ""),
            },
        ),
    )


def citations(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(text, DOI) to cite: Noise2Noise always; Neighbor2Neighbor when the training summary
    says the model learned from single images (``mode`` ``neighbor2neighbor``, or own data
    of ``source`` ``singles``)."""
    data = summary.get("data") if isinstance(summary.get("data"), dict) else {}
    single = summary.get("mode") == "neighbor2neighbor" or data.get("source") == "singles"
    return [NOISE2NOISE, *([NEIGHBOR2NEIGHBOR] if single else [])]


def _training_data(summary: dict[str, Any], authors: tuple[str, ...], license_id: str) -> Any:
    """The training data as an inline dataset description: named, never by path."""
    from bioimageio.spec.dataset.v0_3 import DatasetDescr
    from bioimageio.spec.generic.v0_3 import Author

    data = summary.get("data") or {}
    return DatasetDescr(
        name=_dataset_name(data),
        description=_data_words(data, summary)[:1024],
        authors=[Author(name=a) for a in authors],
    )


def _dataset_name(data: dict[str, Any]) -> str:
    raw = str(data.get("name") or data.get("source") or "training data")
    name = re.sub(r"[^A-Za-z0-9_+\- ()]", "_", raw)[:64]
    return name if len(name) >= 5 else f"data {name}"


def _data_words(data: dict[str, Any], summary: dict[str, Any]) -> str:
    from n2n_export.card import OWN_DATA, _data_line

    line = _data_line(data).replace("`", "")
    noise = summary.get("noise")
    kind = "own noisy captures" if data.get("source") in OWN_DATA else f"noise {noise}"
    return f"{line}; {kind}; trained by n2n-train ({summary.get('mode', 'noise2noise')})"


def _training_details(summary: dict[str, Any]) -> Any:
    from bioimageio.spec.model.v0_5 import TrainingDetails

    cfg = summary.get("train_config") or {}
    return TrainingDetails(
        training_preprocessing=f"noise {summary.get('noise')}; patches of "
        f"{cfg.get('patch_size')} px; pixel values scaled to [0, 1]",
        training_epochs=summary.get("epochs"),
        training_batch_size=cfg.get("batch_size"),
        initial_learning_rate=cfg.get("lr"),
        learning_rate_schedule=cfg.get("schedule"),
        loss_function=cfg.get("loss"),
        optimizer=cfg.get("optimizer"),
    )


def _one_line(info: md.ModelInfo) -> str:
    noise = info.noise_description or "noise"
    return (
        f"Noise2Noise UNet (n2n) that removes {noise} from {_images_word(info, 'RGB')} "
        "images; ONNX and TorchScript weights."
    )[:512]


def _images_word(info: md.ModelInfo, colour: str = "colour") -> str:
    return "grey" if info.channels == 1 else colour


def _channel_words(info: md.ModelInfo) -> str:
    return "grey" if info.channels == 1 else "red, green, blue"


def _opset(onnx_path: Path) -> int:
    import onnx

    from n2n_export.exporter import OPSET

    model = onnx.load(str(onnx_path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET)


def _check_marker_names(package: Path, marker: PackageMarker) -> None:
    """The zip that bioimageio.spec wrote holds the marker and the ONNX file it names."""
    with zipfile.ZipFile(package) as archive:
        names = set(archive.namelist())
    missing = {MARKER, marker.onnx} - names
    if missing:
        raise PackageExportError(
            f"{package}: expected {', '.join(sorted(missing))} in the package; found "
            f"{', '.join(sorted(names))}"
        )


def _failures(summaries: list[ValidationSummary]) -> str:
    failed = [d for s in summaries for d in s.details if d.status == "failed"]
    parts = []
    for detail in failed[:3]:
        first = detail.errors[0].msg.splitlines()[0] if detail.errors else ""
        parts.append(f"{detail.name}: {first[:200]}")
    return "; ".join(parts) or "status " + ", ".join(s.status for s in summaries)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return ""


# --- the command ----------------------------------------------------------------------------


@click.command("bioimageio")
@click.argument("source", metavar="CHECKPOINT|NAME")
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--name", default=None, help="Model name [default: NAME, or OUT's stem].")
@click.option(
    "--author",
    "authors",
    multiple=True,
    default=(DEFAULT_AUTHOR,),
    show_default=True,
    help="An author's name (repeat for several).",
)
@click.option(
    "--license",
    "license_id",
    default=DEFAULT_LICENSE,
    show_default=True,
    help="SPDX licence id of the weights.",
)
@click.option(
    "--levels",
    type=click.Choice(list(LEVELS)),
    default="range",
    show_default=True,
    help="How pixel values map to [0, 1]: each image's own range (microscope counts), or the "
    "uint8 / uint16 full scale.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the test input and cover.")
@click.option(
    "--test/--no-test",
    default=True,
    show_default=True,
    help="Run bioimageio.core's model test (offline) and write the package only if it passes.",
)
def bioimageio_command(
    source: str,
    out: Path,
    name: str | None,
    authors: tuple[str, ...],
    license_id: str,
    levels: str,
    seed: int,
    test: bool,
) -> None:
    """Write a BioImage.IO model package (format 0.5) of CHECKPOINT or a shipped model NAME.

    OUT.zip holds ONNX weights (parity-checked against torch) and TorchScript weights,
    test tensors made by n2n_infer, a cover, the model card and n2n's marker, so that
    Fiji/deepImageJ, napari, ilastik, QuPath and `n2n-infer batch --model OUT.zip` run it.
    It is written only when bioimageio.core's model test passes on it (exit status 1
    otherwise; 2 for unusable inputs or a missing `n2n[bioimageio]` extra).
    """
    import sys

    try:
        import torch  # noqa: F401  (the group names the train extra when torch is missing)

        from n2n_export.parity import ParityError
        from n2n_train.checkpoint import CheckpointError
    except ImportError as exc:
        click.echo(f"error: {exc.name} is not installed: pip install 'n2n[train]'", err=True)
        sys.exit(2)
    try:
        import bioimageio.core  # noqa: F401
        from loguru import logger as loguru_logger
    except ImportError as exc:
        click.echo(f"error: {exc.name} is not installed: pip install 'n2n[bioimageio]'", err=True)
        sys.exit(2)
    root = click.get_current_context().find_root()
    if not root.params.get("verbose"):
        loguru_logger.disable("bioimageio")  # its INFO lines; our summary follows
    try:
        path, summaries = export_bioimageio(
            source,
            out,
            name=name,
            authors=authors,
            license_id=license_id,
            levels=levels,
            seed=seed,
            test=test,
        )
    except (ParityError, PackageTestError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except (CheckpointError, N2NError, ValueError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    for summary in summaries:
        for detail in summary.details:
            click.echo(f"{detail.status:>7}  {detail.name}")
    if summaries:
        verdict = "passed" if passed(summaries) else "failed"
        click.echo(f"bioimageio.core {_version('bioimageio.core')} model test: {verdict}")
    else:
        click.echo("warning: --no-test: the package was not tested with bioimageio.core", err=True)
    click.echo(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")
