"""``n2n-train`` commands end to end on tiny data."""

import hashlib
import json

import pytest
import torch
from click.testing import CliRunner

from n2n_train.checkpoint import load_checkpoint
from n2n_train.cli import main


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def course_run(tmp_path_factory, seedlike_dir):
    out = tmp_path_factory.mktemp("course_run")
    result = _invoke(
        "fit",
        "--course",
        seedlike_dir / "train_data.pkl",
        "--course-val",
        seedlike_dir / "val_data.pkl",
        "--out",
        out,
        "--epochs",
        "2",
        "--study",
        "--batch-size",
        "20",
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    return out


def test_fit_on_seedlike_course_data_records_the_study_options(course_run, seedlike_dir):
    ckpt = load_checkpoint(course_run / "best.pt")
    cfg = ckpt.summary["train_config"]
    assert (cfg["swap"], cfg["dihedral"], cfg["blur_prob"], cfg["optimizer"]) == (
        True,
        True,
        0.1,
        "sgd",
    )
    facts = json.loads((seedlike_dir / "seedlike.json").read_text())
    assert ckpt.summary["noise"] == facts["noise"]
    assert ckpt.summary["noisy_psnr"] == pytest.approx(facts["val_noisy_psnr"])
    assert ckpt.summary["data"]["pairs"] == 400


def test_fit_noise2clean_from_the_clean_training_file(tmp_path, seedlike_dir):
    result = _invoke(
        "fit",
        "--course",
        seedlike_dir / "train_clean.pkl",
        "--course-val",
        seedlike_dir / "val_data.pkl",
        "--out",
        tmp_path,
        "--epochs",
        "1",
        "--study",
        "--target",
        "clean",
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    summary = load_checkpoint(tmp_path / "best.pt").summary
    assert summary["mode"] == "noise2clean"
    assert summary["train_config"]["swap"] is False


def test_fit_resume_extends_a_run(tmp_path, seedlike_dir):
    args = [
        "fit",
        "--course",
        seedlike_dir / "train_data.pkl",
        "--out",
        tmp_path,
        "--batch-size",
        "50",
        "--no-progress",
    ]
    assert _invoke(*args, "--epochs", "1").exit_code == 0
    result = _invoke(*args, "--epochs", "2", "--resume")
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2]


def test_fit_init_fine_tunes_from_a_checkpoint(tmp_path, seedlike_dir):
    base = ["fit", "--course", seedlike_dir / "train_data.pkl", "--batch-size", "50"]
    base += ["--no-progress", "--epochs", "1"]
    assert _invoke(*base, "--out", tmp_path / "a").exit_code == 0
    start = load_checkpoint(tmp_path / "a" / "best.pt")
    result = _invoke(*base, "--out", tmp_path / "b", "--init", tmp_path / "a" / "best.pt")
    assert result.exit_code == 0, result.output
    tuned = load_checkpoint(tmp_path / "b" / "best.pt")
    sha = hashlib.sha256((tmp_path / "a" / "best.pt").read_bytes()).hexdigest()
    assert tuned.summary["train_config"]["init"] == sha
    assert tuned.summary["init"]["sha256"] == sha
    assert tuned.summary["data"]["init"] == "best.pt"  # a name: its sha256 is init.sha256
    # one more epoch from the trained weights beats one epoch from random ones
    assert tuned.summary["best_val_loss"] < start.summary["best_val_loss"]
    # the fine-tune resumes like any run; another --init is refused on resume
    again = [*base[:-1], "2", "--out", tmp_path / "b", "--resume"]
    assert _invoke(*again, "--init", tmp_path / "a" / "best.pt").exit_code == 0
    other = _invoke(*again, "--init", tmp_path / "b" / "best.pt")
    assert other.exit_code == 2
    assert "differs in ['init']" in other.output


def test_fit_init_of_another_shape_is_refused(tmp_path, seedlike_dir):
    base = ["fit", "--course", seedlike_dir / "train_data.pkl", "--no-progress", "--epochs", "1"]
    assert _invoke(*base, "--out", tmp_path / "a", "--features", "8,16").exit_code == 0
    init = tmp_path / "a" / "best.pt"
    result = _invoke(*base, "--out", tmp_path / "b", "--init", init, "--preset", "study")
    assert result.exit_code == 2
    assert "--init" in result.output and "differs" in result.output
    assert not (tmp_path / "b" / "best.pt").exists()


def test_fit_init_without_a_shape_option_takes_the_checkpoint_shape(tmp_path, seedlike_dir):
    base = ["fit", "--course", seedlike_dir / "train_data.pkl", "--no-progress", "--epochs", "1"]
    assert _invoke(*base, "--out", tmp_path / "a", "--features", "8,16").exit_code == 0
    result = _invoke(*base, "--out", tmp_path / "b", "--init", tmp_path / "a" / "best.pt")
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "b" / "best.pt").config.features == (8, 16)


def test_fit_init_names_a_file_that_is_not_a_checkpoint(tmp_path, seedlike_dir):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    result = _invoke(
        "fit",
        "--course",
        seedlike_dir / "train_data.pkl",
        "--out",
        tmp_path / "o",
        "--init",
        bad,
        "--no-progress",
    )
    assert result.exit_code == 2
    assert "bad.pt" in result.output


def test_fit_model_options_reach_the_config(tmp_path, photos_dir):
    result = _invoke(
        "fit",
        "--photos",
        photos_dir,
        "--out",
        tmp_path,
        "--features",
        "8,16,32,64",
        "--convs-per-level",
        "2",
        "--batch-norm",
        "--dropout",
        "0.1",
        "--pooling",
        "max",
        "--upsampling",
        "transposed",
        "--activation",
        "leaky_relu",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--batch-size",
        "4",
        "--patch-size",
        "32",
        "--optimizer",
        "adagrad",
        "--loss",
        "l1",
        "--schedule",
        "cosine",
        "--noise",
        "bernoulli:0.2",
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    cfg = load_checkpoint(tmp_path / "last.pt").config
    assert (cfg.features, cfg.convs_per_level, cfg.batch_norm, cfg.dropout) == (
        (8, 16, 32, 64),
        2,
        True,
        0.1,
    )
    assert (cfg.pooling, cfg.upsampling, cfg.activation) == ("max", "transposed", "leaky_relu")


def test_fit_grey_fraction_reaches_the_config_and_needs_photos(tmp_path, photos_dir, seedlike_dir):
    common = ("--out", tmp_path, "--epochs", "1", "--batch-size", "4", "--no-progress")
    result = _invoke(
        "fit",
        "--photos",
        photos_dir,
        "--grey-fraction",
        "0.25",
        "--steps-per-epoch",
        "2",
        "--patch-size",
        "32",
        "--features",
        "8,16",
        *common,
    )
    assert result.exit_code == 0, result.output
    summary = load_checkpoint(tmp_path / "last.pt").summary
    assert summary["train_config"]["grey_fraction"] == 0.25
    course = CliRunner().invoke(
        main,
        [
            "fit",
            "--course",
            str(seedlike_dir / "train_data.pkl"),
            "--grey-fraction",
            "0.5",
            *map(str, common),
        ],
    )
    assert course.exit_code == 2 and "--grey-fraction needs --photos" in course.output
    bad = CliRunner().invoke(main, ["fit", "--photos", str(photos_dir), "--grey-fraction", "2"])
    assert bad.exit_code == 2 and "--grey-fraction" in bad.output


def test_eval_prints_both_psnr_figures_and_writes_the_figures(tmp_path, course_run, seedlike_dir):
    result = _invoke(
        "eval", course_run / "best.pt", seedlike_dir / "val_data.pkl", "--out", tmp_path
    )
    assert result.exit_code == 0, result.output
    assert "noisy input PSNR (mean/image):  20.70 dB" in result.output
    assert "denoised PSNR (global MSE)" in result.output
    facts = json.loads((tmp_path / "eval.json").read_text())
    assert facts["images"] == 100
    summary = load_checkpoint(course_run / "best.pt").summary  # the same figure as in training
    assert facts["psnr"] == pytest.approx(summary["val_psnr"], abs=1e-6)
    assert facts["noisy_psnr"] == pytest.approx(summary["noisy_psnr"], abs=1e-6)
    for name in ("psnr_box.png", "samples.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_eval_on_a_photo_folder_with_a_noise(tiny_run, photos_dir):
    result = _invoke("eval", tiny_run["checkpoint"], photos_dir, "--noise", "gaussian:25")
    assert result.exit_code == 0, result.output
    assert "images:                         6" in result.output
    default_out = tiny_run["checkpoint"].parent / f"eval-{photos_dir.name}"
    assert (default_out / "samples.png").is_file() and (default_out / "eval.json").is_file()


def test_eval_names_a_bad_data_file(tmp_path, tiny_run):
    torch.save((torch.zeros(2, 3, 8, 8),), tmp_path / "bad.pkl")
    result = CliRunner().invoke(
        main, ["eval", str(tiny_run["checkpoint"]), str(tmp_path / "bad.pkl")]
    )
    assert result.exit_code == 2
    assert "bad.pkl: expected a pair of tensors" in result.output


def test_make_seedlike_command(tmp_path, photos_dir):
    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir(), val.mkdir()
    for i, p in enumerate(sorted(photos_dir.iterdir())):
        (train if i < 4 else val).joinpath(p.name).symlink_to(p)
    result = _invoke(
        "make-seedlike",
        tmp_path / "out",
        "--train-photos",
        train,
        "--val-photos",
        val,
        "--n-train",
        "100",
        "--n-val",
        "50",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["val_noisy_psnr"] == pytest.approx(20.7, abs=0.3)
    bad = CliRunner().invoke(
        main,
        [
            "make-seedlike",
            str(tmp_path / "o2"),
            "--train-photos",
            str(train),
            "--val-photos",
            str(train),
        ],
    )
    assert bad.exit_code == 2 and "--val-photos" in bad.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_a_device_is_a_clear_usage_error(tiny_run, photos_dir):
    result = CliRunner().invoke(
        main, ["eval", str(tiny_run["checkpoint"]), str(photos_dir), "--device", "cuda"]
    )
    assert result.exit_code == 2 and "CUDA is not available" in result.output
