"""Shared fixtures: seeded synthetic photos, a tiny trained model and its ONNX export."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
# device "auto" would time every installed CPU engine and may pick OpenVINO (test_probe.py tests
# that); the rest of the suite pins onnxruntime's numbers, in this process and its children
os.environ["N2N_ENGINE_PROBE"] = "0"


def synthetic_photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A uint8 H×W×3 image: a smooth colour gradient with flat rectangles on it."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = rng.uniform(0.2, 0.6, 3)
    img = base + 0.4 * np.stack([xx, yy, (xx + yy) / 2], axis=-1)
    for _ in range(8):
        y0, x0 = rng.integers(0, h - 8), rng.integers(0, w - 8)
        img[y0 : y0 + rng.integers(6, 24), x0 : x0 + rng.integers(6, 24)] = rng.uniform(0, 1, 3)
    return np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)


def denoise_in_two_threads(denoiser: object, images: list[np.ndarray]) -> list[np.ndarray]:
    """``denoiser.denoise`` of each image, the images split between two threads that share
    the one denoiser; results in input order."""
    import threading

    results: dict[int, np.ndarray] = {}

    def work(k: int) -> None:
        for i in range(k, len(images), 2):
            results[i] = denoiser.denoise(images[i])

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [results[i] for i in range(len(images))]


@pytest.fixture(scope="session")
def photos_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 6 seeded synthetic PNG photos, 96×96."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(synthetic_photo(rng, 96, 96)).save(folder / f"photo{i}.png")
    return folder


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, photos_dir: Path) -> dict:
    """A tiny UNet trained for about 5 s on the synthetic photos (Adam, sigma 25)."""
    import torch

    from n2n_train.config import TrainConfig, UNetConfig
    from n2n_train.data import PhotoPairs, load_photo_folder
    from n2n_train.loop import fit
    from n2n_train.noise import parse_noise
    from n2n_train.unet import UNet

    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(
        epochs=5,
        batch_size=16,
        steps_per_epoch=40,
        patch_size=32,
        optimizer="adam",
        lr=1e-3,
        noise="gaussian:25",
        seed=0,
    )
    data = PhotoPairs(
        load_photo_folder(photos_dir),
        parse_noise(cfg.noise),
        32,
        0.2,
        torch.Generator().manual_seed(0),
        val_patches=64,
    )
    torch.manual_seed(0)  # the weights' initialisation
    summary = fit(UNet(UNetConfig()), data, cfg, out, progress=False)
    return {"dir": out, "checkpoint": out / "best.pt", "summary": summary}


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory, tiny_run: dict) -> Path:
    """The tiny model exported to ONNX."""
    from n2n_export.exporter import export_onnx

    return export_onnx(tiny_run["checkpoint"], tmp_path_factory.mktemp("onnx") / "tiny.onnx")
