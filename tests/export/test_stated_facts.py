"""The facts an exported model states (metadata format 2), from its checkpoint and its network.

The receptive radius is ``UNetConfig.receptive_radius``, checked here against
the network itself; the grey handling and the noise in words come from
training's own noise parser. The runtime's side is
``tests/infer/test_metadata_format2.py``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from n2n_export.exporter import export_onnx, grey_handling, noise_description, stated_facts
from n2n_infer import Denoiser
from n2n_infer import metadata as md
from n2n_train.checkpoint import load_checkpoint, save_checkpoint
from n2n_train.config import TrainConfig, UNetConfig
from n2n_train.unet import UNet
from tests.conftest import REPO

#: A few shapes: levels, convolutions per level, pooling and upsampling.
CONFIGS = [
    UNetConfig(features=(4, 4), convs_per_level=1),
    UNetConfig(features=(4, 4), convs_per_level=2, upsampling="transposed"),
    UNetConfig(features=(4, 4, 4), convs_per_level=2, pooling="max"),
    UNetConfig(features=(4, 4, 4), convs_per_level=1, upsampling="bilinear"),
    UNetConfig(features=(4, 4, 4, 4), convs_per_level=1, residual=True),
]


def measured_reach(config: UNetConfig) -> int:
    """How far (px, Chebyshev) an output changes when one input pixel changes: the largest
    over every position of the pixel within one stride, in float64 (no rounding)."""
    torch.manual_seed(0)
    cfg = UNetConfig.from_dict({**config.to_dict(), "activation": "leaky_relu"})  # no dead units
    net = UNet(cfg).double().eval()
    s, r = cfg.stride, cfg.receptive_radius
    size = (2 * r + 4 * s) // s * s + 2 * s
    x = torch.rand(1, 3, size, size, dtype=torch.float64)
    centre = size // 2 // s * s
    reach = 0
    with torch.no_grad():
        base = net(x)
        for dy in range(s):
            for dx in range(s):
                y, cx = x.clone(), (centre + dy, centre + dx)
                y[0, :, cx[0], cx[1]] += 1.0
                changed = (net(y) - base).abs().amax(dim=(0, 1)) > 0
                rows, cols = torch.nonzero(changed, as_tuple=True)
                reach = max(reach, int((rows - cx[0]).abs().max()), int((cols - cx[1]).abs().max()))
    return reach


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.levels}x{c.convs_per_level}")
def test_the_receptive_radius_bounds_the_networks_measured_reach(config):
    """No output pixel moves farther than the stated radius from a changed input pixel, and
    the bound is tight to within the slack of pooling and upsampling (2·(stride − 1))."""
    reach = measured_reach(config)
    assert reach <= config.receptive_radius <= reach + 2 * (config.stride - 1)
    assert UNet(config).receptive_radius == config.receptive_radius


@pytest.mark.parametrize("levels", range(2, 7))
@pytest.mark.parametrize("convs", [1, 2])
@pytest.mark.parametrize("upsampling", ["nearest", "bilinear", "transposed"])
def test_format1_files_get_the_radius_a_fresh_export_states(levels, convs, upsampling):
    """The runtime's format-1 derivation and training's formula agree on every shape."""
    config = UNetConfig(features=(4,) * levels, convs_per_level=convs, upsampling=upsampling)
    props = {md.KEY_FORMAT_VERSION: "1", md.KEY_STRIDE: str(config.stride)}
    props[md.KEY_CONFIG] = json.dumps(config.to_dict())
    info = md.ModelInfo.from_props(props, Path("m.onnx"))
    assert info.receptive_radius == config.receptive_radius


def _export(tmp_path, config: UNetConfig, summary: dict, name: str = "m"):
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / f"{name}.pt", UNet(config), summary)
    return export_onnx(ckpt, tmp_path / f"{name}.onnx")


@pytest.mark.parametrize(
    ("config", "noise", "grey"),
    [
        (CONFIGS[0], "gaussian:0-50", "phases"),
        (CONFIGS[3], "pixelated:24,2", "replicate"),
        (CONFIGS[4], "poisson:5-50", "phases"),
    ],
    ids=["gaussian", "pixelated", "poisson"],
)
def test_config_to_onnx_to_model_info_gives_the_facts_back(tmp_path, config, noise, grey):
    path = _export(tmp_path, config, {"noise": noise})
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props[md.KEY_FORMAT_VERSION] == str(md.FORMAT_VERSION) == "2"
    info = md.ModelInfo.from_props(props, path)
    assert info.format_version == 2
    assert (info.architecture, info.channels, info.stride) == ("unet", 3, config.stride)
    assert info.receptive_radius == config.receptive_radius
    assert (info.grey, info.noise) == (grey, noise)
    assert info.noise_description == noise_description(noise) == md.describe_noise(noise)
    d = Denoiser(path, device="cpu")
    assert d.grey == grey
    margin = -(-config.receptive_radius // config.stride) * config.stride
    assert d.tiles.overlap == 4 * margin


def test_a_model_trained_on_correlated_noise_gets_grey_images_whole(tmp_path):
    """Format 1 gave it phases (only "pixelated" was listed); its noise is shared by neighbours."""
    path = _export(tmp_path, CONFIGS[0], {"noise": "gaussian:0-50+correlated:0-50"})
    assert Denoiser(path, device="cpu").grey == "replicate"
    assert Denoiser(path, device="cpu", grey="phases").grey == "phases"


@pytest.mark.parametrize(
    ("noise", "grey"),
    [
        ("gaussian:25", "phases"),
        ("poisson:5-50", "phases"),
        ("bernoulli:0.3", "phases"),
        ("impulse:0.1", "phases"),
        ("gaussian:0-50+poisson:5-50", "phases"),
        ("correlated:25", "replicate"),
        ("pixelated:24.4591,2", "replicate"),
        ("pixelated:24,1", "phases"),  # blocks of one pixel: independent from pixel to pixel
        ("gaussian:0-50+pixelated:24", "replicate"),
        ("gaussian:0-50+correlated:0-50", "replicate"),
        ("own noise of a and b (pairs)", "phases"),  # not a spec: as format 1 did
        ("course", "phases"),
        ("", "phases"),
    ],
)
def test_grey_handling_follows_the_training_noise(noise, grey):
    assert grey_handling({"noise": noise}) == grey


@pytest.mark.parametrize(
    "summary",
    [
        {"noise": "gaussian:25", "train_config": TrainConfig(grey_fraction=0.3).to_dict()},
        {"noise": "own noise of a and b (pairs)", "data": {"source": "pairs", "grey_scenes": 3}},
    ],
    ids=["grey patches", "grey scenes"],
)
def test_a_model_that_learned_grey_copies_gets_them_replicated(summary):
    assert grey_handling(summary) == "replicate"
    assert grey_handling({**summary, "train_config": {"grey_fraction": "junk"}, "data": {}}) == (
        "phases"
    )


@pytest.mark.parametrize(
    "spec",
    [
        "gaussian:25",
        "gaussian:0-50",
        "correlated:0-50",
        "poisson:5-50",
        "pixelated:24.4591,2",
        "pixelated:24",
        "pixelated:24,4",
        "bernoulli:0.3",
        "impulse:0.05-0.2",
        "gaussian:25+poisson:30",
        "gaussian:0-50+correlated:0-50",
        "gaussian:12.3456789",
    ],
)
def test_the_noise_reads_as_format_1_read_it(spec):
    """A model keeps its words across the format change (format 1 read them off the spec)."""
    assert noise_description(spec) == md.describe_noise(spec)


def test_a_network_of_other_input_and_output_channels_is_refused(tmp_path):
    config = UNetConfig(features=(4, 4), in_channels=3, out_channels=1)
    ckpt = save_checkpoint(tmp_path / "m.pt", UNet(config), {})
    with pytest.raises(ValueError, match="3 input and 1 output channels"):
        stated_facts(load_checkpoint(ckpt))
    with pytest.raises(ValueError, match="3 input and 1 output channels"):
        export_onnx(ckpt, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_upgrading_a_format1_file_adds_what_a_fresh_export_states(tmp_path):
    """scripts/upgrade_metadata.py: the facts of a fresh export, the graph byte for byte."""
    fresh = _export(tmp_path, CONFIGS[2], {"noise": "correlated:10"}, name="m")
    model = onnx.load(str(fresh))
    stated = {p.key: p.value for p in model.metadata_props}
    new = {*md.FORMAT2_REQUIRED, md.KEY_NOISE_DESCRIPTION}
    keep = [(p.key, p.value) for p in model.metadata_props if p.key not in new]
    del model.metadata_props[:]
    for key, value in keep:  # as the exporter wrote it before format 2
        model.metadata_props.add(key=key, value="1" if key == md.KEY_FORMAT_VERSION else value)
    old = tmp_path / "old" / "m.onnx"
    old.parent.mkdir()
    onnx.save(model, str(old))
    shutil.copy(tmp_path / "m.pt", old.parent / "m.pt")  # found by its sha256 beside the model
    graph = model.graph.SerializeToString()
    assert Denoiser(old, device="cpu").info.format_version == 1
    script = [sys.executable, str(REPO / "scripts" / "upgrade_metadata.py")]
    done = subprocess.run([*script, str(old)], capture_output=True, text=True, check=True)
    assert "upgraded to format 2" in done.stdout
    again = onnx.load(str(old))
    assert {p.key: p.value for p in again.metadata_props} == stated
    assert again.graph.SerializeToString() == graph
    assert "| receptive radius |" in old.with_suffix(".md").read_text()
    check = subprocess.run([*script, "--check", str(old)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    info = Denoiser(old, device="cpu").info
    assert (info.grey, info.receptive_radius) == ("replicate", CONFIGS[2].receptive_radius)
    out = Denoiser(old, device="cpu").denoise(np.zeros((20, 20, 3), np.uint8))
    assert out.shape == (20, 20, 3)
