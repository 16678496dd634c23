"""The three CLIs spell things one way: ``--model`` everywhere, ``--tile N``/``--no-tile``,
and ``-q``/``--quiet`` with one meaning wherever it is given (n2n-infer, n2n-infer batch,
n2n-train, n2n-export)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from n2n_infer import batch as batch_module
from n2n_infer.cli import QUIET_HELP, log_level, main
from tests.conftest import REPO, synthetic_photo

#: seedlike's tiles: a multiple of its stride 4, above twice its overlap of 64.
TILE = 132


def _run(*args: object, cli: click.Command = main):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _save(path: Path, seed: int = 0, size: tuple[int, int] = (24, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(synthetic_photo(np.random.default_rng(seed), *size)).save(path)
    return path


def _clis() -> dict[str, click.Command]:
    from n2n_export.cli import main as export_main
    from n2n_train.cli import main as train_main

    return {
        "n2n-infer": main,
        "n2n-infer batch": main.commands["batch"],
        "n2n-train": train_main,
        "n2n-export": export_main,
    }


def _option(command: click.Command, flag: str) -> click.Option:
    (option,) = [p for p in command.params if isinstance(p, click.Option) and flag in p.opts]
    return option


# -- -q/--quiet --------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["n2n-infer", "n2n-infer batch", "n2n-train", "n2n-export"])
def test_every_quiet_flag_is_spelt_and_described_alike(where):
    option = _option(_clis()[where], "-q")
    assert option.opts == ["-q", "--quiet"] and option.is_flag
    assert option.help == QUIET_HELP


@pytest.mark.parametrize(
    ("verbose", "quiet", "level"),
    [
        (0, False, logging.WARNING),
        (1, False, logging.INFO),
        (2, False, logging.DEBUG),
        (0, True, logging.ERROR),
        (2, True, logging.ERROR),  # -q wins over -v
    ],
)
def test_one_log_level_rule(verbose, quiet, level):
    assert log_level(verbose, quiet) == level


@pytest.fixture
def job(tmp_path, monkeypatch):
    """A folder with one good and one broken image, and a warning logged during the job."""
    src = tmp_path / "in"
    _save(src / "a.png")
    (src / "broken.png").write_bytes(b"not a png")
    prepare = batch_module.prepare_output

    def warn_then_prepare(folder):
        logging.getLogger("n2n_infer.batch").warning("a warning from the job")
        return prepare(folder)

    monkeypatch.setattr(batch_module, "prepare_output", warn_then_prepare)
    return src


QUIET_SPELLINGS = [
    ("-q", "batch"),
    ("--quiet", "batch"),
    ("batch", "-q"),
    ("batch", "--quiet"),
    ("-v", "batch", "-q"),
]


@pytest.mark.parametrize("spelling", QUIET_SPELLINGS, ids=" ".join)
def test_quiet_means_the_same_before_and_after_batch(job, tmp_path, caplog, spelling):
    root = logging.getLogger().level
    before, after = spelling[: spelling.index("batch")], spelling[spelling.index("batch") + 1 :]
    out = tmp_path / "out"
    result = _run(*before, "batch", *after, job, out, "--model", "seedlike", "--device", "cpu")
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "FAILED  broken.png: " + lines[0].split(": ", 1)[1]  # failures kept
    assert lines[1].startswith("1 denoised, 0 skipped, 1 failed -> ")  # and the summary
    assert len(lines) == 2  # no per-file ok line
    assert "img/s" not in result.stderr and "%|" not in result.stderr  # no progress bar
    assert "a warning from the job" not in caplog.text  # log: errors only
    assert logging.getLogger().level == root  # put back when the command ends
    assert (out / "a.png").is_file()


def test_without_quiet_the_same_job_shows_progress_ok_lines_and_warnings(job, tmp_path, caplog):
    result = _run("batch", job, tmp_path / "out", "--model", "seedlike", "--device", "cpu")
    assert result.exit_code == 1
    assert result.stdout.startswith("ok      a.png ")
    assert "\nFAILED  broken.png: " in result.stdout
    assert "img/s" in result.stderr or "%|" in result.stderr
    assert "a warning from the job" in caplog.text


def test_quiet_before_and_after_batch_print_the_same_in_a_real_process(tmp_path):
    src = tmp_path / "in"
    _save(src / "a.png")
    (src / "broken.png").write_bytes(b"")
    runs = []
    for n, spelling in enumerate((["-q", "batch"], ["batch", "--quiet"])):
        command = [sys.executable, "-m", "n2n_infer.cli", *spelling, str(src)]
        command += [str(tmp_path / f"out{n}"), "--model", "seedlike", "--device", "cpu"]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, done.stderr
        runs.append((done.stdout.replace(f"out{n}", "OUT"), done.stderr))
    assert runs[0] == runs[1]
    stdout, stderr = runs[0]
    assert stdout.startswith("FAILED  broken.png: ") and "\n1 denoised, 0 skipped" in stdout
    assert stderr == ""


@pytest.mark.parametrize("cli", ["n2n-train", "n2n-export"])
@pytest.mark.parametrize(("args", "expected"), [([], (0, False)), (["-q"], (0, True))])
def test_train_and_export_set_logging_by_the_same_rule(monkeypatch, cli, args, expected):
    command = _clis()[cli]
    module = sys.modules[command.callback.__module__]
    seen = []
    monkeypatch.setattr(module, "configure_logging", lambda *a: seen.append(a))
    sub = "fit" if cli == "n2n-train" else "onnx"
    result = _run(*args, sub, "--help", cli=command)
    assert result.exit_code == 0, result.output
    assert seen == [expected]


@pytest.mark.parametrize(
    ("args", "no_progress"),
    [([], False), (["-q"], True), (["--quiet"], True), (["fit:--no-progress"], True)],
)
def test_train_quiet_drops_the_progress_bar(monkeypatch, tmp_path, args, no_progress):
    import n2n_train.commands
    from n2n_train.cli import main as train_main

    seen = {}

    def fake_fit(out_dir, opts, argv=None):
        seen.update(opts)
        return 0

    monkeypatch.setattr(n2n_train.commands, "run_fit_command", fake_fit)
    group = [a for a in args if not a.startswith("fit:")]
    own = [a.removeprefix("fit:") for a in args if a.startswith("fit:")]
    result = _run(*group, "fit", "--out", tmp_path / "run", *own, cli=train_main)
    assert result.exit_code == 0, result.output
    assert seen["no_progress"] is no_progress


# -- --model everywhere ----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["batch", "info", "doctor"])
def test_every_n2n_infer_command_takes_model_as_an_option(command):
    option = _option(main.commands[command], "--model")
    assert option.opts == ["--model"] and option.default is None


# -- --tile N and --no-tile ---------------------------------------------------------------------


@pytest.fixture
def big(tmp_path):
    """A folder with one 150×200 image: four tiles of 132 px, and below the untiled limit."""
    return _save(tmp_path / "in" / "big.png", size=(150, 200)).parent


def test_tile_n_tiles_every_image(big, tmp_path):
    result = _run("batch", big, tmp_path / "out", "--model", "seedlike", "--tile", TILE)
    assert result.exit_code == 0, result.output
    assert "big.png: tile 4/4" in result.stderr


@pytest.mark.parametrize("single", [False, True])
def test_a_stack_shows_its_planes_progress(tmp_path, single):
    import tifffile

    src = tmp_path / "in" / "cells.tif"
    src.parent.mkdir()
    planes = np.random.default_rng(3).integers(0, 256, (3, 24, 32), dtype=np.uint8)
    tifffile.imwrite(src, planes, imagej=True, metadata={"axes": "ZYX"})
    result = _run("batch", src if single else src.parent, tmp_path / "out", "--model", "seedlike")
    assert result.exit_code == 0, result.output
    shown = [f"cells.tif: plane {k}/3" in result.stderr for k in (1, 2, 3)]
    assert shown == [True, True, True]
    assert "tile 1/" not in result.stderr


def test_no_tile_never_tiles_and_tile_0_is_its_deprecated_alias(big, tmp_path):
    no_tile = _run("batch", big, tmp_path / "a", "--model", "seedlike", "--no-tile")
    old = _run("batch", big, tmp_path / "b", "--model", "seedlike", "--tile", "0")
    assert no_tile.exit_code == old.exit_code == 0, old.output
    assert "tile 1/" not in no_tile.stderr + old.stderr
    assert "deprecated" not in no_tile.stderr
    assert old.stderr.splitlines()[0] == "warning: --tile 0 is deprecated: use --no-tile"
    assert (tmp_path / "a" / "big.png").read_bytes() == (tmp_path / "b" / "big.png").read_bytes()
    quiet = _run("-q", "batch", big, tmp_path / "c", "--model", "seedlike", "--tile", "0")
    assert quiet.stderr == "warning: --tile 0 is deprecated: use --no-tile\n"  # said even so


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tile", TILE, "--no-tile"], f"--tile {TILE} and --no-tile contradict each other"),
        (["--no-tile", "--tile", "0"], "--tile 0 and --no-tile contradict each other"),
        (["--tile", "-4"], "--tile -4: expected a tile size N > 0 (--no-tile never tiles)"),
    ],
)
def test_tile_conflicts_are_usage_errors(big, tmp_path, args, message):
    result = _run("batch", big, tmp_path / "out", "--model", "seedlike", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {message}") and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_help_offers_the_new_spellings():
    text = " ".join(_run("batch", "--help").stdout.split())
    assert "--tile N " in text and "--no-tile " in text and "-q, --quiet" in text
    tile_help = text[text.index("--tile N ") : text.index("--no-tile ")]
    assert "x>=0" not in tile_help  # --tile 0 is not offered
    assert "IN OUT" in text
