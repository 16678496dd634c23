"""Packaging: the README's commands, and the default model in a regular (non-editable) install."""

import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    return [line for line in blocks[0].splitlines() if line and not line.startswith("#")]


def test_ci_runs_exactly_the_readme_test_command():
    install_and_run, test = _readme_commands()[:2]
    assert "torch" not in install_and_run and "n2n-infer batch" in install_and_run
    assert test in (REPO / ".ci" / "run").read_text().splitlines()


def _build_wheel(tmp_path):
    """The wheel of a copy of the sources (an in-place build would leave build/ in the repo)."""
    src = tmp_path / "src"
    for name in ("n2n_infer", "models", "training", "export"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    build = subprocess.run(
        [*pip_wheel, "-w", str(tmp_path), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("n2n-*.whl")
    return wheel


@pytest.mark.slow
def test_regular_install_finds_the_default_model_and_the_checkpoints(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "n2n_infer/models/photo.onnx" in names
    shipped = sorted(p.name for p in (REPO / "models").glob("*.pt"))
    assert shipped == ["grey.pt", "photo.pt", "seedlike.pt"]
    for name in shipped:  # fit --init photo works from any install (docs/own_data.md)
        assert f"n2n_infer/models/{name}" in names
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=600,
    )
    code = (
        "import n2n_infer, numpy as np; from n2n_infer import Denoiser\n"
        "d = Denoiser(device='cpu')\n"
        "print(n2n_infer.__file__); print(d.path)\n"
        "print(d.denoise(np.zeros((5, 7, 3), np.uint8)).shape)\n"
        "from n2n_train.checkpoint import find_checkpoint, load_checkpoint\n"
        "path, name = find_checkpoint('photo')\n"
        "print(path); print(name, load_checkpoint(path).config.features)"
    )
    # the target first: the installed copy, not this checkout (torch comes from the venv)
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    module_file, model_path, shape, checkpoint, loaded = proc.stdout.split("\n")[:5]
    assert module_file.startswith(str(target)) and model_path.startswith(str(target))
    assert shape == "(5, 7, 3)"
    assert checkpoint == str(target / "n2n_infer" / "models" / "photo.pt")
    assert loaded == "photo (32, 64, 128)"
