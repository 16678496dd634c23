"""The Ray engine's workers and CLI checks that need no Ray (they run without the extra)."""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from n2n_infer import workers
from n2n_infer.batch import convert_file
from n2n_infer.cli import main
from n2n_infer.registry import resolve_model
from tests.conftest import synthetic_photo

SPEC = workers.DenoiserSpec("photo", device="cpu", intra_op_threads=1)


@pytest.fixture
def in_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(3)
    Image.fromarray(synthetic_photo(rng, 20, 28)).save(folder / "a.png")
    Image.fromarray(synthetic_photo(rng, 17, 23)).save(folder / "b.jpg")
    return folder


def _row(name: str, data: bytes, ref: bytes = b"", read_error: str = "") -> dict[str, np.ndarray]:
    cols = {"name": name, "data": data, "ref": ref, "has_ref": bool(ref), "read_error": read_error}
    return {k: workers.object_column([v]) for k, v in cols.items()}


def test_a_model_path_is_shipped_as_bytes_and_a_bundled_model_by_name(tmp_path):
    copy = tmp_path / "mine.onnx"
    shutil.copyfile(resolve_model("photo"), copy)
    shipped = workers.ShippedModel.of(str(copy))
    copy.unlink()  # the workers never read the driver's file
    worker = workers.DenoiseFiles(SPEC, pickle.loads(pickle.dumps(shipped)))
    assert worker.denoiser.path.name == "mine.onnx" and worker.denoiser.path != copy
    assert workers.ShippedModel.of("photo") == workers.ShippedModel("photo")
    assert workers.ShippedModel.of(None) == workers.ShippedModel(None)  # defaults, on the worker
    assert workers.ShippedModel(None).materialise(tmp_path) is None


def test_denoise_files_gives_the_local_engines_bytes_and_errors(tmp_path, in_dir):
    worker = workers.DenoiseFiles(SPEC)
    local = tmp_path / "local.jpg"
    convert_file(worker.denoiser, in_dir / "b.jpg", local, "b.jpg")
    data = (in_dir / "b.jpg").read_bytes()
    out = worker(_row("sub/b.jpg", data, ref=data))
    assert list(out) == list(workers.OUT_COLUMNS)
    row = {k: v[0] for k, v in out.items()}
    assert row["status"] == "ok" and bytes(row["output"]) == local.read_bytes()
    result = workers.result_of(row)
    assert result.name == "sub/b.jpg" and result.size_hw == (17, 23)
    assert result.psnr_noisy is not None and result.psnr_denoised is not None  # ref went along
    bad = {k: v[0] for k, v in worker(_row("c.png", b"\x89PNG\r\n\x1a\n")).items()}
    assert bad["status"] == "error" and bytes(bad["output"]) == b""
    assert "n2n-ray" not in bad["error"]  # the worker's scratch path is not in the message
    unread = {k: v[0] for k, v in worker(_row("d.png", b"", read_error="cannot read: x")).items()}
    assert (unread["status"], unread["error"]) == ("error", "cannot read: x")


def test_denoise_images_takes_a_column_of_mixed_sizes():
    worker = workers.DenoiseImages(SPEC)
    rng = np.random.default_rng(0)
    images = workers.object_column(
        [synthetic_photo(rng, 20, 36), synthetic_photo(rng, 9, 13), np.zeros((8, 8), np.uint16)]
    )
    out = worker({"image": images, "id": np.arange(3)})
    assert [d.shape for d in out["denoised"]] == [(20, 36, 3), (9, 13, 3), (8, 8)]
    assert [d.dtype for d in out["denoised"]] == [np.uint8, np.uint8, np.uint16]
    assert list(out["id"]) == [0, 1, 2]
    np.testing.assert_array_equal(out["denoised"][0], worker.denoiser.denoise(images[0]))


def test_engine_ray_without_ray_is_one_error_line(monkeypatch, tmp_path, in_dir):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    monkeypatch.delitem(sys.modules, "n2n_infer.ray", raising=False)
    result = CliRunner().invoke(
        main, ["batch", str(in_dir), str(tmp_path / "o"), "--engine", "ray"]
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --engine ray needs Ray Data")
    assert 'pip install "n2n[ray]"' in lines[0]
    assert not (tmp_path / "o").exists()


def test_ray_options_need_engine_ray(tmp_path, in_dir):
    args = ["batch", str(in_dir), str(tmp_path / "o"), "--workers", "2", "--address", "auto"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "--address, --workers: only with --engine ray" in result.output


@pytest.mark.parametrize("flag", ["--split-stacks", "--whole-stacks"])
def test_the_stack_split_options_need_engine_ray(tmp_path, in_dir, flag):
    result = CliRunner().invoke(main, ["batch", str(in_dir), str(tmp_path / "o"), flag])
    assert result.exit_code == 2
    assert f"{flag}: only with --engine ray" in result.output


@pytest.mark.parametrize(
    ("flags", "want"), [([], None), (["--split-stacks"], True), (["--whole-stacks"], False)]
)
def test_the_stack_split_options_reach_the_ray_engine(monkeypatch, tmp_path, in_dir, flags, want):
    import n2n_infer.ray as ray_engine

    seen = {}

    def fake(*args, split_stacks=None, **kwargs):
        seen["split_stacks"] = split_stacks
        raise ray_engine.RayJobError("stopped here")

    monkeypatch.setattr(ray_engine, "connect", lambda *a, **k: None)
    monkeypatch.setattr(ray_engine, "denoise_folder_ray", fake)
    args = ["batch", str(in_dir), str(tmp_path / "o"), "--engine", "ray", *flags]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "stopped here" in result.output
    assert seen == {"split_stacks": want}


def test_the_runtime_and_the_local_engine_never_import_ray(tmp_path, in_dir):
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "import n2n_infer, n2n_infer.workers\n"
        "from n2n_infer.cli import main\n"
        f"r = CliRunner().invoke(main, ['batch', {str(in_dir)!r}, {str(tmp_path / 'o')!r},"
        " '--device', 'cpu', '--quiet'])\n"
        "assert r.exit_code == 0, r.output\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'torch', 'pyarrow'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_one_description_of_a_denoiser_serves_the_api_the_cli_and_the_workers() -> None:
    from n2n_infer import Denoiser, DenoiserOptions, SessionConfig

    assert workers.DenoiserSpec is DenoiserOptions
    options = DenoiserOptions("photo", "cpu", 2, 1, session_config=SessionConfig(), ensemble=2)
    d = options.build()
    assert d.options == options and Denoiser.from_options(options).options == options
    assert d.options.session().intra_op_threads == 1  # the thread count, in one place
    assert DenoiserOptions(session_config=SessionConfig(intra_op_threads=3)).session() == (
        SessionConfig(intra_op_threads=3)
    )
