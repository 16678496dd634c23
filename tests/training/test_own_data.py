"""Training on the user's own noisy data: pairs, bursts, single images (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from click.testing import CliRunner
from PIL import Image

from n2n_train.checkpoint import CheckpointError, find_checkpoint, load_checkpoint
from n2n_train.cli import main
from n2n_train.config import TrainConfig
from n2n_train.data import DataError
from n2n_train.neighbor import neighbor2neighbor_loss, neighbor_indices, subsample
from n2n_train.owndata import NoisyScenes, Scene, scan_bursts, scan_pairs, scan_singles
from tests.conftest import REPO, synthetic_photo

SIGMA = 20.0


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _noisy(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(np.rint(clean + rng.normal(0, SIGMA, clean.shape)), 0, 255).astype(np.uint8)


def _save(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def _pairs(root: Path, n: int = 6, size: int = 64, seed: int = 0) -> tuple[Path, Path]:
    """Two folders of ``n`` aligned noisy captures (one of them in a subfolder)."""
    rng = np.random.default_rng(seed)
    a, b = root / "noisy_a", root / "noisy_b"
    for i in range(n):
        clean = synthetic_photo(rng, size, size).astype(np.float64)
        rel = f"day2/s{i}.png" if i == 0 else f"s{i}.png"
        _save(a / rel, _noisy(clean, rng))
        _save(b / rel, _noisy(clean, rng))
    return a, b


def _bursts(root: Path, n: int = 5, frames: int = 3, size: int = 64) -> Path:
    rng = np.random.default_rng(1)
    folder = root / "bursts"
    for i in range(n):
        clean = synthetic_photo(rng, size, size).astype(np.float64)
        for k in range(frames):
            _save(folder / f"scene{i}" / f"frame{k}.png", _noisy(clean, rng))
    return folder


def _singles(root: Path, n: int = 6, size: int = 64) -> Path:
    rng = np.random.default_rng(2)
    folder = root / "singles"
    for i in range(n):
        _save(folder / f"img{i}.png", _noisy(synthetic_photo(rng, size, size).astype(float), rng))
    return folder


def _fit_args(out: Path, *source: object, shape: tuple[str, ...] = ("--preset", "tiny")) -> list:
    return [
        "fit",
        *source,
        "--out",
        out,
        *shape,
        "--patch-size",
        "16",
        "--batch-size",
        "8",
        "--optimizer",
        "adam",
        "--steps-per-epoch",
        "10",
        "--epochs",
        "3",
        "--threads",
        "1",
        "--no-progress",
    ]


# --- reading and matching -------------------------------------------------------------


def test_pairs_are_matched_by_relative_path(tmp_path):
    a, b = _pairs(tmp_path)
    (a / "notes.txt").write_text("not an image")  # ignored: not an image suffix
    scenes = scan_pairs(a, b, min_side=16)
    assert [s.name for s in scenes] == ["day2/s0.png", *[f"s{i}.png" for i in range(1, 6)]]
    assert all(len(s.frames) == 2 and s.frames[0].shape == (3, 64, 64) for s in scenes)
    assert not torch.equal(scenes[0].frames[0], scenes[0].frames[1])  # two captures


def test_pairs_list_every_unmatched_missized_and_unreadable_file_in_one_error(tmp_path):
    a, b = _pairs(tmp_path)
    (a / "only_a.png").write_bytes((a / "s1.png").read_bytes())
    (b / "only_b.png").write_bytes((b / "s1.png").read_bytes())
    _save(b / "s2.png", np.zeros((40, 64, 3), np.uint8))  # another size than a/s2.png
    (a / "s3.png").write_bytes(b"not a png")
    with pytest.raises(DataError) as err:
        scan_pairs(a, b, min_side=16)
    msg = str(err.value)
    assert "4 problem(s)" in msg
    assert "only_a.png" in msg and "only_b.png" in msg
    assert "different sizes" in msg and "s2.png" in msg and "64×40" in msg
    assert "unreadable" in msg and "s3.png" in msg


def test_fit_with_bad_pairs_exits_2_before_training(tmp_path):
    a, b = _pairs(tmp_path)
    (a / "only_a.png").write_bytes((a / "s1.png").read_bytes())
    (b / "s4.png").unlink()
    result = _invoke(*_fit_args(tmp_path / "run", "--pairs", a, b))
    assert result.exit_code == 2
    assert "only_a.png" in result.output and "s4.png" in result.output
    assert not (tmp_path / "run" / "best.pt").exists()


def test_scenes_smaller_than_the_patch_are_listed(tmp_path):
    a, b = _pairs(tmp_path, n=3, size=24)
    with pytest.raises(DataError, match=r"too small.*24×24.*32×32"):
        scan_pairs(a, b, min_side=32)


def test_bursts_need_scene_folders_of_two_frames(tmp_path):
    folder = _bursts(tmp_path)
    _save(folder / "loose.png", np.zeros((64, 64, 3), np.uint8))
    _save(folder / "lonely" / "only.png", np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(DataError) as err:
        scan_bursts(folder)
    assert "loose.png" in str(err.value) and "not in a scene folder" in str(err.value)
    assert "lonely" in str(err.value) and "holds 1 image" in str(err.value)


def test_grey_16_bit_and_rotated_files_read_as_the_runtime_reads_them(tmp_path):
    """A 16-bit grey PNG pairs with an 8-bit RGB one; EXIF orientation turns a JPEG upright."""
    a, b = tmp_path / "a", tmp_path / "b"
    grey16 = (np.arange(48 * 32, dtype=np.uint16).reshape(48, 32) * 40).astype(np.uint16)
    _save(a / "x.png", grey16)
    _save(b / "x.png", np.zeros((48, 32, 3), np.uint8))
    wide = Image.fromarray(np.zeros((32, 48, 3), np.uint8))  # stored 48 wide, shown 32 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    a.joinpath("y.jpg").parent.mkdir(exist_ok=True)
    wide.save(a / "y.jpg", exif=exif.tobytes())
    _save(b / "y.jpg", np.zeros((48, 32, 3), np.uint8))
    scenes = {s.name: s for s in scan_pairs(a, b)}
    x = scenes["x.png"]
    assert x.grey and x.frames[0].dtype == torch.uint16  # grey kept as one 16-bit plane
    assert torch.equal(x.frames[0][0], torch.from_numpy(grey16))  # never rounded to 8 bits
    assert x.frames[1].shape == (1, 48, 32) and x.frames[1].dtype == torch.uint8  # equal RGB
    assert scenes["y.jpg"].size == (48, 32)


def _tiff(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, img)


def _dim_capture(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Counts 100..2100 (12-bit data in a 16-bit file), the extremes pinned at [0, :2]."""
    counts = np.clip(clean + rng.normal(0, 30, clean.shape), 100, 2100).astype(np.uint16)
    counts[0, :2] = (100, 2100)
    return counts


def test_dim_16_bit_grey_pairs_train_on_every_level_and_are_recorded_as_grey(tmp_path):
    """12-bit data in 16-bit files (a microscope's): patches are whole counts mapped by the
    image's own range, as n2n-infer maps them, not 8-bit levels; all grey: one channel."""
    rng = np.random.default_rng(3)
    a, b = tmp_path / "a", tmp_path / "b"
    for i in range(3):
        clean = 100 + 2000 * rng.random((40, 40))
        _tiff(a / f"s{i}.tif", _dim_capture(clean, rng))
        _tiff(b / f"s{i}.tif", _dim_capture(clean, rng))
    scenes = scan_pairs(a, b)
    assert {lv for s in scenes for lv in s.levels} == {(100.0, 2000.0)}  # levels_of's
    data = NoisyScenes(scenes, "pairs", 16, 0.34, torch.Generator().manual_seed(0))
    inp, _ = next(data.batches(8, 1, torch.Generator().manual_seed(1)))
    counts = inp.double() * 2000 + 100
    assert torch.allclose(counts, counts.round(), atol=2e-3)  # whole 16-bit counts
    assert len(torch.unique(counts.round())) > 500  # 8-bit rounding would leave 9 levels
    assert float(inp.min()) >= 0.0 and float(inp.max()) <= 1.0
    assert inp.shape[1] == 1  # every scene grey: a grey-native model's patches
    assert data.describe() == {
        "scenes": 3,
        "val_scenes": 1,
        "files": 6,
        "grey_scenes": 3,
        "channels": 1,
        "pixel_types": ["uint16"],
    }
    as_rgb = NoisyScenes(scenes, "pairs", 16, 0.34, torch.Generator().manual_seed(0), channels=3)
    inp, _ = next(as_rgb.batches(8, 1, torch.Generator().manual_seed(1)))
    assert torch.equal(inp[:, 0], inp[:, 1]) and torch.equal(inp[:, 0], inp[:, 2])


def test_the_target_is_mapped_by_the_input_frames_levels(tmp_path):
    """The second capture 50 counts brighter: with the input's levels the target stays
    50 counts (0.025 of the 2000-count span) above the input, as the pair really is."""
    rng = np.random.default_rng(4)
    a, b = tmp_path / "a", tmp_path / "b"
    for i in range(2):
        counts = _dim_capture(100 + 2000 * rng.random((32, 32)), rng)
        _tiff(a / f"s{i}.tif", counts)
        _tiff(b / f"s{i}.tif", counts + 50)
    data = NoisyScenes(
        scan_pairs(a, b), "pairs", 16, 0.5, torch.Generator().manual_seed(0), clean_targets=True
    )
    inp, target = next(data.batches(4, 1, torch.Generator().manual_seed(1)))
    assert torch.allclose(target - inp, torch.full_like(inp, 0.025), atol=1e-5)


def test_a_model_fine_tuned_on_grey_16_bit_pairs_is_fed_grey_images_as_it_learned_them(
    tmp_path,
):
    """Trained with --channels 3 on grey copied into RGB -> the runtime's --grey auto copies
    too (replicate); without it, grey data trains a grey-native model."""
    from n2n_export.card import write_model_card
    from n2n_export.exporter import export_onnx
    from n2n_infer import Denoiser

    rng = np.random.default_rng(5)
    a, b = tmp_path / "a", tmp_path / "b"
    for i in range(3):
        clean = 100 + 2000 * (synthetic_photo(rng, 40, 40)[..., 0] / 255.0)
        _tiff(a / f"s{i}.tif", (clean + rng.normal(0, 30, clean.shape)).astype(np.uint16))
        _tiff(b / f"s{i}.tif", (clean + rng.normal(0, 30, clean.shape)).astype(np.uint16))
    out = tmp_path / "run"
    args = _fit_args(out, "--pairs", a, b)
    assert _invoke(*args, "--epochs", "1", "--channels", "3").exit_code == 0
    assert load_checkpoint(out / "best.pt").summary["data"]["grey_scenes"] == 3
    model = export_onnx(out / "best.pt", tmp_path / "grey.onnx")
    assert "6 files (16-bit, 3 grey scenes)" in write_model_card(model).read_text()
    assert Denoiser(model, device="cpu").grey == "replicate"
    assert Denoiser(REPO / "models" / "photo.onnx", device="cpu").grey == "phases"
    native = tmp_path / "native"
    assert _invoke(*_fit_args(native, "--pairs", a, b), "--epochs", "1").exit_code == 0
    assert load_checkpoint(native / "best.pt").config.in_channels == 1
    assert (
        Denoiser(export_onnx(native / "best.pt", tmp_path / "n.onnx"), device="cpu").grey
        == "native"
    )


def test_a_scene_of_grey_and_colour_frames_is_colour(tmp_path):
    rng = np.random.default_rng(4)
    a, b = tmp_path / "a", tmp_path / "b"
    _save(a / "s.png", rng.integers(0, 256, (20, 20), dtype=np.uint8))
    _save(b / "s.png", rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    (scene,) = scan_pairs(a, b)
    assert not scene.grey and [f.shape for f in scene.frames] == [(3, 20, 20)] * 2
    assert torch.equal(scene.frames[0][0], scene.frames[0][2])


def test_float_tiffs_outside_0_1_are_refused_by_name(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _tiff(a / "s.tif", np.full((20, 20), 1.5, np.float32))
    _tiff(b / "s.tif", np.full((20, 20), 0.5, np.float32))
    with pytest.raises(DataError, match=r"s\.tif: floating-point TIFF with values in \[1\.5,"):
        scan_pairs(a, b)
    _tiff(a / "s.tif", np.full((20, 20), 0.25, np.float32))
    (scene,) = scan_pairs(a, b)
    assert scene.frames[0].dtype == torch.float32 and float(scene.frames[0].max()) == 0.25


# --- sampling and the scene split -----------------------------------------------------


def _flat_scenes(n: int, frames: int, size: int = 32) -> list[Scene]:
    """Scene i, frame k: every pixel 10·i + k (to trace where patches come from)."""
    return [
        Scene(
            f"s{i}",
            tuple(
                torch.full((3, size, size), 10 * i + k, dtype=torch.uint8) for k in range(frames)
            ),
        )
        for i in range(n)
    ]


def test_validation_is_split_by_scene():
    scenes = _flat_scenes(10, 3)
    data = NoisyScenes(scenes, "bursts", 16, 0.2, torch.Generator().manual_seed(0))
    train = {s.name for s in data.train_scenes}
    val = {s.name for s in data.val_scenes}
    assert len(val) == 2 and len(train) == 8 and not train & val
    seen_val = {int(v) // 10 for v in (data.validation.noisy[:, 0, 0, 0] * 255).round()}
    assert seen_val == {int(n[1:]) for n in val}
    for inp, _ in data.batches(16, 5, torch.Generator().manual_seed(1)):
        assert {int(v) // 10 for v in (inp[:, 0, 0, 0] * 255).round()} <= {
            int(n[1:]) for n in train
        }
    again = NoisyScenes(scenes, "bursts", 16, 0.2, torch.Generator().manual_seed(0))
    assert {s.name for s in again.val_scenes} == val  # seeded


def test_bursts_pair_two_different_frames_of_one_scene():
    data = NoisyScenes(_flat_scenes(4, 3), "bursts", 8, 0.25, torch.Generator().manual_seed(0))
    inp, target = next(data.batches(64, 1, torch.Generator().manual_seed(2)))
    a, b = (torch.round(t[:, 0, 0, 0] * 255).long() for t in (inp, target))
    assert torch.equal(a // 10, b // 10)  # same scene
    assert (a != b).all()  # different frames
    assert len(set((a % 10).tolist())) == 3  # every frame is used


def test_a_single_scene_cannot_be_split():
    with pytest.raises(DataError, match="at least 2 scenes"):
        NoisyScenes(_flat_scenes(1, 2), "pairs", 8, 0.2, torch.Generator())


# --- Neighbor2Neighbor ----------------------------------------------------------------


def test_sub_images_take_disjoint_horizontal_or_vertical_neighbours():
    n, h, w = 3, 8, 10
    ids = torch.arange(n * h * w, dtype=torch.float64).reshape(n, 1, h, w).expand(n, 2, h, w)
    first, second = neighbor_indices(ids.shape, torch.Generator().manual_seed(0))
    g1, g2 = subsample(ids, first), subsample(ids, second)
    assert g1.shape == g2.shape == (n, 2, h // 2, w // 2)
    assert torch.equal(g1[:, 0], g1[:, 1])  # one choice per location, shared by channels
    y1, x1 = (g1[:, 0].long() % (h * w)) // w, g1[:, 0].long() % w
    y2, x2 = (g2[:, 0].long() % (h * w)) // w, g2[:, 0].long() % w
    assert ((y1 - y2).abs() + (x1 - x2).abs() == 1).all()  # neighbours, never diagonal or equal
    cell_y, cell_x = torch.meshgrid(torch.arange(h // 2), torch.arange(w // 2), indexing="ij")
    for yy, xx in ((y1, x1), (y2, x2)):  # each from its own 2×2 cell
        assert ((yy // 2 == cell_y) & (xx // 2 == cell_x)).all()
    assert len(set(first.flatten().tolist())) == 4  # every position is drawn


def test_regulariser_is_zero_for_the_identity_and_counts_with_gamma():
    noisy = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))

    def loss(model, gamma):
        return float(neighbor2neighbor_loss(model, noisy, torch.Generator().manual_seed(1), gamma))

    identity = torch.nn.Identity()  # f(g1) - g2 == g1(f) - g2(f): nothing to regularise
    assert loss(identity, 0.0) > 0 and loss(identity, 5.0) == pytest.approx(loss(identity, 0.0))
    halve = lambda x: 0.5 * x  # noqa: E731
    assert loss(halve, 1.0) > loss(halve, 0.0) + 1e-3


def test_singles_validation_is_two_neighbour_sub_images(tmp_path):
    scenes = scan_singles(_singles(tmp_path), min_side=32)
    data = NoisyScenes(scenes, "singles", 16, 0.34, torch.Generator().manual_seed(0))
    assert data.subsampled and data.crop == 32
    assert data.validation.noisy.shape[2:] == (16, 16) == data.validation.target.shape[2:]
    inp, target = next(data.batches(4, 1, torch.Generator()))
    assert inp.shape == (4, 3, 32, 32) and torch.equal(inp, target)


def test_singles_validation_scores_the_full_neighbor2neighbor_loss(tmp_path):
    """The loss that picks the best epoch is the one being trained, regulariser included."""
    from n2n_train.loop import validate

    scenes = scan_singles(_singles(tmp_path), min_side=32)
    data = NoisyScenes(scenes, "singles", 16, 0.34, torch.Generator().manual_seed(0))
    val = data.validation
    first, second = val.index
    assert torch.equal(subsample(val.full, first), val.noisy)
    assert torch.equal(subsample(val.full, second), val.target)

    def score(model, gamma):
        return validate(model, val, "cpu", TrainConfig(regulariser=gamma))

    class Halve(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 0.5 * x

    halve = Halve()
    plain = float(torch.mean((0.5 * val.noisy - val.target) ** 2))
    assert score(halve, 0.0) == pytest.approx(plain, rel=1e-6)
    # f(g1) - g2 against f(y)'s own neighbours: 0.5·(g1 - g2) off, weighed by gamma
    reg = float(torch.mean((0.5 * val.noisy - val.target - 0.5 * (val.noisy - val.target)) ** 2))
    assert score(halve, 2.0) == pytest.approx(plain + 2.0 * reg, rel=1e-6)
    assert score(torch.nn.Identity(), 2.0) == pytest.approx(score(torch.nn.Identity(), 0.0))


# --- training ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["pairs", "bursts", "singles"])
def test_fit_on_own_data_lowers_the_validation_loss(tmp_path, mode):
    source = {
        "pairs": lambda: ("--pairs", *_pairs(tmp_path)),
        "bursts": lambda: ("--bursts", _bursts(tmp_path)),
        "singles": lambda: ("--singles", _singles(tmp_path)),
    }[mode]()
    out = tmp_path / "run"
    result = _invoke(*_fit_args(out, *source), "--epochs", "4", "--lr", "3e-3")
    assert result.exit_code == 0, result.output
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["val_loss"] < 0.8 * rows[0]["val_loss"]
    summary = load_checkpoint(out / "best.pt").summary
    assert summary["data"]["source"] == mode
    assert summary["mode"] == ("neighbor2neighbor" if mode == "singles" else "noise2noise")
    assert str(tmp_path) not in json.dumps(summary)  # folders by name, never by path
    assert summary["data"]["files"] == {"pairs": 12, "bursts": 15, "singles": 6}[mode]
    paths = json.loads((out / "local_paths.json").read_text())
    assert mode in paths  # where the data lies stays in the run folder


def test_minutes_stops_training_and_keeps_the_best_checkpoint(tmp_path):
    a, b = _pairs(tmp_path)
    out = tmp_path / "run"
    args = _fit_args(out, "--pairs", a, b)
    result = _invoke(*args, "--epochs", "1000", "--minutes", "0.002")
    assert result.exit_code == 0, result.output
    summary = load_checkpoint(out / "last.pt").summary
    assert summary["epochs"] < 1000 and "time budget of 0.002 minutes" in summary["stopped"]
    assert summary["train_config"]["minutes"] == 0.002
    best = load_checkpoint(out / "best.pt").summary
    assert best["best_val_loss"] == summary["best_val_loss"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--photos", "."], "exactly one of"),
        (["--grey-fraction", "0.5"], "--grey-fraction needs --photos"),
    ],
)
def test_options_that_do_not_fit_own_data_are_refused(tmp_path, extra, message):
    a, b = _pairs(tmp_path, n=2)
    args = [*_fit_args(tmp_path / "run", "--pairs", a, b), *extra]
    result = CliRunner().invoke(main, [str(x) for x in args])
    assert result.exit_code == 2 and message in result.output


def test_bursts_refuse_clean_targets(tmp_path):
    args = [*_fit_args(tmp_path / "run", "--bursts", tmp_path), "--target", "clean"]
    result = CliRunner().invoke(main, [str(x) for x in args])
    assert result.exit_code == 2 and "--target clean needs --photos, or --pairs" in result.output


def test_pairs_with_clean_targets_train_noisy_to_clean_and_report_psnr():
    scenes = _flat_scenes(4, 2)  # frame 1 stands for the clean reference
    data = NoisyScenes(
        scenes, "pairs", 8, 0.25, torch.Generator().manual_seed(0), clean_targets=True
    )
    inp, target = next(data.batches(32, 1, torch.Generator().manual_seed(1)))
    assert (torch.round(inp[:, 0, 0, 0] * 255).long() % 10 == 0).all()
    assert (torch.round(target[:, 0, 0, 0] * 255).long() % 10 == 1).all()
    assert data.psnr_set is not None and torch.equal(data.psnr_set[1], data.validation.target)


def test_singles_refuse_swap_and_blur(tmp_path):
    result = CliRunner().invoke(
        main, [str(x) for x in [*_fit_args(tmp_path, "--singles", tmp_path), "--swap"]]
    )
    assert result.exit_code == 2 and "--singles" in result.output


def test_version_6_train_configs_load_without_a_budget():
    v6 = TrainConfig().to_dict()
    del v6["minutes"], v6["regulariser"]
    v6["version"] = 6
    cfg = TrainConfig.from_dict(v6)
    assert (cfg.minutes, cfg.regulariser) == (0.0, 2.0)


# --- fine-tuning from a shipped model ------------------------------------------------------


def test_a_bundled_name_resolves_to_its_shipped_checkpoint():
    path, name = find_checkpoint("photo")
    assert path.resolve() == (REPO / "models" / "photo.pt").resolve() and name == "photo"
    with pytest.raises(CheckpointError, match=r"bundled checkpoints.*photo"):
        find_checkpoint("no-such-model")
    with pytest.raises(CheckpointError, match="not found"):
        find_checkpoint("missing/best.pt")


def test_fine_tune_export_parity_and_denoiser(tmp_path):
    """--init (another model's shape, taken from the checkpoint) -> export -> parity -> Denoiser."""
    from n2n_export.card import write_model_card
    from n2n_export.data import ParityCase, parity_cases
    from n2n_export.exporter import export_onnx
    from n2n_export.parity import check_parity
    from n2n_infer import Denoiser

    a, b = _pairs(tmp_path)
    start = tmp_path / "start"
    assert _invoke(*_fit_args(start, "--pairs", a, b), "--epochs", "1").exit_code == 0
    out = tmp_path / "run"
    args = _fit_args(out, "--pairs", a, b, shape=())  # no shape option: the checkpoint's
    result = _invoke(*args, "--init", start / "best.pt", "--epochs", "2", "--lr", "1e-4")
    assert result.exit_code == 0, result.output
    tuned = load_checkpoint(out / "best.pt")
    assert tuned.config == load_checkpoint(start / "best.pt").config  # its shape (tiny)
    assert tuned.config.features == (8, 16)
    assert tuned.summary["init"]["name"] == "best.pt"
    assert tuned.summary["init"]["val_loss"] > 0
    model = export_onnx(out / "best.pt", tmp_path / "mine.onnx")
    card = write_model_card(model).read_text()
    assert "mode `pairs`" in card and "`noisy_a` and `noisy_b`" in card
    assert "12 files (8-bit), 6 scenes" in card
    assert "fine-tuned from `best.pt`" in card and "noisy targets, so no PSNR" in card
    assert str(tmp_path) not in card
    images = [synthetic_photo(np.random.default_rng(5), 40, 56)]
    cases = [ParityCase(c.name, c.pairs) for c in parity_cases(images, "gaussian:20", 0)[:2]]
    assert check_parity(out / "best.pt", model, cases).passed
    noisy = _noisy(images[0].astype(float), np.random.default_rng(6))
    denoised = Denoiser(model, device="cpu").denoise(noisy)
    assert denoised.shape == noisy.shape and denoised.dtype == np.uint8
