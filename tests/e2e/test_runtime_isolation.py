"""The runtime must load none of torch, onnx, training, export."""

import subprocess
import sys

import pytest

FORBIDDEN = ("torch", "onnx", "onnxscript", "n2n_train", "n2n_export", "training", "export")

CHECK = """
import sys
{body}
bad = [m for m in {forbidden!r} if m in sys.modules]
print("LOADED:" + ",".join(bad))
"""

HELP = """
from n2n_infer.cli import main
try:
    main({args!r})
except SystemExit:
    pass
"""


@pytest.mark.parametrize(
    "body",
    [
        "import n2n_infer",
        "from n2n_infer import Denoiser; Denoiser(device='cpu')",
        HELP.format(args=["--help"]),
        HELP.format(args=["batch", "--help"]),
    ],
)
def test_runtime_imports_nothing_heavy(body):
    code = CHECK.format(body=body, forbidden=FORBIDDEN)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "LOADED:", proc.stdout
