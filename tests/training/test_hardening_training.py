"""Hardening of ``n2n-train``: a run never writes into its data, dead 16-bit frames are
refused by name, no float option takes NaN or infinities, sweep specs are checked
before any run trains, and ``fit`` and ``sweep`` say where they are."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import click
import numpy as np
import pytest
import tifffile
import torch
from click.testing import CliRunner
from PIL import Image

from n2n_train.cli import main
from n2n_train.config import ConfigError, TrainConfig, UNetConfig
from n2n_train.data import DataError, PhotoPairs, save_course_pairs
from n2n_train.loop import fit
from n2n_train.noise import parse_noise
from n2n_train.owndata import scan_pairs
from n2n_train.sweep import SweepError, fit_args, load_spec
from n2n_train.unet import UNet
from tests.conftest import synthetic_photo

#: A tiny, fast fit: 2 epochs of 3 steps of 4 patches of 16², the 2-level model.
FAST = ("--preset", "tiny", "--patch-size", "16", "--batch-size", "4", "--steps-per-epoch", "3")
FAST += ("--epochs", "2", "--threads", "1", "--no-progress")
#: The longest run name, in UTF-8 bytes (docs/training.md).
MAX_NAME = 100
#: The same in a sweep spec's [base].
FAST_SPEC = 'preset = "tiny"\npatch_size = 16\nbatch_size = 4\nsteps_per_epoch = 3\nepochs = 1\n'


def _invoke(*args: object, **kwargs: object):
    return CliRunner().invoke(main, [str(a) for a in args], **kwargs)


def _images(folder: Path, n: int = 3, size: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(synthetic_photo(rng, size, size)).save(folder / f"s{i}.png")
    return folder


def _course(folder: Path, n: int = 40) -> tuple[Path, Path]:
    """Tiny course-format files: ``n`` training and 8 validation 32×32 pairs."""
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(60, 200, (n + 8, 3, 8, 8), generator=gen, dtype=torch.uint8)
    clean = clean.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)

    def noisy() -> torch.Tensor:
        noise = torch.randint(-30, 31, clean.shape, generator=gen)
        return (clean.int() + noise).clamp(0, 255).to(torch.uint8)

    folder.mkdir(parents=True, exist_ok=True)
    save_course_pairs(folder / "train.pkl", noisy()[:n], noisy()[:n])
    save_course_pairs(folder / "val.pkl", noisy()[n:], clean[n:])
    return folder / "train.pkl", folder / "val.pkl"


# --- a run never writes into its data ----------------------------------------------------


def _layouts(root: Path) -> dict[str, tuple[list[object], Path, Path]]:
    """name -> (fit source options, OUT, the data folder the message must name)."""
    a, b = _images(root / "a"), _images(root / "b", seed=1)
    singles = _images(root / "singles")
    bursts = root / "bursts"
    _images(bursts / "x"), _images(bursts / "y", seed=2)
    photos = _images(root / "photos", size=96)
    (root / "link_to_singles").symlink_to(singles)
    return {
        "out inside singles": (["--singles", singles], singles / "run", singles),
        "out inside the first of pairs": (["--pairs", a, b], a / "run", a),
        "out is the second of pairs": (["--pairs", a, b], b, b),
        "out holds bursts": (["--bursts", bursts], root, bursts),
        "out inside photos": (["--photos", photos], photos / "run", photos),
        "out inside singles through a link": (
            ["--singles", singles],
            root / "link_to_singles" / "run",
            singles,
        ),
        "singles through a link, out inside": (
            ["--singles", root / "link_to_singles"],
            singles / "deeper" / "run",
            root / "link_to_singles",
        ),
    }


LAYOUTS = [
    "out inside singles",
    "out inside the first of pairs",
    "out is the second of pairs",
    "out holds bursts",
    "out inside photos",
    "out inside singles through a link",
    "singles through a link, out inside",
]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_fit_refuses_an_out_that_is_in_or_holds_its_data(tmp_path, layout):
    source, out, data = _layouts(tmp_path)[layout]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = _invoke("fit", *source, "--out", out, *FAST)
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert line.startswith("error: --out") and "\n" not in line
    assert str(out) in line and str(data) in line
    assert "Traceback" not in result.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


def test_fit_refuses_a_link_inside_its_data_that_leads_into_out(tmp_path):
    singles = _images(tmp_path / "singles")
    out = tmp_path / "runs" / "mine"
    out.mkdir(parents=True)
    (singles / "old_runs").symlink_to(tmp_path / "runs")  # the data would read OUT's files
    result = _invoke("fit", "--singles", singles, "--out", out, *FAST)
    assert result.exit_code == 2, result.output
    assert str(singles / "old_runs") in result.output and str(out) in result.output
    assert not (out / "best.pt").exists()


def test_fit_beside_its_data_trains(tmp_path):
    """The guard refuses no ordinary layout: data and runs side by side."""
    a, b = _images(tmp_path / "a"), _images(tmp_path / "b", seed=1)
    (a / "sub").mkdir()
    result = _invoke("fit", "--pairs", a, b, "--out", tmp_path / "runs" / "x", *FAST)
    assert result.exit_code == 0, result.output


def test_average_refuses_to_write_into_the_snapshot_folder_it_averages(tmp_path):
    snaps = tmp_path / "run" / "snapshots"
    snaps.mkdir(parents=True)
    for name in ("epoch-001.pt", "epoch-002.pt"):
        (snaps / name).write_bytes(b"not read: refused first")
    result = _invoke("average", snaps / "averaged.pt", snaps, "--no-validate")
    assert result.exit_code == 2, result.output
    assert "lies in the checkpoint folder" in result.output and str(snaps) in result.output
    assert not (snaps / "averaged.pt").exists()


def test_a_sweep_refuses_a_run_folder_inside_its_data_before_any_run(tmp_path):
    _, val = _course(tmp_path / "data")
    shots = _images(tmp_path / "shots")
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'[base]\nsingles = "shots"\ncourse_val = "{val}"\n{FAST_SPEC}[[runs]]\nname = "a"\n'
    )
    result = _invoke("sweep", spec, shots / "sweep")
    assert result.exit_code == 2, result.output
    assert str(shots / "sweep" / "a") in result.output and str(shots) in result.output
    assert not (shots / "sweep").exists()


# --- dim 16-bit scenes with a dead frame -------------------------------------------------


def _tiff(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, img)


def _dim(rng: np.random.Generator, size: int = 24) -> np.ndarray:
    """12-bit counts 100..2100 in a 16-bit file (a microscope's)."""
    counts = (100 + 2000 * rng.random((size, size))).astype(np.uint16)
    counts[0, :2] = (100, 2100)
    return counts


@pytest.mark.parametrize(
    ("odd", "shown"),
    [
        (np.full((24, 24), 500, np.uint16), "constant 500 (a dead capture?)"),
        (np.full((24, 24), 0, np.uint16), "constant 0 (a dead capture?)"),
        ((500 + np.arange(24 * 24) % 21).astype(np.uint16).reshape(24, 24), "500..520"),
    ],
    ids=["constant", "constant-black", "span-of-20"],
)
def test_a_dim_16_bit_scene_with_a_dead_or_flat_frame_is_refused_by_name(tmp_path, odd, shown):
    rng = np.random.default_rng(0)
    a, b = tmp_path / "a", tmp_path / "b"
    for i in range(2):
        _tiff(a / f"s{i}.tif", _dim(rng))
        _tiff(b / f"s{i}.tif", _dim(rng))
    _tiff(b / "s1.tif", odd)
    with pytest.raises(DataError) as err:
        scan_pairs(a, b)
    msg = str(err.value)
    assert "1 problem(s)" in msg and "pixel ranges too far apart" in msg
    assert f"{b / 's1.tif'} {shown}" in msg and str(a / "s1.tif") in msg
    result = _invoke("fit", "--pairs", a, b, "--out", tmp_path / "run", *FAST)
    assert result.exit_code == 2 and str(b / "s1.tif") in result.output
    assert not (tmp_path / "run" / "best.pt").exists()


def test_dim_16_bit_captures_of_slightly_different_exposure_still_pair(tmp_path):
    rng = np.random.default_rng(1)
    a, b = tmp_path / "a", tmp_path / "b"
    for i in range(2):
        counts = _dim(rng)
        _tiff(a / f"s{i}.tif", counts)
        _tiff(b / f"s{i}.tif", (counts * 1.5).astype(np.uint16))  # 1.5 times the light
    assert len(scan_pairs(a, b)) == 2


# --- no float option takes NaN or infinities ---------------------------------------------


def _float_options() -> list[tuple[str, str]]:
    """(command, option) for every float option of every n2n-train command."""
    out = []
    for name, command in sorted(main.commands.items()):
        for param in command.params:
            if isinstance(param, click.Option) and isinstance(
                param.type, click.types.FloatParamType
            ):
                out.append((name, max(param.opts, key=len)))
    return out


FLOAT_OPTIONS = _float_options()


def test_the_float_options_are_found_and_all_refuse_non_finite_values():
    from n2n_train.cli import FiniteFloat

    assert {("fit", "--lr"), ("fit", "--minutes"), ("fit", "--regulariser")} <= set(FLOAT_OPTIONS)
    assert ("make-seedlike", "--target-psnr") in FLOAT_OPTIONS
    for command, option in FLOAT_OPTIONS:
        param = next(p for p in main.commands[command].params if option in p.opts)
        assert isinstance(param.type, FiniteFloat), f"{command} {option}: not a FiniteFloat"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "Infinity"])
@pytest.mark.parametrize(("command", "option"), FLOAT_OPTIONS, ids=lambda x: str(x))
def test_every_float_option_refuses_nan_and_infinities(tmp_path, command, option, value):
    result = _invoke(command, f"{option}={value}", catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output
    assert "expected a finite number" in result.output or "not in the range" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "changes",
    [
        {"minutes": math.nan},
        {"minutes": math.inf},
        {"regulariser": math.nan},
        {"regulariser": math.inf},
        {"momentum": math.nan},
        {"lr": math.inf},
        {"blur_prob": math.nan},
    ],
    ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()),
)
def test_the_training_config_refuses_non_finite_values(changes):
    with pytest.raises(ValueError, match="finite"):
        TrainConfig(**changes)
    raw = {**TrainConfig().to_dict(), **changes}
    with pytest.raises(ConfigError, match="finite"):
        TrainConfig.from_dict(raw, source="spec")


def test_the_model_config_refuses_a_nan_dropout():
    with pytest.raises(ValueError, match="dropout must be a finite number"):
        UNetConfig(dropout=math.nan)


def test_a_sweep_spec_with_nan_is_refused_before_any_run(tmp_path):
    _, val = _course(tmp_path / "data")
    spec = tmp_path / "spec.toml"
    base = f'[base]\ncourse = "data/train.pkl"\ncourse_val = "{val}"\n'
    for line, option in [
        ("minutes = nan", "--minutes"),
        ("regulariser = inf", "--regulariser"),
        ("blur_prob = -inf", "--blur-prob"),
    ]:
        spec.write_text(f'{base}{line}\n[[runs]]\nname = "a"\n')
        result = _invoke("sweep", spec, tmp_path / "out")
        assert result.exit_code == 2 and f"'{option}'" in result.output, result.output
        assert not (tmp_path / "out").exists()
    spec.write_text(f'{base}[[runs]]\nname = "a"\nstudy_psnr = nan\n')
    with pytest.raises(SweepError, match="study_psnr must be a finite number"):
        load_spec(spec)


# --- sweep specs ---------------------------------------------------------------------------


def test_a_spec_list_of_pairs_is_two_folders_resolved_against_the_spec(tmp_path, monkeypatch):
    _images(tmp_path / "specs" / "a"), _images(tmp_path / "specs" / "b", seed=1)
    _, val = _course(tmp_path / "data")
    spec = tmp_path / "specs" / "spec.toml"
    spec.write_text(f'[base]\npairs = ["a", "b"]\ncourse_val = "{val}"\n[[runs]]\nname = "x"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the spec's folder, not the working one
    run = load_spec(spec).runs[0]
    a, b = (str((tmp_path / "specs" / n).resolve()) for n in "ab")
    assert run.options["pairs"] == [a, b]
    args = fit_args(run.options)
    assert args[args.index("--pairs") : args.index("--pairs") + 3] == ["--pairs", a, b]


@pytest.mark.parametrize(
    "value", ['"a"', '["a"]', '["a", "b", "c"]', '[["a"], "b"]'], ids=["str", "1", "3", "nested"]
)
def test_a_spec_pairs_value_that_is_not_two_folders_is_refused(tmp_path, value):
    spec = tmp_path / "spec.toml"
    spec.write_text(f'[base]\npairs = {value}\n[[runs]]\nname = "x"\n')
    with pytest.raises(SweepError, match=r"'pairs' takes 2 values: expected a list of 2"):
        load_spec(spec)


@pytest.mark.parametrize(
    "name",
    [
        "a\x00b",
        "x" * 300,
        "x" * (MAX_NAME + 1),
        "é" * (MAX_NAME // 2 + 1),  # 2 bytes each
        ".",
        "..",
        ".hidden",
        "a/b",
        "a\\b",
        "-rf",
        "a b",
        "tab\there",
        "",
    ],
    ids=["nul", "300", "101", "utf8-bytes", "dot", "dotdot", "hidden", "slash", "backslash",
         "dash", "space", "tab", "empty"],
)  # fmt: skip
def test_unusable_run_names_are_refused_in_one_line(tmp_path, name):
    spec = tmp_path / "spec.toml"
    spec.write_text('[base]\ncourse = "d.pkl"\n[[runs]]\nname = ' + json.dumps(name) + "\n")
    with pytest.raises(SweepError) as err:
        load_spec(spec)
    msg = str(err.value)
    assert "\n" not in msg and "\x00" not in msg and len(msg) < 300
    assert "[[runs]] #1: expected a run name" in msg
    result = _invoke("sweep", spec, tmp_path / "out")
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_plain_run_names_are_accepted(tmp_path):
    from n2n_train import sweep

    assert sweep.MAX_NAME == MAX_NAME
    spec = tmp_path / "spec.toml"
    names = ["baseline2", "adam_lr0.0001", "feat_4_8-16+x", "é" * (MAX_NAME // 2), "x" * MAX_NAME]
    spec.write_text(
        '[base]\ncourse = "d.pkl"\n' + "".join(f'[[runs]]\nname = "{n}"\n' for n in names)
    )
    assert [r.name for r in load_spec(spec).runs] == names


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ('photos = "photos"', "cannot be scored: the sweep scores each run's best.pt"),
        ('course = "data/train.pkl"', "course_val, which is not set"),
        ('course = "data/train.pkl"\ncourse_val = "data/missing.pkl"', "missing.pkl"),
        ('course = "data/nope.pkl"\ncourse_val = "data/val.pkl"', "nope.pkl not found"),
        ('singles = "nowhere"\ncourse_val = "data/val.pkl"', "nowhere not found"),
    ],
    ids=["photos", "no-course-val", "missing-course-val", "missing-course", "missing-singles"],
)
def test_a_spec_that_cannot_be_trained_or_scored_stops_before_any_run(tmp_path, base, expected):
    _course(tmp_path / "data")
    _images(tmp_path / "photos", size=96)
    spec = tmp_path / "spec.toml"
    spec.write_text(f'[base]\n{base}\n{FAST_SPEC}[[runs]]\nname = "a"\n[[runs]]\nname = "b"\n')
    result = _invoke("sweep", spec, tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert expected in result.output and "run 'a'" in result.output
    assert not (tmp_path / "out").exists()  # nothing trained, no folder made


def test_nproc_is_bounded_in_specs_and_in_fit(tmp_path, monkeypatch):
    from n2n_train import distributed

    cap = distributed.max_processes("cpu")
    assert cap >= 2
    spec = tmp_path / "spec.toml"
    spec.write_text('[base]\ncourse = "d.pkl"\nnproc = 1000\n[[runs]]\nname = "a"\n')
    with pytest.raises(SweepError, match=rf"--nproc 1000: at most {cap} processes"):
        load_spec(spec)
    launched: list[int] = []
    monkeypatch.setattr(distributed, "launch", lambda n, argv: (launched.append(n), (0, []))[1])
    _, val = _course(tmp_path / "data")
    result = _invoke("fit", "--course", val, "--out", tmp_path / "r", "--nproc", "1000", *FAST)
    assert result.exit_code == 2 and f"--nproc 1000: at most {cap} processes" in result.output
    assert launched == []
    result = _invoke("sweep", spec, tmp_path / "out", "--jobs", "1000")
    assert result.exit_code == 2 and "'--jobs'" in result.output


# --- fit and sweep say where they are ------------------------------------------------------


def test_fit_ends_with_one_line_whose_export_command_runs(tmp_path):
    from n2n_export.cli import main as export_main

    train, val = _course(tmp_path / "data")
    out = tmp_path / "run"
    args = ["fit", "--course", train, "--course-val", val, "--out", out, *FAST]
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.strip().splitlines()
    assert line.startswith("best epoch ") and "/2, val loss " in line
    assert f" -> {out / 'best.pt'}; next: n2n-export onnx " in line
    assert "(PSNR " in line and " dB) -> " in line
    command = shlex.split(line.split("; next: ", 1)[1])
    assert command[:2] == ["n2n-export", "onnx"] and "--val-data" in command
    exported = CliRunner().invoke(export_main, command[1:], catch_exceptions=False)
    assert exported.exit_code == 0, exported.output
    assert (out / "model.onnx").is_file()

    again = _invoke(*args, "--overwrite", "--json")
    assert again.exit_code == 0, again.output
    doc = json.loads(again.stdout)  # the whole summary, for scripts
    assert doc["epochs"] == 2 and "best_val_loss" in doc


def test_fit_of_own_pairs_names_the_images_for_the_parity_check(tmp_path):
    a, b = _images(tmp_path / "my a"), _images(tmp_path / "b", seed=1)
    result = _invoke("fit", "--pairs", a, b, "--out", tmp_path / "run", *FAST)
    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert "(PSNR" not in line  # noisy targets: no PSNR
    assert line.endswith(f"--images {shlex.quote(str(a))}")


def _photo_pairs(photos: list[torch.Tensor]) -> PhotoPairs:
    gen = torch.Generator().manual_seed(0)
    return PhotoPairs(photos, parse_noise("gaussian:25"), 32, 0.34, gen, val_patches=8)


def test_the_progress_bar_counts_every_step_of_the_run(tmp_path, photo_tensors, capsys):
    cfg = TrainConfig(epochs=3, batch_size=4, steps_per_epoch=5, patch_size=32)
    fit(UNet(UNetConfig(features=(4, 8))), _photo_pairs(photo_tensors), cfg, tmp_path)
    err = capsys.readouterr().err
    assert "epoch 3/3" in err and "15/15" in err  # 3 epochs × 5 steps, a total from the start
    assert "<" in err  # elapsed<time left


def test_under_a_time_budget_the_progress_bar_counts_its_seconds(tmp_path, photo_tensors, capsys):
    cfg = TrainConfig(epochs=1000, batch_size=4, steps_per_epoch=5, patch_size=32, minutes=0.01)
    fit(UNet(UNetConfig(features=(4, 8))), _photo_pairs(photo_tensors), cfg, tmp_path)
    err = capsys.readouterr().err
    assert "/1 s of the time budget [" in err and "epoch 1/1000" in err


# --- dim float scenes: the same rule as dim 16-bit ones -----------------------------------


def test_dim_float_frames_are_read_with_their_own_levels_and_pair(tmp_path):
    """A float32 TIFF with no value above 0.25 (counts / 65535, say) is mapped by its own
    range, as the runtime maps it; a dead float frame is refused as a dead 16-bit one."""
    from n2n_train.data import read_frame, to_unit

    rng = np.random.default_rng(2)
    a, b = tmp_path / "a", tmp_path / "b"
    for i in range(2):
        _tiff(a / f"s{i}.tif", _dim(rng).astype(np.float32) / 65535)
        _tiff(b / f"s{i}.tif", _dim(rng).astype(np.float32) / 65535)
    frame, levels = read_frame(a / "s0.tif")
    assert frame.dtype == torch.float32
    assert levels == pytest.approx((100 / 65535, 2000 / 65535))
    unit = to_unit(frame, levels)
    assert float(unit.min()) == pytest.approx(0.0, abs=1e-6)
    assert float(unit.max()) == pytest.approx(1.0, abs=1e-6)
    assert len(scan_pairs(a, b)) == 2
    _tiff(b / "s1.tif", np.full((24, 24), 0.01, np.float32))
    with pytest.raises(DataError, match=r"constant 0\.01 \(a dead capture\?\)"):
        scan_pairs(a, b)


def test_a_scene_of_dim_16_bit_and_dim_float_captures_is_refused(tmp_path):
    rng = np.random.default_rng(3)
    a, b = tmp_path / "a", tmp_path / "b"
    _tiff(a / "s0.tif", _dim(rng))
    _tiff(b / "s0.tif", _dim(rng).astype(np.float32) / 65535)
    with pytest.raises(DataError, match="dim captures of different pixel types") as err:
        scan_pairs(a, b)
    assert f"{a / 's0.tif'} 16-bit" in str(err.value) and f"{b / 's0.tif'} float" in str(err.value)
