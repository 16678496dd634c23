import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from PIL import Image

from n2n_export.cli import main as export_cli
from n2n_export.data import calibration_batches, load_clean_images, parity_cases
from n2n_export.exporter import export_onnx
from n2n_export.parity import THRESHOLDS, check_parity
from n2n_export.variants import markdown_table
from n2n_infer import Denoiser
from tests.conftest import synthetic_photo


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clean")
    rng = np.random.default_rng(4)
    for i in range(4):
        Image.fromarray(synthetic_photo(rng, 72, 96)).save(folder / f"v{i}.png")
    return folder


def _check_variant(checkpoint, path, precision, images):
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    d = Denoiser(path, device="cpu")
    assert d.info.raw["n2n.precision"] == precision
    assert d.denoise(np.zeros((9, 11, 3), np.uint8)).shape == (9, 11, 3)
    report = check_parity(checkpoint, path, parity_cases(images, "gaussian:25"))
    assert report.precision == precision and report.thresholds == THRESHOLDS[precision]
    assert report.passed, report.to_json()
    return report


def test_fp16_variant(tiny_run, clean_dir, tmp_path):
    path = export_onnx(tiny_run["checkpoint"], tmp_path / "fp16.onnx", precision="fp16")
    report = _check_variant(tiny_run["checkpoint"], path, "fp16", load_clean_images(clean_dir))
    assert max(c.max_abs_diff for c in report.cases) > 1e-6  # really float16 inside


def test_int8_variant_of_the_photo_model(tmp_path):
    """The int8 thresholds were measured on this model; calibrated here on the sample images."""
    from tests.conftest import REPO

    images = load_clean_images(REPO / "examples" / "clean")
    checkpoint = REPO / "models" / "photo.pt"
    calib = calibration_batches(images, "gaussian:0-50", count=8, size=96)
    path = export_onnx(checkpoint, tmp_path / "int8.onnx", precision="int8", calibration=calib)
    report = _check_variant(checkpoint, path, "int8", images)
    assert max(c.max_abs_diff for c in report.cases) > 1e-3  # quantized for real
    assert path.stat().st_size < 0.5 * (REPO / "models" / "photo.onnx").stat().st_size


def test_int8_needs_calibration_images(tiny_run, tmp_path):
    result = CliRunner().invoke(
        export_cli,
        ["onnx", str(tiny_run["checkpoint"]), str(tmp_path / "m.onnx"), "--precision", "int8"],
    )
    assert result.exit_code == 2 and "--calibration" in result.output
    assert not (tmp_path / "m.onnx").exists()


def test_fp32_thresholds_are_the_contract():
    assert (THRESHOLDS["fp32"].max_delta_psnr_db, THRESHOLDS["fp32"].max_abs_diff) == (0.01, 1e-4)
    assert THRESHOLDS["fp16"].max_abs_diff < THRESHOLDS["int8"].max_abs_diff


def test_variants_table_reads_a_bench_result():
    from tests.conftest import REPO

    result = json.loads((REPO / "models" / "photo.variants.json").read_text())
    table = markdown_table(result)
    assert table.count("\n| ") == 2 + len(result["rows"])
    assert {r["precision"] for r in result["rows"]} == {"fp32", "fp16", "int8"}
    assert f"{result['rows'][2]['psnr']:.3f}" in table
