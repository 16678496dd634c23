"""What the CUDA path does when CUDA fails late (at session creation or at the first
kernel), exercised on the CPU with onnxruntime's session replaced by fakes that fail as
the CUDA provider does: nothing printed, ``auto`` goes on on the CPU with one warning,
``cuda`` raises ``ProviderError``, and a broken model is still a ``ModelLoadError``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from n2n_infer import Denoiser, ModelLoadError, ProviderError, SessionConfig
from n2n_infer import providers as prov

REAL_SESSION = ort.InferenceSession


@pytest.fixture
def driver(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with an NVIDIA driver and an onnxruntime that lists CUDA."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: [prov.CUDA, prov.CPU])
    monkeypatch.setattr(prov, "nvidia_driver_present", lambda: True)
    monkeypatch.setattr(prov, "missing_cuda_libraries", lambda: [])


@pytest.fixture
def creation_fails(monkeypatch: pytest.MonkeyPatch, driver: None) -> list[list]:
    """CUDA sessions fail to be created the way an old driver makes them fail; returns the
    provider lists asked for."""
    asked: list[list] = []

    def fake(path: str, sess_options: object = None, providers: list | None = None, **kw: object):
        asked.append(list(providers or []))
        if providers and providers != [prov.CPU]:
            assert kw.get("enable_fallback") == 0  # onnxruntime's own fallback prints
            print("*************** EP Error ***************")  # what onnxruntime would print
            raise RuntimeError(
                "CUDA failure 35: CUDA driver version is insufficient for CUDA runtime version\n"
                "more lines"
            )
        return REAL_SESSION(path, sess_options=sess_options, providers=providers, **kw)

    monkeypatch.setattr(ort, "InferenceSession", fake)
    return asked


class FirstKernelFails:
    """A real CPU session that says it runs on CUDA and fails every run, as a CUDA session
    does when cuDNN is missing (it is loaded at the first convolution)."""

    def __init__(self, path: str, sess_options: object = None, **kw: object) -> None:
        self._real = REAL_SESSION(path, sess_options=sess_options, providers=[prov.CPU])

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    def get_providers(self) -> list[str]:
        return [prov.CUDA, prov.CPU]

    def get_provider_options(self) -> dict:
        return {prov.CUDA: {"device_id": "0"}}

    def run(self, *a: object, **k: object) -> None:
        raise RuntimeError("CUDNN failure 4: CUDNN_STATUS_INTERNAL_ERROR ; GPU=0\nmore")

    def io_binding(self) -> None:
        raise RuntimeError("CUDNN failure 4: CUDNN_STATUS_INTERNAL_ERROR ; GPU=0\nmore")


@pytest.fixture
def first_kernel_fails(monkeypatch: pytest.MonkeyPatch, driver: None) -> None:
    def fake(path: str, sess_options: object = None, providers: list | None = None, **kw: object):
        if providers and providers != [prov.CPU]:
            return FirstKernelFails(path, sess_options)
        return REAL_SESSION(path, sess_options=sess_options, providers=providers, **kw)

    monkeypatch.setattr(ort, "InferenceSession", fake)


def test_auto_falls_back_when_the_cuda_session_cannot_be_created(
    creation_fails: list, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="n2n_infer"):
        d = Denoiser(device="auto")
    assert d.providers == [prov.CPU]
    assert creation_fails[-1] == [prov.CPU] and prov.CUDA in str(creation_fails[0])
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "CUDA driver version is insufficient" in warnings[0] and "more lines" not in warnings[0]
    assert capsys.readouterr().out == ""  # onnxruntime's banner does not reach stdout


def test_cuda_that_cannot_create_a_session_is_a_provider_error(
    creation_fails: list, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(ProviderError, match=r"device 'cuda:0'.*driver version is insufficient"):
        Denoiser(device="cuda:0")
    assert capsys.readouterr().out == ""


def test_a_broken_model_is_a_model_error_even_when_cuda_fails_too(
    creation_fails: list, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match=r"bad\.onnx: onnxruntime cannot load this model"):
        Denoiser(bad, device="auto")
    with pytest.raises(ModelLoadError, match=r"bad\.onnx"):
        Denoiser(bad, device="cuda")


def test_auto_falls_back_when_the_first_cuda_run_fails(
    first_kernel_fails: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="n2n_infer"):
        d = Denoiser(device="auto")
    assert d.providers == [prov.CPU] and not d.io_binding
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "CUDAExecutionProvider failed its first run" in warning
    assert "CUDNN_STATUS_INTERNAL_ERROR" in warning and "more" not in warning.split("GPU=0")[1]
    noisy = np.full((8, 8, 3), 100, np.uint8)
    assert d.denoise(noisy).shape == (8, 8, 3)


def test_cuda_whose_first_run_fails_is_a_provider_error(first_kernel_fails: None) -> None:
    match = r"device 'cuda': the first run of photo\.onnx on CUDA.*CUDNN"
    with pytest.raises(ProviderError, match=match):
        Denoiser(device="cuda")


def test_preload_messages_do_not_reach_stdout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(prov.importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setattr(
        ort, "preload_dlls", lambda: print("Failed to load libcublasLt.so.13"), raising=False
    )
    with caplog.at_level(logging.DEBUG, logger="n2n_infer"):
        prov.preload_cuda_libraries()
    assert capsys.readouterr().out == ""
    assert any("libcublasLt.so.13" in r.getMessage() for r in caplog.records)


def _shapes_run(monkeypatch: pytest.MonkeyPatch, *denoisers: Denoiser) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    for d in denoisers:
        real = d._run

        def recording(noisy: np.ndarray, real=real) -> np.ndarray:
            shapes.append(noisy.shape)
            return real(noisy)

        monkeypatch.setattr(d, "_run", recording)
    return shapes


def test_shape_buckets_pad_untiled_images_and_crop_back(monkeypatch: pytest.MonkeyPatch) -> None:
    plain, bucketed = (
        Denoiser(device="cpu"),
        Denoiser(device="cpu", session_config=SessionConfig(shape_bucket=64)),
    )
    assert plain.pad_multiple == plain.stride and bucketed.pad_multiple == 64
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    shapes = _shapes_run(monkeypatch, plain, bucketed)
    out_plain, out_bucketed = plain.denoise(img), bucketed.denoise(img)
    s = plain.stride
    assert shapes[0][2:] == (-(-50 // s) * s, -(-70 // s) * s) and shapes[1][2:] == (64, 128)
    assert out_bucketed.shape == img.shape
    # more reflected border changes pixels near the bottom and right edges only, and little
    diff = np.abs(out_plain.astype(int) - out_bucketed.astype(int))
    assert diff[:30, :50].max() <= 1 and diff.mean() < 1.0


def test_buckets_and_binding_are_off_by_default_on_cuda_too(first_kernel_fails: None) -> None:
    """Measured on an H200 (bench/results/gpu.md): neither made CUDA faster."""
    d = Denoiser(device="cpu")
    assert d.pad_multiple == d.stride and not d.io_binding


@pytest.mark.parametrize("bucket", [0, -8, 2048])
def test_bad_shape_buckets_are_named(bucket: int) -> None:
    with pytest.raises(ValueError, match=r"shape_bucket must be in 1\.\.1024"):
        Denoiser(device="cpu", session_config=SessionConfig(shape_bucket=bucket))
