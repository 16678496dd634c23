"""Grey-native (1-channel) models: training, conversion of weights, camera noise, export,
parity and the runtime (issue 32, point 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from n2n_train.checkpoint import Checkpoint, CheckpointError, load_checkpoint, with_channels
from n2n_train.cli import main
from n2n_train.config import UNetConfig
from n2n_train.data import PhotoPairs
from n2n_train.noise import PoissonGaussianNoise, parse_noise, poisson_gaussian_u8
from n2n_train.owndata import load_noisy_scenes
from n2n_train.unet import UNet
from tests.conftest import synthetic_photo

_TINY = UNetConfig(features=(8, 16), residual=True)


def _invoke(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _photos(folder, n: int = 4, size: int = 48, grey: bool = False):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = synthetic_photo(rng, size, size)
        if grey:
            img = img.mean(axis=2).astype(np.uint8)
        Image.fromarray(img).save(folder / f"p{i}.png")
    return folder


def _fit(out, *source: object, extra: tuple[object, ...] = ()) -> list[object]:
    return [
        "fit",
        *source,
        "--out",
        out,
        "--features",
        "8,16",
        "--residual",
        "--patch-size",
        "16",
        "--batch-size",
        "4",
        "--optimizer",
        "adam",
        "--steps-per-epoch",
        "4",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--no-progress",
        *extra,
    ]


# --- camera noise ----------------------------------------------------------------------


def test_poisson_gaussian_spec_parses_ranges_and_refuses_nonsense():
    noise = parse_noise("poisson-gaussian:8-1000,0-4")
    assert noise == PoissonGaussianNoise(8.0, 1000.0, 0.0, 4.0)
    assert parse_noise("poisson-gaussian:30") == PoissonGaussianNoise(30.0, 30.0, 0.0, 0.0)
    mixed = parse_noise("gaussian:0-50+poisson-gaussian:10-100,2")
    assert mixed.zero_mean
    for bad, why in [
        ("poisson-gaussian:0", "PHOTONS"),
        ("poisson-gaussian:nan", "PHOTONS"),
        ("poisson-gaussian:30,20000", "READ"),
        ("poisson-gaussian:30,x", "expected"),
        ("poisson-gaussian:100-10", "PHOTONS"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_noise(bad)


def test_poisson_gaussian_noise_has_the_camera_mean_and_variance():
    clean = torch.full((1, 1, 256, 256), 0.5)
    noise = PoissonGaussianNoise(30.0, 30.0, 2.0, 2.0)
    noisy = torch.cat([noise(clean, torch.Generator().manual_seed(s)) for s in range(8)])
    assert float(noisy.mean()) == pytest.approx(0.5, abs=2e-3)
    # variance: x / photons + (read / photons)^2
    assert float(noisy.var()) == pytest.approx(0.5 / 30 + (2 / 30) ** 2, rel=0.03)


def test_photons_are_drawn_log_uniformly_per_image():
    noise = PoissonGaussianNoise(10.0, 1000.0)
    clean = torch.full((4000, 1, 4, 4), 1.0)
    noisy = noise(clean, torch.Generator().manual_seed(0))
    # at white each image's variance is 1 / photons: its log is uniform in [log 10, log 1000]
    photons = 1.0 / noisy.flatten(1).var(dim=1).clamp_min(1e-6)
    below_100 = float((photons < 100).float().mean())
    assert 0.4 < below_100 < 0.6  # a uniform draw in [10, 1000] would put 9 % below 100


def test_the_uint8_twin_matches_the_statistics():
    clean = np.full((200, 200, 1), 128, np.uint8)
    noisy = poisson_gaussian_u8(clean, 30.0, 2.0, np.random.default_rng(0)).astype(float)
    assert noisy.mean() == pytest.approx(128, abs=1)
    x = 128 / 255
    assert noisy.std() == pytest.approx(255 * np.sqrt(x / 30 + (2 / 30) ** 2), rel=0.05)


# --- weights converted between channel counts ---------------------------------------


def test_colour_weights_converted_to_grey_compute_the_colour_model_on_grey_copies():
    torch.manual_seed(0)
    colour = Checkpoint(_TINY, UNet(_TINY).state_dict())
    grey = with_channels(colour, 1)
    assert grey.config.in_channels == grey.config.out_channels == 1
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        want = colour.build_model()(x.expand(-1, 3, -1, -1)).mean(dim=1, keepdim=True)
        got = grey.build_model()(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    back = with_channels(grey, 3)
    rgb = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        out = back.build_model()(rgb)
        mean_in = grey.build_model()(rgb.mean(dim=1, keepdim=True))
    # each channel: the grey model's residual on the mean of R, G and B
    torch.testing.assert_close(
        out - rgb, (mean_in - rgb.mean(1, keepdim=True)).expand(-1, 3, -1, -1), rtol=1e-4, atol=1e-5
    )
    assert with_channels(colour, 3) is colour
    with pytest.raises(CheckpointError, match="channels must be 1 or 3"):
        with_channels(colour, 2)


# --- training data and the fit command ------------------------------------------------


def test_grey_photo_pairs_have_one_channel_of_luma():
    photos = [
        torch.from_numpy(synthetic_photo(np.random.default_rng(i), 40, 40)).permute(2, 0, 1)
        for i in range(3)
    ]
    data = PhotoPairs(
        photos,
        parse_noise("gaussian:10"),
        16,
        0.34,
        torch.Generator().manual_seed(0),
        val_patches=4,
        channels=1,
    )
    inp, target = next(data.batches(5, 1, torch.Generator().manual_seed(1)))
    assert inp.shape == target.shape == (5, 1, 16, 16)
    assert data.validation.clean.shape[1] == 1
    with pytest.raises(ValueError, match="grey_fraction"):
        PhotoPairs(
            photos,
            parse_noise("gaussian:10"),
            16,
            0.34,
            torch.Generator(),
            channels=1,
            grey_fraction=0.5,
        )


def test_fit_channels_1_on_photos_trains_a_grey_model(tmp_path):
    photos = _photos(tmp_path / "photos")
    out = tmp_path / "run"
    result = _invoke(
        *_fit(
            out,
            "--photos",
            photos,
            extra=("--channels", "1", "--noise", "poisson-gaussian:10-100,0-2"),
        )
    )
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt.config.in_channels == ckpt.config.out_channels == 1
    assert ckpt.summary["data"]["channels"] == 1


def test_fit_init_photo_channels_1_starts_from_the_converted_weights(tmp_path):
    photos = _photos(tmp_path / "photos", size=96)
    out = tmp_path / "run"
    args = _fit(out, "--photos", photos, extra=("--channels", "1", "--init", "photo"))
    args = [a for a in args if a not in ("--features", "8,16", "--residual")]
    args[args.index("--patch-size") + 1] = "32"
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(out / "best.pt")
    photo = load_checkpoint(_bundled("photo"))
    assert ckpt.config == with_channels(photo, 1).config  # the photo model's shape, one channel
    assert ckpt.summary["init"]["name"] == "photo"


def _bundled(name: str):
    from n2n_train.checkpoint import find_checkpoint

    return find_checkpoint(name)[0]


def test_own_grey_data_trains_a_grey_model_and_colour_data_refuses_channels_1(tmp_path):
    rng = np.random.default_rng(2)
    for side in ("a", "b"):
        (tmp_path / side).mkdir()
    for i in range(4):
        clean = synthetic_photo(rng, 32, 32).mean(axis=2)
        for side in ("a", "b"):
            noisy = np.clip(clean + rng.normal(0, 10, clean.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(tmp_path / side / f"s{i}.png")
    data, info = load_noisy_scenes("pairs", [tmp_path / "a", tmp_path / "b"], 16, 0.25, 0)
    assert data.channels == 1 and info["channels"] == 1
    inp, _ = next(data.batches(3, 1, torch.Generator()))
    assert inp.shape[1] == 1
    as_rgb, _ = load_noisy_scenes(
        "pairs", [tmp_path / "a", tmp_path / "b"], 16, 0.25, 0, channels=3
    )
    assert next(as_rgb.batches(3, 1, torch.Generator()))[0].shape[1] == 3
    colour = (
        _photos(tmp_path / "colour_a", n=3, size=32),
        _photos(tmp_path / "colour_b", n=3, size=32),
    )
    out = tmp_path / "run"
    result = _invoke(*_fit(out, "--pairs", *colour, extra=("--channels", "1")))
    assert result.exit_code == 2
    assert "--channels 1 trains a grey model, but 3 scene(s) are in colour (p0.png" in result.output


def test_channels_1_with_course_data_is_refused(tmp_path, seedlike_dir):
    out = tmp_path / "run"
    result = _invoke(
        *_fit(out, "--course", seedlike_dir / "train_data.pkl", extra=("--channels", "1"))
    )
    assert result.exit_code == 2 and "course pairs are in colour" in result.output


# --- export, parity and the runtime ----------------------------------------------------


def test_a_grey_model_exports_passes_parity_and_denoises_grey_and_colour(tmp_path):
    from n2n_export.card import write_model_card
    from n2n_export.data import builtin_patterns, parity_cases
    from n2n_export.exporter import export_onnx
    from n2n_export.parity import check_parity
    from n2n_infer import Denoiser
    from n2n_infer.metadata import GREY_NATIVE

    photos = _photos(tmp_path / "photos", grey=True)
    out = tmp_path / "run"
    extra = ("--channels", "1", "--epochs", "2", "--noise", "gaussian:0-40")
    assert _invoke(*_fit(out, "--photos", photos, extra=extra)).exit_code == 0
    model = export_onnx(out / "best.pt", tmp_path / "grey.onnx")
    cases = parity_cases(builtin_patterns(0)[:2], "gaussian:25", 0, channels=1)
    assert all(p[0].shape[0] == 1 for c in cases for p in c.pairs)
    assert check_parity(out / "best.pt", model, cases).passed
    assert "grey images" in write_model_card(model).read_text()

    d = Denoiser(model, device="cpu")
    assert d.channels == 1 and d.grey == GREY_NATIVE and d.metadata["channels"] == 1
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    colour = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    out_grey, out_colour = d.denoise(grey), d.denoise(colour)
    assert out_grey.shape == grey.shape and out_grey.dtype == np.uint8
    # a colour image runs channel by channel: each channel as the grey image it is
    per_channel = np.stack([d.denoise(colour[..., k]) for k in range(3)], axis=-1)
    np.testing.assert_array_equal(out_colour, per_channel)
    # torch agrees with the runtime on a grey image, untiled and tiled
    ckpt = load_checkpoint(out / "best.pt")
    x = torch.from_numpy(grey.astype(np.float32) / 255)[None, None]
    with torch.no_grad():
        m = ckpt.config.stride
        pad = torch.nn.functional.pad(x, (0, -53 % m, 0, -37 % m), mode="reflect")
        want = ckpt.build_model().eval()(pad)[..., :37, :53].clamp(0, 1)[0, 0].numpy() * 255
    assert np.abs(out_grey.astype(float) - want).max() <= 1.0
    tiled = Denoiser(model, device="cpu", tile_size=50).denoise(grey, tile=True)
    assert np.abs(tiled.astype(int) - out_grey.astype(int)).max() <= 1
    batch = d.denoise_batch([grey, colour, grey[:20]])
    np.testing.assert_array_equal(batch[0], out_grey)
    np.testing.assert_array_equal(batch[1], out_colour)
    assert d.denoise_nchw(np.zeros((2, 1, 20, 20), np.float32)).shape == (2, 1, 20, 20)
    with pytest.raises(ValueError, match=r"N×1×H×W"):
        d.denoise_nchw(np.zeros((2, 3, 20, 20), np.float32))


def test_with_no_model_named_grey_images_go_to_the_bundled_grey_model(tmp_path, monkeypatch):
    """Denoiser() keeps photo for colour images and opens the grey model for grey ones."""
    import shutil

    from n2n_export.exporter import export_onnx
    from n2n_infer import Denoiser, registry

    photos = _photos(tmp_path / "photos", grey=True)
    out = tmp_path / "run"
    assert _invoke(*_fit(out, "--photos", photos, extra=("--channels", "1"))).exit_code == 0
    bundled = tmp_path / "models"
    bundled.mkdir()
    shutil.copy(registry.models_dir() / "photo.onnx", bundled / "photo.onnx")
    export_onnx(out / "best.pt", bundled / "grey.onnx")
    monkeypatch.setattr(registry, "models_dir", lambda: bundled)

    default = Denoiser(device="cpu")
    rng = np.random.default_rng(4)
    grey = rng.integers(0, 256, (24, 40), dtype=np.uint8)
    colour = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    grey_model = Denoiser("grey", device="cpu")
    photo = Denoiser("photo", device="cpu")
    np.testing.assert_array_equal(default.denoise(grey), grey_model.denoise(grey))
    np.testing.assert_array_equal(default.denoise(colour), photo.denoise(colour))
    # grey as RGB with three equal channels is grey too
    rgb_grey = np.repeat(grey[..., None], 3, axis=2)
    np.testing.assert_array_equal(default.denoise(rgb_grey)[..., 0], grey_model.denoise(grey))
    # a named mode for grey images keeps them on the colour model
    phases = Denoiser(device="cpu", grey="phases")
    np.testing.assert_array_equal(phases.denoise(grey), photo.denoise(grey))
    assert default.info.channels == 3  # the Denoiser's own model is the colour one
