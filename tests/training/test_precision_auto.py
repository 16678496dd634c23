"""``n2n-train fit --precision auto``: bf16 only where it trains faster, by measuring."""

from __future__ import annotations

import itertools
import logging

import pytest
import torch
from click.testing import CliRunner

from n2n_train.checkpoint import load_checkpoint
from n2n_train.cli import main
from n2n_train.config import UNetConfig
from n2n_train.loop import fastest_precision

_TINY = UNetConfig(features=(8, 16))


def _clock(durations: list[float]):
    """A clock under which the steps measured take ``durations`` seconds, in order."""
    ticks = itertools.chain.from_iterable((10.0 * i, 10.0 * i + d) for i, d in enumerate(durations))
    return lambda: next(ticks)


@pytest.mark.parametrize(
    ("durations", "chosen"),
    [
        ([1.0, 1.0, 1.0, 0.5, 0.5, 0.5], "bf16"),  # native bf16: twice as fast
        ([1.0, 1.0, 1.0, 1.0, 0.95, 0.95], "fp32"),  # 5 % faster: not worth its rounding
        ([1.0, 1.0, 1.0, 10.0], "fp32"),  # emulated bf16: one step tells
    ],
    ids=["native", "marginal", "emulated"],
)
def test_auto_takes_bf16_only_where_it_trains_clearly_faster(durations, chosen):
    got, seconds = fastest_precision(_TINY, 16, 8, clock=_clock(durations))
    assert got == chosen
    assert seconds["fp32"] == pytest.approx(1.0)
    assert seconds["bf16"] == pytest.approx(min(durations[4:] or durations[3:]))


def test_auto_on_cuda_follows_the_gpus_bf16_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert fastest_precision(_TINY, 16, 8, device="cuda") == ("bf16", {})
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert fastest_precision(_TINY, 16, 8, device="cuda") == ("fp32", {})


def _fit(seedlike_dir, out, *extra: object):
    args = ["fit", "--course", seedlike_dir / "train_data.pkl", "--limit-pairs", "200"]
    args += ["--features", "8,16", "--batch-size", "50", "--no-progress", "--out", out, *extra]
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_fit_precision_auto_records_what_it_measured_and_a_resume_keeps_it(
    tmp_path, seedlike_dir, caplog
):
    with caplog.at_level(logging.INFO, logger="n2n_train.commands"):
        result = _fit(seedlike_dir, tmp_path / "a", "--epochs", "1", "--precision", "auto")
    assert result.exit_code == 0, result.output
    chosen = load_checkpoint(tmp_path / "a" / "last.pt").summary["train_config"]["precision"]
    assert chosen in ("fp32", "bf16")
    assert f"--precision auto: {chosen} (one training step: fp32 " in caplog.text

    # a run started in bf16 resumes in bf16 under auto, whatever this CPU measures
    assert _fit(seedlike_dir, tmp_path / "b", "--epochs", "1", "--precision", "bf16").exit_code == 0
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="n2n_train.commands"):
        again = _fit(
            seedlike_dir, tmp_path / "b", "--epochs", "2", "--precision", "auto", "--resume"
        )
    assert again.exit_code == 0, again.output
    assert "--precision auto: bf16, as the run being resumed" in caplog.text
    summary = load_checkpoint(tmp_path / "b" / "last.pt").summary
    assert summary["train_config"]["precision"] == "bf16" and summary["epochs"] == 2
