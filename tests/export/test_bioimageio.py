"""``n2n-export bioimageio``: packages of a shipped model and of a model trained on tiny data
pass bioimageio.core's own model test offline, a perturbed test output fails it, and
``n2n_infer`` runs the packages with the ONNX file's outputs.

Needs the ``bioimageio`` extra (``pip install -e '.[bioimageio]'``); skipped without it.
"""

from __future__ import annotations

import hashlib
import io
import math
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("bioimageio.core", reason="the bioimageio extra is not installed")

from n2n_export import bioimageio as bx
from n2n_infer import Denoiser
from n2n_infer.package import MARKER
from n2n_infer.registry import models_dir
from tests.conftest import REPO

SHIPPED = "seedlike"  # the small shipped model: the package tests stay quick


@pytest.fixture(scope="module", autouse=True)
def offline():
    """Every connection is refused and recorded: the export and the test must not need one."""
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args[1:] or kwargs)
        raise OSError("network disabled in this test")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        mp.setenv("BIOIMAGEIO_CACHE_PATH", "/nonexistent-bioimageio-cache")
        yield attempts
    assert attempts == [], f"network connections were attempted: {attempts}"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        folder = tmp_path_factory.mktemp("n2n-cache")
        mp.setenv("N2N_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="module")
def shipped_package(tmp_path_factory, cache):
    """The shipped model's package, through the command (CliRunner)."""
    out = tmp_path_factory.mktemp("shipped") / f"{SHIPPED}.zip"
    result = CliRunner().invoke(bx.bioimageio_command, [SHIPPED, str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.fixture(scope="module")
def tiny_package(tmp_path_factory, tiny_run, cache):
    """A model trained on tiny data, exported fresh, with the uint8 full-scale levels."""
    out = tmp_path_factory.mktemp("tiny") / "tiny.zip"
    path, summaries = bx.export_bioimageio(tiny_run["checkpoint"], out, levels="uint8")
    return path, summaries


def _rdf(package: Path) -> str:
    with zipfile.ZipFile(package) as z:
        return z.read("rdf.yaml").decode()


def _load(package: Path):
    from bioimageio.spec import load_description

    return load_description(package, perform_io_checks=False)


# --- the BioImage.IO test ---------------------------------------------------------------------


def test_the_shipped_models_package_passes_the_bioimageio_test(shipped_package):
    package, output = shipped_package
    assert "bioimageio.core 0.11.0 model test: passed" in output
    for fmt in ("onnx", "torchscript"):
        assert f"passed  Reproduce test outputs from test inputs ({fmt})" in output
        assert f"passed  Run {fmt} inference for inputs with batch_size: 2 and size" in output
    assert "failed" not in output
    assert bx.passed(bx.bioimageio_test(package))  # run again on the written file


def test_a_package_of_a_model_trained_on_tiny_data_passes(tiny_package):
    package, summaries = tiny_package
    assert [s.status for s in summaries] == ["passed", "passed"]
    descr = _load(package)
    (step,) = [p for p in descr.inputs[0].preprocessing if p.id == "scale_linear"]
    assert step.kwargs.gain == pytest.approx(1 / 255)
    assert [str(c.doi) for c in descr.cite] == ["10.48550/arXiv.1803.04189"]


def test_a_perturbed_test_output_fails_the_bioimageio_test(shipped_package, tmp_path):
    package, _ = shipped_package
    with zipfile.ZipFile(package) as z:
        entries = {i.filename: z.read(i.filename) for i in z.infolist()}
    old = hashlib.sha256(entries["test_output.npy"]).hexdigest()
    expected = np.load(io.BytesIO(entries["test_output.npy"]))
    perturbed = expected.copy()
    perturbed[..., 10:14, 10:14] += 0.01  # 48 values off by 1e-2; the tolerance is 1e-3
    buffer = io.BytesIO()
    np.save(buffer, perturbed)
    entries["test_output.npy"] = buffer.getvalue()
    new = hashlib.sha256(buffer.getvalue()).hexdigest()
    entries["rdf.yaml"] = entries["rdf.yaml"].replace(old.encode(), new.encode())  # still valid
    bad = tmp_path / "perturbed.zip"
    with zipfile.ZipFile(bad, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    summaries = bx.bioimageio_test(bad)
    assert not bx.passed(summaries)
    failed = [d.name for s in summaries for d in s.details if d.status == "failed"]
    assert failed == [
        "Reproduce test outputs from test inputs (onnx)",
        "Reproduce test outputs from test inputs (torchscript)",
    ]


def test_a_package_that_fails_the_test_is_not_written(tmp_path, monkeypatch):
    class Failed:
        status = "failed"
        details: tuple = ()

    monkeypatch.setattr(bx, "bioimageio_test", lambda package: [Failed()])
    out = tmp_path / "m.zip"
    result = CliRunner().invoke(bx.bioimageio_command, [SHIPPED, str(out)])
    assert result.exit_code == 1, result.output
    assert "the BioImage.IO model test failed" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no package, no temporary folder


# --- what the package holds -------------------------------------------------------------------


def test_the_package_holds_the_shipped_onnx_file_byte_for_byte(shipped_package):
    package, _ = shipped_package
    with zipfile.ZipFile(package) as z:
        names = set(z.namelist())
        onnx_bytes = z.read(f"{SHIPPED}.onnx")
    assert onnx_bytes == (models_dir() / f"{SHIPPED}.onnx").read_bytes()
    assert {
        "rdf.yaml",
        "README.md",
        "cover.png",
        MARKER,
        "test_input.npy",
        "test_output.npy",
        f"{SHIPPED}.torchscript.pt",
        f"{SHIPPED}.parity.json",
    } <= names


def test_axes_sizes_halo_and_padding_follow_the_network(shipped_package):
    descr = _load(shipped_package[0])
    info = Denoiser(SHIPPED, device="cpu").info
    stride = info.stride
    halo = math.ceil(info.receptive_radius / stride) * stride
    ipt, out = descr.inputs[0], descr.outputs[0]
    assert [str(a.id) for a in ipt.axes] == ["batch", "channel", "y", "x"]
    assert [(a.size.min, a.size.step) for a in ipt.axes[2:]] == [(2 * halo + stride, stride)] * 2
    assert [a.halo for a in out.axes[2:]] == [halo, halo]
    assert ipt.pad.mode == "reflect"  # written explicitly: a default-only one loads as constant
    scale_range = next(p for p in ipt.preprocessing if p.id == "scale_range").kwargs
    assert (scale_range.min_percentile, scale_range.max_percentile) == (0.0, 100.0)
    assert [str(a) for a in scale_range.axes] == ["channel", "y", "x"]


def test_the_test_output_is_the_runtimes_output_for_the_test_input(shipped_package):
    package, _ = shipped_package
    with zipfile.ZipFile(package) as z:
        test_in = np.load(io.BytesIO(z.read("test_input.npy")))
        test_out = np.load(io.BytesIO(z.read("test_output.npy")))
    assert test_in.dtype == np.uint16 and test_in.max() <= 16383  # dim 16-bit: range levels
    denoiser = Denoiser(SHIPPED, device="cpu")
    counts = denoiser.denoise(test_in[0].transpose(1, 2, 0))  # the runtime, end to end
    lo, span = float(test_in.min()), float(test_in.max() - test_in.min())
    back = np.rint(np.clip(test_out[0].transpose(1, 2, 0), 0, 1) * span + lo)
    np.testing.assert_array_equal(counts, back.astype(np.uint16))


def test_torchscript_clamps_as_the_onnx_graph_does(shipped_package, tmp_path):
    import onnxruntime as ort
    import torch

    package, _ = shipped_package
    with zipfile.ZipFile(package) as z:
        traced = torch.jit.load(io.BytesIO(z.read(f"{SHIPPED}.torchscript.pt")))
        session = ort.InferenceSession(
            z.read(f"{SHIPPED}.onnx"), providers=["CPUExecutionProvider"]
        )
    x = (np.random.default_rng(1).random((2, 3, 40, 48), dtype=np.float32) * 3 - 1).astype(
        np.float32
    )  # far outside [0, 1]: the network's output leaves it too
    with torch.no_grad():
        ts = traced(torch.from_numpy(x)).numpy()
    ox = session.run(None, {"noisy": x})[0]
    assert ts.min() == 0.0 and ts.max() == 1.0  # the clamp is there and is active
    assert np.abs(ts - ox).max() <= 1e-4


def _paths_in(package: Path, skip_onnx: bool) -> list[tuple[str, str]]:
    """(entry, path) for each entry of ``package`` that holds a path of this machine."""
    found = []
    with zipfile.ZipFile(package) as z:
        for name in z.namelist():
            if skip_onnx and name.endswith(".onnx"):
                continue
            data = z.read(name)
            for path in (str(REPO), str(package.parent), str(Path.home()), "site-packages"):
                if path.encode() in data:
                    found.append((name, path))
    return found


def test_no_file_that_the_package_adds_names_a_path_of_the_exporting_machine(shipped_package):
    """rdf.yaml, README, parity report, marker, test tensors and TorchScript (its debug
    records, which hold source paths, are left out)."""
    assert _paths_in(shipped_package[0], skip_onnx=True) == []


def test_the_onnx_weights_name_no_path_of_the_exporting_machine(tiny_package):
    assert _paths_in(tiny_package[0], skip_onnx=False) == []


def test_documentation_cover_and_training_data(shipped_package):
    from PIL import Image

    package, _ = shipped_package
    with zipfile.ZipFile(package) as z:
        readme = z.read("README.md").decode()
        cover = Image.open(io.BytesIO(z.read("cover.png")))
    assert "## Validation" in readme and "## What this package cannot express" in readme
    assert "Grey images: copy the grey into the three channels" in readme  # pixelated noise
    assert cover.size == (2 * bx.COVER_SIDE, bx.COVER_SIDE)
    descr = _load(package)
    assert descr.training_data.name == "train_data_pkl"
    assert descr.license == "MIT" and descr.authors[0].name == bx.DEFAULT_AUTHOR


@pytest.mark.parametrize(
    ("channels", "grey", "words"),
    [
        (3, "phases", "four pixel phases"),
        (3, "replicate", "copy the grey"),
        (1, "phases", "one-channel"),
    ],
)
def test_the_documentation_says_what_grey_images_need(channels, grey, words):
    from n2n_infer.metadata import ModelInfo

    info = ModelInfo(Path("m.onnx"), 2, 4, channels=channels, grey=grey)
    assert words in bx._grey_words(info)


@pytest.mark.parametrize(
    ("summary", "neighbor"),
    [
        ({"mode": "noise2noise", "data": {"source": "photos"}}, False),
        ({"mode": "neighbor2neighbor", "data": {"source": "singles"}}, True),
        ({"data": {"source": "singles"}}, True),
    ],
)
def test_neighbor2neighbor_is_cited_for_models_trained_on_single_images(summary, neighbor):
    cites = bx.citations(summary)
    assert cites[0] == bx.NOISE2NOISE
    assert (bx.NEIGHBOR2NEIGHBOR in cites) is neighbor


# --- n2n_infer runs the packages --------------------------------------------------------------


@pytest.mark.parametrize("which", ["shipped", "tiny"])
def test_denoiser_runs_the_package_zip_and_folder_as_the_onnx_file(
    which, shipped_package, tiny_package, tmp_path
):
    package = (shipped_package if which == "shipped" else tiny_package)[0]
    with zipfile.ZipFile(package) as z:
        z.extractall(tmp_path / "unpacked")
        onnx_name = next(n for n in z.namelist() if n.endswith(".onnx"))
    image = np.random.default_rng(2).integers(0, 256, (45, 61, 3), dtype=np.uint8)
    reference = Denoiser(tmp_path / "unpacked" / onnx_name, device="cpu").denoise(image)
    for model in (package, tmp_path / "unpacked"):
        np.testing.assert_array_equal(Denoiser(model, device="cpu").denoise(image), reference)


# --- errors -----------------------------------------------------------------------------------


def test_an_unknown_source_and_a_bad_name_are_refused(tmp_path):
    result = CliRunner().invoke(bx.bioimageio_command, ["nosuchmodel", str(tmp_path / "m.zip")])
    assert result.exit_code == 2
    assert "nosuchmodel: expected a checkpoint file or a shipped model's name" in result.output
    result = CliRunner().invoke(
        bx.bioimageio_command, [SHIPPED, str(tmp_path / "m.zip"), "--name", "../x"]
    )
    assert result.exit_code == 2 and "name '../x': expected letters" in result.output
    assert list(tmp_path.iterdir()) == []


def test_the_halo_covers_the_networks_context(tiny_package):
    """A block predicted with the halo around it, then cropped, is the whole image's result
    there: the halo (receptive radius rounded up to the stride) is wide enough."""
    import onnxruntime as ort

    package, _ = tiny_package
    descr = _load(package)
    halo = descr.outputs[0].axes[2].halo
    with zipfile.ZipFile(package) as z:
        name = next(n for n in z.namelist() if n.endswith(".onnx"))
        session = ort.InferenceSession(z.read(name), providers=["CPUExecutionProvider"])
    side = 4 * halo + 32
    x = np.random.default_rng(3).random((1, 3, side, side), dtype=np.float32)
    full = session.run(None, {"noisy": x})[0]
    a, b = 2 * halo, 2 * halo + 32  # the block; its input reaches one halo further each way
    block = session.run(
        None, {"noisy": np.ascontiguousarray(x[:, :, a - halo : b + halo, a - halo : b + halo])}
    )[0]
    inner = block[:, :, halo:-halo, halo:-halo]
    assert np.abs(inner - full[:, :, a:b, a:b]).max() <= 1e-5


def test_a_grey_models_package_has_one_grey_channel_and_passes(tiny_run, tmp_path, cache):
    """A 1-channel model (issue 32): one channel named grey, grey test tensors, the test
    passes, and n2n_infer runs the package on a grey image as it runs the ONNX file."""
    from n2n_infer import Denoiser
    from n2n_train.checkpoint import load_checkpoint, save_checkpoint, with_channels

    grey = with_channels(load_checkpoint(tiny_run["checkpoint"]), 1)
    checkpoint = save_checkpoint(tmp_path / "grey.pt", grey.build_model(), grey.summary)
    package, summaries = bx.export_bioimageio(checkpoint, tmp_path / "grey.zip")
    assert [s.status for s in summaries] == ["passed", "passed"]
    descr = _load(package)
    (channel,) = [a for a in descr.inputs[0].axes if a.type == "channel"]
    assert [str(c) for c in channel.channel_names] == ["grey"]
    with zipfile.ZipFile(package) as z:
        readme = z.read("README.md").decode()
        test_in = np.load(io.BytesIO(z.read("test_input.npy")))
    assert test_in.shape[1] == 1 and "from grey images" in readme
    assert "one-channel model; a grey image goes in as it is" in readme
    image = np.random.default_rng(0).integers(0, 256, (40, 56), dtype=np.uint8)
    from_zip = Denoiser(package, device="cpu").denoise(image)
    assert Denoiser(package, device="cpu").channels == 1 and from_zip.shape == image.shape
