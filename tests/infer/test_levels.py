"""Levels: a dim 16-bit or float image (a microscope's counts) is mapped by its own range."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from n2n_infer import Denoiser
from n2n_infer.arrays import DIM_16BIT_MAX, DIM_FLOAT_MAX, FLAT_FLOAT_SPAN, as_image, levels_of
from n2n_infer.cli import main
from tests.conftest import synthetic_photo

OFFSET, PHOTONS = 100.0, 300.0


def _capture(seed: int, h: int = 64, w: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """A grey photo as a dim camera records it: (clean signal in [0, 1], uint16 counts)."""
    rng = np.random.default_rng(seed)
    x = synthetic_photo(rng, h, w).astype(np.float64).mean(axis=2) / 255.0
    counts = OFFSET + rng.poisson(PHOTONS * x) + rng.normal(0, 3, x.shape)
    return x, np.clip(np.rint(counts), 0, 65535).astype(np.uint16)


def _psnr(counts: np.ndarray, x: np.ndarray) -> float:
    err = (counts.astype(np.float64) - OFFSET) / PHOTONS - x
    return float(10 * np.log10(1 / np.mean(err**2)))


def test_only_dim_16_bit_images_get_their_own_levels():
    dim = np.array([[100, 400], [250, 120]], np.uint16)
    assert levels_of(dim[:, :, None]) == (100.0, 300.0)
    assert levels_of(np.full((2, 2, 3), 7, np.uint16)) == (7.0, 1.0)  # flat: no division by 0
    bright = dim.copy()
    bright[0, 0] = DIM_16BIT_MAX + 1  # 15 bits used: a photo's range, full scale
    assert levels_of(bright[:, :, None]) is None
    assert levels_of(dim.astype(np.uint8)[:, :, None]) is None
    assert levels_of(np.full((2, 2, 3), 0.5, np.float32)) is None  # a float photo
    assert as_image(dim).levels == (100.0, 300.0)
    assert as_image(dim, levels="full").levels is None
    rgba = np.zeros((2, 2, 4), np.uint16)
    rgba[..., 3] = 65535  # alpha is not picture: it does not widen the range
    rgba[0, 0, :3] = 900
    assert as_image(rgba).levels == (0.0, 900.0)
    with pytest.raises(ValueError, match="levels: expected one of auto, full, got 'stretch'"):
        Denoiser(device="cpu", levels="stretch")


def test_a_dim_capture_is_denoised_instead_of_shifted(photo):
    """At full scale the photo model reads the counts as a black photo and shifts them by
    its dark-region corrections: far worse than the noisy input (bench/own_noise_grey16)."""
    x, counts = _capture(0)
    full = Denoiser("photo", device="cpu", batch_size=4, tile_size=240, levels="full")
    assert _psnr(full.denoise(counts), x) < _psnr(counts, x) - 10
    out = photo.denoise(counts)
    assert out.dtype == np.uint16 and out.shape == counts.shape
    assert _psnr(out, x) > _psnr(counts, x)
    assert counts.min() <= out.min() and out.max() <= counts.max()  # within its own range


@pytest.mark.parametrize("grey", ["phases", "replicate"])
def test_levels_are_the_float_image_of_the_same_range(grey):
    """The uint16 result is the float result of (counts - min) / (max - min), mapped back:
    untiled, tiled, in a batch, for grey and colour."""
    d = Denoiser(device="cpu", grey=grey)
    _, grey_counts = _capture(1)
    rng = np.random.default_rng(2)
    colour = np.clip(grey_counts[:, :, None] + rng.integers(0, 40, (1, 1, 3)), 0, None)
    for counts in (grey_counts, colour.astype(np.uint16)):
        lo, hi = float(counts.min()), float(counts.max())
        unit = ((counts.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)
        expected = np.rint(d.denoise(unit).astype(np.float64) * (hi - lo) + lo)
        for got in (d.denoise(counts), d.denoise(counts, tile=True), d.denoise_batch([counts])[0]):
            assert got.dtype == np.uint16
            assert np.abs(got.astype(np.float64) - expected).max() <= 1  # float32 rounding


def test_bright_16_bit_images_are_unchanged_by_auto(photo):
    rng = np.random.default_rng(3)
    img = (synthetic_photo(rng, 48, 64).astype(np.uint16) * 257)[:, :, 0]
    img[0, 0] = DIM_16BIT_MAX + 1
    full = Denoiser("photo", device="cpu", levels="full")
    assert np.array_equal(photo.denoise(img), full.denoise(img))


def test_batch_levels_option_and_16_bit_pil_images(tmp_path):
    _, counts = _capture(4, 48, 48)
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    Image.fromarray(counts).save(in_dir / "dim.png")  # mode I;16
    outs = {}
    for levels in ("auto", "full"):
        out_dir = tmp_path / levels
        result = CliRunner().invoke(
            main, ["batch", str(in_dir), str(out_dir), "--device", "cpu", "--levels", levels]
        )
        assert result.exit_code == 0, result.output
        outs[levels] = np.asarray(Image.open(out_dir / "dim.png"))
    pil = Denoiser(device="cpu").denoise(Image.open(in_dir / "dim.png"))
    assert np.array_equal(np.asarray(pil), outs["auto"])
    assert not np.array_equal(outs["auto"], outs["full"])
    bad = CliRunner().invoke(main, ["batch", str(in_dir), str(tmp_path / "x"), "--levels", "no"])
    assert bad.exit_code == 2 and "--levels" in bad.output


# --- dim float images ---------------------------------------------------------------------


def test_dim_float_images_get_their_own_levels_like_dim_16_bit_ones():
    dim = np.array([[0.01, 0.2], [0.05, 0.1]], np.float32)
    lo, span = levels_of(dim[:, :, None])
    assert lo == pytest.approx(0.01) and span == pytest.approx(0.19)
    assert pytest.approx(DIM_16BIT_MAX / 65535) == DIM_FLOAT_MAX
    bright = dim.copy()
    bright[0, 0] = 0.26  # more than a quarter of the scale: taken as it is
    assert levels_of(bright[:, :, None]) is None
    assert levels_of(dim.astype(np.float64)[:, :, None]) == pytest.approx((0.01, 0.19))
    assert levels_of(np.full((2, 2, 1), 0.1, np.float32)) == pytest.approx(
        (0.1, FLAT_FLOAT_SPAN)  # flat: no division by 0
    )
    assert as_image(dim).levels == pytest.approx((0.01, 0.19))
    assert as_image(dim, levels="full").levels is None


def test_a_dim_float_capture_is_denoised_as_its_16_bit_counts_are(photo):
    """The same capture as uint16 counts and as counts / 65535 in float32: both are mapped
    by their own range, so the model sees the same input; the float result is not rounded."""
    x, counts = _capture(4)
    fractions = counts.astype(np.float32) / np.float32(65535)
    assert fractions.max() <= DIM_FLOAT_MAX
    as_counts = photo.denoise(counts).astype(np.float64)
    for got in (photo.denoise(fractions), photo.denoise(fractions, tile=True)):
        assert got.dtype == np.float32 and got.shape == fractions.shape
        assert np.abs(got.astype(np.float64) * 65535 - as_counts).max() <= 1.0
        assert np.any(np.abs(got * 65535 - np.rint(got * 65535)) > 1e-3)  # not rounded
        assert fractions.min() <= got.min() and got.max() <= fractions.max()
    full = Denoiser("photo", device="cpu", batch_size=4, tile_size=240, levels="full")
    psnr = {
        name: _psnr(out.astype(np.float64) * 65535, x)
        for name, out in (("noisy", fractions), ("auto", photo.denoise(fractions)),
                          ("full", full.denoise(fractions)))
    }  # fmt: skip
    assert psnr["auto"] > psnr["noisy"] > psnr["full"] + 10, psnr


def test_the_override_in_denoise_iter_leaves_mapped_images_alone(photo):
    """Images the caller has mapped already (a stack's planes) are not mapped again."""
    dim = np.random.default_rng(5).uniform(0.02, 0.2, (40, 48)).astype(np.float32)
    once = next(photo.denoise_iter([dim], levels="full"))
    full = Denoiser("photo", device="cpu", batch_size=4, tile_size=240, levels="full")
    assert np.array_equal(once, full.denoise(dim))
    assert not np.array_equal(once, photo.denoise(dim))
    with pytest.raises(ValueError, match="levels: expected one of auto, full, got 'own'"):
        next(photo.denoise_iter([dim], levels="own"))
