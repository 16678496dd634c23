import pytest

from training.config import PRESETS, ConfigError, TrainConfig, UNetConfig


@pytest.mark.parametrize("cfg", [*PRESETS.values(), TrainConfig(optimizer="adam", lr=1e-3)])
def test_round_trip_gives_equal_config(cfg):
    assert type(cfg).from_dict(cfg.to_dict()) == cfg


def test_study_preset_is_the_report_final_choice():
    cfg = PRESETS["study"]
    assert cfg.features == (16, 32, 64)
    assert cfg.convs_per_level == 1
    assert (cfg.pooling, cfg.upsampling, cfg.batch_norm, cfg.dropout) == (
        "avg",
        "nearest",
        False,
        0.0,
    )
    assert cfg.stride == 4


def test_unknown_key_is_refused_and_named():
    data = UNetConfig().to_dict() | {"colour": "red"}
    with pytest.raises(ConfigError, match=r"model.pt: unknown UNetConfig keys \['colour'\]"):
        UNetConfig.from_dict(data, source="model.pt")


def test_newer_version_is_refused():
    with pytest.raises(ConfigError, match="version 2 is newer"):
        UNetConfig.from_dict(UNetConfig().to_dict() | {"version": 2})


@pytest.mark.parametrize(
    "bad", [{"features": [16]}, {"pooling": "median"}, {"dropout": 1.5}, {"convs_per_level": 3}]
)
def test_invalid_values_are_refused(bad):
    with pytest.raises(ConfigError, match="invalid UNetConfig"):
        UNetConfig.from_dict(UNetConfig().to_dict() | bad)


def test_train_defaults_are_the_study_settings():
    cfg = TrainConfig()
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.batch_size, cfg.val_fraction) == (
        "sgd",
        0.01,
        0.9,
        50,
        0.2,
    )
