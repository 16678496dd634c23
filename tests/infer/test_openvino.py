"""The OpenVINO backend (``device="openvino"``): the parity gate against onnxruntime's CPU
path, and its errors. Needs ``openvino`` (in the dev extra, so CI runs the gate)."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from n2n_infer import Denoiser, ModelLoadError, ProviderError, ov_backend
from n2n_infer.providers import parse_device
from n2n_infer.registry import available_models
from tests.conftest import denoise_in_two_threads, synthetic_photo

ov = pytest.importorskip("openvino")

#: Measured 2026-11-30 on this project's CPU (float32 both ways): largest difference 8.3e-7.
FLOAT_TOLERANCE = 1e-4


def noisy(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    clean = synthetic_photo(rng, h, w).astype(float)
    return np.clip(np.rint(clean + rng.normal(0, 25, clean.shape)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", available_models())
def test_parity_with_onnxruntime_for_every_shipped_model(name: str) -> None:
    ov_d, ort_d = Denoiser(name, device="openvino"), Denoiser(name, device="cpu")
    assert ov_d.providers == ["OpenVINO CPU f32"]
    x = np.random.default_rng(1).random((3, 3, 45, 70), dtype=np.float32)  # padded sizes
    assert np.abs(ov_d.denoise_nchw(x) - ort_d.denoise_nchw(x)).max() < FLOAT_TOLERANCE
    img = noisy(90, 130)
    assert np.abs(ov_d.denoise(img).astype(int) - ort_d.denoise(img).astype(int)).max() <= 1


def test_tiles_metadata_and_threads() -> None:
    d = Denoiser(device="openvino", intra_op_threads=1, tile_size=256)
    assert d.metadata["name"] == "photo" and not d.io_binding
    img = noisy(300, 420, seed=2)
    untiled, tiled = d.denoise(img, tile=False), d.denoise(img, tile=True)
    assert np.abs(untiled.astype(int) - tiled.astype(int)).max() <= 1


def test_two_threads_share_one_denoiser() -> None:
    d = Denoiser(device="openvino")
    imgs = [noisy(40 + 8 * i, 48, seed=i) for i in range(6)]
    serial = [d.denoise(x) for x in imgs]
    together = denoise_in_two_threads(d, imgs)
    assert all(np.array_equal(a, b) for a, b in zip(together, serial, strict=True))


def test_bf16_on_a_cpu_without_it_is_refused() -> None:
    if "BF16" in ov_backend.cpu_capabilities():
        d = Denoiser(device="openvino:bf16")
        assert d.providers == ["OpenVINO CPU bf16"]
        return
    with pytest.raises(ProviderError, match=r"openvino:bf16.*no native bf16.*FP32"):
        Denoiser(device="openvino:bf16")


@pytest.mark.parametrize("device", ["openvino:fp16", "openvino:", "openvino:0"])
def test_bad_openvino_devices_are_named(device: str) -> None:
    with pytest.raises(ProviderError, match="'openvino:f32' or 'openvino:bf16'"):
        parse_device(device)


def test_without_openvino_installed_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = builtins.__import__

    def no_openvino(name: str, *a: object, **k: object) -> object:
        if name == "openvino":
            raise ImportError("No module named 'openvino'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    with pytest.raises(ProviderError, match=r"pip install 'n2n\[openvino\]'"):
        Denoiser(device="openvino")


def test_a_model_openvino_cannot_compile_is_a_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def compile_model(self, *a: object) -> None:
            raise RuntimeError("Exception from src/inference: unsupported op\nmore")

    monkeypatch.setattr(ov_backend, "_core", Broken)
    with pytest.raises(ModelLoadError, match=r"photo\.onnx: OpenVINO cannot compile this model: "):
        Denoiser(device="openvino")


def test_auto_never_picks_openvino() -> None:
    assert Denoiser(device="auto").providers[0] != "OpenVINO CPU f32"
