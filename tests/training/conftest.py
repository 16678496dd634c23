"""Fixtures for the training tests: tiny seeded photo lists and course-format data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import synthetic_photo


@pytest.fixture(scope="session")
def photo_tensors() -> list[torch.Tensor]:
    """Six seeded synthetic uint8 3×96×96 photos."""
    rng = np.random.default_rng(3)
    return [torch.from_numpy(synthetic_photo(rng, 96, 96)).permute(2, 0, 1) for _ in range(6)]


@pytest.fixture(scope="session")
def seedlike_dir(tmp_path_factory: pytest.TempPathFactory, photo_tensors) -> Path:
    """A small seed-like data set (400 training, 100 validation pairs) built from them."""
    from n2n_train.seedlike import SeedlikeSpec, make_seedlike

    out = tmp_path_factory.mktemp("seedlike")
    make_seedlike(photo_tensors[:4], photo_tensors[4:], out, SeedlikeSpec(n_train=400, n_val=100))
    return out
