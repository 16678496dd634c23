"""``n2n-infer info`` reads as a model card; ``--json`` keeps the full metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from n2n_infer.cli import main
from n2n_infer.metadata import ModelInfo, card, describe_noise


def test_info_reads_as_a_card():
    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    labels = [line.split("  ")[0].strip() for line in lines[:-1]]
    assert labels == [
        "model",
        "file",
        "for",
        "architecture",
        "stride",
        "precision",
        "training",
        "PSNR",
        "tiles",
        "grey images",
        "providers",
        "engine (auto)",
    ]
    text = result.output
    assert "images with Gaussian noise, sigma 0–50 (of 255)" in text
    assert "UNet, 3 levels (32/64/128 channels), 2 conv per level" in text
    assert "dB noisy -> 32.53 dB denoised" in text and "CPUExecutionProvider" in text
    assert "{" not in text and max(len(line) for line in lines) <= 130


def test_info_json_keeps_the_full_metadata():
    result = CliRunner().invoke(main, ["info", "seedlike", "--json"])
    assert result.exit_code == 0, result.output
    meta = json.loads(result.output)
    assert meta["stride"] == 4 and meta["config"]["features"] == [16, 32, 64]
    assert meta["training"]["train_config"]["epochs"] == 50
    assert "CPUExecutionProvider" in meta["providers_available"]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("gaussian:25", "Gaussian noise, sigma 25 (of 255)"),
        ("gaussian:0-50", "Gaussian noise, sigma 0–50 (of 255)"),
        ("poisson:5-50", "Poisson (shot) noise, lambda 5–50"),
        (
            "pixelated:24,4",
            "pixelated Gaussian noise (80% of it in blocks), sigma 24 (of 255), blocks 4",
        ),
        ("gaussian:25+poisson:30", "one of: Gaussian noise, sigma 25 (of 255); Poisson"),
        ("speckle:3", "speckle:3"),
        ("gaussian:1,2,3", "Gaussian noise, 1,2,3"),
    ],
)
def test_noise_in_words(spec, words):
    assert describe_noise(spec).startswith(words)


def test_card_survives_hostile_metadata():
    info = ModelInfo(
        path=Path("m.onnx"),
        format_version=1,
        stride=4,
        name="x" * 10_000,
        noise="gaussian:" + "9" * 10_000,
        config={"features": "many", "pooling": ["avg"]},
        training={"train_config": [], "data": {"source": "y" * 10_000}, "mode": None},
        psnr={"psnr_noisy": "20", "psnr_onnx": True},
    )
    lines = card(info)
    assert ("architecture", "not described in the metadata") in lines
    assert all(len(text) <= 130 for _, text in lines)
    assert not [label for label, _ in lines if label == "PSNR"]


def test_card_gives_epochs_run_and_a_time_budget():
    info = ModelInfo(
        path=Path("m.onnx"),
        format_version=1,
        stride=4,
        name="mine",
        noise="",
        config={},
        training={"epochs": 17, "train_config": {"epochs": 100000, "minutes": 20.0}},
        psnr={},
    )
    (training,) = [text for label, text in card(info) if label == "training"]
    assert training.startswith("17 epochs within a 20-minute budget")
    assert "100000" not in training


# -- info --model, and MODEL as its alias -----------------------------------------------------


def _info(*args: object):
    return CliRunner().invoke(main, ["info", *map(str, args)])


def test_info_takes_the_model_as_an_option_like_doctor_and_batch():
    result = _info("--model", "seedlike", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["config"]["features"] == [16, 32, 64]


def test_the_positional_model_is_an_alias_of_model():
    by_option = _info("--model", "seedlike")
    by_alias = _info("seedlike")
    assert by_option.exit_code == by_alias.exit_code == 0, by_alias.output
    assert by_alias.stdout == by_option.stdout
    assert "alias of --model" in _info("--help").stdout


def test_the_alias_and_the_option_may_name_the_same_model(tmp_path):
    from n2n_infer.registry import resolve_model

    path = resolve_model("seedlike")
    link = tmp_path / "same.onnx"
    link.symlink_to(path)
    for alias, option in (("seedlike", "seedlike"), (path, link), ("seedlike", link)):
        result = _info(alias, "--model", option, "--json")
        assert result.exit_code == 0, result.output


def test_the_alias_and_the_option_naming_different_models_is_a_usage_error():
    result = _info("seedlike", "--model", "photo")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: MODEL seedlike and --model photo name different models; give one (--model)\n"
    )


def test_a_missing_model_given_either_way_is_one_line(tmp_path):
    gone = tmp_path / "none.onnx"
    for args in ((gone,), ("--model", gone)):
        result = _info(*args)
        assert result.exit_code == 2
        assert result.stderr == f"error: {gone}: model file not found\n"
