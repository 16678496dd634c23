"""Training never loads onnxruntime, though it reads images and files through n2n_infer.

``training`` imports ``n2n_infer.files``, ``n2n_infer.imageio`` and
``n2n_infer.metrics``; ``n2n_infer/__init__.py`` loads its public names lazily so
that these imports do not pull in onnxruntime (tests/e2e/test_runtime_isolation.py
checks the other direction).
"""

import subprocess
import sys

CHECK = """
import importlib, pkgutil, sys
import n2n_train
for m in pkgutil.iter_modules(n2n_train.__path__):
    importlib.import_module("n2n_train." + m.name)
print("LOADED:" + ",".join(m for m in ("onnxruntime", "onnx") if m in sys.modules))
"""


def test_importing_every_training_module_loads_no_onnxruntime():
    proc = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "LOADED:", proc.stdout
