"""The runtime-only install (no torch, no onnx): n2n-train and n2n-export say what to install.

Each case runs a CLI's entry function in a fresh interpreter where importing
torch, onnx, onnxscript and matplotlib fails, as after ``pip install n2n``.
"""

import subprocess
import sys

import pytest

from tests.conftest import REPO

#: Make the packages of the ``train`` extra unimportable, then run ``MODULE.main(ARGS)``.
_WITHOUT_TRAIN = (
    "import sys\n"
    "for name in ('torch', 'onnx', 'onnxscript', 'matplotlib'):\n"
    "    sys.modules[name] = None\n"
    "from {module} import main\n"
    "main({args!r}, prog_name={prog!r})\n"
)

#: Run ``--help`` and say whether torch was imported.
_HELP_IMPORTS = (
    "import sys\n"
    "from {module} import main\n"
    "try:\n"
    "    main(['--help'], prog_name={prog!r})\n"
    "except SystemExit:\n"
    "    pass\n"
    "print('torch imported' if 'torch' in sys.modules else 'torch not imported')\n"
)

CLIS = {"n2n-train": "n2n_train.cli", "n2n-export": "n2n_export.cli"}
CASES = [
    ("n2n-train", []),
    ("n2n-train", ["--help"]),
    ("n2n-train", ["fit", "--help"]),
    ("n2n-train", ["fit", "--photos", "p", "--out", "o"]),
    ("n2n-train", ["eval", "a.pt", "d"]),
    ("n2n-train", ["average", "o.pt", "a.pt", "b.pt"]),
    ("n2n-train", ["corpus"]),
    ("n2n-train", ["make-seedlike", "out"]),
    ("n2n-export", ["--help"]),
    ("n2n-export", ["onnx", "a.pt", "a.onnx"]),
    ("n2n-export", ["parity", "a.pt", "a.onnx", "--images", "x"]),
    ("n2n-export", ["bioimageio", "a.pt", "a.zip"]),
]


def _run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(("prog", "args"), CASES, ids=[" ".join([p, *a]) for p, a in CASES])
def test_without_torch_each_command_names_the_extra_and_exits_2(prog, args):
    done = _run(_WITHOUT_TRAIN.format(module=CLIS[prog], args=args, prog=prog))
    assert done.returncode == 2, done.stderr
    needs = "torch" if prog == "n2n-train" else "torch and onnx"
    assert done.stderr == (
        f"error: {prog} needs {needs}, not installed here: pip install 'n2n[train]'\n"
    )
    assert done.stdout == ""


@pytest.mark.parametrize("prog", sorted(CLIS))
def test_help_does_not_import_torch(prog):
    done = _run(_HELP_IMPORTS.format(module=CLIS[prog], prog=prog))
    assert done.returncode == 0, done.stderr
    assert f"Usage: {prog}" in done.stdout
    assert done.stdout.rstrip().endswith("torch not imported")
