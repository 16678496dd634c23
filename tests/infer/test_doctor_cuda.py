"""doctor's CUDA-major check: torch and onnxruntime-gpu built for different CUDA majors
share one libcudnn.so.9 path, so doctor says so (torch is read, never imported)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import onnxruntime as ort
import pytest

from n2n_infer import doctor


def fake_torch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, version_py: str) -> None:
    (tmp_path / "version.py").write_text(version_py)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        doctor.importlib.util,
        "find_spec",
        lambda name, *a: (
            SimpleNamespace(origin=str(tmp_path / "__init__.py"))
            if name == "torch"
            else real(name, *a)
        ),
    )


@pytest.mark.parametrize(
    ("version_py", "major"),
    [
        ("cuda: Optional[str] = '12.8'\n", "12"),
        ("cuda = '13.0'\n", "13"),
        ("cuda: Optional[str] = None\n", None),
    ],
)
def test_torch_cuda_major_is_read_not_imported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, version_py: str, major: str | None
) -> None:
    fake_torch(monkeypatch, tmp_path, version_py)
    before = "torch" in sys.modules
    assert doctor.torch_cuda_major() == major
    assert ("torch" in sys.modules) == before


def test_different_cuda_majors_are_warned_about(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_torch(monkeypatch, tmp_path, "cuda: Optional[str] = '12.8'\n")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider"])
    monkeypatch.setattr(doctor, "cuda_libraries", lambda: {"cudart": "libcudart.so.13"})
    warning = doctor.cuda_mismatch()
    assert "CUDA 13 and torch for CUDA 12" in warning and "libcudnn.so.9" in warning
    lines, _ = doctor.diagnose()
    assert warning in lines


def test_same_major_or_no_cuda_build_says_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_torch(monkeypatch, tmp_path, "cuda = '13.0'\n")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider"])
    monkeypatch.setattr(doctor, "cuda_libraries", lambda: {"cudart": "libcudart.so.13"})
    assert doctor.cuda_mismatch() == ""
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    fake_torch(monkeypatch, tmp_path, "cuda = '12.1'\n")
    assert doctor.cuda_mismatch() == ""
