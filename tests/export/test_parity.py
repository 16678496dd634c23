import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper
from PIL import Image

from export.cli import main as export_cli
from export.parity import check_parity
from tests.conftest import synthetic_photo


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clean")
    rng = np.random.default_rng(1)
    for i, (h, w) in enumerate([(64, 64), (64, 64), (33, 47)]):
        Image.fromarray(synthetic_photo(rng, h, w)).save(folder / f"c{i}.png")
    return folder


def _perturbed(src, dst):
    model = onnx.load(str(src))
    init = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    arr = numpy_helper.to_array(init).copy()
    arr += 0.01 * np.random.default_rng(0).standard_normal(arr.shape).astype(arr.dtype)
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(model, str(dst))
    return dst


def test_parity_passes_for_the_exported_model(tiny_run, tiny_onnx, clean_dir):
    from export.data import noised_image_pairs

    report = check_parity(
        tiny_run["checkpoint"], tiny_onnx, noised_image_pairs(clean_dir, "gaussian:25")
    )
    assert report.passed, report
    assert report.images == 3
    assert report.max_abs_diff < 1e-5
    assert report.psnr_torch > report.psnr_noisy


def test_parity_cli_fails_when_weights_are_perturbed(tiny_run, tiny_onnx, clean_dir, tmp_path):
    bad = _perturbed(tiny_onnx, tmp_path / "bad.onnx")
    runner = CliRunner()
    good = runner.invoke(
        export_cli,
        [
            "parity",
            str(tiny_run["checkpoint"]),
            str(tiny_onnx),
            "--images",
            str(clean_dir),
            "--report",
            str(tmp_path / "r.json"),
        ],
    )
    assert good.exit_code == 0, good.output
    assert "parity: PASSED" in good.output
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is True
    result = runner.invoke(
        export_cli, ["parity", str(tiny_run["checkpoint"]), str(bad), "--images", str(clean_dir)]
    )
    assert result.exit_code == 1, result.output
    assert "parity: FAILED" in result.output


def test_parity_on_course_format_data(tiny_run, tiny_onnx, tmp_path):
    import torch

    from training.data import save_course_pairs

    rng = np.random.default_rng(2)
    clean = np.stack([synthetic_photo(rng, 32, 32) for _ in range(8)]).transpose(0, 3, 1, 2)
    noisy = np.clip(np.rint(clean + rng.normal(0, 25, clean.shape)), 0, 255).astype(np.uint8)
    save_course_pairs(tmp_path / "val_data.pkl", torch.from_numpy(noisy), torch.from_numpy(clean))
    result = CliRunner().invoke(
        export_cli,
        [
            "parity",
            str(tiny_run["checkpoint"]),
            str(tiny_onnx),
            "--val-data",
            str(tmp_path / "val_data.pkl"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "images:            8" in result.output


def test_onnx_cli_stores_parity_figures(tiny_run, clean_dir, tmp_path):
    from n2n_infer import Denoiser

    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(
        export_cli,
        [
            "onnx",
            str(tiny_run["checkpoint"]),
            str(out),
            "--images",
            str(clean_dir),
            "--name",
            "tiny",
        ],
    )
    assert result.exit_code == 0, result.output
    psnr = Denoiser(out, device="cpu").metadata["psnr"]
    assert psnr["images"] == 3 and psnr["psnr_onnx"] == pytest.approx(psnr["psnr_torch"], abs=0.01)
