import json

import numpy as np
import pytest
import torch

from n2n_infer.metrics import psnr as psnr_np
from n2n_train.checkpoint import load_checkpoint
from n2n_train.metrics import psnr


def test_tiny_training_beats_the_noisy_input(tiny_run):
    s = tiny_run["summary"]
    assert s["val_psnr"] > s["noisy_psnr"] + 2.0, s


def test_best_checkpoint_is_the_lowest_validation_loss(tiny_run):
    rows = [
        json.loads(line) for line in (tiny_run["dir"] / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    best = min(rows, key=lambda r: r["val_loss"])
    ckpt = load_checkpoint(tiny_run["checkpoint"])
    assert ckpt.summary["best_epoch"] == best["epoch"]
    assert ckpt.summary["best_val_loss"] == best["val_loss"]
    assert ckpt.summary["noise"] == "gaussian:25"


def test_torch_and_numpy_psnr_agree():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(3, 3, 16, 16, generator=g)
    noisy = clean + 0.1 * torch.randn(3, 3, 16, 16, generator=g)
    per_image = [psnr_np(noisy[i].numpy(), clean[i].numpy()) for i in range(3)]
    assert psnr(noisy, clean) == pytest.approx(float(np.mean(per_image)), abs=1e-9)
