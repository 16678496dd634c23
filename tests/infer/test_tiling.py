"""Tiles: seamless (tiled equals untiled to 1/255), batched across images, memory-bounded."""

import numpy as np
import pytest

from n2n_infer import Denoiser
from n2n_infer.tiling import TileSpec, axis_weights, default_overlap, tile_starts
from tests.conftest import synthetic_photo


def _noisy(seed, h, w):
    rng = np.random.default_rng(seed)
    clean = synthetic_photo(rng, h, w)
    return np.clip(np.rint(clean + rng.normal(0, 25, clean.shape)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("hw", [(301, 457), (160, 161), (333, 170), (97, 600)])
def test_tiled_matches_untiled_within_one_level(photo, hw):
    img = _noisy(0, *hw)
    untiled = photo.denoise(img, tile=False).astype(int)
    tiled = photo.denoise(img, tile=True).astype(int)
    assert np.abs(tiled - untiled).max() <= 1
    f = img.astype(np.float32) / 255
    assert np.abs(photo.denoise(f, tile=True) - photo.denoise(f, tile=False)).max() <= 1 / 255


def test_tiled_matches_untiled_with_the_trained_tiny_model(tiny_onnx):
    d = Denoiser(tiny_onnx, device="cpu", batch_size=3, tile_size=144)
    img = _noisy(1, 250, 390).astype(np.float32) / 255
    assert np.abs(d.denoise(img, tile=True) - d.denoise(img, tile=False)).max() <= 1 / 255


def test_too_small_an_overlap_shows_seams(photo):
    """The test above can fail: without a margin as wide as the receptive field, seams appear."""
    thin = Denoiser(device="cpu", tile_size=160, tile_overlap=4)
    img = _noisy(2, 301, 457).astype(np.float32) / 255
    assert np.abs(thin.denoise(img, tile=True) - photo.denoise(img, tile=False)).max() > 1 / 255


def test_margin_covers_the_measured_receptive_field(photo):
    """Changing one pixel changes outputs no farther away than the margin (overlap / 4)."""
    rng = np.random.default_rng(3)
    x = rng.random((1, 3, 96, 96), dtype=np.float32)
    base = photo.denoise_nchw(x)
    reach = 0
    for c in (44, 45, 46, 47):
        y = x.copy()
        y[0, :, c, c] += 0.5
        rows, cols = np.nonzero(np.abs(photo.denoise_nchw(y) - base).max(axis=(0, 1)) > 0)
        reach = max(reach, np.abs(rows - c).max(), np.abs(cols - c).max())
    assert reach <= photo.info.receptive_radius <= photo.tiles.overlap // 4
    assert photo.info.receptive_radius == 26  # stated by the model: 3 levels × 2 convs
    assert photo.tiles.overlap == 112  # margin 28: the radius rounded up to the stride


@pytest.mark.parametrize(
    ("radius", "stride", "overlap"),
    [(26, 4, 112), (16, 4, 64), (28, 4, 112), (1, 8, 32), (0, 4, 16), (250, 32, 1024)],
)
def test_default_overlap_is_four_margins_of_the_radius_rounded_up_to_the_stride(
    radius, stride, overlap
):
    assert default_overlap(radius, stride) == overlap  # never less than one stride per margin


@pytest.mark.parametrize(
    ("length", "size", "overlap"),
    [(512, 512, 64), (516, 512, 64), (1000, 160, 64), (2048, 512, 64)],
)
def test_tiles_cover_and_weights_sum_to_one(length, size, overlap):
    starts = tile_starts(length, size, overlap)
    assert starts[0] == 0 and starts[-1] + min(size, length) == length
    assert all(s % 4 == 0 for s in starts)
    total = np.zeros(length)
    for s, w in zip(starts, axis_weights(starts, size, length, overlap), strict=True):
        total[s : s + min(size, length)] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_tile_geometry_is_checked():
    with pytest.raises(ValueError, match="multiple of stride 4"):
        TileSpec(150, 64).check(4)
    with pytest.raises(ValueError, match="exceed twice the tile overlap"):
        TileSpec(128, 64).check(4)
    with pytest.raises(ValueError, match="tile overlap 6"):
        Denoiser(device="cpu", tile_overlap=6)


def test_tiles_of_several_images_share_batches(photo, monkeypatch):
    calls = []
    real = photo._run

    def spy(batch):
        calls.append(batch.shape)
        return real(batch)

    monkeypatch.setattr(photo, "_run", spy)
    imgs = [_noisy(4, 300, 300), _noisy(5, 300, 300), _noisy(6, 300, 300)]
    outs = photo.denoise_batch(imgs, tile=True)  # 2×2 tiles of 240 each: 12 tiles, batches of 4
    assert [c[0] for c in calls] == [4, 4, 4]
    monkeypatch.undo()
    for img, out in zip(imgs, outs, strict=True):
        assert np.array_equal(out, photo.denoise(img, tile=True))


def test_large_images_are_tiled_automatically(monkeypatch):
    d = Denoiser(device="cpu", tile_size=240, max_untiled_pixels=100 * 100)
    shapes = []
    real = d._run
    monkeypatch.setattr(d, "_run", lambda b: shapes.append(b.shape) or real(b))
    colour = np.array([10, 20, 30], np.uint8)  # not grey: grey images go by their phases
    d.denoise(np.zeros((100, 100, 3), np.uint8) + colour)
    d.denoise(np.zeros((100, 101, 3), np.uint8) + colour)
    assert shapes == [(1, 3, 100, 100), (1, 3, 100, 104)]  # 10,100 pixels: one (padded) tile
    shapes.clear()
    d.denoise(np.zeros((300, 300, 3), np.uint8) + colour)
    assert all(s[2] <= 240 and s[3] <= 240 for s in shapes) and sum(s[0] for s in shapes) > 1


def test_grey_and_alpha_and_uint16_tile_like_untiled(photo):
    rng = np.random.default_rng(8)
    grey16 = rng.integers(0, 65536, (210, 230), dtype=np.uint16)
    rgba = np.dstack([_noisy(9, 210, 230), rng.integers(0, 256, (210, 230), dtype=np.uint8)])
    for img in (grey16, rgba):
        a, b = photo.denoise(img, tile=True), photo.denoise(img, tile=False)
        scale = 257 if img.dtype == np.uint16 else 1
        assert np.abs(a.astype(int) - b).max() <= scale
    assert np.array_equal(photo.denoise(rgba, tile=True)[..., 3], rgba[..., 3])
