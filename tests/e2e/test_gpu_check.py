"""scripts/gpu_check.sh --dry-run: every step of the GPU check runs on the CPU (what CI can
prove of it); the real run happens on a GPU machine and commits bench/results/gpu.*."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "gpu_check.sh"


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHON": sys.executable},
    )


@pytest.mark.slow
def test_dry_run_exercises_every_step_on_the_cpu(tmp_path: Path) -> None:
    committed = REPO / "bench" / "results" / "gpu.json"
    before = committed.read_bytes() if committed.exists() else None
    proc = run_script("--dry-run", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "gpu.json").read_text())
    assert results["dry_run"] is True
    steps = results["steps"]
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from gpu_check import STEPS
    finally:
        sys.path.pop(0)
    assert list(steps) == [name for name, _, _ in STEPS]
    assert {name: e["status"] for name, e in steps.items()} == {n: "ok" for n in steps}
    # on the CPU, "the device" is the CPU: the parity rows are exact, and fp16 is within 2e-3
    rows = steps["parity"]["photo"]["rows"]
    assert rows["fp32/binding=off"]["max_abs_diff_vs_cpu_fp32"] == 0.0
    assert rows["fp16/binding=off"]["max_abs_diff_vs_cpu_fp32"] < 2e-3
    assert steps["parity"]["tiled_vs_untiled"]["max_uint8_diff"] <= 1
    assert steps["batch_cli"]["exit"] == 0 and len(steps["batch_cli"]["outputs"]) >= 4
    assert steps["train_bf16"]["export_with_parity"]["exit"] == 0
    assert steps["ddp"]["distributed"] == {"processes": 2, "backend": "gloo", "sync_checks": 6}
    assert steps["threads"]["identical_to_serial"] and not steps["threads"]["errors"]
    assert steps["failures"]["cuda_7"].startswith("ProviderError")
    assert "dry run" in (tmp_path / "gpu.md").read_text()
    after = committed.read_bytes() if committed.exists() else None
    assert after == before  # a dry run never overwrites the GPU results


def test_unknown_arguments_are_refused() -> None:
    proc = run_script("--dryrun")
    assert proc.returncode == 2 and "unknown argument --dryrun" in proc.stderr
