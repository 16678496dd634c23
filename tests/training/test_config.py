import pytest

from n2n_train.config import PRESETS, ConfigError, TrainConfig, UNetConfig


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
    with pytest.raises(ConfigError, match="version 4 is newer"):
        UNetConfig.from_dict(UNetConfig().to_dict() | {"version": 4})


def test_version_1_model_configs_load_without_the_residual():
    v1 = UNetConfig().to_dict()
    del v1["residual"]
    v1["version"] = 1
    assert UNetConfig.from_dict(v1) == UNetConfig(residual=False)


def test_residual_needs_as_many_outputs_as_inputs():
    with pytest.raises(ConfigError, match="residual needs in_channels == out_channels"):
        UNetConfig.from_dict(UNetConfig(residual=True).to_dict() | {"out_channels": 1})


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


def test_version_1_train_configs_still_load_with_the_old_behaviour():
    v1 = {
        "epochs": 20,
        "batch_size": 50,
        "optimizer": "adam",
        "lr": 0.001,
        "momentum": 0.9,
        "val_fraction": 0.2,
        "patch_size": 64,
        "noise": "gaussian:0-50",
        "steps_per_epoch": 100,
        "seed": 0,
        "version": 1,
    }
    cfg = TrainConfig.from_dict(v1)
    assert (cfg.loss, cfg.target, cfg.swap, cfg.dihedral, cfg.blur_prob) == (
        "mse",
        "noisy",
        False,
        False,
        0.0,
    )
    assert (cfg.schedule, cfg.precision, cfg.channels_last) == ("none", "fp32", False)
    assert cfg.pyramid == 0


def test_every_training_option_round_trips():
    cfg = TrainConfig(
        optimizer="adagrad",
        loss="l0",
        target="clean",
        dihedral=True,
        blur_prob=0.2,
        schedule="cosine",
        precision="bf16",
        channels_last=True,
        pyramid=3,
        init="ab" * 32,
        grey_fraction=0.25,
        limit_pairs=5000,
        minutes=1.5,
        regulariser=1.0,
    )
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["version"] == 7


@pytest.mark.parametrize(
    "bad",
    [
        {"loss": "huber"},
        {"target": "both"},
        {"schedule": "linear"},
        {"precision": "fp16"},
        {"blur_prob": 2.0},
        {"swap": True, "target": "clean"},
        {"pyramid": -1},
        {"init": "not-a-sha256"},
        {"grey_fraction": 1.5},
        {"minutes": -1.0},
        {"regulariser": -0.5},
    ],
)
def test_invalid_training_options_are_refused(bad):
    with pytest.raises(ConfigError, match="invalid TrainConfig"):
        TrainConfig.from_dict(TrainConfig().to_dict() | bad)


def test_study_training_is_the_report_final_configuration():
    from n2n_train.config import STUDY_TRAINING

    assert (STUDY_TRAINING.epochs, STUDY_TRAINING.batch_size, STUDY_TRAINING.optimizer) == (
        50,
        50,
        "sgd",
    )
    assert STUDY_TRAINING.swap and STUDY_TRAINING.dihedral and STUDY_TRAINING.blur_prob > 0
