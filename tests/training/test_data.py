import numpy as np
import pytest
import torch

from n2n_train.data import DataError, load_course_pairs, save_course_pairs
from n2n_train.noise import parse_noise


def test_course_format_round_trip(tmp_path):
    a = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    b = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    save_course_pairs(tmp_path / "train_data.pkl", a, b)
    a2, b2 = load_course_pairs(tmp_path / "train_data.pkl")
    assert torch.equal(a, a2) and torch.equal(b, b2)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ((torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8)), "expected two uint8 tensors"),
        ((torch.zeros(2, 3, 8, 8, dtype=torch.uint8),), "expected a pair"),
        (
            (
                torch.zeros(2, 3, 8, 8, dtype=torch.uint8),
                torch.zeros(3, 3, 8, 8, dtype=torch.uint8),
            ),
            "one shape",
        ),
    ],
)
def test_course_format_refuses_other_content(tmp_path, payload, message):
    torch.save(payload, tmp_path / "bad.pkl")
    with pytest.raises(DataError, match=f"bad.pkl: .*{message}"):
        load_course_pairs(tmp_path / "bad.pkl")


def test_gaussian_noise_is_zero_mean_with_the_given_sigma():
    clean = torch.full((4, 3, 64, 64), 0.5)
    noisy = parse_noise("gaussian:25")(clean, torch.Generator().manual_seed(0))
    residual = noisy - clean
    assert abs(float(residual.mean())) < 2e-3
    assert float(residual.std() * 255) == pytest.approx(25, rel=0.02)


def test_gaussian_range_draws_one_sigma_per_image():
    clean = torch.zeros(64, 3, 16, 16)
    noisy = parse_noise("gaussian:0-50")(clean, torch.Generator().manual_seed(0))
    sigmas = noisy.flatten(1).std(dim=1) * 255
    assert float(sigmas.min()) < 10 and float(sigmas.max()) > 40


@pytest.mark.parametrize("spec", ["salt:3", "gaussian:", "gaussian:50-10", "gaussian:x"])
def test_bad_noise_specs(spec):
    with pytest.raises(ValueError, match="noise"):
        parse_noise(spec)


def test_saving_a_slice_writes_only_the_slice(tmp_path):
    big = torch.zeros(1000, 3, 32, 32, dtype=torch.uint8)
    save_course_pairs(tmp_path / "part.pkl", big[:10], big[10:20])
    assert (tmp_path / "part.pkl").stat().st_size < 2 * 10 * 3 * 32 * 32 + 4096


def test_photo_pyramid_halves_down_to_the_floor_and_averages_areas():
    from n2n_train.data import photo_pyramid

    photo = torch.zeros(3, 600, 1000, dtype=torch.uint8)
    photo[:, ::2, ::2] = 200  # one bright pixel per 2×2 block: the half-size average is 50
    levels = photo_pyramid([photo], halvings=5, min_side=128)
    assert [tuple(p.shape[1:]) for p in levels] == [(600, 1000), (300, 500), (150, 250)]
    assert int(levels[1].min()) == int(levels[1].max()) == 50
    assert photo_pyramid([photo], halvings=0, min_side=128) == [photo]


def test_pyramid_levels_stay_on_their_photo_side_of_the_split():
    from n2n_train.data import PhotoPairs
    from n2n_train.noise import parse_noise

    # Four photos, each one flat value, so that a patch tells which photo it came from.
    photos = [torch.full((3, 512, 512), v, dtype=torch.uint8) for v in (10, 60, 110, 160)]
    data = PhotoPairs(
        photos,
        parse_noise("gaussian:0"),
        32,
        0.25,
        torch.Generator().manual_seed(0),
        val_patches=64,
        pyramid=2,
    )
    val_values = set(torch.unique((data.validation.clean * 255).round()).tolist())
    train_values = {int(p.flatten()[0]) for p in data._train}
    assert len(val_values) == 1 and len(train_values) == 3
    assert val_values.isdisjoint(train_values)
    assert len(data._train) == 3 * 2  # 512 -> 256 (kept), 128 < 256 floor (stopped)


def _grey_pairs(fraction, noise="gaussian:25", clean_targets=False):
    from n2n_train.data import PhotoPairs
    from n2n_train.noise import parse_noise

    gen = torch.Generator().manual_seed(0)
    # colourful photos: R, G and B differ everywhere
    photos = [
        torch.randint(0, 256, (3, 96, 96), generator=gen, dtype=torch.uint8) for _ in range(4)
    ]
    return PhotoPairs(
        photos,
        parse_noise(noise),
        32,
        0.25,
        torch.Generator().manual_seed(1),
        val_patches=200,
        clean_targets=clean_targets,
        grey_fraction=fraction,
    )


def _grey(batch):
    return (batch[:, 0] == batch[:, 1]).all(dim=(1, 2)) & (batch[:, 1] == batch[:, 2]).all(
        dim=(1, 2)
    )


def test_grey_fraction_makes_that_share_of_patches_grey_with_one_noise_in_all_channels():
    data = _grey_pairs(0.3)
    inputs, targets = zip(*data.batches(50, 20, torch.Generator().manual_seed(2)), strict=True)
    inp, target = torch.cat(inputs), torch.cat(targets)
    grey = _grey(inp)
    assert float(grey.float().mean()) == pytest.approx(0.3, abs=0.05)
    assert torch.equal(_grey(target), grey)  # the target copy is grey too, with its own noise
    assert not torch.equal(inp[grey], target[grey].clamp(0, 1).mul(255).round().div(255))
    # one draw per grey patch, as strong as a colour patch's (input and target: sqrt(2)·25)
    assert float((target[grey] - inp[grey]).std()) * 255 == pytest.approx(25 * 2**0.5, rel=0.1)
    assert float((target[~grey] - inp[~grey]).std()) * 255 == pytest.approx(25 * 2**0.5, rel=0.1)
    val = data.validation
    assert float(_grey(val.noisy).float().mean()) == pytest.approx(0.3, abs=0.1)
    assert torch.equal(_grey(val.noisy), _grey(val.clean))


def test_grey_patches_carry_the_luma_of_the_colour_patch():
    from n2n_train.data import LUMA, to_grey

    colour = torch.rand(5, 3, 8, 8)
    grey = to_grey(colour)
    luma = sum(w * colour[:, i] for i, w in enumerate(LUMA))
    for c in range(3):
        assert torch.allclose(grey[:, c], luma)
    data = _grey_pairs(1.0, noise="gaussian:0", clean_targets=True)
    for inp, clean in data.batches(8, 2, torch.Generator()):
        assert bool(_grey(clean).all())
        assert torch.allclose(inp, clean.clamp(0, 1).mul(255).round().div(255))


def test_grey_fraction_zero_keeps_the_colour_only_random_stream():
    a = _grey_pairs(0.0)
    b = _grey_pairs(0.0)
    first = next(a.batches(8, 1, torch.Generator().manual_seed(3)))
    again = next(b.batches(8, 1, torch.Generator().manual_seed(3)))
    assert torch.equal(first[0], again[0]) and not bool(_grey(first[0]).any())
    with pytest.raises(ValueError, match="grey_fraction"):
        _grey_pairs(1.5)


def _sideways_jpeg(path):
    """A JPEG stored 32 wide × 16 high, left half red, right half blue, whose EXIF says
    "rotate 90° clockwise to display" (orientation 6): upright it is 16 wide × 32 high,
    red on top."""
    from PIL import Image

    stored = np.zeros((16, 32, 3), np.uint8)
    stored[:, :16, 0] = 255
    stored[:, 16:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())


def test_photos_are_read_upright_as_the_runtime_reads_them(tmp_path):
    from n2n_infer.imageio import read_image
    from n2n_train.data import load_photo_folder, read_rgb

    _sideways_jpeg(tmp_path / "a.jpg")
    img = read_rgb(tmp_path / "a.jpg")
    assert img.dtype == torch.uint8 and tuple(img.shape) == (3, 32, 16)
    top, bottom = img[:, :12].float().mean(dim=(1, 2)), img[:, 20:].float().mean(dim=(1, 2))
    assert top[0] > 200 and top[2] < 50 and bottom[2] > 200 and bottom[0] < 50
    runtime = torch.from_numpy(read_image(tmp_path / "a.jpg")).permute(2, 0, 1)
    assert torch.equal(img, runtime)
    assert torch.equal(load_photo_folder(tmp_path)[0], img)


def test_unreadable_photos_are_named_in_a_data_error(tmp_path):
    from n2n_train.data import read_rgb

    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=r"broken\.png"):
        read_rgb(tmp_path / "broken.png")
