import logging

import numpy as np
import onnxruntime as ort
import pytest

from n2n_infer import Denoiser, ImageError, ModelLoadError, ProviderError, available_models


@pytest.fixture(scope="module")
def den(tiny_onnx):
    return Denoiser(tiny_onnx, device="cpu", batch_size=2)


@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (3, 4), (33, 47), (31, 17), (64, 64)])
def test_any_size_gives_same_shape_and_dtype(den, hw):
    img = np.random.default_rng(0).integers(0, 256, (*hw, 3), dtype=np.uint8)
    out = den.denoise(img)
    assert out.shape == img.shape and out.dtype == np.uint8


def test_padding_is_cropped_back_exactly(den):
    """An odd-sized image equals the top-left crop of its own reflect-padded run."""
    img = np.random.default_rng(1).integers(0, 256, (33, 47, 3), dtype=np.uint8)
    padded = np.pad(img, ((0, 3), (0, 1), (0, 0)), mode="reflect")
    assert np.array_equal(den.denoise(img), den.denoise(padded)[:33, :47])


def test_batch_keeps_order_and_matches_single_calls(den):
    rng = np.random.default_rng(2)
    imgs = [
        rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        for hw in [(16, 16), (9, 13), (16, 16), (16, 16), (9, 13)]
    ]
    outs = den.denoise_batch(imgs)
    for img, out in zip(imgs, outs, strict=True):
        assert np.array_equal(out, den.denoise(img))


@pytest.mark.parametrize(
    ("img", "message"),
    [
        (np.zeros((8, 8, 3), np.int16), "dtype int16 is not supported"),
        (np.zeros((8, 8, 3), np.float16), "dtype float16 is not supported"),
        (np.zeros((8, 8, 3), bool), "dtype bool is not supported"),
        (np.zeros((8,), np.uint8), "expected 2 or 3 dimensions"),
        (np.zeros((2, 8, 8, 3), np.uint8), "expected 2 or 3 dimensions"),
        (np.zeros((8, 8, 5), np.uint8), "expected 1, 3 or 4 channels"),
        (np.zeros((8, 8, 2), np.uint8), "expected 1, 3 or 4 channels"),
        (np.zeros((0, 8, 3), np.uint8), "empty"),
        (np.zeros((8, 0), np.uint16), "empty"),
        (np.full((4, 4, 3), np.nan, np.float32), "NaN or infinite"),
        (np.full((4, 4), np.inf, np.float64), "NaN or infinite"),
        (np.full((4, 4, 3), 1.5, np.float32), r"must lie in \[0, 1\]"),
        (np.full((4, 4, 3), -0.1, np.float64), r"must lie in \[0, 1\]"),
        ([[1, 2, 3]], "numpy array or PIL image"),
    ],
)
def test_bad_images_raise_image_error(den, img, message):
    with pytest.raises(ImageError, match=message):
        den.denoise(img)
    assert issubclass(ImageError, ValueError)


def test_cpu_providers_and_metadata(den):
    assert den.providers == ["CPUExecutionProvider"]
    assert den.stride == 4 and den.metadata["noise"] == "gaussian:25"


def test_denoising_improves_a_noisy_synthetic_image(den):
    from n2n_infer.metrics import psnr
    from tests.conftest import synthetic_photo

    rng = np.random.default_rng(3)
    clean = synthetic_photo(rng, 64, 80)
    noisy = np.clip(np.rint(clean + rng.normal(0, 25, clean.shape)), 0, 255).astype(np.uint8)
    assert psnr(den.denoise(noisy), clean) > psnr(noisy, clean) + 1


def test_bundled_default_model_is_found():
    assert "photo" in available_models()
    d = Denoiser(device="cpu")
    assert d.path.name == "photo.onnx" and d.stride == 4


def test_missing_corrupt_and_foreign_models(tmp_path, tiny_onnx):
    with pytest.raises(ModelLoadError, match="not found"):
        Denoiser(tmp_path / "none.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match=r"junk\.onnx: onnxruntime cannot load"):
        Denoiser(tmp_path / "junk.onnx")
    with pytest.raises(ModelLoadError, match="no bundled model of that name"):
        Denoiser("nosuchmodel")
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(tiny_onnx.read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match=r"cut\.onnx"):
        Denoiser(truncated)


def test_model_without_n2n_metadata_is_refused(tmp_path, tiny_onnx):
    import onnx

    model = onnx.load(str(tiny_onnx))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "bare.onnx"))
    with pytest.raises(ModelLoadError, match="not an n2n model"):
        Denoiser(tmp_path / "bare.onnx")


def test_unknown_format_version_is_refused(tmp_path, tiny_onnx):
    import onnx

    model = onnx.load(str(tiny_onnx))
    for p in model.metadata_props:
        if p.key == "n2n.format_version":
            p.value = "99"
    onnx.save(model, str(tmp_path / "future.onnx"))
    with pytest.raises(ModelLoadError, match="format version 99 is not supported"):
        Denoiser(tmp_path / "future.onnx")


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cpu:0", ""])
def test_bad_device_strings(tiny_onnx, device):
    with pytest.raises(ProviderError, match="expected 'auto', 'cpu', 'cuda', 'cuda:N'"):
        Denoiser(tiny_onnx, device=device)


def _cuda_works(path) -> bool:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    sess = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider"])
    return "CUDAExecutionProvider" in sess.get_providers()


def test_auto_falls_back_to_cpu_and_says_why(tiny_onnx, caplog):
    """With a driver, a CUDA that cannot start is a warning; without one, an INFO line."""
    from n2n_infer.providers import nvidia_driver_present

    if _cuda_works(tiny_onnx):
        pytest.skip("a usable GPU is present")
    with caplog.at_level(logging.INFO, logger="n2n_infer"):
        d = Denoiser(tiny_onnx, device="auto")
    assert d.providers == ["CPUExecutionProvider"]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    if "CUDAExecutionProvider" in ort.get_available_providers() and nvidia_driver_present():
        assert "running on CPU" in caplog.text and len(warnings) == 1
    else:
        assert not warnings


def test_explicit_cuda_without_a_gpu_is_an_error(tiny_onnx):
    if _cuda_works(tiny_onnx):
        pytest.skip("a usable GPU is present")
    with pytest.raises(ProviderError, match="cuda"):
        Denoiser(tiny_onnx, device="cuda")


def _graph_with_n2n_metadata(tmp_path, name, in_name, elem_type, shape):
    """A one-node (Identity) ONNX model carrying the bundled model's n2n metadata."""
    import onnx
    from onnx import TensorProto, helper

    from n2n_infer.registry import resolve_model

    inp = helper.make_tensor_value_info(in_name, getattr(TensorProto, elem_type), shape)
    out = helper.make_tensor_value_info("denoised", getattr(TensorProto, elem_type), shape)
    graph = helper.make_graph(
        [helper.make_node("Identity", [in_name], ["denoised"])], "g", [inp], [out]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    for p in onnx.load(str(resolve_model(None))).metadata_props:
        model.metadata_props.add(key=p.key, value=p.value)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    ("in_name", "elem_type", "shape", "message"),
    [
        ("image", "FLOAT", ["N", 3, "H", "W"], "expected input 'noisy' and output 'denoised'"),
        ("noisy", "FLOAT16", ["N", 3, "H", "W"], "must be float32, found tensor"),
        ("noisy", "FLOAT", ["N", 1, "H", "W"], r"must be N×3×H×W, found shape \['N', 1"),
        ("noisy", "FLOAT", ["N", "H", "W"], "must be N×3×H×W"),
    ],
)
def test_wrong_signature_models_are_refused(tmp_path, in_name, elem_type, shape, message):
    path = _graph_with_n2n_metadata(tmp_path, "wrong.onnx", in_name, elem_type, shape)
    with pytest.raises(ModelLoadError, match=rf"wrong\.onnx: .*{message}"):
        Denoiser(path, device="cpu")
