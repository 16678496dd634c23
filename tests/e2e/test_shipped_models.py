"""The shipped models: parity with their checkpoints and pinned figures on the sample images."""

import numpy as np
import pytest

from n2n_infer import Denoiser
from n2n_infer.imageio import read_image
from n2n_infer.metrics import psnr
from tests.conftest import REPO

EXAMPLES = REPO / "examples"
NAMES = ("astronaut", "chelsea", "coffee", "rocket")

#: Runtime PSNR (dB) of models/photo.onnx on examples/noisy vs examples/clean, as measured
#: by `n2n-infer batch examples/noisy OUT --reference examples/clean` when the model was made.
PHOTO_PSNR = {"astronaut": 27.71, "chelsea": 30.00, "coffee": 27.99, "rocket": 29.69}


def _pairs():
    return {
        n: (
            read_image(EXAMPLES / "noisy" / f"{n}.png"),
            read_image(EXAMPLES / "clean" / f"{n}.png"),
        )
        for n in NAMES
    }


def test_photo_model_figures_on_the_samples_are_pinned():
    d = Denoiser("photo", device="cpu")
    for name, (noisy, clean) in _pairs().items():
        assert psnr(noisy, clean) == pytest.approx(20.5, abs=0.4)
        assert psnr(d.denoise(noisy), clean) == pytest.approx(PHOTO_PSNR[name], abs=0.02), name


@pytest.mark.parametrize("model", ["photo"])
def test_shipped_model_matches_its_checkpoint(model):
    from export.parity import check_parity

    pairs = [
        (
            n.transpose(2, 0, 1).astype(np.float32) / 255,
            c.transpose(2, 0, 1).astype(np.float32) / 255,
        )
        for n, c in _pairs().values()
    ]
    report = check_parity(REPO / "models" / f"{model}.pt", REPO / "models" / f"{model}.onnx", pairs)
    assert report.passed, report.to_dict()
