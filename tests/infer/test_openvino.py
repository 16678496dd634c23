"""The OpenVINO backend (``device="openvino"``): the parity gate against onnxruntime's CPU
path, and its errors. Needs ``openvino`` (in the dev extra, so CI runs the gate)."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from n2n_infer import Denoiser, ModelLoadError, ProviderError, ov_backend
from n2n_infer.metrics import psnr
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
    x = np.random.default_rng(1).random((3, ort_d.channels, 45, 70), dtype=np.float32)  # padded
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


#: Measured 2026-12-01 on an Intel Xeon with AVX-512 BF16 (OpenVINO 2026.4.1), against
#: onnxruntime fp32: largest float difference 0.0069, 8-bit outputs at most 2 levels apart,
#: PSNR against the clean image at most 0.014 dB lower (bench/results/throughput.md: 0.006 dB
#: on the held-out photos).
BF16_TOLERANCE, BF16_LEVELS, BF16_DB = 0.02, 3, 0.02
HAS_BF16 = "BF16" in ov_backend.cpu_capabilities()


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no native bf16 (OpenVINO's capabilities)")
@pytest.mark.parametrize("name", available_models())
def test_bf16_parity_gate_for_every_shipped_model(name: str) -> None:
    bf16, fp32 = Denoiser(name, device="openvino:bf16"), Denoiser(name, device="cpu")
    assert bf16.providers == ["OpenVINO CPU bf16"]
    x = np.random.default_rng(1).random((3, fp32.channels, 45, 70), dtype=np.float32)
    assert np.abs(bf16.denoise_nchw(x) - fp32.denoise_nchw(x)).max() < BF16_TOLERANCE
    for seed in range(3):
        rng = np.random.default_rng(seed)
        clean = synthetic_photo(rng, 120, 160)
        img = np.clip(np.rint(clean + rng.normal(0, 25, clean.shape)), 0, 255).astype(np.uint8)
        out_bf16, out_fp32 = bf16.denoise(img), fp32.denoise(img)
        assert np.abs(out_bf16.astype(int) - out_fp32.astype(int)).max() <= BF16_LEVELS
        assert psnr(out_fp32, clean) - psnr(out_bf16, clean) <= BF16_DB


@pytest.mark.skipif(HAS_BF16, reason="this CPU has native bf16: the parity gate runs instead")
def test_bf16_on_a_cpu_without_it_is_refused() -> None:
    with pytest.raises(ProviderError, match=r"openvino:bf16.*no native bf16.*FP32"):
        Denoiser(device="openvino:bf16")


@pytest.mark.parametrize(
    ("spelling", "accepted"),
    [("bf16", True), ("<Type: 'bfloat16'>", True), ("f32", False), ("<Type: 'float32'>", False)],
)
def test_bf16_is_recognised_however_openvino_spells_it(
    monkeypatch: pytest.MonkeyPatch, spelling: str, accepted: bool
) -> None:
    """OpenVINO 2026.4 on a CPU with bf16 reports ``<Type: 'bfloat16'>``, not ``bf16``."""
    real = ov_backend._core()

    class Compiled:
        def __init__(self, compiled: object) -> None:
            self._compiled = compiled

        def get_property(self, key: str) -> object:
            return (
                spelling if key == "INFERENCE_PRECISION_HINT" else self._compiled.get_property(key)
            )

        def __getattr__(self, name: str) -> object:
            return getattr(self._compiled, name)

    class Core:
        def compile_model(self, path: str, device: str, config: dict) -> Compiled:
            return Compiled(
                real.compile_model(path, device, {**config, "INFERENCE_PRECISION_HINT": "f32"})
            )

        def get_property(self, *a: object) -> object:
            return real.get_property(*a)

    monkeypatch.setattr(ov_backend, "_core", Core)
    if accepted:
        assert Denoiser(device="openvino:bf16").providers == ["OpenVINO CPU bf16"]
    else:
        with pytest.raises(ProviderError, match="no native bf16"):
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


@pytest.mark.parametrize("threads", [1, 2])
def test_a_batch_gives_the_outputs_of_its_images_one_by_one(threads: int) -> None:
    d = Denoiser(device="openvino", intra_op_threads=threads)
    x = np.stack([noisy(32, 48, seed=k).transpose(2, 0, 1) / 255 for k in range(3)])
    x = x.astype(np.float32)
    together = d.denoise_nchw(x)
    alone = np.concatenate([d.denoise_nchw(x[k : k + 1]) for k in range(3)])
    assert np.abs(together - alone).max() < FLOAT_TOLERANCE
    assert np.abs(together - Denoiser(device="cpu").denoise_nchw(x)).max() < FLOAT_TOLERANCE
