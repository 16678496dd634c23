"""Training on the user's own TIFF stacks: multi-page TIFF, ImageJ hyperstacks, OME-TIFF."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from click.testing import CliRunner

from n2n_train import stacks
from n2n_train.checkpoint import load_checkpoint
from n2n_train.cli import main
from n2n_train.data import DataError
from n2n_train.owndata import load_noisy_scenes, scan_bursts, scan_pairs, scan_singles
from tests.conftest import REPO

SIDE = 32


def _counts(rng: np.random.Generator, shape: tuple[int, ...], lo: int, hi: int) -> np.ndarray:
    """Dim 16-bit counts (a microscope's): a smooth picture plus noise, in lo..hi."""
    y, x = np.mgrid[: shape[-2], : shape[-1]]
    picture = 0.5 + 0.4 * np.sin(x / 5.0) * np.cos(y / 7.0)
    noisy = picture + rng.normal(0, 0.05, shape)
    return np.clip(lo + (hi - lo) * noisy, lo, hi).astype(np.uint16)


def _imagej(path: Path, data: np.ndarray, axes: str, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": axes}, **kw)
    return path


def _ome(path: Path, data: np.ndarray, axes: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, data, ome=True, metadata={"axes": axes})
    return path


def _ome_pairs(root: Path, z: int = 3, ch: int = 2) -> tuple[Path, Path, list[np.ndarray]]:
    """Two folders holding one OME ZCYX stack each (channel 1 brighter than channel 0)."""
    rng = np.random.default_rng(0)
    data = []
    for folder in ("a", "b"):
        stack = np.stack(
            [np.stack([_counts(rng, (SIDE, SIDE), 100 + 50 * k, 900 + 300 * k + 4000 * c)
                       for c in range(ch)]) for k in range(z)]
        )  # fmt: skip
        _ome(root / folder / "cells.ome.tif", stack, "ZCYX")
        data.append(stack)
    return root / "a", root / "b", data


def test_imagej_tzyx_bursts_give_one_scene_per_z_of_its_t_planes(tmp_path):
    data = _counts(np.random.default_rng(1), (3, 2, SIDE, SIDE), 200, 3000)  # T, Z
    _imagej(tmp_path / "bursts" / "live.tif", data, "TZYX")
    scenes = scan_bursts(tmp_path / "bursts", min_side=16)
    assert [s.name for s in scenes] == ["live.tif[z=0]", "live.tif[z=1]"]
    assert all(len(s.frames) == 3 and s.grey and s.stack == "live.tif" for s in scenes)
    for z, scene in enumerate(scenes):
        for t, frame in enumerate(scene.frames):
            assert frame.dtype == torch.uint16  # 16-bit precision kept
            assert np.array_equal(frame[0].numpy(), data[t, z])
    # the dim 16-bit rule over the whole stack: every plane mapped by the stack's range
    lo, hi = int(data.min()), int(data.max())
    assert {lv for s in scenes for lv in s.levels or ()} == {(float(lo), float(hi - lo))}
    # the repeats along Z instead: one scene per T of its two Z planes
    by_z = scan_bursts(tmp_path / "bursts", min_side=16, burst_axis="Z")
    assert [(s.name, len(s.frames)) for s in by_z] == [(f"live.tif[t={t}]", 2) for t in range(3)]
    assert np.array_equal(by_z[2].frames[1][0].numpy(), data[2, 1])


def test_an_imagej_file_listing_only_its_first_page_is_read_whole(tmp_path):
    data = _counts(np.random.default_rng(2), (4, SIDE, SIDE), 0, 5000)
    path = _imagej(tmp_path / "b" / "t.tif", data, "TYX", truncate=True)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.series[0].pages) == 1  # the other planes follow it unlisted
    (scene,) = scan_bursts(tmp_path / "b", min_side=16)
    assert np.array_equal(torch.stack(scene.frames)[:, 0].numpy(), data)


def test_bursts_stacks_without_the_repeats_axis_are_refused_with_a_hint(tmp_path):
    depth = _counts(np.random.default_rng(3), (4, 8, 8), 0, 99)
    _imagej(tmp_path / "b" / "depth.tif", depth, "ZYX")
    with pytest.raises(DataError) as err:
        scan_bursts(tmp_path / "b")
    assert "depth.tif" in str(err.value) and "--burst-axis Z" in str(err.value)
    nested = tmp_path / "n"
    _imagej(nested / "scene" / "stack.tif", np.zeros((2, 8, 8), np.uint16), "TYX")
    with pytest.raises(DataError, match=r"a TIFF stack in a scene folder: .*stack\.tif"):
        scan_bursts(nested)


def test_ome_zcyx_pairs_pair_plane_by_plane_with_levels_per_channel(tmp_path):
    a, b, (data_a, data_b) = _ome_pairs(tmp_path)
    scenes = scan_pairs(a, b, min_side=16)
    names = [s.name for s in scenes]
    assert names == [f"cells.ome.tif[z={z},c={c}]" for z in range(3) for c in range(2)]
    assert all(len(s.frames) == 2 and s.grey for s in scenes)
    for scene, (z, c) in zip(scenes, np.ndindex(3, 2), strict=True):  # plane k with plane k
        assert np.array_equal(scene.frames[0][0].numpy(), data_a[z, c])
        assert np.array_equal(scene.frames[1][0].numpy(), data_b[z, c])
    for c in range(2):
        channel = data_a[:, c]
        expected = (float(channel.min()), float(channel.max() - channel.min()))
        # per stack and channel, over every Z plane: not each plane's own range
        assert {s.levels[0] for s in scenes[c::2]} == {expected}
        assert expected != (float(data_a[0, c].min()), float(np.ptp(data_a[0, c])))
    data, info = load_noisy_scenes("pairs", [a, b], 16, 0.3, seed=0)
    assert info["channels"] == 1 and info["stacks"] == 1 and info["scenes"] == 6
    inp, target = next(data.batches(4, 1, torch.Generator().manual_seed(0)))
    assert inp.shape == target.shape == (4, 1, 16, 16)
    assert float(inp.min()) >= 0.0 and float(inp.max()) <= 1.0


def test_stacks_that_do_not_match_are_refused_naming_both_files(tmp_path):
    zeros = np.zeros
    for folder, z, axes in (("a", 3, "ZCYX"), ("b", 4, "ZCYX")):
        _ome(tmp_path / folder / "shape.ome.tif", zeros((z, 2, 16, 16), np.uint16), axes)
    _ome(tmp_path / "a" / "axes.ome.tif", zeros((3, 2, 16, 16), np.uint16), "ZCYX")
    _ome(tmp_path / "b" / "axes.ome.tif", zeros((3, 2, 16, 16), np.uint16), "TCYX")
    _imagej(tmp_path / "a" / "one.tif", zeros((2, 16, 16), np.uint16), "ZYX")
    tifffile.imwrite(tmp_path / "b" / "one.tif", zeros((16, 16), np.uint16))
    with pytest.raises(DataError) as err:
        scan_pairs(tmp_path / "a", tmp_path / "b")
    text = str(err.value)
    assert "3 problem(s)" in text
    a, b = tmp_path / "a", tmp_path / "b"
    assert f"{a / 'shape.ome.tif'} is ZCYX 3×2×16×16 uint16" in text
    assert f"{b / 'shape.ome.tif'} is ZCYX 4×2×16×16 uint16 (Z 3 against 4)" in text
    assert "(axes ZCYX against TCYX)" in text and str(b / "axes.ome.tif") in text
    assert f"{a / 'one.tif'} is a TIFF stack (ZYX 2×16×16 uint16) but {b / 'one.tif'}" in text


def test_every_plane_of_a_stack_is_one_single_and_rgb_planes_are_colour(tmp_path):
    rng = np.random.default_rng(4)
    folder = tmp_path / "s"
    folder.mkdir()
    with tifffile.TiffWriter(folder / "pages.tif") as tif:  # a plain multi-page TIFF
        for _ in range(3):
            tif.write(rng.integers(0, 255, (SIDE, SIDE), np.uint8), metadata=None)
    tifffile.imwrite(folder / "rgb.tif", rng.integers(0, 255, (2, SIDE, SIDE, 3), np.uint8))
    scenes = scan_singles(folder, min_side=32)
    assert [s.name for s in scenes] == [*(f"pages.tif[i={i}]" for i in range(3)),
                                        "rgb.tif[q=0]", "rgb.tif[q=1]"]  # fmt: skip
    assert [s.grey for s in scenes] == [True, True, True, False, False]
    assert all(len(s.frames) == 1 and s.levels == (None,) for s in scenes)
    assert scenes[4].frames[0].shape == (3, SIDE, SIDE)
    with pytest.raises(DataError, match=r"too small: stack .*pages.tif .* planes of 32×32"):
        scan_singles(folder, min_side=64)


def test_absurd_or_invalid_stacks_are_refused_by_name(tmp_path, monkeypatch):
    folder = tmp_path / "s"
    _imagej(folder / "many.tif", np.zeros((6, 8, 8), np.uint16), "TYX")
    monkeypatch.setattr(stacks, "MAX_PLANES", 5)
    with pytest.raises(DataError, match=r"many.tif: stack of 6 planes .*more than 5"):
        scan_singles(folder)
    monkeypatch.undo()
    monkeypatch.setattr(stacks, "MAX_STACK_PIXELS", 6 * 64 - 1)
    with pytest.raises(DataError, match=r"many.tif: stack of 384 pixels"):
        scan_singles(folder)
    monkeypatch.undo()
    white = np.zeros((2, 8, 8), np.uint16)
    tifffile.imwrite(folder / "many.tif", white, photometric="miniswhite")
    with pytest.raises(DataError, match=r"many.tif: TIFF stack with photometric interpretation 0"):
        scan_singles(folder)
    tifffile.imwrite(folder / "many.tif", white[0], photometric="miniswhite")
    assert len(scan_singles(folder)) == 1  # one page: the runtime's reader reads it
    floats = np.zeros((2, 8, 8), np.float32)
    floats[1, 3, 3] = 1.5
    _imagej(folder / "many.tif", floats, "TYX")
    with pytest.raises(DataError, match=r"many.tif: plane t=1: float values in \[0, 1.5\]"):
        scan_singles(folder)


def test_fit_burst_axis_option_reads_repeats_along_z(tmp_path):
    data = _counts(np.random.default_rng(5), (3, 2, SIDE, SIDE), 300, 2000)  # Z repeats, C
    _imagej(tmp_path / "b" / "fixed.tif", data, "ZCYX")
    args = ["fit", "--bursts", tmp_path / "b", "--out", tmp_path / "run", "--features", "8,16"]
    args += ["--patch-size", "16", "--batch-size", "2", "--epochs", "1"]
    args += ["--steps-per-epoch", "1", "--no-progress", "--threads", "1"]
    refused = CliRunner().invoke(main, [str(a) for a in args])
    assert refused.exit_code == 2 and "--burst-axis Z" in refused.output
    done = CliRunner().invoke(main, [str(a) for a in [*args, "--burst-axis", "z"]])
    assert done.exit_code == 0, done.output
    summary = load_checkpoint(tmp_path / "run" / "best.pt").summary
    assert summary["data"]["scenes"] == 2 and summary["data"]["files"] == 6  # per C, 3 Z


def test_fit_on_grey_stack_pairs_trains_a_one_channel_model(tmp_path):
    a, b, _ = _ome_pairs(tmp_path / "data", z=4, ch=1)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "n2n_train.cli", "fit", "--pairs", str(a), str(b)]
    cmd += ["--out", str(out), "--features", "8,16", "--patch-size", "16", "--batch-size", "4"]
    cmd += ["--epochs", "1", "--steps-per-epoch", "2", "--no-progress", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt.config.in_channels == ckpt.config.out_channels == 1
    assert ckpt.summary["data"]["stacks"] == 1 and ckpt.summary["data"]["scenes"] == 4


def test_a_dim_float_stack_is_mapped_by_its_channels_range_over_every_plane(tmp_path):
    """Float32 stacks follow the dim rule per stack and channel too (the runtime's)."""
    rng = np.random.default_rng(4)
    data = np.stack([_counts(rng, (2, SIDE, SIDE), 100 + 40 * z, 900 + 400 * z) for z in range(3)])
    data = data.astype(np.float32) / np.float32(65535)  # Z, C=2: dim in [0, 0.25]
    data[:, 1] *= 12  # channel 1 past 0.25 (up to 0.31): taken as it is
    _ome(tmp_path / "s" / "cells.ome.tif", data, "ZCYX")
    scenes = scan_singles(tmp_path / "s", min_side=16)
    assert len(scenes) == 6 and all(s.frames[0].dtype == torch.float32 for s in scenes)
    lo, hi = float(data[:, 0].min()), float(data[:, 0].max())
    for scene, (_, c) in zip(scenes, np.ndindex(3, 2), strict=True):
        if c == 0:
            assert scene.levels[0] == pytest.approx((lo, hi - lo))
        else:
            assert scene.levels[0] is None
