"""PSNR has one definition: ``n2n_infer.metrics.psnr`` (numpy) and its torch twin agree."""

import numpy as np
import pytest
import torch

import n2n_infer.metrics as np_metrics
from n2n_infer.metrics import psnr as psnr_np
from n2n_train.metrics import MSE_FLOOR, global_mse_psnr, psnr, psnr_per_image


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(3, 3, 8, 10, generator=g)
    denoised = clean + 0.05 * torch.randn(3, 3, 8, 10, generator=g)  # some values leave [0, 1]
    denoised[2] = clean[2]  # an identical image: the floor
    return denoised, clean


#: Per-image PSNRs of ``_pair()``, pinned: both implementations must give these.
PINNED = (25.8309, 26.7692, 100.0)


def test_torch_and_numpy_psnr_give_the_same_pinned_values_floor_included():
    denoised, clean = _pair()
    torch_values = psnr_per_image(denoised, clean).tolist()
    numpy_values = [psnr_np(denoised[i].numpy(), clean[i].numpy()) for i in range(3)]
    assert torch_values == pytest.approx(PINNED, abs=1e-4)
    assert numpy_values == pytest.approx(torch_values, abs=1e-9)
    assert psnr(denoised, clean) == pytest.approx(float(np.mean(numpy_values)), abs=1e-9)


def test_identical_images_score_the_floor_in_both():
    img = np.full((4, 5, 3), 0.5, np.float32)
    t = torch.from_numpy(img.transpose(2, 0, 1))[None]
    assert MSE_FLOOR is np_metrics.MSE_FLOOR  # one floor, defined once
    assert psnr_np(img, img) == 100.0
    assert psnr(t, t) == 100.0


def test_integer_images_are_scaled_to_unit_range():
    rng = np.random.default_rng(1)
    clean = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    noisy = np.clip(clean.astype(int) + rng.integers(-9, 10, clean.shape), 0, 255).astype(np.uint8)
    expected = psnr_np(noisy / 255.0, clean / 255.0)
    assert psnr_np(noisy, clean) == pytest.approx(expected, abs=1e-12)
    assert psnr_np(noisy.astype(np.uint16) * 257, clean.astype(np.uint16) * 257) == (
        pytest.approx(expected, abs=1e-9)
    )
    assert psnr_np(noisy, clean / 255.0) == pytest.approx(expected, abs=1e-12)  # mixed dtypes


def test_shape_mismatch_is_refused_by_both():
    with pytest.raises(ValueError, match="shape mismatch"):
        psnr_np(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="shape mismatch"):
        psnr(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 3))


def test_global_mse_psnr_is_a_different_metric_from_the_mean_per_image_psnr():
    clean = torch.zeros(2, 1, 4, 4)
    denoised = clean.clone()
    denoised[0] += 0.1  # image 0: MSE 0.01 (20 dB); image 1: identical (100 dB)
    assert psnr(denoised, clean) == pytest.approx(60.0)
    assert global_mse_psnr(denoised, clean) == pytest.approx(-10 * np.log10(0.005))
