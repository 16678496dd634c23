"""Metadata format 2: models state their own facts; format-1 files keep working as before.

Format 2 (``n2n.architecture``, ``n2n.channels``, ``n2n.receptive_radius``,
``n2n.grey``, ``n2n.noise_description``) is what the exporter writes and what
the shipped models carry. A format-1 file is made here from a shipped model by
removing those keys and setting the version: the runtime derives the same facts
from its config and noise spec, as it did before format 2. No torch here (the
exporter's side is ``tests/export/test_stated_facts.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from n2n_infer import Denoiser, ModelLoadError
from n2n_infer import metadata as md
from n2n_infer.cli import main
from tests.conftest import REPO
from tests.infer import model_mutations as mutations

MODELS = REPO / "models"
STATED = (
    md.KEY_ARCHITECTURE,
    md.KEY_CHANNELS,
    md.KEY_RECEPTIVE_RADIUS,
    md.KEY_GREY,
    md.KEY_NOISE_DESCRIPTION,
)
#: What each shipped model states, and what the runtime derived for it before format 2.
SHIPPED = {
    "photo": ("unet", 3, 26, "phases", 112, "Gaussian noise, sigma 0–50 (of 255)"),
    "seedlike": (
        "unet",
        3,
        16,
        "replicate",
        64,
        "pixelated Gaussian noise (80% of it in blocks), sigma 24.4591 (of 255), blocks 2",
    ),
}
IMAGE = np.random.default_rng(0).integers(0, 256, (37, 29, 3), dtype=np.uint8)


def props_of(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def with_props(source: Path, out: Path, changes: dict[str, str | None]) -> Path:
    """A copy of ``source`` with metadata ``changes`` (``None`` removes a key)."""
    model = onnx.load(str(source))
    props = props_of(source)
    for key, value in changes.items():
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(out))
    return out


def as_format1(source: Path, out: Path) -> Path:
    """``source`` as the exporter wrote it before format 2: no stated facts, version 1."""
    return with_props(source, out, {md.KEY_FORMAT_VERSION: "1", **dict.fromkeys(STATED)})


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_models_state_their_facts(name):
    architecture, channels, radius, grey, overlap, words = SHIPPED[name]
    props = props_of(MODELS / f"{name}.onnx")
    assert props[md.KEY_FORMAT_VERSION] == "2" == str(md.FORMAT_VERSION)
    d = Denoiser(name, device="cpu")
    info = d.info
    assert (info.architecture, info.channels, info.receptive_radius, info.grey) == (
        architecture,
        channels,
        radius,
        grey,
    )
    assert info.noise_description == words
    assert (d.grey, d.tiles.overlap) == (grey, overlap)
    meta = d.metadata
    assert (meta["receptive_radius"], meta["grey"], meta["channels"]) == (radius, grey, channels)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_format1_file_runs_and_gets_the_overlap_and_grey_it_always_had(tmp_path, name):
    *_, grey, overlap, _ = SHIPPED[name]
    old = as_format1(MODELS / f"{name}.onnx", tmp_path / f"{name}-v1.onnx")
    assert not set(STATED) & set(props_of(old))
    d1, d2 = Denoiser(old, device="cpu"), Denoiser(name, device="cpu")
    assert (d1.info.format_version, d2.info.format_version) == (1, 2)
    for field in ("architecture", "channels", "receptive_radius", "grey", "noise_description"):
        assert getattr(d1.info, field) == getattr(d2.info, field), field
    assert (d1.grey, d1.tiles.overlap) == (d2.grey, d2.tiles.overlap) == (grey, overlap)
    assert d1.tiles == d2.tiles
    np.testing.assert_array_equal(d1.denoise(IMAGE), d2.denoise(IMAGE))
    big = np.random.default_rng(1).integers(0, 256, (150, 170, 3), dtype=np.uint8)
    np.testing.assert_array_equal(d1.denoise(big, tile=True), d2.denoise(big, tile=True))
    grey_img = IMAGE[:, :, 0]
    np.testing.assert_array_equal(d1.denoise(grey_img), d2.denoise(grey_img))
    assert md.card(d1.info) == md.card(d2.info)  # info reads the same


def test_format1_without_a_described_config_falls_back_to_a_radius_of_32(tmp_path):
    old = as_format1(MODELS / "seedlike.onnx", tmp_path / "v1.onnx")
    bare = with_props(old, tmp_path / "bare.onnx", {md.KEY_CONFIG: "{}", md.KEY_NOISE: None})
    info = Denoiser(bare, device="cpu").info
    assert (info.receptive_radius, info.grey, info.noise_description) == (32, "phases", "")


def test_a_format4_file_is_refused_by_name(tmp_path):
    """Format 3 is a z-context model's (tests/infer/test_zcontext.py); 4 is the future."""
    path = with_props(
        MODELS / "seedlike.onnx", tmp_path / "future.onnx", {md.KEY_FORMAT_VERSION: "4"}
    )
    with pytest.raises(ModelLoadError) as caught:
        Denoiser(path, device="cpu")
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "format version 4 is not supported" in message and "supports 1..3" in message


def test_stated_facts_decide_overlap_and_grey_not_the_config_or_the_noise(tmp_path):
    """A format-2 model's radius and grey handling are its statements, whatever its noise says."""
    path = with_props(
        MODELS / "photo.onnx",
        tmp_path / "stated.onnx",
        {
            md.KEY_RECEPTIVE_RADIUS: "40",
            md.KEY_GREY: "replicate",
            md.KEY_NOISE: "gaussian:25",
            md.KEY_CONFIG: json.dumps({"features": [1] * 60}),
        },
    )
    d = Denoiser(path, device="cpu")
    assert (d.info.receptive_radius, d.tiles.overlap, d.grey) == (40, 160, "replicate")
    assert Denoiser(path, device="cpu", grey="phases").grey == "phases"


def test_a_missing_noise_description_is_allowed(tmp_path):
    path = with_props(
        MODELS / "seedlike.onnx", tmp_path / "m.onnx", {md.KEY_NOISE_DESCRIPTION: None}
    )
    info = Denoiser(path, device="cpu").info
    assert info.noise_description == ""
    assert ("for", "RGB images") in md.card(info)


def test_info_shows_the_stated_facts():
    result = CliRunner().invoke(main, ["info", "seedlike"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "RGB images with pixelated Gaussian noise (80% of it in blocks)" in text
    assert "UNet, 3 levels (16/32/64 channels), 1 conv per level" in text
    assert "receptive radius 16 px" in text and "overlap 64 px" in text
    assert "replicate" in text
    meta = json.loads(CliRunner().invoke(main, ["info", "seedlike", "--json"]).output)
    assert (meta["architecture"], meta["channels"], meta["receptive_radius"]) == ("unet", 3, 16)
    assert meta["grey"] == "replicate" and meta["noise_description"].startswith("pixelated")


def test_a_card_names_an_architecture_it_does_not_know_as_stated():
    info = md.ModelInfo(
        path=Path("m.onnx"),
        format_version=2,
        stride=8,
        config={"features": [8, 16], "convs_per_level": 1},
        architecture="dncnn",
        channels=1,
        receptive_radius=17,
    )
    lines = dict(md.card(info))
    assert lines["architecture"] == "dncnn"  # a config is read as a UNet's only for a UNet
    assert lines["for"] == "grey images"
    assert lines["stride"].endswith("receptive radius 17 px")


#: Hostile values of the stated facts: each is refused or changes nothing in the output.
HOSTILE = {
    md.KEY_ARCHITECTURE: ["", "unet\x00", "é", "x" * 100_000, "UNet", "u/net"],
    md.KEY_CHANNELS: ["0", "-3", "3.0", "4", "", "\u0663", "9" * 5000, "1"],
    md.KEY_RECEPTIVE_RADIUS: ["", "-0", "0", "1", "4096", "4097", "2" * 5000, "1e3", "16 "],
    md.KEY_GREY: ["", "auto", "PHASES", "phases\x00", "x" * 100_000],
    md.KEY_NOISE_DESCRIPTION: ["", "\x1b[31m", "x" * 1_000_000],
}


def test_hostile_stated_facts_are_refused_or_change_nothing(tmp_path):
    reference = mutations.reference_output()
    outcomes = set()
    for key, values in HOSTILE.items():
        for value in values:
            case = mutations._with_prop(mutations._base(), key, value)
            outcome, _ = mutations.check_case(case, tmp_path, reference)
            outcomes.add(outcome)
    assert outcomes == {"ok", "refused"}
