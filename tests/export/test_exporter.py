import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from n2n_infer import metadata as md
from n2n_train.checkpoint import load_checkpoint
from tests.conftest import REPO


def test_one_self_contained_file_that_passes_the_checker(tiny_onnx):
    assert [p.name for p in tiny_onnx.parent.iterdir()] == [tiny_onnx.name]
    model = onnx.load(str(tiny_onnx), load_external_data=False)
    assert not any(onnx.external_data_helper.uses_external_data(t) for t in model.graph.initializer)
    onnx.checker.check_model(model, full_check=True)


def test_signature_is_dynamic_nchw(tiny_onnx):
    model = onnx.load(str(tiny_onnx))
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("noisy", "denoised")
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))


@pytest.mark.parametrize("shape", [(1, 3, 4, 4), (3, 3, 32, 48), (2, 3, 68, 20)])
def test_runs_on_any_batch_and_stride_multiple(tiny_onnx, shape):
    sess = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"noisy": np.random.default_rng(0).random(shape, dtype=np.float32)})[0]
    assert out.shape == shape and out.min() >= 0 and out.max() <= 1


def test_metadata_round_trips_the_config(tiny_onnx, tiny_run):
    props = {p.key: p.value for p in onnx.load(str(tiny_onnx)).metadata_props}
    info = md.ModelInfo.from_props(props, tiny_onnx)
    ckpt = load_checkpoint(tiny_run["checkpoint"])
    assert info.stride == ckpt.config.stride == 4
    assert info.format_version == md.FORMAT_VERSION
    assert info.config == ckpt.config.to_dict()
    assert info.noise == "gaussian:25"
    assert (info.architecture, info.channels, info.grey) == ("unet", 3, "phases")
    assert info.receptive_radius == ckpt.config.receptive_radius
    assert info.noise_description == "Gaussian noise, sigma 25 (of 255)"
    assert set(info.exporter) >= {"torch", "onnx", "opset"}
    assert len(props[md.KEY_CHECKPOINT_SHA256]) == 64
    assert json.loads(props[md.KEY_TRAINING])["best_epoch"] == ckpt.summary["best_epoch"]


def test_deep_models_get_tiles_wide_enough_for_their_overlap(tmp_path):
    """4 levels of 2 convolutions need a 256-pixel overlap: the default tile grows to fit."""
    import torch

    from n2n_export.exporter import export_onnx
    from n2n_infer import Denoiser
    from n2n_train.checkpoint import save_checkpoint
    from n2n_train.config import UNetConfig
    from n2n_train.unet import UNet

    torch.manual_seed(0)
    cfg = UNetConfig(features=(4, 8, 16, 32), convs_per_level=2, residual=True)
    ckpt = save_checkpoint(tmp_path / "deep.pt", UNet(cfg), {})
    d = Denoiser(export_onnx(ckpt, tmp_path / "deep.onnx"), device="cpu")
    assert (d.tiles.overlap, d.tiles.size) == (256, 1024)
    img = np.random.default_rng(0).integers(0, 256, (1040, 96, 3), dtype=np.uint8)
    tiled = d.denoise(img, tile=True).astype(int)
    assert np.abs(tiled - d.denoise(img, tile=False).astype(int)).max() <= 1
    with pytest.raises(ValueError, match="must exceed twice the tile overlap"):
        Denoiser(d.path, device="cpu", tile_size=512)


def test_a_model_trained_on_grey_patches_gets_grey_images_copied_into_rgb(tmp_path):
    """The training summary travels into the ONNX file; ``grey="auto"`` reads it."""
    import torch

    from n2n_export.exporter import export_onnx
    from n2n_infer import Denoiser
    from n2n_train.checkpoint import save_checkpoint
    from n2n_train.config import TrainConfig, UNetConfig
    from n2n_train.unet import UNet

    torch.manual_seed(0)
    net = UNet(UNetConfig(features=(4, 8)))
    modes = {}
    for fraction in (0.0, 0.3):
        cfg = TrainConfig(noise="gaussian:0-50", grey_fraction=fraction)
        summary = {"noise": cfg.noise, "train_config": cfg.to_dict()}
        ckpt = save_checkpoint(tmp_path / f"g{fraction}.pt", net, summary)
        onnx_path = export_onnx(ckpt, tmp_path / f"g{fraction}.onnx")
        modes[fraction] = Denoiser(onnx_path, device="cpu").grey
    assert modes == {0.0: "phases", 0.3: "replicate"}


def test_a_failed_metadata_update_leaves_the_model_and_no_temporary_file(
    tiny_onnx, tmp_path, monkeypatch
):
    import shutil

    import n2n_export.exporter as exporter
    from n2n_infer.files import is_temp_name, write_atomic

    model = shutil.copy(tiny_onnx, tmp_path / "m.onnx")
    before = model.read_bytes()
    seen = []

    def interrupted(path, write):  # n2n_infer.files.write_atomic, cut short after writing
        def write_then_fail(f):
            seen.extend(p.name for p in tmp_path.iterdir() if p.name != "m.onnx")
            write(f)
            raise OSError("disk full")

        write_atomic(path, write_then_fail)

    monkeypatch.setattr(exporter, "write_atomic", interrupted)  # the exporter's one way to write
    with pytest.raises(OSError, match="disk full"):
        exporter.update_metadata(model, {"n2n.extra": "x"})
    assert model.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    assert len(seen) == 1 and is_temp_name(seen[0])


@pytest.mark.parametrize("which", ["exported", "photo", "seedlike"])
def test_no_node_carries_torchs_stack_traces_or_a_machine_path(tiny_onnx, which):
    """torch records each node's Python stack trace (with the exporting machine's source
    paths) in node metadata: the exporter removes it, and the shipped models have none."""
    from n2n_infer.registry import resolve_model

    path = tiny_onnx if which == "exported" else resolve_model(which)
    model = onnx.load(str(path))
    assert all(len(node.metadata_props) == 0 for node in model.graph.node)
    data = path.read_bytes()
    assert b"stack_trace" not in data and str(REPO).encode() not in data
