"""Packaging: the README's commands, and the default model in a regular (non-editable) install."""

import re
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


@pytest.mark.slow
def test_regular_install_finds_the_default_model(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("n2n-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "n2n_infer/models/photo.onnx" in names
    assert not [n for n in names if n.endswith(".pt")], "checkpoints stay out of the wheel"
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
        "print(d.denoise(np.zeros((5, 7, 3), np.uint8)).shape)"
    )
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
    module_file, model_path, shape = proc.stdout.split("\n")[:3]
    assert module_file.startswith(str(target)) and model_path.startswith(str(target))
    assert shape == "(5, 7, 3)"
