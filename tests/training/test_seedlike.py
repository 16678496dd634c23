import hashlib
import json

import pytest
import torch

from n2n_train.data import load_course_pairs, to_float
from n2n_train.metrics import psnr
from n2n_train.seedlike import SeedlikeSpec, make_seedlike, scaled_versions


def test_seedlike_files_are_in_the_course_format(seedlike_dir):
    a, b = load_course_pairs(seedlike_dir / "train_data.pkl")
    noisy, clean = load_course_pairs(seedlike_dir / "val_data.pkl")
    a2, _ = load_course_pairs(seedlike_dir / "train_clean.pkl")
    assert a.shape == b.shape == (400, 3, 32, 32) and a.dtype == torch.uint8
    assert noisy.shape == clean.shape == (100, 3, 32, 32)
    assert torch.equal(a, a2)
    assert not torch.equal(a, b)  # two independent noise draws


def test_noisy_validation_inputs_are_calibrated_to_the_course_level(seedlike_dir):
    noisy, clean = load_course_pairs(seedlike_dir / "val_data.pkl")
    measured = psnr(to_float(noisy), to_float(clean))
    assert measured == pytest.approx(20.7, abs=0.3)
    facts = json.loads((seedlike_dir / "seedlike.json").read_text())
    assert facts["val_noisy_psnr"] == pytest.approx(measured, abs=1e-9)
    assert facts["noise"].startswith("pixelated:")


def test_training_pairs_carry_the_same_noise_level(seedlike_dir):
    a, b = load_course_pairs(seedlike_dir / "train_data.pkl")
    _, clean = load_course_pairs(seedlike_dir / "train_clean.pkl")
    for noisy in (a, b):
        assert psnr(to_float(noisy), to_float(clean)) == pytest.approx(20.7, abs=0.5)


def _digest(folder):
    names = ("train_data.pkl", "val_data.pkl", "train_clean.pkl")
    return [
        hashlib.sha256(torch.cat(load_course_pairs(folder / n)).numpy()).hexdigest() for n in names
    ]


def test_the_builder_is_deterministic_for_a_seed(tmp_path, photo_tensors, seedlike_dir):
    spec = SeedlikeSpec(n_train=400, n_val=100)
    make_seedlike(photo_tensors[:4], photo_tensors[4:], tmp_path / "same", spec)
    assert _digest(tmp_path / "same") == _digest(seedlike_dir)
    other = SeedlikeSpec(n_train=400, n_val=100, seed=1)
    make_seedlike(photo_tensors[:4], photo_tensors[4:], tmp_path / "other", other)
    assert _digest(tmp_path / "other")[0] != _digest(seedlike_dir)[0]


def test_photos_are_used_at_several_scales(photo_tensors):
    big = torch.zeros(3, 400, 500, dtype=torch.uint8)
    sizes = [tuple(t.shape[1:]) for t in scaled_versions([big], 32)]
    assert sizes == [(48, 60), (96, 120), (192, 240), (384, 480), (400, 500)]
    assert len(scaled_versions(photo_tensors[:1], 32)) == 2  # 96×96: scaled to 48, and full size
