"""Z-context models at run time: the neighbour rule, format 3, arrays and stack files.

The end-to-end fixture trains a tiny z-context model (K = 1) for a few steps on noisy
ZYX stack pairs, exports it (with its parity check) and runs it through ``Denoiser``
and ``n2n-infer batch``.
"""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image

from n2n_infer import Denoiser, ImageError, ModelLoadError, ProviderError, stacks
from n2n_infer import metadata as md
from n2n_infer.cli import main as infer_main
from n2n_infer.stacks import context_indices

K = 1
SIDE = 40


def _smooth_volume(rng: np.random.Generator, depth: int, h: int, w: int) -> np.ndarray:
    """A smooth picture in [0, 1] that changes slowly along Z."""
    z, y, x = np.mgrid[:depth, :h, :w].astype(np.float64)
    return 0.5 + 0.3 * np.sin(x / 5 + z / 4) * np.cos(y / 7 - z / 5)


# --- the neighbour rule ---------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize("depth", [1, 2, 3, 4, 7])
def test_context_indices_mirror_as_numpy_pad_reflect(depth, k):
    if depth < k + 1:
        with pytest.raises(ImageError, match=rf"cells\.tif: a Z axis of {depth} plane"):
            context_indices(0, depth, k, "cells.tif")
        return
    padded = np.pad(np.arange(depth), k, mode="reflect")
    for z in range(depth):
        assert context_indices(z, depth, k) == padded[z : z + 2 * k + 1].tolist()


def test_context_indices_examples_and_refusals():
    assert context_indices(0, 5, 2) == [2, 1, 0, 1, 2]
    assert context_indices(4, 5, 2) == [2, 3, 4, 3, 2]
    assert context_indices(2, 5, 2) == [0, 1, 2, 3, 4]
    with pytest.raises(ImageError, match=r"image: a Z axis of 2 plane.* at least 3 planes"):
        context_indices(0, 2, 2, "image")
    with pytest.raises(ImageError, match="plane 5 is outside the Z axis of 5 planes"):
        context_indices(5, 5, 1)


# --- a tiny z-context model, end to end ------------------------------------------------------


@pytest.fixture(scope="module")
def zmodel(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A z-context (K = 1) model trained for 4 steps on noisy ZYX pairs, and its export."""
    pytest.importorskip("torch")
    from n2n_export.cli import main as export_main
    from n2n_train.cli import main as train_main

    root = tmp_path_factory.mktemp("zcontext")
    rng = np.random.default_rng(0)
    clean = _smooth_volume(rng, 6, 32, 32)
    for folder in ("a", "b"):
        noisy = np.clip(clean + rng.normal(0, 0.08, clean.shape), 0, 1)
        (root / folder).mkdir()
        tifffile.imwrite(
            root / folder / "s.ome.tif", np.rint(noisy * 255).astype(np.uint8), ome=True,
            metadata={"axes": "ZYX"},
        )  # fmt: skip
    run = root / "run"
    args = ["fit", "--pairs", root / "a", root / "b", "--z-context", str(K), "--out", run]
    args += ["--features", "8,16", "--patch-size", "16", "--batch-size", "4", "--epochs", "2"]
    args += ["--steps-per-epoch", "2", "--optimizer", "adam", "--no-progress", "--threads", "1"]
    done = CliRunner().invoke(train_main, [str(a) for a in args])
    assert done.exit_code == 0, done.output
    model = root / "z.onnx"
    exported = CliRunner().invoke(export_main, ["onnx", str(run / "best.pt"), str(model)])
    assert exported.exit_code == 0, exported.output
    assert "parity: PASSED" in exported.output and "3 noise draws as planes" in exported.output
    return {"checkpoint": run / "best.pt", "model": model}


@pytest.fixture(scope="module")
def zd(zmodel: dict[str, Path]) -> Denoiser:
    return Denoiser(zmodel["model"], device="cpu", batch_size=2)


def test_the_export_is_format_3_stating_its_z_context_and_its_card_says_so(zmodel, zd):
    import onnx

    props = {p.key: p.value for p in onnx.load(str(zmodel["model"])).metadata_props}
    assert props[md.KEY_FORMAT_VERSION] == "3" == str(md.Z_CONTEXT_FORMAT)
    assert (props[md.KEY_Z_CONTEXT], props[md.KEY_CHANNELS], props[md.KEY_GREY]) == (
        "1", "1", "native",
    )  # fmt: skip
    assert (zd.z_context, zd.in_channels, zd.channels, zd.metadata["z_context"]) == (1, 3, 1, 1)
    card = zmodel["model"].with_suffix(".md").read_text()
    assert "| z-context | 1: each plane of a stack is denoised from planes z-1..z+1" in card
    assert "N×3×H×W (3 grey planes z-1..z+1 of a stack)" in card
    assert any(label == "z-context" for label, _ in md.card(zd.info))


def test_parity_command_passes_and_a_format2_runtime_refuses_it(zmodel, monkeypatch):
    from n2n_export.cli import main as export_main

    done = CliRunner().invoke(
        export_main, ["parity", str(zmodel["checkpoint"]), str(zmodel["model"])]
    )
    assert done.exit_code == 0, done.output
    monkeypatch.setattr(md, "SUPPORTED_FORMATS", (1, 2))  # a runtime from before format 3
    with pytest.raises(ModelLoadError, match="format version 3 is not supported"):
        Denoiser(zmodel["model"], device="cpu")


def _expected(d: Denoiser, volume: np.ndarray, levels: tuple[float, float]) -> np.ndarray:
    """Each plane run on its context through ``denoise_nchw`` (the rule written out)."""
    black, span = levels
    unit = ((volume.astype(np.float64) - black) / span).astype(np.float32)
    depth, out = len(volume), []
    for z in range(depth):
        context = unit[np.pad(np.arange(depth), K, mode="reflect")[z : z + 2 * K + 1]]
        plane = np.clip(d.denoise_nchw(context[None])[0, 0], 0, 1)
        out.append(np.rint(plane * span + black))
    return np.array(out)


def test_a_zyx_array_is_denoised_from_each_planes_mirrored_neighbours(zd):
    rng = np.random.default_rng(1)
    volume = np.rint(200 + 2500 * _smooth_volume(rng, 5, 33, 29)).astype(np.uint16)  # dim
    out = zd.denoise(volume, axes="ZYX")
    assert out.shape == volume.shape and out.dtype == np.uint16
    lo, hi = int(volume.min()), int(volume.max())  # levels over the whole stack
    assert np.abs(out.astype(int) - _expected(zd, volume, (lo, hi - lo))).max() <= 1
    # the same with Z anywhere and a grey sample axis
    moved = zd.denoise(np.ascontiguousarray(volume.transpose(1, 2, 0)), axes="YXZ")
    assert np.abs(moved.transpose(2, 0, 1).astype(int) - out).max() <= 1
    with_s = zd.denoise(volume[..., None], axes="ZYXS")
    assert np.abs(with_s[..., 0].astype(int) - out).max() <= 1


def test_t_and_c_axes_are_denoised_run_by_run_with_levels_per_channel(zd):
    rng = np.random.default_rng(2)
    tzyx = np.rint(255 * np.stack([_smooth_volume(rng, 4, 24, 20)] * 2)).astype(np.uint8)
    tzyx[1] = 255 - tzyx[1]
    out = zd.denoise(tzyx, axes="TZYX")
    for t in range(2):
        assert np.abs(out[t].astype(int) - zd.denoise(tzyx[t], axes="ZYX")).max() <= 1
    dim = np.rint(100 + 900 * _smooth_volume(rng, 4, 24, 20))
    brighter = np.rint(50 + 12000 * _smooth_volume(rng, 4, 24, 20))
    czyx = np.stack([dim, brighter]).astype(np.uint16)
    out = zd.denoise(czyx, axes="CZYX")
    for c in range(2):  # each channel by its own range over the whole array
        assert np.abs(out[c].astype(int) - zd.denoise(czyx[c], axes="ZYX")).max() <= 1


def test_tiles_cut_every_plane_alike_and_agree_with_the_untiled_run(zmodel):
    d = Denoiser(zmodel["model"], device="cpu", batch_size=3, tile_size=56)  # overlap 24
    volume = np.rint(255 * _smooth_volume(np.random.default_rng(3), 3, 70, 66)).astype(np.uint8)
    tiled, whole = (d.denoise(volume, axes="ZYX", tile=t) for t in (True, False))
    assert tiled.shape == volume.shape
    assert np.abs(tiled.astype(int) - whole).max() <= 1


def test_two_d_images_and_stacks_without_z_are_refused(zd):
    image = np.zeros((20, 20), np.uint8)
    with pytest.raises(ImageError, match=r"image: a 2-D image, but z.onnx is a z-context model"):
        zd.denoise(image)
    with pytest.raises(ImageError, match="images: a 2-D image"):
        zd.denoise_batch([image])
    with pytest.raises(ImageError, match="images: a 2-D image"):
        list(zd.denoise_iter([image]))
    with pytest.raises(ImageError, match=r"axes 'TYX' have no Z axis, but z.onnx is a z-context"):
        zd.denoise(np.zeros((3, 20, 20), np.uint8), axes="TYX")
    with pytest.raises(ImageError, match="a Z axis of 1 plane"):
        zd.denoise(np.zeros((1, 20, 20), np.uint8), axes="ZYX")
    with pytest.raises(ImageError, match=r"3 samples: z.onnx is a z-context model of grey"):
        zd.denoise(np.zeros((3, 20, 20, 3), np.uint8), axes="ZYXS")
    with pytest.raises(ImageError, match="expects float32 N×3×H×W"):
        zd.denoise_nchw(np.zeros((1, 1, 8, 8), np.float32))


def test_auto_runs_onnxruntime_without_probing_and_openvino_is_refused(zmodel, monkeypatch):
    import n2n_infer.denoiser as denoiser_module

    def probed(*args, **kwargs):
        raise AssertionError("the engine probe ran for a z-context model")

    monkeypatch.setenv("N2N_ENGINE_PROBE", "1")
    monkeypatch.setattr(denoiser_module, "auto_engine", probed)
    d = Denoiser(zmodel["model"])
    assert d.engine_choice is None
    with pytest.raises(ProviderError, match=r"z.onnx is a z-context model .* OpenVINO engine"):
        Denoiser(zmodel["model"], device="openvino")


# --- stack files --------------------------------------------------------------------------


def _run(*args: object) -> object:
    return CliRunner().invoke(infer_main, [str(a) for a in args])


def test_batch_denoises_stacks_keeping_them_and_refuses_2d_images_by_name(zmodel, zd, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    rng = np.random.default_rng(4)
    tzyx = np.rint(300 + 3000 * np.stack([_smooth_volume(rng, 4, SIDE, 36)] * 2)).astype(np.uint16)
    tifffile.imwrite(folder / "live.tif", tzyx, imagej=True,
                     metadata={"axes": "TZYX", "spacing": 2.5, "unit": "um"})  # fmt: skip
    zyx = np.rint(255 * _smooth_volume(rng, 5, SIDE, 36)).astype(np.uint8)
    tifffile.imwrite(folder / "cells.ome.tif", zyx, ome=True, metadata={"axes": "ZYX"})
    Image.fromarray(zyx[0]).save(folder / "flat.png")

    result = _run("batch", folder, out, "--model", zmodel["model"], "--device", "cpu")

    assert result.exit_code == 1, result.output
    assert "FAILED  flat.png" in result.output and "z-context model" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["cells.ome.tif", "live.tif"]
    with tifffile.TiffFile(out / "live.tif") as tif:
        series = tif.series[0]
        assert (series.axes, series.shape, series.dtype) == ("TZYX", tzyx.shape, np.uint16)
        assert tif.imagej_metadata["spacing"] == 2.5 and tif.imagej_metadata["unit"] == "um"
        written = series.asarray()
    assert np.abs(written.astype(int) - zd.denoise(tzyx, axes="TZYX")).max() <= 1
    with tifffile.TiffFile(out / "cells.ome.tif") as tif:
        assert tif.series[0].axes == "ZYX" and tif.series[0].dtype == np.uint8
        assert np.abs(tif.series[0].asarray().astype(int) - zd.denoise(zyx, axes="ZYX")).max() <= 1


def test_a_stack_without_z_is_refused_naming_the_file(zd, tmp_path):
    src = tmp_path / "time.tif"
    tifffile.imwrite(src, np.zeros((3, 16, 16), np.uint8), imagej=True, metadata={"axes": "TYX"})
    with pytest.raises(ImageError, match=rf"{src}: its axes TYX have no Z axis"):
        stacks.denoise_stack_file(zd, src, tmp_path / "out" / "time.tif")
    assert not (tmp_path / "out" / "time.tif").exists()


@pytest.mark.parametrize(("shape", "axes"), [((9, 24, 20), "ZYX"), ((2, 5, 2, 24, 20), "TZCYX")])
def test_a_stack_file_streams_holding_at_most_2k_plus_1_planes_and_a_batch(
    zd, tmp_path, monkeypatch, shape, axes
):
    data = np.random.default_rng(5).integers(0, 255, shape, dtype=np.uint8)  # uint8: one pass
    src = tmp_path / "s.tif"
    tifffile.imwrite(src, data, imagej=True, metadata={"axes": axes})
    reads: list[int] = []
    outstanding: list[int] = []
    plane = stacks._Stack.plane

    def counted(self, i):
        reads.append(i)
        return plane(self, i)

    monkeypatch.setattr(stacks._Stack, "plane", counted)
    live, held = [0], []  # the planes converted for the model and not yet dropped
    to_unit = stacks.to_unit

    def tracked(plane, levels=None):
        unit = to_unit(plane, levels)
        live[0] += 1
        weakref.finalize(unit, lambda: live.__setitem__(0, live[0] - 1))
        return unit

    monkeypatch.setattr(stacks, "to_unit", tracked)
    run = zd.denoise_planes

    def planes_out(contexts, tile=None):
        for done, result in enumerate(run(contexts, tile=tile)):
            outstanding.append(len(reads) - done)  # read, not yet given to the writer
            held.append(live[0])
            yield result

    monkeypatch.setattr(zd, "denoise_planes", planes_out)
    stacks.denoise_stack_file(zd, src, tmp_path / "o.tif")
    count = int(np.prod(shape[:-2]))
    assert sorted(reads) == list(range(count))  # each plane read once
    runs = 2 if "C" in axes else 1  # ImageJ keeps C inside Z: a run per channel at once
    assert max(outstanding) <= runs * (2 * K + 1) + zd.batch_size
    assert 0 < max(held) <= runs * (2 * K + 1)  # 2K+1 planes of each open Z run, no more
    monkeypatch.undo()
    whole = zd.denoise(data, axes=axes)
    assert np.abs(tifffile.imread(tmp_path / "o.tif").astype(int) - whole).max() <= 1


def test_bioimageio_refuses_a_z_context_model_by_name(zmodel, tmp_path):
    from n2n_export.bioimageio import PackageExportError, export_bioimageio
    from n2n_export.cli import main as export_main

    with pytest.raises(PackageExportError, match=r"a z-context model .* cannot be packaged"):
        export_bioimageio(zmodel["checkpoint"], tmp_path / "z.zip", test=False)
    done = CliRunner().invoke(
        export_main, ["bioimageio", str(zmodel["checkpoint"]), str(tmp_path / "z.zip")]
    )
    assert done.exit_code == 2 and "its spec's axes" in done.output, done.output
    assert not (tmp_path / "z.zip").exists()
