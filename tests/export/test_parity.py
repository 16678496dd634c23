import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper
from PIL import Image

from n2n_export.cli import main as export_cli
from n2n_export.data import CASE_SHAPES, ParityCase, load_clean_images, noised_pairs, parity_cases
from n2n_export.parity import check_parity
from tests.conftest import synthetic_photo


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clean")
    rng = np.random.default_rng(1)
    for i, (h, w) in enumerate([(64, 64), (80, 120), (33, 47)]):
        Image.fromarray(synthetic_photo(rng, h, w)).save(folder / f"c{i}.png")
    return folder


def _edit(src, dst, edit):
    model = onnx.load(str(src))
    edit(model)
    onnx.save(model, str(dst))
    return dst


def _perturb_weights(model):
    init = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    arr = numpy_helper.to_array(init).copy()
    arr += 0.01 * np.random.default_rng(0).standard_normal(arr.shape).astype(arr.dtype)
    init.CopyFrom(numpy_helper.from_array(arr, init.name))


def _set_stride(value):
    def edit(model):
        for p in model.metadata_props:
            if p.key == "n2n.stride":
                p.value = value

    return edit


def _parity(*args):
    return CliRunner().invoke(export_cli, ["parity", *map(str, args)])


def test_cases_cover_batches_sizes_and_padding(clean_dir):
    cases = parity_cases(load_clean_images(clean_dir), "gaussian:25")
    shapes = [(c.pairs[0][0].shape[1:], len(c.pairs)) for c in cases[: len(CASE_SHAPES)]]
    assert shapes == [((h, w), b) for h, w, b in CASE_SHAPES]
    assert {b for _, b in shapes} >= {1, 16} and ((33, 47), 3) in shapes
    assert [p[0].shape[1:] for p in cases[-1].pairs] == [(64, 64), (80, 120), (33, 47)]


def test_parity_passes_for_the_exported_model(tiny_run, tiny_onnx, clean_dir):
    cases = parity_cases(load_clean_images(clean_dir), "gaussian:25")
    report = check_parity(tiny_run["checkpoint"], tiny_onnx, cases)
    assert report.passed, report.to_dict()
    assert report.precision == "fp32" and not report.problems
    for case in report.cases:
        assert case.max_abs_diff < 1e-5 and abs(case.delta_psnr) < 1e-3
    assert report.cases[-1].psnr_torch > report.cases[-1].psnr_noisy


def test_report_json(tiny_run, tiny_onnx, clean_dir, tmp_path):
    result = _parity(
        tiny_run["checkpoint"], tiny_onnx, "--images", clean_dir, "--report", tmp_path / "r.json"
    )
    assert result.exit_code == 0, result.output
    assert "parity: PASSED" in result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["passed"] is True and len(report["cases"]) == len(CASE_SHAPES) + 1
    assert set(report["cases"][0]) >= {
        "psnr_torch",
        "psnr_onnx",
        "delta_psnr",
        "max_abs_diff",
        "mean_abs_diff",
        "passed",
    }


def test_perturbed_weights_fail(tiny_run, tiny_onnx, clean_dir, tmp_path):
    bad = _edit(tiny_onnx, tmp_path / "bad.onnx", _perturb_weights)
    result = _parity(tiny_run["checkpoint"], bad, "--images", clean_dir)
    assert result.exit_code == 1, result.output
    assert "parity: FAILED" in result.output


@pytest.mark.parametrize("stride", ["8", "2"])
def test_wrong_stride_metadata_fails(tiny_run, tiny_onnx, clean_dir, tmp_path, stride):
    bad = _edit(tiny_onnx, tmp_path / "stride.onnx", _set_stride(stride))
    result = _parity(tiny_run["checkpoint"], bad, "--images", clean_dir)
    if int(stride) < 4:  # too small a stride for the network: the runtime's test run at load fails
        assert result.exit_code == 2, result.output
        assert "stride.onnx" in result.output and "test run" in result.output
        return
    assert result.exit_code == 1, result.output
    assert f"metadata: metadata stride {stride} differs from the checkpoint's 4" in result.output


def test_truncated_model_file_fails(tiny_run, tiny_onnx, clean_dir, tmp_path):
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(tiny_onnx.read_bytes()[:4000])
    result = _parity(tiny_run["checkpoint"], cut, "--images", clean_dir)
    assert result.exit_code == 2
    assert "cut.onnx" in result.output and "error:" in result.output


def test_a_model_from_another_checkpoint_fails(tiny_run, tiny_onnx, clean_dir, tmp_path):
    import shutil

    other = tmp_path / "other.pt"
    shutil.copy(tiny_run["dir"] / "last.pt", other)
    result = _parity(other, tiny_onnx, "--images", clean_dir)
    assert result.exit_code == 1
    assert "checkpoint sha256" in result.output


def test_parity_on_course_format_data(tiny_run, tiny_onnx, tmp_path):
    import torch

    from n2n_train.data import save_course_pairs

    rng = np.random.default_rng(2)
    clean = np.stack([synthetic_photo(rng, 32, 32) for _ in range(8)]).transpose(0, 3, 1, 2)
    noisy = np.clip(np.rint(clean + rng.normal(0, 25, clean.shape)), 0, 255).astype(np.uint8)
    save_course_pairs(tmp_path / "val_data.pkl", torch.from_numpy(noisy), torch.from_numpy(clean))
    result = _parity(tiny_run["checkpoint"], tiny_onnx, "--val-data", tmp_path / "val_data.pkl")
    assert result.exit_code == 0, result.output
    assert "course val_data.pkl     8" in result.output


def test_onnx_cli_stores_parity_figures_and_card(tiny_run, clean_dir, tmp_path):
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
    card = (tmp_path / "m.md").read_text()
    assert "# Model `tiny`" in card and f"{psnr['psnr_torch']:.4f}" in card


def test_single_case_from_pairs(tiny_run, tiny_onnx, clean_dir):
    pairs = noised_pairs(load_clean_images(clean_dir)[:1], "gaussian:10")
    report = check_parity(tiny_run["checkpoint"], tiny_onnx, [ParityCase("one", pairs)])
    assert report.passed and report.cases[0].images == 1


def test_card_training_line_names_the_fine_tune_start():
    from n2n_export.card import _training_line

    cfg = {"optimizer": "adam", "lr": 0.0005, "schedule": "cosine", "steps_per_epoch": 150}
    cfg |= {"patch_size": 96, "batch_size": 16}
    train = {"data": {"source": "photos"}, "epochs": 50, "best_epoch": 49}
    assert "fine-tuned" not in _training_line(train, cfg)
    train["init"] = {"sha256": "ab" * 32, "epochs": 60, "best_epoch": 58}
    line = _training_line(train, cfg)
    assert line.endswith(
        "best epoch 49; fine-tuned from checkpoint `abababababab…` (60 epochs, best epoch 58)"
    )
    assert "adam lr 0.0005 (cosine schedule)" in line
    assert "grey" not in line
    assert "augmentation: 25% of patches grey;" in _training_line(
        train, cfg | {"grey_fraction": 0.25}
    )


def test_card_training_line_names_an_average_and_a_stop_before_the_end():
    from n2n_export.card import _training_line

    cfg = {"optimizer": "adam", "lr": 0.0003, "steps_per_epoch": 150, "epochs": 60}
    cfg |= {"patch_size": 96, "batch_size": 16}
    train = {"data": {"source": "photos"}, "epochs": 43, "best_epoch": 43}
    assert "43 of 60 epochs × 150 steps" in _training_line(train, cfg)
    snaps = [{"epoch": e, "sha256": "x"} for e in range(41, 61)]
    train = {
        "data": {"source": "photos"},
        "epochs": 60,
        "averaged": {"count": 20, "checkpoints": snaps},
    }
    line = _training_line(train, cfg)
    assert "60 epochs × 150 steps" in line
    assert line.endswith("weights averaged over 20 checkpoints, epochs 41–60")
    assert "best epoch" not in line


def test_card_names_what_an_averaged_fine_tune_start_held():
    from n2n_export.card import _training_line

    cfg = {"optimizer": "adam", "lr": 0.0002, "steps_per_epoch": 150, "epochs": 60}
    cfg |= {"patch_size": 96, "batch_size": 16}
    train = {"data": {"source": "photos"}, "epochs": 60, "best_epoch": 60}
    train["init"] = {"sha256": "cd" * 32, "epochs": 60, "best_epoch": None}
    assert _training_line(train, cfg).endswith("`cdcdcdcdcdcd…` (60 epochs)")  # no "None"
    train["init"]["averaged"] = {"count": 5, "epochs": [56, 57, 58, 59, 60]}
    assert _training_line(train, cfg).endswith(
        "`cdcdcdcdcdcd…` (60 epochs, weights averaged over 5 checkpoints, epochs 56–60)"
    )
