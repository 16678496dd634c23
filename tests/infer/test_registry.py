"""The bundled models are found however ``n2n_infer`` is imported (installed, editable, clone)."""

from __future__ import annotations

import shutil
import subprocess
import sys

from tests.conftest import REPO

#: Run in a clone's root with a regular (not editable) install: the clone's ``n2n_infer/``
#: shadows the installed package, and ``n2n_infer.models`` does not exist there.
CLONE_SCRIPT = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
sys.path.insert(0, sys.argv[1])
import n2n_infer.registry as registry
assert registry.__file__.startswith(sys.argv[1]), registry.__file__
from n2n_infer import Denoiser
d = Denoiser(device="cpu")
print(d.path.parent, registry.available_models())
"""


def test_models_are_found_from_a_clones_root(tmp_path):
    clone = tmp_path / "clone"
    shutil.copytree(REPO / "n2n_infer", clone / "n2n_infer", ignore=shutil.ignore_patterns("*.pyc"))
    (clone / "models").mkdir()
    for model in (REPO / "models").glob("*.onnx"):
        (clone / "models" / model.name).symlink_to(model)
    (clone / "models" / "__init__.py").touch()
    shutil.copy(REPO / "pyproject.toml", clone)
    result = subprocess.run(
        [sys.executable, "-c", CLONE_SCRIPT, str(clone)],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    folder, names = result.stdout.strip().split(" ", 1)
    assert folder == str(clone / "models") and "'photo'" in names


def test_models_dir_of_this_import():
    from n2n_infer.registry import available_models, models_dir

    assert (models_dir() / "photo.onnx").is_file()
    assert {"photo", "seedlike"} <= set(available_models())
