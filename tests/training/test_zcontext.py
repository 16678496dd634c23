"""Z-context training: planes z-K..z+K of a stack in, plane z of another capture out."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from click.testing import CliRunner

from n2n_train.checkpoint import (
    Checkpoint,
    CheckpointError,
    find_checkpoint,
    load_checkpoint,
    widened_to_context,
)
from n2n_train.cli import main
from n2n_train.config import ConfigError, TrainConfig, UNetConfig, with_z_context
from n2n_train.data import DataError
from n2n_train.loop import fit
from n2n_train.owndata import load_noisy_scenes, scan_bursts, scan_pairs
from n2n_train.unet import UNet

SIDE = 24


def tiny(epochs: int = 1) -> list[str]:
    """``fit`` options of a tiny, quick run."""
    return ["--features", "8,16", "--patch-size", "16", "--batch-size", "2", "--epochs",
            str(epochs), "--steps-per-epoch", "2", "--no-progress", "--threads", "1"]  # fmt: skip


TINY = tiny()


def _stack(path: Path, data: np.ndarray, axes: str, ome: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if ome:
        tifffile.imwrite(path, data, ome=True, metadata={"axes": axes})
    else:
        tifffile.imwrite(path, data, imagej=True, metadata={"axes": axes})
    return path


def _flat_pairs(root: Path, depth: int = 4, side: int = SIDE) -> tuple[Path, Path]:
    """Two captures of a ZYX stack whose planes are flat: plane z of A holds 10z + 1, of B
    10z + 5 (uint8), so that every patch says which planes it came from."""
    for folder, offset in (("a", 1), ("b", 5)):
        data = np.stack([np.full((side, side), 10 * z + offset, np.uint8) for z in range(depth)])
        _stack(root / folder / "cells.ome.tif", data, "ZYX")
    return root / "a", root / "b"


def _run(args: list[object]) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


# --- config, network, checkpoint -----------------------------------------------------------


def test_a_z_context_config_round_trips_and_k0_is_written_as_before():
    cfg = with_z_context(UNetConfig(features=(8, 16), residual=True), 2)
    assert (cfg.in_channels, cfg.out_channels, cfg.z_context, cfg.planes) == (5, 1, 2, 5)
    data = cfg.to_dict()
    assert data["version"] == 3 and data["z_context"] == 2
    assert UNetConfig.from_dict(data) == cfg
    plain = UNetConfig().to_dict()  # K 0: version 2 without the key, as older code reads it
    assert plain["version"] == 2 and "z_context" not in plain
    assert UNetConfig.from_dict(plain) == UNetConfig()
    with pytest.raises(ConfigError, match="version 4 is newer"):
        UNetConfig.from_dict(data | {"version": 4})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"z_context": 5, "in_channels": 11, "out_channels": 1}, "z_context must be 0 to 4"),
        (
            {"z_context": 1, "in_channels": 3, "out_channels": 3},
            "needs in_channels 3 .* out_channels 1",
        ),
        ({"z_context": 2, "in_channels": 3, "out_channels": 1}, "needs in_channels 5"),
        ({"z_context": True, "in_channels": 3, "out_channels": 1}, "z_context must be 0 to 4"),
    ],
)
def test_impossible_z_context_configs_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        UNetConfig.from_dict(UNetConfig().to_dict() | changes)


def test_the_residual_of_a_z_context_network_is_its_centre_plane():
    torch.manual_seed(0)
    net = UNet(with_z_context(UNetConfig(features=(8, 16), residual=True), 2)).eval()
    torch.nn.init.zeros_(net.head.weight)
    torch.nn.init.zeros_(net.head.bias)
    x = torch.rand(3, 5, 16, 24)
    with torch.no_grad():
        out = net(x)
    assert out.shape == (3, 1, 16, 24)
    assert torch.equal(out, x[:, 2:3])


@pytest.mark.parametrize("residual", [True, False])
def test_widening_a_grey_model_gives_its_output_on_the_centre_plane(residual):
    torch.manual_seed(1)
    grey = UNet(UNetConfig(features=(8, 16), in_channels=1, out_channels=1, residual=residual))
    ckpt = Checkpoint(grey.config, grey.state_dict(), {"epochs": 3})
    wide = widened_to_context(ckpt, 2)
    assert (wide.config.z_context, wide.config.in_channels, wide.config.out_channels) == (2, 5, 1)
    assert wide.summary == {"epochs": 3}
    first = wide.state_dict["down.0.0.weight"]
    assert torch.equal(first[:, 2:3], ckpt.state_dict["down.0.0.weight"])
    assert not first[:, [0, 1, 3, 4]].any()  # the neighbours start at zero
    context = torch.rand(2, 5, 16, 16)
    with torch.no_grad():
        ours = wide.build_model()(context)
        theirs = ckpt.build_model()(context[:, 2:3])
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_the_shipped_grey_model_widens_to_itself_on_the_centre_plane():
    path, _ = find_checkpoint("grey")
    grey = load_checkpoint(path)
    wide = widened_to_context(grey, 1)
    x = torch.rand(1, 3, 2 * grey.config.stride * 4, 3 * grey.config.stride * 4)
    with torch.no_grad():
        torch.testing.assert_close(
            wide.build_model()(x), grey.build_model()(x[:, 1:2]), rtol=0, atol=1e-5
        )
    with pytest.raises(CheckpointError, match="has a z-context of 1, not 2"):
        widened_to_context(wide, 2)
    # a colour model is made grey first (with_channels), then widened
    colour = UNet(UNetConfig(features=(8, 16)))
    widened = widened_to_context(Checkpoint(colour.config, colour.state_dict()), 1)
    assert (widened.config.in_channels, widened.config.out_channels) == (3, 1)


def test_a_z_context_checkpoint_saves_and_loads(tmp_path):
    from n2n_train.checkpoint import save_checkpoint

    net = UNet(with_z_context(UNetConfig(features=(8, 16)), 1))
    save_checkpoint(tmp_path / "z.pt", net, {"noise": "own"})
    back = load_checkpoint(tmp_path / "z.pt")
    assert back.config == net.config and back.config.z_context == 1


# --- data --------------------------------------------------------------------------------


def test_pairs_give_each_plane_its_context_mirrored_at_the_ends(tmp_path):
    rng = np.random.default_rng(0)
    data = {f: rng.integers(0, 255, (4, SIDE, SIDE), dtype=np.uint8) for f in "ab"}
    for f in "ab":
        _stack(tmp_path / f / "s.ome.tif", data[f], "ZYX")
    scenes = scan_pairs(tmp_path / "a", tmp_path / "b", 16, z_context=1)
    assert [s.name for s in scenes] == [f"s.ome.tif[z={z}]" for z in range(4)]
    expected = {0: [1, 0, 1], 1: [0, 1, 2], 2: [1, 2, 3], 3: [2, 3, 2]}
    for z, scene in enumerate(scenes):
        assert scene.z_context == 1 and scene.grey and len(scene.frames) == 2
        for f, frame in zip("ab", scene.frames, strict=True):
            assert frame.shape == (3, SIDE, SIDE)
            assert np.array_equal(frame.numpy(), data[f][expected[z]])


def test_bursts_give_one_scene_per_z_whose_frames_are_the_t_contexts(tmp_path):
    data = np.random.default_rng(1).integers(0, 4000, (3, 5, SIDE, SIDE), dtype=np.uint16)
    _stack(tmp_path / "b" / "live.tif", data, "TZYX", ome=False)
    scenes = scan_bursts(tmp_path / "b", 16, z_context=2)
    assert [s.name for s in scenes] == [f"live.tif[z={z}]" for z in range(5)]
    for z, scene in enumerate(scenes):
        planes = np.pad(np.arange(5), 2, mode="reflect")[z : z + 5]
        assert len(scene.frames) == 3
        for t, frame in enumerate(scene.frames):
            assert frame.dtype == torch.uint16 and frame.shape == (5, SIDE, SIDE)
            assert np.array_equal(frame.numpy(), data[t][planes])
    lo, hi = float(data.min()), float(data.max())  # levels over the whole stack, as before
    assert {lv for s in scenes for lv in s.levels or ()} == {(lo, hi - lo)}


def test_patches_hold_the_input_planes_and_the_other_captures_centre(tmp_path):
    a, b = _flat_pairs(tmp_path)
    data, info = load_noisy_scenes("pairs", (a, b), 16, 0.25, seed=0, z_context=1)
    assert (data.in_channels, data.channels, info["z_context"]) == (3, 1, 1)
    gen = torch.Generator().manual_seed(0)
    inp, target = next(data.batches(32, 1, gen))
    assert inp.shape == (32, 3, 16, 16) and target.shape == (32, 1, 16, 16)
    values = torch.round(torch.cat([inp, target], dim=1)[:, :, 0, 0] * 255).int().tolist()
    mirrored = {-1: 1, 4: 2}  # z-1 of plane 0, z+1 of plane 3
    roles = set()
    for before, centre, after, goal in values:
        z, own = divmod(centre, 10)  # own: 1 (capture A) or 5 (capture B)
        assert before == 10 * mirrored.get(z - 1, z - 1) + own
        assert after == 10 * mirrored.get(z + 1, z + 1) + own
        assert goal == 10 * z + (5 if own == 1 else 1)  # plane z of the other capture
        roles.add(own)
    assert roles == {1, 5}  # both captures serve as input: roles drawn at random
    val = data.validation
    assert val.noisy.shape[1:] == (3, 16, 16) and val.target.shape[1:] == (1, 16, 16)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        ("tyx", "no Z axis for --z-context 1"),
        ("short", "too few planes: .* at least 3 planes"),
        ("png", "not a stack: .* --z-context 1 needs"),
        ("rgb", "colour stack for --z-context 1"),
    ],
)
def test_data_a_z_context_cannot_use_is_refused_by_name(tmp_path, make, message):
    from PIL import Image

    for f in "ab":
        if make == "tyx":
            _stack(tmp_path / f / "s.tif", np.zeros((3, SIDE, SIDE), np.uint8), "TYX", ome=False)
        elif make == "short":
            _stack(tmp_path / f / "s.ome.tif", np.zeros((2, SIDE, SIDE), np.uint8), "ZYX")
        elif make == "rgb":
            (tmp_path / f).mkdir()
            tifffile.imwrite(tmp_path / f / "s.ome.tif", np.zeros((3, SIDE, SIDE, 3), np.uint8),
                             ome=True, photometric="rgb", metadata={"axes": "ZYXS"})  # fmt: skip
        else:
            (tmp_path / f).mkdir()
            Image.fromarray(np.zeros((SIDE, SIDE), np.uint8)).save(tmp_path / f / "x.png")
    k = 2 if make == "short" else 1
    message = message.replace("--z-context 1", f"--z-context {k}")
    with pytest.raises(DataError, match=message):
        scan_pairs(tmp_path / "a", tmp_path / "b", 16, z_context=k)


def test_swap_with_z_context_data_is_refused_by_the_loop(tmp_path):
    a, b = _flat_pairs(tmp_path)
    data, _ = load_noisy_scenes("pairs", (a, b), 16, 0.25, seed=0, z_context=1)
    net = UNet(with_z_context(UNetConfig(features=(8, 16)), 1))
    cfg = TrainConfig(epochs=1, batch_size=2, steps_per_epoch=1, patch_size=16, swap=True)
    with pytest.raises(ConfigError, match="swap: a z-context input"):
        fit(net, data, cfg, tmp_path / "run", progress=False)


# --- n2n-train fit ---------------------------------------------------------------------------


def test_fit_on_pairs_with_init_grey_starts_from_the_grey_model(tmp_path):
    grey = load_checkpoint(find_checkpoint("grey")[0])
    patch = 4 * grey.config.stride
    a, b = _flat_pairs(tmp_path / "data", depth=3, side=max(SIDE, patch))
    args = ["fit", "--pairs", a, b, "--z-context", "1", "--init", "grey", "--out", tmp_path / "r"]
    args += ["--patch-size", patch, "--batch-size", "2", "--epochs", "1", "--steps-per-epoch"]
    args += ["1", "--no-progress", "--threads", "1", "--lr", "1e-9", "--optimizer", "sgd"]
    done = _run(args)
    assert done.exit_code == 0, done.output
    assert "--images" not in done.output  # parity of a z-context model runs on patterns
    ckpt = load_checkpoint(tmp_path / "r" / "best.pt")
    assert ckpt.config == with_z_context(grey.config, 1)
    assert ckpt.summary["data"]["z_context"] == 1 and ckpt.summary["init"]["name"] == "grey"
    # one step at lr 1e-9: still the grey model on the centre plane
    x = torch.rand(1, 3, patch, patch)
    with torch.no_grad():
        torch.testing.assert_close(
            ckpt.build_model()(x), grey.build_model()(x[:, 1:2]), rtol=0, atol=1e-4
        )


def test_fit_on_imagej_bursts_trains_a_z_context_model(tmp_path):
    data = np.random.default_rng(2).integers(100, 3000, (2, 4, SIDE, SIDE), dtype=np.uint16)
    _stack(tmp_path / "b" / "live.tif", data, "TZYX", ome=False)
    done = _run(
        ["fit", "--bursts", tmp_path / "b", "--z-context", "2", "--out", tmp_path / "r", *TINY]
    )
    assert done.exit_code == 0, done.output
    ckpt = load_checkpoint(tmp_path / "r" / "best.pt")
    assert (ckpt.config.z_context, ckpt.config.in_channels, ckpt.config.out_channels) == (2, 5, 1)
    assert ckpt.summary["data"]["scenes"] == 4 and ckpt.summary["data"]["files"] == 8
    # resuming keeps the shape; eval refuses it by name
    more = _run(["fit", "--bursts", tmp_path / "b", "--z-context", "2", "--out", tmp_path / "r",
                 "--resume", *tiny(epochs=2)])  # fmt: skip
    assert more.exit_code == 0, more.output
    refused = _run(["eval", tmp_path / "r" / "best.pt", tmp_path / "b"])
    assert refused.exit_code == 2 and "is a z-context model (K=2" in refused.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--singles", "S"], "--z-context 1 needs --pairs or --bursts .* not --singles"),
        (["--photos", "S"], "--z-context 1 needs --pairs or --bursts .* not --photos"),
        (["--bursts", "S", "--burst-axis", "Z"], "--burst-axis Z would make them the repeats"),
        (["--pairs", "S", "T", "--swap"], "--z-context 1: --swap does not apply"),
        (["--pairs", "S", "T", "--study"], r"--swap \(part of --study\) does not apply"),
        (["--pairs", "S", "T", "--channels", "3"], "not --channels 3"),
    ],
)
def test_fit_options_a_z_context_cannot_train_with_are_refused(tmp_path, extra, message):
    (tmp_path / "S").mkdir()
    (tmp_path / "T").mkdir()
    extra = [tmp_path / e if e in ("S", "T") else e for e in extra]
    done = _run(["fit", *extra, "--z-context", "1", "--out", tmp_path / "r", *TINY])
    assert done.exit_code == 2
    assert re.search(message, " ".join(done.output.split())), done.output


def test_a_z_context_init_keeps_its_k_without_the_option(tmp_path):
    a, b = _flat_pairs(tmp_path / "data", depth=5)
    net = UNet(with_z_context(UNetConfig(features=(8, 16)), 2))
    from n2n_train.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "z2.pt", net, {"noise": "own"})
    done = _run(["fit", "--pairs", a, b, "--init", tmp_path / "z2.pt", "--out", tmp_path / "r",
                 *TINY[2:]])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert load_checkpoint(tmp_path / "r" / "best.pt").config == net.config


def test_flips_and_rotations_turn_every_context_plane_with_its_target():
    from n2n_train.augment import random_dihedral

    gen = torch.Generator().manual_seed(0)
    target = torch.rand(16, 1, 8, 8)
    inp = torch.cat([target, 2 * target, 3 * target], dim=1)  # planes that follow the target
    turned_inp, turned_target = random_dihedral(inp, target, gen)
    assert not torch.equal(turned_target, target)  # some pairs were turned
    for c in range(3):
        torch.testing.assert_close(turned_inp[:, c : c + 1], (c + 1) * turned_target)
