"""Growing a trained UNet by levels (``n2n-train fit --init X --features <X's>,N``): the
grown model computes exactly what it grew from, then trains."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from n2n_train.checkpoint import Checkpoint, CheckpointError, deepened, load_checkpoint
from n2n_train.cli import main
from n2n_train.config import UNetConfig
from n2n_train.unet import UNet
from tests.conftest import synthetic_photo

_SMALL = UNetConfig(
    features=(8, 16), convs_per_level=2, residual=True, in_channels=1, out_channels=1
)


def _trained_like(config: UNetConfig, seed: int = 0) -> Checkpoint:
    """Weights of ``config`` with non-zero biases, so that no output is trivially zero."""
    torch.manual_seed(seed)
    model = UNet(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return Checkpoint(config, {k: v.clone() for k, v in model.state_dict().items()})


@pytest.mark.parametrize(
    "config",
    [
        _SMALL,
        dataclasses.replace(_SMALL, upsampling="transposed", pooling="max"),
        dataclasses.replace(_SMALL, convs_per_level=1, in_channels=3, out_channels=3),
        dataclasses.replace(
            _SMALL, upsampling="bilinear", residual=False, z_context=1, in_channels=3
        ),
    ],
    ids=["nearest", "transposed-max", "colour-1conv", "bilinear-zcontext"],
)
def test_a_deepened_model_computes_what_it_grew_from(config):
    small = _trained_like(config)
    grown = deepened(small, (8, 16, 32, 24))
    assert grown.config == dataclasses.replace(config, features=(8, 16, 32, 24))
    x = torch.rand(2, config.in_channels, 40, 56)
    with torch.no_grad():
        before = small.build_model()(x)
        after = grown.build_model()(x)
    assert after.shape == before.shape
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)
    # and the new levels are there to learn: their encoder weights are not zero
    assert grown.state_dict["down.3.0.weight"].abs().sum() > 0


def test_the_new_levels_take_part_once_trained():
    grown = deepened(_trained_like(_SMALL), (8, 16, 32))
    model = grown.build_model().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.rand(4, 1, 32, 32)
    for _ in range(3):
        opt.zero_grad()
        loss = (model(x) - x.mean()).pow(2).mean()
        loss.backward()
        opt.step()
    joined = model.up_blocks[0][0].weight  # the decoder block's weights on the new level
    assert joined[:, :32].abs().max() > 0


def test_deepening_refuses_what_it_cannot_grow_exactly():
    small = _trained_like(_SMALL)
    with pytest.raises(CheckpointError, match="give those and then the levels to add"):
        deepened(small, (8, 32, 64))
    with pytest.raises(CheckpointError, match="give those and then the levels to add"):
        deepened(small, (8, 16))
    for change in ({"batch_norm": True}, {"activation": "leaky_relu"}):
        other = _trained_like(dataclasses.replace(_SMALL, **change))
        with pytest.raises(CheckpointError, match="ReLU model without batch norm"):
            deepened(other, (8, 16, 32))
    wrong = Checkpoint(_SMALL, dict(_trained_like(_SMALL.__class__(features=(8, 32))).state_dict))
    with pytest.raises(CheckpointError, match="not the config's UNet's"):
        deepened(wrong, (8, 16, 32))
    with pytest.raises(CheckpointError, match="--features"):
        deepened(small, (8, 16, 32, 64, 128, 256, 512))  # seven levels: more than a UNet takes


def _photos(folder, n: int = 4, size: int = 64):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(synthetic_photo(rng, size, size).mean(axis=2).astype(np.uint8)).save(
            folder / f"p{i}.png"
        )
    return folder


def _fit(*args: object):
    base = [
        "fit",
        "--patch-size",
        "32",
        "--batch-size",
        "4",
        "--optimizer",
        "adam",
        "--steps-per-epoch",
        "3",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--no-progress",
    ]
    return CliRunner().invoke(main, [str(a) for a in [*base, *args]], catch_exceptions=False)


def test_fit_with_more_levels_than_its_init_grows_it_and_keeps_the_rest_of_its_shape(tmp_path):
    photos = _photos(tmp_path / "photos")
    start = tmp_path / "start.pt"
    from n2n_train.checkpoint import save_checkpoint

    save_checkpoint(start, _trained_like(_SMALL).build_model())
    out = tmp_path / "run"
    result = _fit("--photos", photos, "--init", start, "--features", "8,16,32", "--out", out)
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt.config == dataclasses.replace(_SMALL, features=(8, 16, 32))  # 2 convs, 1 channel
    # the starting point's validation loss is the grown model's, which is the init's
    assert ckpt.summary["init"]["val_loss"] > 0

    # features that do not extend the init's are refused, as any other shape
    bad = _fit("--photos", photos, "--init", start, "--features", "8,32", "--out", tmp_path / "b")
    assert bad.exit_code == 2
    assert "--init" in bad.output and "differs" in bad.output
