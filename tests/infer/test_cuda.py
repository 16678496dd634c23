"""The CUDA path on a real GPU. Marked ``cuda``: skipped, with the reason, where
onnxruntime cannot run the model on CUDA (every CI machine); scripts/gpu_check.sh
runs them on a machine with an NVIDIA GPU (``pytest -m cuda``).

Tolerances: CUDA's convolutions use TF32 by default and other kernels than the
CPU's, so outputs agree to about 1e-3, not bit for bit; denoised uint8 images
may differ by one level, and PSNR on the examples by far less than 0.01 dB.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from n2n_infer import Denoiser, InferenceError, ProviderError, SessionConfig
from n2n_infer.metrics import psnr
from n2n_infer.providers import CUDA
from n2n_infer.registry import available_models, resolve_model
from tests.conftest import REPO, denoise_in_two_threads, synthetic_photo

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def gpu() -> Denoiser:
    """The default model on CUDA, or a skip that says why CUDA is not usable here."""
    try:
        return Denoiser(device="cuda")
    except ProviderError as exc:
        pytest.skip(f"CUDA is not usable here: {exc}")


@pytest.fixture(scope="module")
def cpu() -> Denoiser:
    return Denoiser(device="cpu")


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    clean = synthetic_photo(rng, h, w).astype(np.float64)
    return np.clip(np.rint(clean + rng.normal(0, 25, clean.shape)), 0, 255).astype(np.uint8)


def test_cuda_runs_the_model_without_binding_or_buckets(gpu: Denoiser) -> None:
    assert gpu.providers[0] == CUDA
    assert not gpu.io_binding and gpu.pad_multiple == gpu.stride


@pytest.mark.parametrize("name", available_models())
def test_every_shipped_model_matches_the_cpu(gpu: Denoiser, name: str) -> None:
    on_gpu, on_cpu = Denoiser(name, device="cuda"), Denoiser(name, device="cpu")
    x = photo(256, 384).astype(np.float32)[None].transpose(0, 3, 1, 2) / 255
    diff = np.abs(on_gpu.denoise_nchw(x) - on_cpu.denoise_nchw(x)).max()
    assert diff < 5e-3, f"{name}: CUDA differs from the CPU by {diff:.2e}"


def test_uint8_results_and_psnr_match_the_cpu(gpu: Denoiser, cpu: Denoiser) -> None:
    rng = np.random.default_rng(3)
    clean = synthetic_photo(rng, 300, 420)
    noisy = photo(300, 420, seed=3)
    a, b = gpu.denoise(noisy), cpu.denoise(noisy)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert abs(psnr(a, clean) - psnr(b, clean)) < 0.01


def test_tiled_equals_untiled_on_cuda(gpu: Denoiser) -> None:
    d = Denoiser(device="cuda", tile_size=256)
    img = photo(640, 896, seed=1)  # multiples of 64: the shape bucket adds no padding
    untiled, tiled = d.denoise(img, tile=False), d.denoise(img, tile=True)
    assert np.abs(untiled.astype(int) - tiled.astype(int)).max() <= 1


def test_binding_on_and_off_agree(gpu: Denoiser) -> None:
    on = Denoiser(device="cuda", session_config=SessionConfig(io_binding=True))
    assert on.io_binding
    x = photo(200, 300, seed=2).astype(np.float32)[None].transpose(0, 3, 1, 2) / 255
    assert np.abs(gpu.denoise_nchw(x) - on.denoise_nchw(x)).max() < 1e-5


def test_ensemble_matches_the_cpu(gpu: Denoiser) -> None:
    img = photo(120, 200, seed=4)
    a = Denoiser(device="cuda", ensemble=8).denoise(img)
    b = Denoiser(device="cpu", ensemble=8).denoise(img)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_out_of_memory_under_a_cap_is_an_inference_error(gpu: Denoiser) -> None:
    d = Denoiser(device="cuda", session_config=SessionConfig(gpu_mem_limit_mb=64))
    with pytest.raises(InferenceError, match=r"photo\.onnx"):
        d.denoise(np.full((2160, 3840, 3), 128, np.uint8), tile=False)
    assert d.denoise(photo(64, 64)).shape == (64, 64, 3)  # the session still works after


def test_a_device_that_does_not_exist_is_a_provider_error(gpu: Denoiser) -> None:
    with pytest.raises(ProviderError, match="cuda:7"):
        Denoiser(device="cuda:7")


def test_two_threads_on_one_denoiser(gpu: Denoiser) -> None:
    imgs = [photo(200 + 32 * i, 256, seed=i) for i in range(6)]
    serial = [gpu.denoise(x) for x in imgs]
    together = denoise_in_two_threads(gpu, imgs)
    assert all(np.array_equal(a, b) for a, b in zip(together, serial, strict=True))


def test_every_node_runs_on_cuda(gpu: Denoiser, tmp_path: Path) -> None:
    from n2n_infer.session import session_options

    opts = session_options(SessionConfig())
    opts.enable_profiling = True
    opts.profile_file_prefix = str(tmp_path / "profile")
    sess = ort.InferenceSession(
        str(resolve_model(None)), sess_options=opts, providers=[CUDA, "CPUExecutionProvider"]
    )
    sess.run(None, {"noisy": np.zeros((1, 3, 64, 64), np.float32)})
    events = json.loads(Path(sess.end_profiling()).read_text())
    on_cpu = {
        e["args"].get("op_name")
        for e in events
        if e.get("cat") == "Node" and e.get("args", {}).get("provider") == "CPUExecutionProvider"
    }
    assert not on_cpu, f"nodes left on the CPU: {sorted(on_cpu)}"


def test_batch_cli_on_cuda(gpu: Denoiser, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "n2n_infer.cli", "batch", str(REPO / "examples" / "noisy"),
         str(out), "--device", "cuda"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        p.name for p in (REPO / "examples" / "noisy").iterdir()
    )


def gpu_memory_mib() -> float:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return float(out.stdout.split()[0])


def test_with_arena_shrinking_memory_does_not_grow_with_sizes(gpu: Denoiser) -> None:
    """Without it, 30 sizes up to 1400×1400 left 5 GiB held on an H200 (gpu.md)."""
    d = Denoiser(device="cuda", session_config=SessionConfig(gpu_arena_shrink=True))
    rng = np.random.default_rng(2)
    sizes = [tuple(int(v) for v in rng.integers(64, 1400, 2)) for _ in range(20)]
    for h, w in sizes[:5]:
        d.denoise(np.full((h, w, 3), 128, np.uint8))
    after_5 = gpu_memory_mib()
    for h, w in sizes[5:]:
        d.denoise(np.full((h, w, 3), 128, np.uint8))
    assert gpu_memory_mib() - after_5 < 128


def test_tiles_fit_under_a_cap_that_an_untiled_call_exceeds(gpu: Denoiser) -> None:
    cfg = SessionConfig(gpu_mem_limit_mb=1024)
    d = Denoiser(device="cuda", session_config=cfg, batch_size=1, tile_size=512)
    img = photo(1500, 2000, seed=5)
    with pytest.raises(InferenceError, match="out of memory: tile the image"):
        d.denoise(img, tile=False)
    assert d.denoise(img, tile=True).shape == img.shape
