import pytest
import torch

from training.data import DataError, load_course_pairs, save_course_pairs
from training.noise import parse_noise


def test_course_format_round_trip(tmp_path):
    a = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    b = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    save_course_pairs(tmp_path / "train_data.pkl", a, b)
    a2, b2 = load_course_pairs(tmp_path / "train_data.pkl")
    assert torch.equal(a, a2) and torch.equal(b, b2)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ((torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8)), "expected two uint8 tensors"),
        ((torch.zeros(2, 3, 8, 8, dtype=torch.uint8),), "expected a pair"),
        (
            (
                torch.zeros(2, 3, 8, 8, dtype=torch.uint8),
                torch.zeros(3, 3, 8, 8, dtype=torch.uint8),
            ),
            "one shape",
        ),
    ],
)
def test_course_format_refuses_other_content(tmp_path, payload, message):
    torch.save(payload, tmp_path / "bad.pkl")
    with pytest.raises(DataError, match=f"bad.pkl: .*{message}"):
        load_course_pairs(tmp_path / "bad.pkl")


def test_gaussian_noise_is_zero_mean_with_the_given_sigma():
    clean = torch.full((4, 3, 64, 64), 0.5)
    noisy = parse_noise("gaussian:25")(clean, torch.Generator().manual_seed(0))
    residual = noisy - clean
    assert abs(float(residual.mean())) < 2e-3
    assert float(residual.std() * 255) == pytest.approx(25, rel=0.02)


def test_gaussian_range_draws_one_sigma_per_image():
    clean = torch.zeros(64, 3, 16, 16)
    noisy = parse_noise("gaussian:0-50")(clean, torch.Generator().manual_seed(0))
    sigmas = noisy.flatten(1).std(dim=1) * 255
    assert float(sigmas.min()) < 10 and float(sigmas.max()) > 40


@pytest.mark.parametrize("spec", ["salt:3", "gaussian:", "gaussian:50-10", "gaussian:x"])
def test_bad_noise_specs(spec):
    with pytest.raises(ValueError, match="noise"):
        parse_noise(spec)


def test_saving_a_slice_writes_only_the_slice(tmp_path):
    big = torch.zeros(1000, 3, 32, 32, dtype=torch.uint8)
    save_course_pairs(tmp_path / "part.pkl", big[:10], big[10:20])
    assert (tmp_path / "part.pkl").stat().st_size < 2 * 10 * 3 * 32 * 32 + 4096
