"""The shipped models: parity with their checkpoints, re-export, cards, pinned figures."""

import hashlib
import json

import numpy as np
import pytest

from n2n_export.data import load_clean_images, parity_cases
from n2n_infer import Denoiser, available_models
from n2n_infer import metadata as md
from n2n_infer.imageio import read_image
from n2n_infer.metrics import psnr
from tests.conftest import REPO

MODELS = REPO / "models"
EXAMPLES = REPO / "examples"
NAMES = ("astronaut", "chelsea", "coffee", "rocket")
SHIPPED = available_models()
#: The facts a model states (metadata format 2), as ``Denoiser.metadata`` names them.
STATED = (
    "format_version",
    "architecture",
    "channels",
    "receptive_radius",
    "grey",
    "noise_description",
)

#: Runtime PSNR (dB) of models/photo.onnx on examples/noisy vs examples/clean, as measured
#: by `n2n-infer batch examples/noisy OUT --reference examples/clean` when the model was made.
PHOTO_PSNR = {"astronaut": 30.21, "chelsea": 31.21, "coffee": 29.84, "rocket": 31.21}


def _checkpoint_of(model: str):
    """The committed checkpoint whose sha256 the model's metadata records."""
    recorded = Denoiser(model, device="cpu").info.raw[md.KEY_CHECKPOINT_SHA256]
    for pt in MODELS.glob("*.pt"):
        if hashlib.sha256(pt.read_bytes()).hexdigest() == recorded:
            return pt
    raise AssertionError(f"no checkpoint in models/ matches {model}.onnx's sha256")


def test_photo_is_shipped_and_default():
    assert "photo" in SHIPPED
    assert Denoiser(device="cpu").info.name == "photo"


def test_photo_model_figures_on_the_samples_are_pinned():
    d = Denoiser("photo", device="cpu")
    for name in NAMES:
        noisy = read_image(EXAMPLES / "noisy" / f"{name}.png")
        clean = read_image(EXAMPLES / "clean" / f"{name}.png")
        assert psnr(noisy, clean) == pytest.approx(20.5, abs=0.4)
        assert psnr(d.denoise(noisy), clean) == pytest.approx(PHOTO_PSNR[name], abs=0.02), name


@pytest.mark.parametrize("model", SHIPPED)
def test_shipped_model_passes_parity_with_its_checkpoint(model):
    from n2n_export.parity import check_parity

    channels = Denoiser(model, device="cpu").channels  # the grey model: the photos' luma
    cases = parity_cases(load_clean_images(EXAMPLES / "clean"), "gaussian:25", channels=channels)
    report = check_parity(_checkpoint_of(model), MODELS / f"{model}.onnx", cases)
    assert report.passed, report.to_json()


@pytest.mark.parametrize("model", SHIPPED)
def test_shipped_model_has_a_card_and_a_passed_parity_report(model):
    card = (MODELS / f"{model}.md").read_text()
    assert f"# Model `{model}`" in card and "## Reproduce" in card
    report = json.loads((MODELS / f"{model}.parity.json").read_text())
    assert report["passed"] is True and len(report["cases"]) >= 9


@pytest.mark.parametrize("model", SHIPPED)
def test_committed_onnx_matches_what_the_exporter_writes_today(model, tmp_path):
    """Re-export the checkpoint and compare outputs numerically (not byte for byte)."""
    from n2n_export.exporter import export_onnx

    committed = Denoiser(model, device="cpu")
    if committed.info.raw.get(md.KEY_PRECISION, "fp32") == "int8":
        pytest.skip("int8 re-export needs the calibration photos: scripts/export_shipped.sh")
    fresh = Denoiser(export_onnx(_checkpoint_of(model), tmp_path / "fresh.onnx"), device="cpu")
    x = np.random.default_rng(0).random((2, committed.channels, 45, 61), dtype=np.float32)
    assert np.abs(committed.denoise_nchw(x) - fresh.denoise_nchw(x)).max() <= 1e-5
    for key in ("stride", "config", "noise", *STATED):
        assert committed.metadata[key] == fresh.metadata[key], key


@pytest.mark.parametrize("model", SHIPPED)
def test_shipped_models_state_what_the_exporter_states_for_their_checkpoints(model):
    """Format 2 (scripts/upgrade_metadata.py added the facts to the files, weights untouched)."""
    from n2n_export.exporter import stated_facts
    from n2n_train.checkpoint import load_checkpoint

    props = Denoiser(model, device="cpu").info.raw
    facts = stated_facts(load_checkpoint(_checkpoint_of(model)))
    assert {key: props.get(key) for key in facts} == facts
    assert props[md.KEY_FORMAT_VERSION] == str(md.FORMAT_VERSION)
    card = (MODELS / f"{model}.md").read_text()
    assert f"| receptive radius | {facts[md.KEY_RECEPTIVE_RADIUS]} px" in card


@pytest.mark.parametrize("model", SHIPPED)
def test_shipped_model_names_its_data_and_files_never_a_path(model):
    """Metadata, card and parity report carry names and checksums, no path of the maker's machine.

    The reproduce command may say ``~`` (the reader's home), as the README does.
    """
    from tests.export.test_metadata_paths import absolute_paths

    props = Denoiser(model, device="cpu").info.raw
    reproduce = props.get(md.KEY_REPRODUCE, "")
    assert not absolute_paths(reproduce, allow_home=True), reproduce
    texts = {key: value for key, value in props.items() if key != md.KEY_REPRODUCE}
    texts["card"] = (MODELS / f"{model}.md").read_text().replace(reproduce, "")
    texts["parity report"] = (MODELS / f"{model}.parity.json").read_text()
    for key, text in texts.items():
        assert not absolute_paths(text), (key, absolute_paths(text))
    data = json.loads(props[md.KEY_TRAINING])["data"]
    assert data["name"] and "path" not in data and "val_path" not in data


@pytest.mark.parametrize(
    "checkpoint",
    [*sorted(MODELS.glob("*.pt")), REPO / "bench/models/photo-n2c.pt"],
    ids=lambda p: p.name,
)
def test_committed_checkpoint_summaries_hold_no_paths(checkpoint):
    import torch

    from tests.export.test_metadata_paths import absolute_paths

    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)  # still loads safely
    text = json.dumps(raw["summary"])
    assert not absolute_paths(text), absolute_paths(text)
    assert raw["summary"]["data"]["name"]
