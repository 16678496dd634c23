"""Quantization-aware fine-tuning: teach a trained UNet to keep its quality in int8.

The int8 file that ``n2n_export.quantize.quantize_int8`` writes rounds every
convolution's weights per output channel to ±64 levels (7 bits: without VNNI,
x86 int8 kernels saturate on 8-bit weights) and every activation to 256 uint8
levels over the range the float model shows on the calibration images. This
module puts the same rounding into the torch model (:class:`FakeQuant`, with a
straight-through gradient), then fine-tunes the weights to match the original
float model's output (distillation: the teacher is the starting checkpoint, so
no clean or second noisy copy is needed) on noisy photo patches. Activation
ranges are re-measured on the calibration images with quantization off every
``recalibrate_every`` steps, as the exporter's calibrator will measure them.

The result is an ordinary float checkpoint; ``n2n-export`` with ``--precision
int8`` and the same calibration images turns it into the int8 file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from n2n_train.checkpoint import load_checkpoint, save_checkpoint
from n2n_train.data import PhotoPairs
from n2n_train.noise import parse_noise
from n2n_train.unet import UNet

log = logging.getLogger(__name__)

__all__ = ["FakeQuant", "QATConfig", "finetune_int8"]


@dataclass(frozen=True)
class QATConfig:
    """How long and how to fine-tune. JSON types only (stored in the checkpoint summary)."""

    steps: int = 600
    batch_size: int = 16
    patch_size: int = 64
    lr: float = 2e-5
    noise: str = "gaussian:0-50"
    pyramid: int = 3
    seed: int = 0
    recalibrate_every: int = 50
    weight_levels: int = 64
    act_levels: int = 255
    threads: int = 1


def _fake_quant(x: torch.Tensor, scale: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Round ``x / scale`` to integers clipped to [lo, hi]; identity gradient (STE)."""
    q = torch.clamp(torch.round(x / scale), lo, hi) * scale
    return x + (q - x).detach()


class _WeightQuant(nn.Module):
    """Per-output-channel symmetric rounding to ±``levels`` (as onnxruntime's reduce_range)."""

    def __init__(self, levels: int) -> None:
        super().__init__()
        self.levels = levels
        self.enabled = True

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return w
        scale = w.detach().abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12) / self.levels
        return _fake_quant(w, scale, -self.levels, self.levels)


class FakeQuant:
    """int8 rounding hooks on a :class:`UNet`, as the int8 export will round.

    Activations: every convolution's input and every ReLU's output, uint8 per
    tensor over [min(0, lo), max(0, hi)] of what :meth:`calibrate` saw (min/max
    calibration, as the exporter's; an average pool's output keeps its input's
    range, as onnxruntime's). Weights: every convolution but the 1×1 head, per
    output channel. The head's output and the residual add stay float. Call
    :meth:`calibrate` before running the model. Not bit-exact against the int8
    file: float sums in another order flip a rounding now and then
    (tests/export/test_int8_quantize.py measures how close).
    """

    def __init__(self, model: UNet, weight_levels: int = 64, act_levels: int = 255) -> None:
        self.model, self.act_levels = model, act_levels
        self.ranges: dict[str, tuple[float, float]] = {}
        self.calibrating = False
        self.enabled = True
        #: Points left float (diagnostics): ``convN``/``reluN`` activations, ``weightN``.
        self.float_points: frozenset[str] = frozenset()
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
        self._handles = [
            c.register_forward_pre_hook(self._pre(f"conv{i}")) for i, c in enumerate(convs)
        ]
        self._handles += [
            r.register_forward_hook(self._post(f"relu{i}")) for i, r in enumerate(relus)
        ]
        self._weights = []
        for conv in convs[:-1]:
            wq = _WeightQuant(weight_levels)
            parametrize.register_parametrization(conv, "weight", wq)
            self._weights.append(wq)
        self._convs = convs[:-1]
        # onnxruntime gives an average pool's output its input's scale: the first
        # convolution of each deeper level rounds on the previous level's last ReLU range
        names = {m: f"relu{i}" for i, m in enumerate(relus)}
        names |= {m: f"conv{i}" for i, m in enumerate(convs)}
        self._shared = {
            names[_first(block, nn.Conv2d)]: names[_last(prev, nn.ReLU)]
            for prev, block in zip(model.down, model.down[1:], strict=False)
        }

    def _quant(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            lo, hi = float(x.min()), float(x.max())
            old = self.ranges.get(name, (lo, hi))
            self.ranges[name] = (min(old[0], lo), max(old[1], hi))
            return x
        if not self.enabled or name in self.float_points:
            return x
        lo, hi = self.ranges[name]
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        scale = (hi - lo) / self.act_levels if hi > lo else 1.0
        zero = round(-lo / scale)
        shifted = _fake_quant(x + zero * scale, torch.tensor(scale), 0, self.act_levels)
        return shifted - zero * scale

    def _pre(self, name: str) -> Callable[..., tuple[torch.Tensor]]:
        return lambda _m, inputs: (self._quant(name, inputs[0]),)

    def _post(self, name: str) -> Callable[..., torch.Tensor]:
        return lambda _m, _inputs, output: self._quant(name, output)

    @property
    def points(self) -> list[str]:
        """The names of the rounding points, for :attr:`float_points`."""
        return sorted(self.ranges) + [f"weight{i}" for i in range(len(self._weights))]

    def set_enabled(self, on: bool) -> None:
        """Round (True) or run the plain float model (False)."""
        self.enabled = on
        for i, wq in enumerate(self._weights):
            wq.enabled = on and f"weight{i}" not in self.float_points

    def set_float_points(self, points: frozenset[str]) -> None:
        """Leave ``points`` (names from :attr:`points`) float; round the others."""
        self.float_points = points
        self.set_enabled(self.enabled)

    @torch.no_grad()
    def calibrate(self, batches: Sequence[torch.Tensor]) -> None:
        """Measure activation ranges of the float model on ``batches`` (N×3×H×W in [0, 1])."""
        was = self.enabled
        self.set_enabled(False)
        self.ranges, self.calibrating = {}, True
        try:
            for batch in batches:
                self.model(batch)
        finally:
            self.calibrating = False
            self.set_enabled(was)
        for conv, relu in self._shared.items():
            self.ranges[conv] = self.ranges[relu]

    def remove(self) -> UNet:
        """Take the hooks off and leave plain float weights; returns the model."""
        for h in self._handles:
            h.remove()
        for conv in self._convs:
            parametrize.remove_parametrizations(conv, "weight", leave_parametrized=False)
        return self.model


def _first(block: nn.Module, kind: type[nn.Module]) -> nn.Module:
    return next(m for m in block.modules() if isinstance(m, kind))


def _last(block: nn.Module, kind: type[nn.Module]) -> nn.Module:
    return [m for m in block.modules() if isinstance(m, kind)][-1]


def _batches(
    photos: Sequence[torch.Tensor], cfg: QATConfig, gen: torch.Generator
) -> Iterator[torch.Tensor]:
    pairs = PhotoPairs(
        photos,
        parse_noise(cfg.noise),
        cfg.patch_size,
        0.05,
        gen,
        val_patches=1,
        pyramid=cfg.pyramid,
    )
    for inp, _target in pairs.batches(cfg.batch_size, cfg.steps, gen):
        yield inp


def finetune_int8(
    checkpoint: str | Path,
    photos: Sequence[torch.Tensor],
    calibration: Sequence[torch.Tensor],
    out: str | Path,
    cfg: QATConfig = QATConfig(),
) -> Path:
    """Fine-tune ``checkpoint`` under int8 rounding; write the float result to ``out``.

    ``photos``: uint8 3×H×W training photos (``n2n_train.data.load_photo_folder``);
    ``calibration``: float32 1×3×H×W noisy images in [0, 1], the same the
    export will calibrate on. Runs ``cfg.steps`` Adam steps at a constant
    ``cfg.lr`` on MSE to the starting model's output.

    Raises:
        CheckpointError: ``checkpoint`` cannot be loaded.
        DataError: fewer than two photos of ``cfg.patch_size`` pixels.
    """
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    ckpt = load_checkpoint(checkpoint)
    teacher = ckpt.build_model().eval()
    student = ckpt.build_model().train()
    fq = FakeQuant(student, cfg.weight_levels, cfg.act_levels)
    fq.calibrate(calibration)
    opt = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    t0, running = time.perf_counter(), 0.0
    for step, noisy in enumerate(_batches(photos, cfg, gen), start=1):
        with torch.no_grad():
            target = teacher(noisy)
        loss = torch.mean((student(noisy) - target) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += float(loss.detach())
        if step % cfg.recalibrate_every == 0:
            fq.calibrate(calibration)
            log.info(
                "qat step %d/%d: mse to float %.3g (%.0f s)",
                step,
                cfg.steps,
                running / cfg.recalibrate_every,
                time.perf_counter() - t0,
            )
            running = 0.0
    model = fq.remove().eval()
    summary = dict(ckpt.summary, qat={**asdict(cfg), "from": str(checkpoint)})
    return save_checkpoint(out, model, summary)
