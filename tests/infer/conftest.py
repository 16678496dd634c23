"""Fixtures of the runtime's tests: the bundled model on the CPU (no torch needed)."""

from __future__ import annotations

import pytest

from n2n_infer import Denoiser


@pytest.fixture(scope="session")
def photo() -> Denoiser:
    """The bundled ``photo`` model on the CPU, small tiles so that tests tile cheaply."""
    return Denoiser("photo", device="cpu", batch_size=4, tile_size=240)
