"""The path from :meth:`Denoiser.denoise` to the engine stays short (issue: one small image)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

import n2n_infer
from n2n_infer import Denoiser

RUNTIME = str(Path(n2n_infer.__file__).parent)
#: The runtime's own frames on the stack when the engine is entered, ``denoise`` included.
MAX_DEPTH = 4
#: Calls of the runtime's own code for one 64×96 image, ``denoise`` included.
MAX_CALLS = 19


def _own(frame: FrameType) -> bool:
    return frame.f_code.co_filename.startswith(RUNTIME)


def trace_denoise(d: Denoiser, image: np.ndarray) -> tuple[int, int]:
    """(own frames on the stack when ``InferenceSession.run`` is entered, own calls in all)."""
    calls = 0
    depths: list[int] = []

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal calls
        if event != "call":
            return
        if _own(frame):
            calls += 1
        elif frame.f_code.co_name == "run" and "onnxruntime" in frame.f_code.co_filename:
            depth, f = 0, frame.f_back
            while f is not None and f.f_code.co_name != "test_depth_probe_root":
                depth += _own(f)
                f = f.f_back
            depths.append(depth)

    def test_depth_probe_root() -> None:
        d.denoise(image)

    sys.setprofile(profile)
    try:
        test_depth_probe_root()
    finally:
        sys.setprofile(None)
    assert depths, "the engine was never entered"
    return max(depths), calls


def test_denoise_reaches_the_engine_in_few_frames_and_calls(photo: Denoiser) -> None:
    image = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    photo.denoise(image)  # first call of a size: nothing lazy left to import
    depth, calls = trace_denoise(photo, image)
    assert depth <= MAX_DEPTH, f"{depth} frames of n2n_infer deep when the engine is entered"
    assert calls <= MAX_CALLS, f"{calls} calls of n2n_infer's own code for one small image"


def test_open_engine_is_the_one_seam() -> None:
    from n2n_infer.engines import OrtEngine, open_engine
    from n2n_infer.registry import resolve_model
    from n2n_infer.session import tiny_input

    engine = open_engine(resolve_model("photo"), "cpu")
    assert isinstance(engine, OrtEngine) and engine.providers == ["CPUExecutionProvider"]
    x = tiny_input(8)
    assert engine.run(x).shape == x.shape and not engine.io_binding
