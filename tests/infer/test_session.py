"""Providers and session options, GPU paths through their CPU fallback and error messages."""

import logging

import numpy as np
import onnxruntime as ort
import pytest

from n2n_infer import Denoiser, InferenceError, ProviderError, SessionConfig
from n2n_infer import session as sess
from n2n_infer.registry import resolve_model

PHOTO = resolve_model(None)


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ("auto", ("auto", "")),
        ("cpu", ("cpu", "")),
        ("cuda", ("cuda", "")),
        ("cuda:3", ("cuda", "3")),
    ],
)
def test_device_strings(device, expected):
    assert sess.parse_device(device) == expected


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cpu:0", "", "cuda:", "CUDA", "cuda:-1"])
def test_bad_device_strings(device):
    with pytest.raises(ProviderError, match="expected 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        sess.parse_device(device)


@pytest.fixture
def cuda_build(monkeypatch):
    """Pretend this onnxruntime has a CUDA provider that cannot start (no GPU, no libraries)."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: [sess.CUDA, sess.CPU])
    monkeypatch.setattr(sess, "missing_cuda_libraries", lambda: ["cuDNN 9 (libcudnn.so.9)"])
    real = ort.InferenceSession

    def cpu_only(path, sess_options=None, providers=None):
        return real(path, sess_options=sess_options, providers=[sess.CPU])

    monkeypatch.setattr(ort, "InferenceSession", cpu_only)


@pytest.fixture
def cpu_build(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: [sess.CPU])


def test_auto_falls_back_with_one_line_saying_why(cuda_build, caplog):
    with caplog.at_level(logging.WARNING, logger="n2n_infer"):
        d = Denoiser(device="auto")
    assert d.providers == [sess.CPU]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "missing cuDNN 9 (libcudnn.so.9)" in lines[0] and "running on CPU" in lines[0]


def test_explicit_cuda_that_cannot_start_names_what_is_missing(cuda_build):
    with pytest.raises(
        ProviderError, match=r"device 'cuda:1'.*missing cuDNN 9 \(libcudnn\.so\.9\)"
    ):
        Denoiser(device="cuda:1")


def test_cuda_options_reach_onnxruntime(cuda_build):
    cfg = SessionConfig(cudnn_conv_algo_search="EXHAUSTIVE", gpu_mem_limit_mb=512)
    name, opts = sess.requested_providers("cuda:2", cfg)[0]
    assert name == sess.CUDA
    assert opts == {
        "device_id": "2",
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        "arena_extend_strategy": "kSameAsRequested",
        "gpu_mem_limit": str(512 * 1024 * 1024),
    }


def test_cpu_only_build_explains_the_package_to_install(cpu_build, monkeypatch):
    monkeypatch.setattr(sess.importlib.metadata, "version", lambda dist: "1.20.0")
    with pytest.raises(ProviderError, match="CPU-only 'onnxruntime' package is installed beside"):
        Denoiser(device="cuda")
    assert Denoiser(device="auto").providers == [sess.CPU]


def test_cpu_only_build_without_gpu_package(cpu_build, monkeypatch):
    def version(dist):
        if dist == "onnxruntime":
            return "1.20.0"
        raise sess.importlib.metadata.PackageNotFoundError(dist)

    monkeypatch.setattr(sess.importlib.metadata, "version", version)
    with pytest.raises(ProviderError, match="install onnxruntime-gpu"):
        Denoiser(device="cuda")


def test_pip_nvidia_libraries_are_preloaded_before_the_session(cuda_build, monkeypatch):
    order = []
    monkeypatch.setattr(sess.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(ort, "preload_dlls", lambda: order.append("preload"), raising=False)
    inner = ort.InferenceSession
    monkeypatch.setattr(
        ort, "InferenceSession", lambda *a, **k: order.append("session") or inner(*a, **k)
    )
    Denoiser(device="auto")
    assert order == ["preload", "session"]


def test_missing_libraries_are_listed_by_name(monkeypatch):
    def fake_cdll(name):
        if name in ("libcudnn.so.9", "libcuda.so.1"):
            raise OSError(name)

    monkeypatch.setattr(sess.sys, "platform", "linux")
    monkeypatch.setattr(sess.ctypes, "CDLL", fake_cdll)
    assert sess.missing_cuda_libraries() == [
        "NVIDIA driver (libcuda.so.1)",
        "cuDNN 9 (libcudnn.so.9)",
    ]
    monkeypatch.setattr(sess.ctypes, "CDLL", lambda name: None)
    assert "no usable GPU" in sess.cuda_failure_reason()


def test_cuda_library_names_come_from_the_installed_provider():
    from pathlib import Path

    from n2n_infer.elfdeps import needed_libraries

    provider = Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
    libs = sess.cuda_libraries()
    assert libs["NVIDIA driver"] == "libcuda.so.1" and libs["cuDNN 9"] == "libcudnn.so.9"
    if provider.is_file():  # onnxruntime-gpu: the CUDA sonames it really links
        linked = needed_libraries(provider)
        cuda_linked = [n for n in linked if n.startswith("libcudart.so.")]
        assert cuda_linked and cuda_linked[0] in libs.values()


def test_elf_dependencies_of_real_and_foreign_files(tmp_path):
    import sys

    from n2n_infer.elfdeps import needed_libraries

    if sys.platform.startswith("linux"):
        assert any(n.startswith("libc.so") for n in needed_libraries("/bin/ls"))
    (tmp_path / "x.so").write_bytes(b"\x7fELF" + b"\x02\x01" + b"\0" * 10)
    assert needed_libraries(tmp_path / "x.so") == []
    assert needed_libraries(tmp_path / "missing.so") == []


def test_session_options_are_applied():
    cfg = SessionConfig(intra_op_threads=1, graph_optimization="basic")
    opts = sess.session_options(cfg)
    assert opts.intra_op_num_threads == 1
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    d = Denoiser(device="cpu", session_config=cfg)
    assert d._session.get_session_options().intra_op_num_threads == 1


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (SessionConfig(intra_op_threads=-1), "intra_op_threads"),
        (SessionConfig(graph_optimization="max"), "graph_optimization 'max'"),
        (SessionConfig(cudnn_conv_algo_search="fast"), "cudnn_conv_algo_search 'fast'"),
        (SessionConfig(gpu_mem_limit_mb=-5), "gpu_mem_limit_mb"),
    ],
)
def test_bad_session_settings_are_named(cfg, message):
    with pytest.raises(ValueError, match=message):
        Denoiser(device="cpu", session_config=cfg)


def test_io_binding_gives_the_same_output(photo):
    """The I/O-binding path (used on CUDA) run on the CPU device gives the plain path's numbers."""
    bound = Denoiser(device="cpu", session_config=SessionConfig(io_binding=True))
    assert bound.io_binding and not photo.io_binding
    x = np.random.default_rng(0).random((3, 3, 20, 28), dtype=np.float32)
    np.testing.assert_array_equal(bound.denoise_nchw(x), photo.denoise_nchw(x))


def test_onnxruntime_failures_become_inference_errors(photo):
    with pytest.raises(InferenceError, match=r"onnxruntime failed on a 1×3×5×8 batch"):
        sess.run_model(photo._session, np.zeros((1, 3, 5, 8), np.float32))


def test_providers_are_read_back_from_the_session(photo):
    assert photo.providers == photo._session.get_providers() == [sess.CPU]
