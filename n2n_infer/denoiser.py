"""The :class:`Denoiser`: numpy images in, denoised numpy images out."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from n2n_infer.errors import ImageError, ModelLoadError
from n2n_infer.metadata import INPUT_NAME, OUTPUT_NAME, ModelInfo
from n2n_infer.padding import crop, pad_to_multiple
from n2n_infer.registry import resolve_model
from n2n_infer.session import create_session

log = logging.getLogger(__name__)


class Denoiser:
    """Denoise images with an n2n ONNX model on CUDA or the CPU.

    Args:
        model: a bundled model name (``"photo"``), a path to an ``.onnx`` file, or
            ``None`` for the bundled default.
        device: ``"auto"`` (CUDA when usable, else CPU, with a warning),
            ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (an error if CUDA cannot be used).
        batch_size: images run together in one call to the model.
        intra_op_threads: CPU threads per call; 0 lets onnxruntime choose.

    Raises:
        ModelLoadError: missing or corrupt file, not an n2n model, unknown
            metadata format version, or unexpected inputs/outputs.
        ProviderError: CUDA was asked for explicitly and cannot be used.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        device: str = "auto",
        batch_size: int = 8,
        intra_op_threads: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.path = resolve_model(model)
        self.batch_size = batch_size
        self._session = create_session(self.path, device, intra_op_threads)
        props = self._session.get_modelmeta().custom_metadata_map
        self.info = ModelInfo.from_props(dict(props), self.path)
        _check_signature(self._session, self.path)

    @property
    def providers(self) -> list[str]:
        """The execution providers the session really uses, in order."""
        return list(self._session.get_providers())

    @property
    def metadata(self) -> dict[str, Any]:
        """The model's metadata as a dict (JSON values decoded)."""
        return {
            "name": self.info.name,
            "format_version": self.info.format_version,
            "stride": self.info.stride,
            "noise": self.info.noise,
            "config": self.info.config,
            "training": self.info.training,
            "psnr": self.info.psnr,
            "exporter": self.info.exporter,
        }

    @property
    def stride(self) -> int:
        """Heights and widths are padded to multiples of this before the model runs."""
        return self.info.stride

    def denoise(self, image: np.ndarray) -> np.ndarray:
        """Denoise one H×W×3 uint8 RGB image; returns uint8 H×W×3.

        Any H, W ≥ 1 works: the image is reflect-padded to the model's stride and
        cropped back. Raises :class:`ImageError` for any other shape or dtype.
        """
        return self.denoise_batch([image])[0]

    def denoise_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Denoise a list of H×W×3 uint8 images (sizes may differ); results in order.

        Images of one size run together in batches of ``batch_size``.
        """
        arrays = [_check_image(img, i) for i, img in enumerate(images)]
        out: list[np.ndarray | None] = [None] * len(arrays)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, arr in enumerate(arrays):
            groups.setdefault(arr.shape, []).append(i)
        for idx in groups.values():
            nchw = np.stack([arrays[i] for i in idx]).transpose(0, 3, 1, 2)
            denoised = self.denoise_nchw(nchw.astype(np.float32) / np.float32(255.0))
            u8 = np.rint(np.clip(denoised, 0.0, 1.0) * 255.0).astype(np.uint8)
            for k, i in enumerate(idx):
                out[i] = np.ascontiguousarray(u8[k].transpose(1, 2, 0))
        return [o for o in out if o is not None]

    def denoise_nchw(self, noisy: np.ndarray) -> np.ndarray:
        """Run the model on float32 N×3×H×W RGB in [0, 1]; returns the raw output.

        The output has the input's shape and is not clipped (this is what the
        export parity check compares with torch). Any H, W ≥ 1 is accepted.
        """
        if noisy.ndim != 4 or noisy.shape[1] != 3 or noisy.dtype != np.float32:
            raise ImageError(
                f"denoise_nchw expects float32 N×3×H×W, got {noisy.dtype} {noisy.shape}"
            )
        padded, size = pad_to_multiple(noisy, self.stride)
        parts = [
            self._session.run([OUTPUT_NAME], {INPUT_NAME: padded[i : i + self.batch_size]})[0]
            for i in range(0, len(padded), self.batch_size)
        ]
        return np.ascontiguousarray(crop(np.concatenate(parts), size))

    def __repr__(self) -> str:
        return f"Denoiser({str(self.path)!r}, providers={self.providers})"


def _check_image(img: object, index: int) -> np.ndarray:
    if not isinstance(img, np.ndarray):
        raise ImageError(f"image {index}: expected a numpy array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise ImageError(f"image {index}: expected dtype uint8, got {img.dtype}")
    if img.ndim != 3 or img.shape[2] != 3:
        raise ImageError(f"image {index}: expected shape H×W×3 (RGB), got {img.shape}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ImageError(f"image {index}: empty image of shape {img.shape}")
    return img


def _check_signature(session: Any, path: Path) -> None:
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    if INPUT_NAME not in inputs or OUTPUT_NAME not in outputs:
        raise ModelLoadError(
            f"{path}: expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}, found "
            f"inputs {sorted(inputs)} and outputs {sorted(outputs)}"
        )
    if inputs[INPUT_NAME].type != "tensor(float)":
        raise ModelLoadError(
            f"{path}: input {INPUT_NAME!r} must be float32, found {inputs[INPUT_NAME].type}"
        )
