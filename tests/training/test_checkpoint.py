import pytest
import torch

from n2n_train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from n2n_train.config import UNetConfig
from n2n_train.unet import UNet


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_round_trip(tmp_path):
    model = UNet(UNetConfig(features=(8, 16, 32)))
    path = save_checkpoint(tmp_path / "m.pt", model, {"val_psnr": 25.0, "noise": "gaussian:25"})
    raw = torch.load(path, weights_only=True)  # the contract: plain types and tensors only
    assert raw["format"] == "n2n-checkpoint"
    ckpt = load_checkpoint(path)
    assert ckpt.config == model.config
    assert ckpt.summary == {"val_psnr": 25.0, "noise": "gaussian:25"}
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(ckpt.build_model()(x), model.eval()(x))


def test_pickled_objects_are_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": "n2n-checkpoint", "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt: holds pickled Python objects.*refused"):
        load_checkpoint(path)
    assert "pwned" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"weights": 1}, "not an n2n checkpoint"),
        ({"format": "n2n-checkpoint", "format_version": 99}, "format version 99 is newer"),
    ],
)
def test_foreign_or_newer_files_are_refused(tmp_path, payload, message):
    path = tmp_path / "x.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match=r"junk\.pt"):
        load_checkpoint(tmp_path / "junk.pt")


def test_weights_that_do_not_fit_the_config(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", UNet(UNetConfig()))
    raw = torch.load(path, weights_only=True)
    raw["config"]["features"] = [8, 16, 32]
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="weights do not match the config"):
        load_checkpoint(path)


def test_a_failed_save_leaves_the_old_checkpoint_and_no_temporary_file(tmp_path, monkeypatch):
    from n2n_infer.files import is_temp_name

    model = UNet(UNetConfig(features=(8, 16)))
    path = save_checkpoint(tmp_path / "m.pt", model, {"epochs": 1})
    before = path.read_bytes()
    seen = []

    def half_save(obj, f):
        seen.extend(p.name for p in tmp_path.iterdir() if p != path)
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, {"epochs": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    # the temporary file is one the runtime's cleanup recognises (n2n_infer.files)
    assert len(seen) == 1 and is_temp_name(seen[0])
