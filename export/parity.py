"""Parity: torch and onnxruntime on the same noisy images must give the same PSNR.

"onnxruntime ran" proves nothing; this compares numbers. The onnxruntime side
goes through :meth:`n2n_infer.Denoiser.denoise_nchw` (CPU), so the runtime's
own padding and batching are under test too.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from export.onnx_model import OnnxDenoiser
from n2n_infer import Denoiser
from n2n_infer.errors import N2NError
from n2n_infer.metrics import psnr
from n2n_infer.padding import crop, pad_to_multiple
from training.checkpoint import load_checkpoint

log = logging.getLogger(__name__)

#: Failure thresholds for float32 models.
MAX_DELTA_PSNR_DB = 0.01
MAX_ABS_DIFF = 1e-4


class ParityError(N2NError):
    """The ONNX model does not reproduce the torch model."""


@dataclass(frozen=True)
class ParityReport:
    """Torch vs onnxruntime on one set of images (PSNR: mean of per-image values)."""

    images: int
    psnr_noisy: float
    psnr_torch: float
    psnr_onnx: float
    max_abs_diff: float
    mean_abs_diff: float

    @property
    def delta_psnr(self) -> float:
        return self.psnr_onnx - self.psnr_torch

    @property
    def passed(self) -> bool:
        return abs(self.delta_psnr) <= MAX_DELTA_PSNR_DB and self.max_abs_diff <= MAX_ABS_DIFF

    def to_dict(self) -> dict[str, float | int | bool]:
        return {**asdict(self), "delta_psnr": self.delta_psnr, "passed": self.passed}


def check_parity(
    checkpoint: str | Path, model: str | Path, pairs: list[tuple[np.ndarray, np.ndarray]]
) -> ParityReport:
    """Compare torch (``checkpoint``) and onnxruntime (``model``) on (noisy, clean) pairs.

    Each pair is two float32 3×H×W arrays in [0, 1]; sizes may differ. Same-size
    images run as one batch on both sides.

    Raises:
        training.checkpoint.CheckpointError, n2n_infer.ModelLoadError: unreadable inputs.
    """
    torch_model = OnnxDenoiser(load_checkpoint(checkpoint).build_model())
    runtime = Denoiser(model, device="cpu")
    scores: dict[str, list[float]] = {"noisy": [], "torch": [], "onnx": []}
    max_diff, abs_sum, count = 0.0, 0.0, 0
    for noisy, clean in _same_size_batches(pairs):
        out_torch = _run_torch(torch_model, noisy, runtime.stride)
        out_onnx = runtime.denoise_nchw(noisy)
        diff = np.abs(out_torch.astype(np.float64) - out_onnx)
        max_diff = max(max_diff, float(diff.max()))
        abs_sum, count = abs_sum + float(diff.sum()), count + diff.size
        for k in range(len(noisy)):
            scores["noisy"].append(psnr(noisy[k], clean[k]))
            scores["torch"].append(psnr(out_torch[k], clean[k]))
            scores["onnx"].append(psnr(out_onnx[k], clean[k]))
    report = ParityReport(
        images=len(scores["noisy"]),
        psnr_noisy=float(np.mean(scores["noisy"])),
        psnr_torch=float(np.mean(scores["torch"])),
        psnr_onnx=float(np.mean(scores["onnx"])),
        max_abs_diff=max_diff,
        mean_abs_diff=abs_sum / max(count, 1),
    )
    log.info("parity %s vs %s: %s", checkpoint, model, report.to_dict())
    return report


@torch.no_grad()
def _run_torch(model: OnnxDenoiser, noisy: np.ndarray, stride: int) -> np.ndarray:
    padded, size = pad_to_multiple(noisy, stride)
    return crop(model(torch.from_numpy(padded)).numpy(), size)


def _same_size_batches(
    pairs: list[tuple[np.ndarray, np.ndarray]], max_batch: int = 64
) -> list[tuple[np.ndarray, np.ndarray]]:
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (noisy, _) in enumerate(pairs):
        groups.setdefault(noisy.shape, []).append(i)
    out = []
    for idx in groups.values():
        for s in range(0, len(idx), max_batch):
            chunk = idx[s : s + max_batch]
            out.append(
                (
                    np.stack([pairs[i][0] for i in chunk]).astype(np.float32),
                    np.stack([pairs[i][1] for i in chunk]).astype(np.float32),
                )
            )
    return out
