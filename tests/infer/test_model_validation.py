"""Foreign and hostile models are refused at load time, or fail at run time with InferenceError."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from n2n_infer import Denoiser, InferenceError, ModelLoadError
from n2n_infer import session as sess
from n2n_infer.cli import main
from tests.infer import onnx_graphs as g

#: The shipped seedlike model's metadata (what g.save writes) read as a format-1 file.
V1 = {"format_version": "1"}


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (g.cropping, r"returned 1×3×11×8 for a 1×3×12×8 input \(expected the input's shape\)"),
        (g.transposing, "returned 1×3×8×12 for a 1×3×12×8 input"),
        (g.doubling_channels, "returned 1×6×12×8 for a 1×3×12×8 input"),
        (g.flat_output, r"output 'denoised' must be N×3×H×W, found shape \['N', 'K'\]"),
        (g.two_inputs, r"expected one required input 'noisy', found 2: \['noisy', 'sigma'\]"),
        (g.nan_everywhere, "returned NaN or infinite values for a 1×3×12×8 input"),
    ],
)
def test_models_that_cannot_denoise_are_refused_at_load(tmp_path, build, message):
    path = g.save(build(), tmp_path / "foreign.onnx")
    with pytest.raises(ModelLoadError, match=rf"foreign\.onnx: .*{message}"):
        Denoiser(path, device="cpu")


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"stride": str(2**20)}, "n2n.stride=1048576: expected a power of two from 1 to 256"),
        ({"stride": "512"}, "n2n.stride=512"),
        ({"stride": "-4"}, "n2n.stride=-4"),
        ({"stride": "6"}, "n2n.stride=6"),
        ({"stride": "4.0"}, r"n2n.stride='4.0' is not an integer"),
        ({"stride": "9" * 5000}, r"is not an integer"),
        # format 1: the UNet config is checked, since the runtime derives the radius from it
        ({**V1, "config": json.dumps({"features": [16] * 70})}, r"features=\[16, 16, .*: expected"),
        ({**V1, "config": json.dumps({"features": [16, -1]})}, "features=.*expected a list"),
        ({**V1, "config": json.dumps({"features": "16,32"})}, "features=.*expected a list"),
        ({**V1, "config": json.dumps({"convs_per_level": 1000})}, "convs_per_level=1000"),
        ({**V1, "config": json.dumps({"convs_per_level": True})}, "convs_per_level=True"),
        ({"config": "[1, 2]"}, "n2n.config must be a JSON object"),
        ({"config": "[" * 100_000}, "n2n.config is not valid JSON"),
        ({"training": "{" * 100_000}, "n2n.training is not valid JSON"),
        ({"format_version": "4"}, "format version 4 is not supported .*supports 1..3"),
        # format 3: a z-context model states its K, and is grey
        ({"format_version": "3"}, "format 3 needs 'n2n.z_context', which is missing"),
        ({"format_version": "3", "z_context": "5"}, "n2n.z_context=5: expected 1 to 4 planes"),
        ({"format_version": "3", "z_context": "0"}, "n2n.z_context=0: expected 1 to 4 planes"),
        (
            {"format_version": "3", "z_context": "1"},
            "n2n.z_context=1 with n2n.channels=3: z-context models take grey planes",
        ),
        ({"z_context": "1"}, "n2n.z_context in a format-2 file: a z-context model is format 3"),
        ({"format_version": "0"}, "format version 0 is not supported"),
        ({"format_version": None}, "not an n2n model"),
        # format 2: the stated facts are checked
        ({"receptive_radius": "-1"}, "n2n.receptive_radius=-1: expected 0 to 4096 pixels"),
        ({"receptive_radius": "5000"}, "n2n.receptive_radius=5000: expected 0 to 4096"),
        ({"receptive_radius": "26px"}, "n2n.receptive_radius='26px' is not an integer"),
        ({"receptive_radius": None}, "format 2 needs 'n2n.receptive_radius', which is missing"),
        ({"channels": "2"}, "n2n.channels=2: expected one of 1, 3"),
        ({"channels": "1"}, "a 1-channel model states one of native"),
        ({"channels": "3", "grey": "native"}, "a 3-channel model states one of phases, replicate"),
        ({"channels": None}, "format 2 needs 'n2n.channels'"),
        ({"grey": "sideways"}, "n2n.grey='sideways': a 3-channel model states one of phases"),
        ({"grey": None}, "format 2 needs 'n2n.grey'"),
        ({"architecture": "u net"}, "n2n.architecture='u net': expected a name"),
        ({"architecture": "x" * 65}, "n2n.architecture='xxx.*: expected a name"),
        ({"architecture": None}, "format 2 needs 'n2n.architecture'"),
    ],
)
def test_implausible_metadata_is_refused_at_load(tmp_path, props, message):
    path = g.save(g.identity(), tmp_path / "meta.onnx", **props)
    with pytest.raises(ModelLoadError, match=rf"meta\.onnx: .*{message}"):
        Denoiser(path, device="cpu")


@pytest.mark.parametrize(
    "props",
    [
        {"receptive_radius": "600"},  # format 2: the radius the model states
        {**V1, "config": json.dumps({"features": [8] * 8, "convs_per_level": 4})},  # derived
    ],
    ids=["format 2", "format 1"],
)
def test_deep_models_need_an_explicit_overlap(tmp_path, props):
    path = g.save(g.identity(), tmp_path / "deep.onnx", **props)
    with pytest.raises(ModelLoadError, match=r"deep\.onnx: .*tile overlap of \d+ px"):
        Denoiser(path, device="cpu")
    assert Denoiser(path, device="cpu", tile_overlap=64).tiles.overlap == 64


def test_format2_configs_are_the_models_own_business(tmp_path):
    """A format-2 file states its radius: its config is not read as a UNet's (any JSON object)."""
    config = json.dumps({"features": [16] * 70, "blocks": "anything"})
    d = Denoiser(g.save(g.identity(), tmp_path / "other.onnx", config=config), device="cpu")
    assert d.info.receptive_radius == 16 and d.tiles.overlap == 64


def test_an_identity_model_with_n2n_metadata_loads_and_runs(tmp_path):
    d = Denoiser(g.save(g.identity(), tmp_path / "id.onnx"), device="cpu")
    img = np.random.default_rng(0).integers(0, 256, (13, 9, 3), dtype=np.uint8)
    np.testing.assert_array_equal(d.denoise(img), img)


def test_nan_at_run_time_is_an_inference_error_not_a_black_image(tmp_path):
    d = Denoiser(g.save(g.nan_on_black(), tmp_path / "nan.onnx"), device="cpu")
    with pytest.raises(InferenceError, match=r"nan\.onnx: the model returned NaN or infinite"):
        d.denoise(np.zeros((16, 16, 3), np.uint8))


def test_wrong_output_shape_at_run_time_is_an_inference_error(tmp_path):
    """Right on the 12×8 test input, wrong on larger images: no raw ValueError."""
    d = Denoiser(g.save(g.first_rows(12), tmp_path / "rows.onnx"), device="cpu")
    with pytest.raises(InferenceError, match=r"rows\.onnx: the model returned 1×3×12×16"):
        d.denoise(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(InferenceError):
        d.denoise(np.zeros((64, 64, 3), np.uint8), tile=True)


@pytest.mark.parametrize("error", [MemoryError(), ValueError("bad"), RuntimeError("boom")])
def test_any_failure_of_a_model_call_is_an_inference_error(error):
    class Failing:
        def run(self, *args, **kwargs):
            raise error

    with pytest.raises(InferenceError, match=r"onnxruntime failed on a 1×3×4×4 batch"):
        sess.run_model(Failing(), np.zeros((1, 3, 4, 4), np.float32))


def test_info_on_a_foreign_model_says_why_it_is_refused(tmp_path):
    path = g.save(g.identity(), tmp_path / "wide.onnx", stride=str(2**20))
    result = CliRunner().invoke(main, ["info", str(path)])
    assert result.exit_code == 2
    assert "wide.onnx" in result.output and "n2n.stride=1048576" in result.output


@pytest.mark.parametrize("build", [g.cropping, g.two_inputs, g.nan_everywhere, g.nan_on_black])
def test_doctor_with_a_foreign_model_never_tracebacks(tmp_path, build):
    path = g.save(build(), tmp_path / "foreign.onnx")
    result = CliRunner().invoke(main, ["doctor", "--model", str(path)])
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    if build is g.nan_on_black:  # loads; the probe image has no black pixel
        return
    assert result.exit_code == 1
    assert "model: not usable: " in result.output and "foreign.onnx" in result.output


def test_doctor_with_a_missing_model_exits_1_with_one_line():
    result = CliRunner().invoke(main, ["doctor", "--model", "/nonexistent/x.onnx"])
    assert result.exit_code == 1
    assert "model: not usable: /nonexistent/x.onnx: model file not found" in result.output


@pytest.mark.parametrize("where", ["value", "input name"])
def test_metadata_or_names_that_are_not_utf8_are_refused(tmp_path, where):
    """Found by scripts/fuzz_models.py (seed 2, case 195): a raw UnicodeDecodeError before."""
    model = (
        g.identity()
        if where == "value"
        else g.graph_model(
            [g.helper.make_node("Identity", ["@@@@"], ["denoised"])],
            inputs=[g.helper.make_tensor_value_info("@@@@", g.TensorProto.FLOAT, g.NCHW)],
            out_shape=g.NCHW,
        )
    )
    path = g.save(model, tmp_path / "bytes.onnx", name="@@@@" if where == "value" else None)
    path.write_bytes(path.read_bytes().replace(b"@@@@", b"\xa2\xa2\xa2\xa2"))
    with pytest.raises(ModelLoadError, match=r"bytes\.onnx: .*not valid UTF-8"):
        Denoiser(path, device="cpu")
