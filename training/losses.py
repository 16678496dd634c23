"""Training losses and the learning-rate schedule, as plain functions of the config.

Losses take float N×C×H×W ``pred`` and ``target`` and return a scalar tensor.
"""

from __future__ import annotations

import math

import torch

from n2n_train.config import TrainConfig

#: Added to |error| in the annealed L0 loss so its gradient stays finite at 0.
L0_EPS = 1e-8


def annealed_l0(pred: torch.Tensor, target: torch.Tensor, progress: float) -> torch.Tensor:
    """The Noise2Noise paper's L0 approximation: mean ``(|pred - target| + eps) ** gamma``.

    ``gamma = 2 · (1 - progress)`` falls linearly from 2 (L2) at the start of
    training (``progress`` 0) to 0 at the end (``progress`` 1), so the network
    is driven towards the mode of the targets (impulse noise).
    """
    gamma = 2.0 * (1.0 - min(max(progress, 0.0), 1.0))
    return ((pred - target).abs() + L0_EPS).pow(gamma).mean()


def training_loss(
    pred: torch.Tensor, target: torch.Tensor, cfg: TrainConfig, progress: float
) -> torch.Tensor:
    """The loss ``cfg.loss`` (``mse``, ``l1`` or ``l0``) at training ``progress`` in [0, 1]."""
    if cfg.loss == "mse":
        return torch.mean((pred - target) ** 2)
    if cfg.loss == "l1":
        return torch.mean((pred - target).abs())
    return annealed_l0(pred, target, progress)


def validation_loss(pred: torch.Tensor, target: torch.Tensor, cfg: TrainConfig) -> float:
    """The loss that picks the best epoch: MSE for ``mse``, else L1.

    The annealed L0 changes during training, so its runs are compared with
    L1, which is stable and also favours the targets' central value.
    """
    if cfg.loss == "mse":
        return float(torch.mean((pred - target) ** 2))
    return float(torch.mean((pred - target).abs()))


def learning_rate(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate at optimizer ``step`` (0-based) of ``total_steps``.

    ``none``: constant ``cfg.lr``; ``cosine``: from ``cfg.lr`` to 0 by cosine;
    ``step``: ×0.1 after 50 % and again after 75 % of the steps.
    """
    t = step / max(total_steps, 1)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
    if cfg.schedule == "step":
        return cfg.lr * (0.1 if t >= 0.5 else 1.0) * (0.1 if t >= 0.75 else 1.0)
    return cfg.lr
