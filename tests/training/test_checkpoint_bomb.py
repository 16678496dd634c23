"""Decompression bombs: a small checkpoint whose records expand hugely is refused, by name,
from the zip archive's directory, before torch allocates them (load, export, eval, average,
fit --init)."""

import pickle
import subprocess
import sys
import zipfile

import pytest
import torch
from click.testing import CliRunner

from n2n_export.cli import main as export_cli
from n2n_train import checkpoint
from n2n_train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_resume_state,
    save_checkpoint,
)
from n2n_train.cli import main as train_cli
from n2n_train.config import UNetConfig
from n2n_train.unet import UNet

#: The bomb's record: zeros, deflated about 1000× (a 200 MB record in a file of about 200 kB).
BOMB_MB = 200
REFUSED = r"bomb\.pt: record '.*data/0' expands from .* to 209\.7 MB \(\d+×\)"


def _rezip(src, dst, big=None, compress=zipfile.ZIP_STORED):
    """Copy torch zip ``src`` to ``dst`` record by record (same order: torch takes the archive's
    name from its first record), the records compressed with ``compress``; ``big``: the record
    ``data/0`` replaced by ``big`` MB of zeros, written in 1 MB chunks (never held whole)."""
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            record = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            record.compress_type = compress
            if big is not None and info.filename.endswith("/data/0"):
                record.compress_type = zipfile.ZIP_DEFLATED
                with zout.open(record, "w") as out:
                    for _ in range(big):
                        out.write(chunk)
            else:
                zout.writestr(record, zin.read(info))
    return dst


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return save_checkpoint(
        tmp_path_factory.mktemp("small") / "small.pt", UNet(UNetConfig(features=(8, 16)))
    )


@pytest.fixture(scope="module")
def bomb(tmp_path_factory, small):
    """A valid tiny checkpoint whose first weight record is 200 MB of deflated zeros (torch reads
    a record whole, whatever size the pickle declares for its tensor)."""
    path = _rezip(small, tmp_path_factory.mktemp("bomb") / "bomb.pt", big=BOMB_MB)
    assert path.stat().st_size < 1_000_000  # a small file, 1000× smaller than what it holds
    return path


def test_the_bomb_is_refused_before_anything_is_allocated(bomb):
    code = (
        "import resource, sys\n"
        "from n2n_train.checkpoint import CheckpointError, load_checkpoint\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    load_checkpoint(sys.argv[1])\n"
        "    outcome = 'loaded'\n"
        "except CheckpointError as exc:\n"
        "    outcome = str(exc)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print((after - before) * (1 if sys.platform == 'darwin' else 1024) / 1e6)\n"
        "print(outcome)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    grown_mb, outcome = proc.stdout.strip().split("\n", 1)
    assert float(grown_mb) < BOMB_MB / 4, f"peak memory grew {grown_mb} MB ({outcome})"
    assert "refused" in outcome and "bomb.pt" in outcome, outcome


def test_load_and_resume_refuse_the_bomb_by_name(bomb):
    for load in (load_checkpoint, load_resume_state, checkpoint.load_torch_file):
        with pytest.raises(CheckpointError, match=REFUSED):
            load(bomb)


def test_export_refuses_the_bomb(bomb, tmp_path):
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(export_cli, ["onnx", str(bomb), str(out), "--no-parity"])
    assert result.exit_code == 2, result.output
    assert "bomb.pt" in result.output and "expands from" in result.output
    assert not out.exists()


def test_eval_refuses_the_bomb(bomb, tmp_path):
    result = CliRunner().invoke(train_cli, ["eval", str(bomb), str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "bomb.pt" in result.output and "expands from" in result.output


def test_average_refuses_the_bomb(bomb, small, tmp_path):
    out = tmp_path / "avg.pt"
    result = CliRunner().invoke(
        train_cli, ["average", str(out), str(small), str(bomb), "--no-validate"]
    )
    assert result.exit_code == 2, result.output
    assert "bomb.pt" in result.output and "expands from" in result.output
    assert not out.exists()


def test_fit_init_refuses_the_bomb(bomb, photos_dir, tmp_path):
    args = ["fit", "--photos", str(photos_dir), "--init", str(bomb), "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(train_cli, args)
    assert result.exit_code == 2, result.output
    assert "bomb.pt" in result.output and "expands from" in result.output


def test_many_small_compressed_records_cannot_add_up_to_a_bomb(tmp_path):
    """Every weight record under the per-record bound, together far more than the file holds."""
    src = save_checkpoint(tmp_path / "src.pt", UNet(UNetConfig(features=(4,) * 6)))
    path = tmp_path / "many.pt"
    chunk = bytes(900_000)  # zeros: each record alone is exempt from the ratio test
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        records = zin.infolist()
        for info in records:
            weights = "/data/" in info.filename and "/.data/" not in info.filename
            zout.writestr(info.filename, chunk if weights else zin.read(info))
    assert sum("/data/" in r.filename for r in records) >= 20  # about 20 MB in a file of 30 kB
    with pytest.raises(CheckpointError, match=r"many\.pt: its records expand from .* file to"):
        load_checkpoint(path)


def test_overlapping_records_are_refused(small, tmp_path):
    """Two directory entries for one stored record: twice the bytes the file holds."""
    data = bytearray(small.read_bytes())
    with zipfile.ZipFile(small) as z:
        records = z.infolist()
    end = data.rindex(b"PK\x05\x06")  # the end-of-central-directory record
    cd_size = int.from_bytes(data[end + 12 : end + 16], "little")
    cd_start = int.from_bytes(data[end + 16 : end + 20], "little")
    directory = bytes(data[cd_start : cd_start + cd_size])
    first = directory[: directory.index(b"PK\x01\x02", 4)]  # the first record's directory entry
    copies = 40
    new_cd = directory + first * copies
    count = len(records) + copies
    tail = bytearray(data[end:])
    tail[8:10] = tail[10:12] = count.to_bytes(2, "little")
    tail[12:16] = len(new_cd).to_bytes(4, "little")
    path = tmp_path / "overlap.pt"
    path.write_bytes(bytes(data[:cd_start]) + new_cd + bytes(tail))
    with pytest.raises(CheckpointError, match=r"overlap\.pt: .*records that overlap"):
        load_checkpoint(path)


def test_a_recompressed_checkpoint_still_loads(small, tmp_path):
    """Deflate as such is not refused: real weights compress little."""
    path = _rezip(small, tmp_path / "deflated.pt", compress=zipfile.ZIP_DEFLATED)
    assert load_checkpoint(path).config == load_checkpoint(small).config


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_legacy_or_bare_pickle_is_refused_clearly(tmp_path, protocol):
    path = tmp_path / "legacy.pt"
    path.write_bytes(pickle.dumps({"format": "n2n-checkpoint"}, protocol=protocol))
    with pytest.raises(CheckpointError, match=r"legacy\.pt: a legacy \(non-zip\) torch file"):
        load_checkpoint(path)


def test_torch_legacy_format_is_refused_clearly(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"format": "n2n-checkpoint"}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"old\.pt: a legacy \(non-zip\) torch file"):
        load_checkpoint(path)


def test_a_truncated_archive_is_refused_by_name(small, tmp_path):
    path = tmp_path / "cut.pt"
    path.write_bytes(small.read_bytes()[:3000])
    with pytest.raises(CheckpointError, match=r"cut\.pt: not a readable zip archive"):
        load_checkpoint(path)


def test_a_damaged_pickle_is_refused_by_name(small, tmp_path):
    """A record data.pkl that asks for a memo entry it never stored (torch's unpickler raises
    KeyError, which escaped the loader): refused as not a torch checkpoint, by name."""
    path = tmp_path / "damaged.pt"
    with zipfile.ZipFile(small) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            damaged = info.filename.endswith("/data.pkl")
            zout.writestr(info.filename, b"\x80\x02h\x05." if damaged else zin.read(info))
    with pytest.raises(CheckpointError, match=r"damaged\.pt: not a torch checkpoint file"):
        load_checkpoint(path)


def test_records_over_the_size_bound_are_refused(small):
    """The bound on all records together (2 GiB by default), lowered to just under this file's."""
    with zipfile.ZipFile(small) as z:
        total = sum(r.file_size for r in z.infolist())
    assert checkpoint.load_torch_file(small, limit=total)["format"] == "n2n-checkpoint"
    with pytest.raises(CheckpointError, match=r"small\.pt: its records hold .* more than the"):
        checkpoint.load_torch_file(small, limit=total - 1)
