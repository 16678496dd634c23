"""Grey images through the colour model: pixel phases as colour images (n2n_infer.grey)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from n2n_infer import Denoiser
from n2n_infer import metadata as md
from n2n_infer.arrays import as_image
from n2n_infer.grey import STACKS, grey_mode_for, is_grey, merge_phases, phase_stacks
from n2n_infer.metrics import psnr
from tests.conftest import synthetic_photo


def _grey_photo(seed: int, h: int, w: int) -> np.ndarray:
    colour = synthetic_photo(np.random.default_rng(seed), h, w)
    return np.asarray(Image.fromarray(colour).convert("L"))


def _noisy(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, clean.shape)
    return np.clip(np.rint(clean + noise), 0, 255).astype(np.uint8)


def test_every_phase_appears_three_times_once_per_channel():
    for channel in range(3):
        assert sorted(stack[channel] for stack in STACKS) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for stack in STACKS:
        assert len(set(stack)) == 3  # three different phases: independent noise in R, G, B


@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (5, 1), (7, 9), (8, 10), (3, 4)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_phases_split_and_merge_back_exactly(shape, dtype):
    rng = np.random.default_rng(0)
    scale = {np.uint8: 255, np.uint16: 65535, np.float32: 1}[dtype]
    grey = (rng.random(shape) * scale).astype(dtype)
    stacks = phase_stacks(as_image(grey))
    assert len(stacks) == 4
    h2, w2 = (shape[0] + 1) // 2, (shape[1] + 1) // 2
    assert all(s.shape == (h2, w2, 3) and s.dtype == dtype for s in stacks)
    merged = merge_phases(stacks, shape)  # an identity "denoiser" gives the image back
    assert merged.shape == shape and merged.dtype == np.float32
    assert np.abs(merged * np.float32(scale) - grey.astype(np.float32)).max() <= 1e-3 * scale


def test_what_counts_as_grey():
    g = np.zeros((4, 5), np.uint8)
    rgb = np.dstack([g, g, g])
    assert is_grey(as_image(g)) and is_grey(as_image(g[:, :, None])) and is_grey(as_image(rgb))
    assert is_grey(as_image(np.dstack([rgb, np.full((4, 5), 9, np.uint8)])))  # alpha aside
    rgb[1, 2, 1] = 1
    assert not is_grey(as_image(rgb))


def test_grey_mode_auto_follows_what_the_model_states():
    assert grey_mode_for("auto", "phases") == "phases"
    assert grey_mode_for("auto", "replicate") == "replicate"
    assert grey_mode_for("phases", "replicate") == "phases"  # a named mode wins
    assert grey_mode_for("replicate", "phases") == "replicate"
    assert grey_mode_for("auto") == "phases"
    with pytest.raises(ValueError, match="expected one of auto, phases, replicate, got 'gray'"):
        grey_mode_for("gray", "phases")
    with pytest.raises(ValueError, match="'gray'"):
        Denoiser(device="cpu", grey="gray")


def _format1_grey(noise: str, training: dict | None = None) -> str:
    """The grey handling the runtime derives for a format-1 file (which does not state it)."""
    props = {
        md.KEY_FORMAT_VERSION: "1",
        md.KEY_STRIDE: "4",
        md.KEY_NOISE: noise,
        md.KEY_TRAINING: json.dumps(training or {}),
    }
    return md.ModelInfo.from_props(props, Path("m.onnx")).grey


def test_format1_files_get_the_grey_handling_they_always_had():
    """Format 1 replicated for ``pixelated`` only: correlated noise kept phases (format 2
    states ``replicate`` for it: tests/export/test_stated_facts.py)."""
    assert _format1_grey("gaussian:0-50") == "phases"
    assert _format1_grey("") == "phases"
    assert _format1_grey("pixelated:24.4591,2") == "replicate"
    assert _format1_grey("gaussian:0-50+pixelated:24") == "replicate"  # a mix
    assert _format1_grey("gaussian:0-50+correlated:0-50") == "phases"
    assert _format1_grey("gaussian:0-50", {"train_config": {"grey_fraction": 0.3}}) == "replicate"


@pytest.mark.parametrize(
    ("training", "expected"),
    [
        ({}, "phases"),
        ({"train_config": {"grey_fraction": 0.0}}, "phases"),
        ({"train_config": {"grey_fraction": 0.25}}, "replicate"),
        ({"train_config": {"grey_fraction": "junk"}}, "phases"),
        ({"train_config": "junk"}, "phases"),
        ({"data": {"source": "pairs", "grey_scenes": 0}}, "phases"),
        ({"data": {"source": "pairs", "grey_scenes": 3}}, "replicate"),  # own grey data, copied
        ({"data": {"grey_scenes": "junk"}}, "phases"),
        ({"data": {"grey_scenes": float("inf")}}, "phases"),
        ({"data": "junk"}, "phases"),
    ],
)
def test_a_format1_model_trained_on_grey_patches_is_read_from_its_training_summary(
    training, expected
):
    assert _format1_grey("gaussian:25", training) == expected


def test_phases_remove_the_noise_that_replicating_leaves_in(photo):
    """The shipped model on a grey photo at sigma 25: copied into RGB it barely denoises."""
    clean = _grey_photo(1, 128, 160)
    noisy = _noisy(clean, 25, 2)
    replicate = Denoiser(device="cpu", grey="replicate")
    before = psnr(noisy, clean)
    copied = psnr(replicate.denoise(noisy), clean)
    phases = psnr(photo.denoise(noisy), clean)
    assert photo.grey == "phases" and replicate.grey == "replicate"
    assert copied < before + 4  # the model takes the shared noise for picture
    assert phases > copied + 5
    assert phases > before + 8


def test_grey_results_keep_the_inputs_kind(photo):
    noisy = _noisy(_grey_photo(3, 33, 47), 20, 4)
    out = photo.denoise(noisy)
    assert out.shape == noisy.shape and out.dtype == np.uint8
    assert np.array_equal(photo.denoise(noisy[:, :, None])[:, :, 0], out)
    rgb = photo.denoise(np.dstack([noisy] * 3))
    assert np.array_equal(rgb[:, :, 0], out) and np.array_equal(rgb[:, :, 2], out)
    alpha = np.full(noisy.shape, 77, np.uint8)
    rgba = photo.denoise(np.dstack([noisy, noisy, noisy, alpha]))
    assert np.array_equal(rgba[:, :, 1], out) and np.array_equal(rgba[:, :, 3], alpha)
    pil = photo.denoise(Image.fromarray(noisy))
    assert pil.mode == "L" and np.array_equal(np.asarray(pil), out)
    u16 = photo.denoise(noisy.astype(np.uint16) * 257)
    assert u16.dtype == np.uint16 and np.abs(u16.astype(int) - out.astype(int) * 257).max() <= 257


def test_a_grey_image_is_its_phases_through_the_colour_model(photo):
    noisy = _noisy(_grey_photo(5, 40, 52), 25, 6)
    stacks = [photo.denoise(s) for s in phase_stacks(as_image(noisy))]
    expected = np.rint(merge_phases(stacks, noisy.shape) * 255)
    assert np.abs(photo.denoise(noisy).astype(int) - expected).max() <= 1


def test_batches_mixing_grey_and_colour_keep_order_and_results(photo):
    rng = np.random.default_rng(7)
    images = [
        _noisy(_grey_photo(8, 30, 40), 25, 9),
        rng.integers(0, 256, (30, 40, 3), dtype=np.uint8),
        _noisy(_grey_photo(10, 21, 17), 25, 11),
        rng.integers(0, 256, (12, 16, 3), dtype=np.uint8),
    ]
    together = photo.denoise_batch(images)
    for img, out in zip(images, together, strict=True):
        assert np.array_equal(out, photo.denoise(img))


def test_tiled_grey_matches_untiled(photo):
    noisy = _noisy(_grey_photo(12, 520, 500), 25, 13)  # phases of 260×250 > one 240 tile
    a, b = photo.denoise(noisy, tile=True), photo.denoise(noisy, tile=False)
    assert np.abs(a.astype(int) - b).max() <= 1


def test_batch_cli_grey_option_is_applied_recorded_and_validated(tmp_path):
    import json

    from click.testing import CliRunner

    from n2n_infer.cli import main

    clean = _grey_photo(14, 48, 64)
    src, ref = tmp_path / "in", tmp_path / "ref"
    src.mkdir()
    ref.mkdir()
    Image.fromarray(_noisy(clean, 25, 15)).save(src / "g.png")
    Image.fromarray(clean).save(ref / "g.png")
    gains = {}
    for mode in ("auto", "replicate"):
        out, report = tmp_path / mode, tmp_path / f"{mode}.json"
        args = ["batch", str(src), str(out), "--device", "cpu", "--report", str(report)]
        result = CliRunner().invoke(main, [*args, "--grey", mode, "--reference", str(ref)])
        assert result.exit_code == 0, result.output
        data = json.loads(report.read_text())
        assert data["grey"] == ("phases" if mode == "auto" else "replicate")
        with Image.open(out / "g.png") as im:
            assert im.mode == "L"
        entry = data["files"][0]
        gains[mode] = entry["psnr_denoised"] - entry["psnr_noisy"]
    assert gains["auto"] > gains["replicate"] + 4
    bad = CliRunner().invoke(main, ["batch", str(src), str(tmp_path / "x"), "--grey", "gray"])
    assert bad.exit_code == 2 and "--grey" in bad.output
