"""Weight averaging: ``fit --snapshot-every`` and ``n2n-train average``."""

import dataclasses

import pytest
import torch
from click.testing import CliRunner

from n2n_infer.files import sha256_file
from n2n_train.average import average_checkpoints
from n2n_train.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from n2n_train.cli import main
from n2n_train.commands import measure_validation
from n2n_train.config import UNetConfig
from n2n_train.unet import UNet

TINY = UNetConfig(features=(8, 16))


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _ckpt(seed: int, config: UNetConfig = TINY, **summary) -> Checkpoint:
    torch.manual_seed(seed)
    model = UNet(config)
    summary = {"noise": "gaussian:25", "mode": "noise2noise", "epochs": seed, **summary}
    return Checkpoint(config, model.state_dict(), summary)


@pytest.fixture(scope="module")
def snapshot_run(tmp_path_factory, photos_dir):
    out = tmp_path_factory.mktemp("snapshot_run")
    args = ["fit", "--photos", photos_dir, "--out", out, "--preset", "tiny"]
    args += ["--optimizer", "adam", "--lr", "3e-3", "--noise", "gaussian:25"]
    args += ["--steps-per-epoch", "6", "--batch-size", "8", "--patch-size", "32"]
    args += ["--snapshot-every", "1", "--no-progress"]
    result = _invoke(*args, "--epochs", "2")
    assert result.exit_code == 0, result.output
    # resuming keeps taking snapshots
    result = _invoke(*args, "--epochs", "3", "--resume")
    assert result.exit_code == 0, result.output
    return out


def test_the_average_is_the_mean_of_the_weights():
    sources = [("a.pt", _ckpt(1), "a" * 64), ("b.pt", _ckpt(2), "b" * 64), ("c.pt", _ckpt(3), "c")]
    mean = average_checkpoints(sources)
    for name, tensor in mean.state_dict.items():
        expected = sum(s[1].state_dict[name] for s in sources) / 3
        torch.testing.assert_close(tensor, expected)
    assert mean.summary["averaged"]["count"] == 3
    assert [c["epoch"] for c in mean.summary["averaged"]["checkpoints"]] == [1, 2, 3]
    assert mean.summary["averaged"]["checkpoints"][0]["sha256"] == "a" * 64
    assert mean.summary["epochs"] == 3  # the summary of the one trained longest


def test_the_average_drops_the_figures_of_its_sources():
    sources = [(f"{i}.pt", _ckpt(i, val_psnr=30.0, best_epoch=i), "x") for i in (1, 2)]
    summary = average_checkpoints(sources).summary
    assert "val_psnr" not in summary and "best_epoch" not in summary


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (_ckpt(2, dataclasses.replace(TINY, features=(8, 32))), "differs from a.pt's"),
        (_ckpt(2, noise="gaussian:50"), "trained with noise 'gaussian:50'"),
        (_ckpt(2, mode="noise2clean"), "trained with mode 'noise2clean'"),
    ],
)
def test_checkpoints_of_different_models_or_tasks_are_refused(other, message):
    with pytest.raises(CheckpointError, match=message) as info:
        average_checkpoints([("a.pt", _ckpt(1), "x"), ("b.pt", other, "y")])
    assert str(info.value).startswith("b.pt: ")


def test_batch_norm_models_and_single_checkpoints_are_refused():
    bn = dataclasses.replace(TINY, batch_norm=True)
    with pytest.raises(CheckpointError, match="batch norm"):
        average_checkpoints([("a.pt", _ckpt(1, bn), "x"), ("b.pt", _ckpt(2, bn), "y")])
    with pytest.raises(CheckpointError, match="at least two"):
        average_checkpoints([("a.pt", _ckpt(1), "x")])


def test_fit_keeps_a_snapshot_per_epoch_across_a_resume(snapshot_run):
    snaps = sorted((snapshot_run / "snapshots").iterdir())
    assert [p.name for p in snaps] == ["epoch-001.pt", "epoch-002.pt", "epoch-003.pt"]
    last = load_checkpoint(snapshot_run / "last.pt")
    third = load_checkpoint(snaps[-1])
    for name, tensor in last.state_dict.items():
        assert torch.equal(third.state_dict[name], tensor)
    assert third.summary["snapshot"]["epoch"] == 3
    assert "resume" not in torch.load(snaps[-1], weights_only=True)


def test_measure_validation_reproduces_the_runs_own_figures(snapshot_run):
    snap = load_checkpoint(snapshot_run / "snapshots" / "epoch-002.pt")
    facts = measure_validation(snap, "cpu", run_dirs=(snapshot_run,))
    assert facts["val_loss"] == pytest.approx(snap.summary["snapshot"]["val_loss"], rel=1e-5)
    assert facts["val_psnr"] == pytest.approx(snap.summary["snapshot"]["val_psnr"], abs=1e-4)


def test_average_command_on_a_snapshot_folder(snapshot_run, photos_dir):
    out = snapshot_run / "averaged.pt"
    result = _invoke("average", out, snapshot_run / "snapshots", "--last", "2")
    assert result.exit_code == 0, result.output
    assert "averaged 2 checkpoints (epochs [2, 3])" in result.output
    ckpt = load_checkpoint(out)
    averaged = ckpt.summary["averaged"]
    assert [c["epoch"] for c in averaged["checkpoints"]] == [2, 3]
    snap3 = snapshot_run / "snapshots" / "epoch-003.pt"
    assert averaged["checkpoints"][1]["sha256"] == sha256_file(snap3)
    assert ckpt.summary["val_psnr"] == averaged["validation"]["val_psnr"]
    assert f"validation PSNR {ckpt.summary['val_psnr']:.3f} dB" in result.output
    snaps = [load_checkpoint(snapshot_run / "snapshots" / f"epoch-00{i}.pt") for i in (2, 3)]
    name = next(iter(ckpt.state_dict))
    expected = (snaps[0].state_dict[name] + snaps[1].state_dict[name]) / 2
    torch.testing.assert_close(ckpt.state_dict[name], expected)
    # a fine-tune from the average records which epochs it started from (for the card)
    tuned = snapshot_run.parent / f"{snapshot_run.name}-tuned"
    assert ckpt.summary["data"] == {"source": "photos", "name": photos_dir.name, "files": 6}
    args = ["fit", "--photos", photos_dir, "--out", tuned, "--preset", "tiny"]
    args += ["--optimizer", "adam", "--noise", "gaussian:25", "--steps-per-epoch", "2"]
    args += ["--batch-size", "8", "--patch-size", "32", "--epochs", "1", "--no-progress"]
    result = _invoke(*args, "--init", out)
    assert result.exit_code == 0, result.output
    start = load_checkpoint(tuned / "best.pt").summary["init"]
    assert start["averaged"] == {"count": 2, "epochs": [2, 3]}
    assert start["best_epoch"] is None


def test_average_command_refuses_bad_arguments(snapshot_run, tmp_path):
    snaps = snapshot_run / "snapshots"
    result = CliRunner().invoke(main, ["average", str(tmp_path / "o.pt"), str(tmp_path / "nope")])
    assert result.exit_code == 2 and "nope: no such file or folder" in result.output
    inside = snaps / "epoch-001.pt"
    result = CliRunner().invoke(main, ["average", str(inside), str(snaps)])
    assert result.exit_code == 2 and "is one of the checkpoints to average" in result.output
    result = CliRunner().invoke(
        main, ["average", str(tmp_path / "o.pt"), str(snaps), "--last", "0"]
    )
    assert result.exit_code == 2 and "--last" in result.output
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    result = CliRunner().invoke(main, ["average", str(tmp_path / "o.pt"), str(inside), str(bad)])
    assert result.exit_code == 2 and "bad.pt: not a torch checkpoint file" in result.output
    assert not (tmp_path / "o.pt").exists()


def test_average_without_its_training_data_says_how_to_skip_validation(tmp_path):
    for i in (1, 2):
        model = UNet(TINY)
        summary = {"noise": "gaussian:25", "mode": "noise2noise", "epochs": i}
        summary["train_config"] = {"version": 4, "epochs": 2}
        summary["data"] = {"source": "photos", "path": str(tmp_path / "gone")}
        save_checkpoint(tmp_path / f"{i}.pt", model, summary)
    args = ["average", str(tmp_path / "avg.pt"), str(tmp_path / "1.pt"), str(tmp_path / "2.pt")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "--no-validate skips it" in result.output
    assert "gone" in result.output
    result = CliRunner().invoke(main, [*args, "--no-validate"])
    assert result.exit_code == 0, result.output
    assert "val_psnr" not in load_checkpoint(tmp_path / "avg.pt").summary


def test_a_folder_lists_its_checkpoints_with_numbers_in_order(tmp_path):
    from n2n_train.commands import expand_checkpoints

    for name in ("epoch-10.pt", "epoch-9.pt", "epoch-100.pt", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    names = [p.name for p in expand_checkpoints((tmp_path,), None)]
    assert names == ["epoch-9.pt", "epoch-10.pt", "epoch-100.pt"]
    assert [p.name for p in expand_checkpoints((tmp_path,), 2)] == names[1:]
