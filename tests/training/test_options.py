"""Every model and training option, exercised on tiny data (seconds each)."""

import dataclasses
import json
import math

import pytest
import torch

from n2n_train.checkpoint import load_checkpoint
from n2n_train.config import TrainConfig, UNetConfig
from n2n_train.data import CoursePairs, PhotoPairs, load_course_pairs
from n2n_train.loop import fit
from n2n_train.noise import parse_noise
from n2n_train.unet import UNet

TINY = TrainConfig(epochs=1, batch_size=8, steps_per_epoch=3, patch_size=32, seed=0)


def _photo_pairs(photos, noise="gaussian:25", clean_targets=False):
    return PhotoPairs(
        photos,
        parse_noise(noise),
        32,
        0.34,
        torch.Generator().manual_seed(0),
        val_patches=16,
        clean_targets=clean_targets,
    )


def _fit(tmp_path, photos, ucfg=None, data=None, **changes):
    ucfg = ucfg or UNetConfig()
    cfg = dataclasses.replace(TINY, **changes)
    torch.manual_seed(0)
    model = UNet(ucfg)
    summary = fit(model, data or _photo_pairs(photos), cfg, tmp_path, progress=False)
    return model, summary


@pytest.mark.parametrize(
    "ucfg",
    [
        UNetConfig(features=(8, 16)),
        UNetConfig(features=(4, 8, 16, 32, 64)),
        UNetConfig(features=(4, 8, 16, 32)),
        UNetConfig(convs_per_level=2, batch_norm=True),
        UNetConfig(dropout=0.2),
        UNetConfig(pooling="max"),
        UNetConfig(upsampling="bilinear"),
        UNetConfig(upsampling="transposed"),
        UNetConfig(activation="leaky_relu"),
        UNetConfig(residual=True),
    ],
    ids=lambda c: (
        f"{c.levels}lv-{c.convs_per_level}c-bn{c.batch_norm:d}-d{c.dropout}-"
        f"{c.pooling}-{c.upsampling}-{c.activation}-res{c.residual:d}"
    ),
)
def test_model_options_train_and_round_trip_through_the_checkpoint(tmp_path, photo_tensors, ucfg):
    model, summary = _fit(tmp_path, photo_tensors, ucfg)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt.config == ucfg
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert torch.equal(ckpt.build_model()(x), model.eval()(x))
    assert summary["epochs"] == 1 and summary["val_psnr"] > 0


@pytest.mark.parametrize(("optimizer", "lr"), [("sgd", 0.01), ("adam", 0.001), ("adagrad", 0.01)])
def test_optimizers_use_the_study_settings(tmp_path, photo_tensors, optimizer, lr):
    _fit(tmp_path, photo_tensors, optimizer=optimizer, lr=lr)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    group = ckpt["resume"]["optimizer"]["param_groups"][0]
    assert group["lr"] == lr
    if optimizer == "sgd":
        assert group["momentum"] == 0.9
    if optimizer == "adam":
        assert tuple(group["betas"]) == (0.9, 0.999)


@pytest.mark.parametrize(
    ("schedule", "last_lr"),
    [("cosine", 0.01 * 0.5 * (1 + math.cos(math.pi * 5 / 6))), ("step", 0.0001)],
)
def test_schedules_change_the_learning_rate_per_step(tmp_path, photo_tensors, schedule, last_lr):
    _fit(tmp_path, photo_tensors, epochs=2, steps_per_epoch=3, schedule=schedule)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    # the lr of the last step of epoch 2 (step 5 of 6)
    assert rows[1]["lr"] == pytest.approx(last_lr)


@pytest.mark.parametrize(
    ("loss", "noise"),
    [
        ("mse", "poisson:30"),
        ("l1", "bernoulli:0.3"),
        ("l0", "impulse:0.2"),
        ("mse", "pixelated:24"),
    ],
)
def test_losses_and_noises_train(tmp_path, photo_tensors, loss, noise):
    data = _photo_pairs(photo_tensors, noise)
    _, summary = _fit(tmp_path, photo_tensors, data=data, loss=loss, noise=noise, epochs=2)
    assert summary["noise"] == noise and summary["best_val_loss"] < 1.0


@pytest.mark.parametrize(
    "changes",
    [
        {"swap": True},
        {"dihedral": True},
        {"blur_prob": 0.5},
        {"swap": True, "dihedral": True, "blur_prob": 0.1},
    ],
)
def test_augmentations_change_training(tmp_path, photo_tensors, changes):
    plain, _ = _fit(tmp_path / "plain", photo_tensors)
    augmented, _ = _fit(tmp_path / "aug", photo_tensors, **changes)
    assert not torch.equal(plain.head.weight, augmented.head.weight)


def test_noise2clean_on_photos_uses_clean_targets(tmp_path, photo_tensors):
    data = _photo_pairs(photo_tensors, clean_targets=True)
    assert torch.equal(data.validation.target, data.validation.clean)
    inp, target = next(data.batches(4, 1, torch.Generator().manual_seed(0)))
    assert torch.equal(target, (target * 255).round() / 255)  # clean patches: 8-bit values
    n2n = _photo_pairs(photo_tensors)
    inp_n2n, _ = next(n2n.batches(4, 1, torch.Generator().manual_seed(0)))
    assert torch.equal(inp, inp_n2n)  # the same inputs in both modes
    _, summary = _fit(tmp_path, photo_tensors, data=data, target="clean")
    assert summary["mode"] == "noise2clean"


def test_noise2clean_on_course_pairs(tmp_path, seedlike_dir):
    pairs = load_course_pairs(seedlike_dir / "train_clean.pkl")
    val = load_course_pairs(seedlike_dir / "val_data.pkl")
    data = CoursePairs(*pairs, 0.2, torch.Generator().manual_seed(0), val, clean_targets=True)
    assert torch.equal(data.validation.target, data.validation.clean)
    _, summary = _fit(tmp_path, None, data=data, target="clean", dihedral=True, blur_prob=0.2)
    assert summary["noisy_psnr"] == pytest.approx(20.7, abs=0.3)


def _rows(path):
    drop = ("images_per_s", "seconds", "train_seconds")
    return [
        {k: v for k, v in json.loads(x).items() if k not in drop}
        for x in (path / "metrics.jsonl").read_text().splitlines()
    ]


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adagrad"])
def test_resume_continues_exactly(tmp_path, photo_tensors, optimizer):
    changes = {"epochs": 3, "swap": True, "dihedral": True, "blur_prob": 0.3}
    changes["optimizer"] = optimizer  # each optimizer's state (moments, sums) must resume
    straight, _ = _fit(tmp_path / "a", photo_tensors, UNetConfig(dropout=0.1), **changes)
    _fit(tmp_path / "b", photo_tensors, UNetConfig(dropout=0.1), **(changes | {"epochs": 1}))
    torch.manual_seed(123)  # resuming must not depend on the caller's RNG state
    resumed = UNet(UNetConfig(dropout=0.1))
    cfg = dataclasses.replace(TINY, **changes)
    summary = fit(
        resumed, _photo_pairs(photo_tensors), cfg, tmp_path / "b", progress=False, resume=True
    )
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b")
    assert summary["epochs"] == 3


def test_resume_refuses_a_different_config(tmp_path, photo_tensors):
    from n2n_train.checkpoint import CheckpointError

    _fit(tmp_path, photo_tensors)
    cfg = dataclasses.replace(TINY, optimizer="adam", epochs=2)
    with pytest.raises(CheckpointError, match=r"last.pt: cannot resume.*\['optimizer'\]"):
        fit(UNet(), _photo_pairs(photo_tensors), cfg, tmp_path, progress=False, resume=True)


def test_resume_accepts_a_run_saved_by_an_older_config_version(tmp_path, photo_tensors):
    from n2n_train.checkpoint import load_resume_state, save_checkpoint

    _fit(tmp_path, photo_tensors)
    ckpt, state = load_resume_state(tmp_path / "last.pt")
    old = {k: v for k, v in ckpt.summary["train_config"].items() if k not in ("init", "pyramid")}
    ckpt.summary["train_config"] = old | {"version": 2}  # before pyramid (v3) and init (v4)
    save_checkpoint(tmp_path / "last.pt", ckpt.build_model(), ckpt.summary, resume=state)
    cfg = dataclasses.replace(TINY, epochs=2)
    summary = fit(UNet(), _photo_pairs(photo_tensors), cfg, tmp_path, progress=False, resume=True)
    assert summary["epochs"] == 2


@pytest.mark.parametrize("changes", [{"precision": "bf16"}, {"channels_last": True}])
def test_bf16_and_channels_last_train_to_a_similar_result(tmp_path, photo_tensors, changes):
    _, plain = _fit(tmp_path / "plain", photo_tensors, epochs=2)
    _, other = _fit(tmp_path / "other", photo_tensors, epochs=2, **changes)
    assert other["val_psnr"] == pytest.approx(plain["val_psnr"], abs=0.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_training_on_cuda(tmp_path, photo_tensors):
    cfg = dataclasses.replace(TINY)
    summary = fit(UNet(), _photo_pairs(photo_tensors), cfg, tmp_path, device="cuda", progress=False)
    assert summary["epochs"] == 1


def test_every_epoch_is_logged_with_a_loss_curve(tmp_path, photo_tensors):
    _fit(tmp_path, photo_tensors, epochs=2)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"train_loss", "val_loss", "val_psnr", "lr", "images_per_s"} <= set(rows[0])
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_runs_with_one_seed_are_identical(tmp_path, photo_tensors):
    changes = {"swap": True, "dihedral": True, "blur_prob": 0.3}
    a, sa = _fit(tmp_path / "a", photo_tensors, UNetConfig(dropout=0.1), **changes)
    b, sb = _fit(tmp_path / "b", photo_tensors, UNetConfig(dropout=0.1), **changes)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert sa["val_psnr"] == sb["val_psnr"]
    c, _ = _fit(tmp_path / "c", photo_tensors, UNetConfig(dropout=0.1), seed=1, **changes)
    assert not torch.equal(a.head.weight, c.head.weight)


def test_swap_with_photos_warns_about_clipped_targets(photos_dir, caplog):
    from n2n_train.commands import load_data

    opts = {"photos": photos_dir, "course": None, "course_val": None}
    with caplog.at_level("WARNING", logger="n2n_train.commands"):
        load_data(opts, dataclasses.replace(TINY, swap=True, patch_size=32))
    assert "clipped, rounded input copy the target" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="n2n_train.commands"):
        load_data(opts, dataclasses.replace(TINY, patch_size=32))
    assert caplog.text == ""
