"""Self-ensemble: flips/rotations averaged, exactly, on any size, tiled or not."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from n2n_infer import Denoiser
from n2n_infer.cli import main
from n2n_infer.ensemble import SIZES, TRANSFORMS, check_size, run_ensemble
from n2n_infer.metrics import psnr

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_transforms_are_the_eight_symmetries_and_inverses_undo_them():
    a = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    images = []
    for forward, inverse in TRANSFORMS:
        moved = forward(a)
        assert moved.shape in ((2, 3, 4, 5), (2, 3, 5, 4))
        assert np.array_equal(inverse(moved), a)
        images.append(moved.tobytes() + bytes(moved.shape))
    assert len(set(images)) == 8


@pytest.mark.parametrize("n", SIZES)
def test_first_n_transforms_are_closed_under_composition(n):
    """Each ensemble is a subgroup: composing two of its transforms stays inside it."""
    a = np.random.default_rng(0).random((1, 1, 4, 4)).astype(np.float32)
    members = [f(a).tobytes() for f, _ in TRANSFORMS[:n]]
    for (f, _), (g, _) in itertools.product(TRANSFORMS[:n], repeat=2):
        assert f(g(a)).tobytes() in members


def test_run_ensemble_is_the_mean_of_the_transformed_runs():
    rng = np.random.default_rng(1)
    batch = rng.random((2, 3, 8, 12)).astype(np.float32)
    weights = rng.random((8, 12)).astype(np.float32)

    def position_dependent(x: np.ndarray) -> np.ndarray:  # not equivariant
        return x * (weights if x.shape[-2:] == (8, 12) else weights.T)

    expected = np.mean(
        [inv(position_dependent(np.ascontiguousarray(fwd(batch)))) for fwd, inv in TRANSFORMS[:4]],
        axis=0,
    )
    got = run_ensemble(position_dependent, batch, 4)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_array_equal(
        run_ensemble(position_dependent, batch, 1), position_dependent(batch)
    )


@pytest.mark.parametrize("bad", [0, 3, 5, 16, -1, 2.0, "4", True, None])
def test_bad_ensemble_sizes_are_refused_by_name(bad):
    with pytest.raises(ValueError, match="ensemble must be one of 1, 2, 4, 8"):
        check_size(bad)


def test_denoiser_refuses_a_bad_ensemble_before_loading():
    with pytest.raises(ValueError, match="ensemble must be one of"):
        Denoiser(device="cpu", ensemble=3)


@pytest.fixture(scope="module")
def photo4() -> Denoiser:
    return Denoiser(device="cpu", batch_size=4, tile_size=240, ensemble=4)


def test_ensemble_of_the_real_model_equals_the_manual_average(photo, photo4):
    img = np.random.default_rng(2).integers(0, 256, (48, 72, 3), dtype=np.uint8)  # stride multiples
    x = (img.astype(np.float32) / 255).transpose(2, 0, 1)[None]
    manual = np.mean(
        [inv(photo.denoise_nchw(np.ascontiguousarray(fwd(x)))) for fwd, inv in TRANSFORMS[:4]],
        axis=0,
    )
    single = photo.denoise_nchw(x)
    got = photo4.denoise_nchw(x)
    np.testing.assert_allclose(got, manual, atol=1e-5)
    assert np.abs(got - single).max() > 1e-3  # the model is not exactly equivariant


def test_tiled_ensemble_matches_untiled(photo4):
    img = np.random.default_rng(3).integers(0, 256, (300, 410, 3), dtype=np.uint8)
    tiled = photo4.denoise(img, tile=True).astype(int)
    untiled = photo4.denoise(img, tile=False).astype(int)
    assert np.abs(tiled - untiled).max() <= 1


def test_ensemble_keeps_shape_dtype_and_alpha(photo4):
    rgba = np.random.default_rng(4).random((17, 29, 4)).astype(np.float32)
    out = photo4.denoise(rgba)
    assert out.shape == rgba.shape and out.dtype == np.float32
    assert np.array_equal(out[..., 3], rgba[..., 3])


def test_ensemble_improves_psnr_on_the_examples(photo, photo4):
    gains = []
    for path in sorted((EXAMPLES / "noisy").glob("*.png")):
        noisy = np.asarray(Image.open(path).convert("RGB"))
        clean = np.asarray(Image.open(EXAMPLES / "clean" / path.name).convert("RGB"))
        ref = clean.astype(np.float32) / 255

        def score(d: Denoiser, noisy: np.ndarray = noisy, ref: np.ndarray = ref) -> float:
            return psnr(d.denoise(noisy).astype(np.float32) / 255, ref)

        gains.append(score(photo4) - score(photo))
    assert len(gains) == 4
    assert min(gains) > 0.02 and np.mean(gains) > 0.1, gains


def test_batch_cli_ensemble_is_recorded_and_validated(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (24, 40, 3), np.uint8)).save(
        src / "a.png"
    )
    out, report = tmp_path / "out", tmp_path / "report.json"
    args = ["batch", str(src), str(out), "--device", "cpu", "--report", str(report)]
    result = CliRunner().invoke(main, [*args, "--ensemble", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["ensemble"] == 2
    bad = CliRunner().invoke(main, [*args, "--ensemble", "3", "--overwrite"])
    assert bad.exit_code == 2 and "--ensemble" in bad.output
