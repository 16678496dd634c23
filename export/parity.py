"""Parity: torch and onnxruntime on the same noisy images must give the same PSNR.

"onnxruntime ran" proves nothing; this compares numbers, case by case (batch 1
and batch > 1, several sizes, an odd size through the runtime's padding). The
onnxruntime side goes through :meth:`n2n_infer.Denoiser.denoise_nchw` on the
CPU, so the runtime's own padding and batching are under test too. The torch
side is always the float32 checkpoint, so a reduced-precision variant is
measured against the model it approximates.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from n2n_export.data import Pair, ParityCase
from n2n_export.onnx_model import OnnxDenoiser
from n2n_infer import Denoiser
from n2n_infer import metadata as md
from n2n_infer.errors import N2NError
from n2n_infer.files import sha256_file
from n2n_infer.metrics import psnr
from n2n_infer.padding import crop, pad_to_multiple
from n2n_train.checkpoint import Checkpoint, load_checkpoint
from n2n_train.config import ConfigError, UNetConfig

log = logging.getLogger(__name__)


class ParityError(N2NError):
    """The ONNX model does not reproduce the torch model."""


@dataclass(frozen=True)
class Thresholds:
    """A case fails when |ΔPSNR| or the largest absolute output difference exceeds these."""

    max_delta_psnr_db: float
    max_abs_diff: float


#: Per precision. fp32 is the contract. The looser ones come from measurements of the
#: photo model on its parity cases (docs/export.md), with headroom: fp16 measured at most
#: 0.013 dB and 5.4e-4; int8 at most 0.48 dB (one flat 32×32 crop; 0.06 dB over whole
#: photos) and 0.031 to 0.060 depending on the calibration images.
THRESHOLDS: dict[str, Thresholds] = {
    "fp32": Thresholds(0.01, 1e-4),
    "fp16": Thresholds(0.05, 2e-3),
    "int8": Thresholds(0.75, 0.1),
}


@dataclass(frozen=True)
class CaseReport:
    """Torch vs onnxruntime on one case (PSNR: mean of per-image values, dB)."""

    name: str
    images: int
    psnr_noisy: float = float("nan")
    psnr_torch: float = float("nan")
    psnr_onnx: float = float("nan")
    max_abs_diff: float = float("nan")
    mean_abs_diff: float = float("nan")
    error: str = ""

    @property
    def delta_psnr(self) -> float:
        return self.psnr_onnx - self.psnr_torch

    def passed(self, limits: Thresholds) -> bool:
        return (
            not self.error
            and abs(self.delta_psnr) <= limits.max_delta_psnr_db
            and self.max_abs_diff <= limits.max_abs_diff
        )


@dataclass(frozen=True)
class ParityReport:
    """All cases of one parity run, plus the metadata checks."""

    checkpoint: str
    model: str
    precision: str
    thresholds: Thresholds
    cases: list[CaseReport]
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems and all(c.passed(self.thresholds) for c in self.cases)

    def to_dict(self) -> dict[str, Any]:
        cases = [
            {**asdict(c), "delta_psnr": c.delta_psnr, "passed": c.passed(self.thresholds)}
            for c in self.cases
        ]
        return {
            "checkpoint": self.checkpoint,
            "model": self.model,
            "precision": self.precision,
            "thresholds": asdict(self.thresholds),
            "metadata_problems": self.problems,
            "cases": cases,
            "passed": self.passed,
        }

    def to_json(self) -> str:
        """The report as JSON (NaN, for a case that errored, is written as null)."""
        return json.dumps(_nan_to_none(self.to_dict()), indent=2) + "\n"


def check_parity(
    checkpoint: str | Path, model: str | Path, cases: list[ParityCase]
) -> ParityReport:
    """Compare torch (``checkpoint``) with onnxruntime (``model``, CPU) on ``cases``.

    Also checks that the model's metadata (stride, config, checkpoint sha256)
    describes ``checkpoint``. A case whose onnxruntime run fails is reported
    as failed with the error, and the other cases still run.

    Raises:
        training.checkpoint.CheckpointError, n2n_infer.ModelLoadError: unreadable files.
    """
    checkpoint, model = Path(checkpoint), Path(model)
    ckpt = load_checkpoint(checkpoint)
    torch_model = OnnxDenoiser(ckpt.build_model())
    largest = max((len(c.pairs) for c in cases), default=1)
    runtime = Denoiser(model, device="cpu", batch_size=largest)
    precision = runtime.info.raw.get(md.KEY_PRECISION, "fp32")
    if precision not in THRESHOLDS:
        raise ParityError(f"{model}: unknown precision {precision!r} in metadata")
    reports = [_run_case(case, torch_model, ckpt.config.stride, runtime) for case in cases]
    report = ParityReport(
        str(checkpoint),
        str(model),
        precision,
        THRESHOLDS[precision],
        reports,
        metadata_problems(ckpt, checkpoint, runtime),
    )
    log.info("parity %s vs %s: passed=%s", checkpoint, model, report.passed)
    return report


def metadata_problems(ckpt: Checkpoint, checkpoint: Path, runtime: Denoiser) -> list[str]:
    """What in the model's metadata does not describe ``checkpoint`` (empty when all is well)."""
    problems = []
    if runtime.stride != ckpt.config.stride:
        problems.append(
            f"metadata stride {runtime.stride} differs from the checkpoint's {ckpt.config.stride}"
        )
    try:
        # Compared as configs, not dicts: an older config version reads as the same network.
        same = UNetConfig.from_dict(runtime.info.config or {}, "metadata") == ckpt.config
    except ConfigError as exc:
        problems.append(f"metadata config is not a valid UNetConfig: {exc}")
    else:
        if not same:
            problems.append("metadata config differs from the checkpoint's config")
    sha = sha256_file(checkpoint)
    recorded = runtime.info.raw.get(md.KEY_CHECKPOINT_SHA256)
    if recorded != sha:
        problems.append(f"metadata checkpoint sha256 {recorded} differs from {checkpoint.name}'s")
    return problems


def _run_case(
    case: ParityCase, torch_model: OnnxDenoiser, stride: int, runtime: Denoiser
) -> CaseReport:
    """Run a case, one batch per image size; a failing onnxruntime run fails the case."""
    scores: dict[str, list[float]] = {"noisy": [], "torch": [], "onnx": []}
    max_diff, abs_sum, count = 0.0, 0.0, 0
    for noisy, clean in _same_size_batches(case.pairs):
        out_torch = _run_torch(torch_model, noisy, stride)
        try:
            out_onnx = runtime.denoise_nchw(noisy)
        except Exception as exc:  # onnxruntime's own exception types are not exported
            return CaseReport(case.name, len(case.pairs), error=str(exc).splitlines()[0][:300])
        diff = np.abs(out_torch.astype(np.float64) - out_onnx)
        max_diff = max(max_diff, float(diff.max()))
        abs_sum, count = abs_sum + float(diff.sum()), count + diff.size
        if noisy.shape[1] != clean.shape[1]:  # a z-context: the noisy centre plane
            centre = noisy.shape[1] // 2
            noisy = noisy[:, centre : centre + 1]
        for name, images in (("noisy", noisy), ("torch", out_torch), ("onnx", out_onnx)):
            scores[name] += [psnr(a, b) for a, b in zip(images, clean, strict=True)]
    return CaseReport(
        name=case.name,
        images=len(case.pairs),
        psnr_noisy=float(np.mean(scores["noisy"])),
        psnr_torch=float(np.mean(scores["torch"])),
        psnr_onnx=float(np.mean(scores["onnx"])),
        max_abs_diff=max_diff,
        mean_abs_diff=abs_sum / max(count, 1),
    )


def _same_size_batches(pairs: list[Pair]) -> list[tuple[np.ndarray, np.ndarray]]:
    groups: dict[tuple[int, ...], list[Pair]] = {}
    for pair in pairs:
        groups.setdefault(pair[0].shape, []).append(pair)
    return [
        (
            np.stack([p[0] for p in g]).astype(np.float32),
            np.stack([p[1] for p in g]).astype(np.float32),
        )
        for g in groups.values()
    ]


@torch.no_grad()
def _run_torch(model: OnnxDenoiser, noisy: np.ndarray, stride: int) -> np.ndarray:
    padded, size = pad_to_multiple(noisy, stride)
    return crop(model(torch.from_numpy(padded)).numpy(), size)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value
