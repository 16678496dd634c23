"""Distributed training (``n2n-train fit --nproc``, torch DDP on gloo) on tiny data.

The end-to-end tests start real processes: two ranks on the CPU, a few steps.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp

from n2n_train.checkpoint import load_checkpoint, load_resume_state
from n2n_train.config import TrainConfig, UNetConfig
from n2n_train.data import CoursePairs
from n2n_train.distributed import (
    FINISHED_ENV,
    DesyncError,
    Dist,
    _wait_all,
    check_in_sync,
    order_seed,
    rank_seed,
    shutdown,
    weights_digest,
)
from n2n_train.loop import batch_seed, fit
from n2n_train.unet import UNet

#: A small UNet without batch norm: a rank's batch statistics would differ from the whole batch's.
_SMALL = UNetConfig(features=(8, 16), batch_norm=False)


def _fit(*args: object, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "n2n_train.cli", "fit", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _course_args(seedlike_dir: Path, out: Path) -> list[object]:
    return [
        "--course",
        seedlike_dir / "train_data.pkl",
        "--course-val",
        seedlike_dir / "val_data.pkl",
        "--out",
        out,
        "--features",
        "8,16",
        "--batch-size",
        "50",
        "--limit-pairs",
        "200",
        "--swap",
        "--dropout",
        "0.1",
        "--no-progress",
    ]


# ---------------------------------------------------------------- pure functions


@pytest.mark.parametrize("world", [1, 2, 3, 5])
@pytest.mark.parametrize("n", [0, 1, 4, 7, 50])
def test_shares_cover_the_batch_once_and_differ_by_at_most_one(world, n):
    parts = [Dist(rank=r, world=world).share(n) for r in range(world)]
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    sizes = [stop - start for start, stop in parts]
    assert max(sizes) - min(sizes) <= 1


def test_rank_seeds_keep_rank_0_and_differ_between_ranks():
    assert rank_seed(7, 0) == 7
    seeds = {rank_seed(7, r) for r in range(64)}
    assert len(seeds) == 64 and all(0 <= s < 2**63 for s in seeds)
    assert order_seed(7) not in seeds


def test_course_batches_split_each_global_batch_between_ranks():
    a = torch.arange(23, dtype=torch.uint8).view(23, 1, 1, 1).expand(23, 3, 2, 2).contiguous()
    pairs = CoursePairs(a, a.clone(), val_fraction=0.1, generator=torch.Generator().manual_seed(0))
    assert len(pairs) == 21  # batches of 5: 5 5 5 5 1; the last is smaller than 2 ranks

    def epoch(dist: Dist) -> list[torch.Tensor]:
        order = torch.Generator().manual_seed(3)
        return [b[0][:, 0, 0, 0] for b in pairs.batches(5, torch.Generator(), order, dist)]

    whole = epoch(Dist())
    ranks = [epoch(Dist(rank=r, world=2)) for r in range(2)]
    assert len(whole) == 5 and pairs.epoch_batches(5) == 5
    assert len(ranks[0]) == len(ranks[1]) == 4 and pairs.epoch_batches(5, world=2) == 4
    for i in range(4):
        assert torch.equal(torch.cat([ranks[0][i], ranks[1][i]]), whole[i])
    assert [len(b) for b in ranks[0]] == [3] * 4 and [len(b) for b in ranks[1]] == [2] * 4


class _Gathered(Dist):
    """A rank 0 whose peers report the digests given (no process group)."""

    def __init__(self, others: list[str]) -> None:
        super().__init__(rank=0, world=1 + len(others))
        object.__setattr__(self, "_others", others)

    def gather(self, obj):  # type: ignore[override]
        return [obj, *self._others]


def test_check_in_sync_names_the_rank_whose_weights_differ():
    model = UNet(_SMALL)
    same = weights_digest(model)
    check_in_sync(model, _Gathered([same, same]), step=3)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-7
    with pytest.raises(DesyncError, match=r"after step 4: the weights of rank\(s\) \[1\]"):
        check_in_sync(model, _Gathered([same]), step=4)
    with pytest.raises(DesyncError, match=r"rank\(s\) \[1, 2\]"):
        check_in_sync(model, _Gathered([same, same]), step=4)


# ---------------------------------------------------------------- two processes


def _equivalence_rank(rank: int, world: int, init_file: str, out: str) -> None:
    """One rank of a 2-process run of ``fit`` on 21 pairs, batches of 5 (shares 3 and 2)."""
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        a, b = _pairs()
        data = CoursePairs(a, b, 0.1, torch.Generator().manual_seed(0))
        cfg = TrainConfig(epochs=2, batch_size=5, lr=0.05, seed=4)
        dist = Dist(rank=rank, world=world, backend="gloo")
        fit(UNet(_SMALL), data, cfg, out, progress=False, dist=dist, check_sync=1)
        os.environ[FINISHED_ENV] = f"{out}-rank{rank}.finished"
        shutdown(dist)  # a barrier first, as `fit --nproc` does: no rank tears down early
    finally:
        if tdist.is_initialized():
            tdist.destroy_process_group()


def _pairs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 256, (23, 3, 16, 16), generator=g, dtype=torch.uint8)
    return a, torch.randint(0, 256, (23, 3, 16, 16), generator=g, dtype=torch.uint8)


def test_two_ranks_take_the_same_steps_as_one_process_on_the_whole_batch(tmp_path):
    """The loss weighting: with shares of 3 and 2 pairs, DDP's averaged gradient is the
    gradient of the 5 pairs' mean loss, so the weights follow plain SGD on whole batches."""
    mp.spawn(
        _equivalence_rank,
        args=(2, str(tmp_path / "init"), str(tmp_path / "run")),
        nprocs=2,
        join=True,
    )
    ckpt, state = load_resume_state(tmp_path / "run" / "last.pt")
    assert state["processes"] == 2 and len(state["ranks"]) == 2
    # past the closing barrier each rank wrote its finished file, before leaving the group
    assert all((tmp_path / f"run-rank{r}.finished").is_file() for r in range(2))
    assert ckpt.summary["distributed"] == {"processes": 2, "backend": "gloo", "sync_checks": 8}

    # the same steps in one process, written out: plain SGD on each whole batch
    torch.manual_seed(0)
    model = UNet(_SMALL)
    a, b = _pairs()
    data = CoursePairs(a, b, 0.1, torch.Generator().manual_seed(0))
    cfg = TrainConfig(epochs=2, batch_size=5, lr=0.05, seed=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=cfg.momentum)
    order = torch.Generator().manual_seed(order_seed(batch_seed(cfg)))
    model.train()
    for _ in range(2):
        for i, (x, y) in enumerate(data.batches(5, torch.Generator(), order)):
            if i == 4:  # the 1-pair tail that two ranks drop
                continue
            opt.zero_grad()
            torch.mean((model(x) - y) ** 2).backward()
            opt.step()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(ckpt.state_dict[name], value, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, seedlike_dir):
    """``fit --nproc 2`` for 2 epochs, checked in sync after every step."""
    out = tmp_path_factory.mktemp("ddp")
    args = _course_args(seedlike_dir, out)
    result = _fit(*args, "--epochs", "2", "--nproc", "2", "--check-sync", "1", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_nproc_trains_with_identical_weights_on_every_rank(ddp_run):
    out, result = ddp_run
    summary = json.loads(result.stdout)  # printed once, by rank 0
    # 200 pairs less 20 for validation: 4 batches of 50 per epoch, all checked
    assert summary["distributed"] == {"processes": 2, "backend": "gloo", "sync_checks": 8}
    assert summary["epochs"] == 2 and math.isfinite(summary["val_psnr"])
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert sorted(p.name for p in out.iterdir()) == [
        "best.pt",
        "last.pt",
        "local_paths.json",
        "loss.png",
        "metrics.jsonl",
    ]


def test_the_checkpoint_of_a_ddp_run_loads_and_exports(ddp_run, tmp_path):
    from n2n_export.card import write_model_card
    from n2n_export.exporter import export_onnx
    from n2n_infer import Denoiser

    out, _ = ddp_run
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt.config.features == (8, 16) and ckpt.config.dropout == 0.1
    assert not any(k.startswith("module.") for k in ckpt.state_dict)
    onnx = export_onnx(out / "best.pt", tmp_path / "ddp.onnx")
    card = write_model_card(onnx).read_text()
    assert "batch 50 (global, over 2 DDP processes, gloo)" in card
    noisy = (torch.rand(1, 40, 48, 3, generator=torch.Generator().manual_seed(0)) * 255).byte()
    with torch.no_grad():
        expected = ckpt.build_model().eval()(noisy.permute(0, 3, 1, 2).float() / 255)
    got = Denoiser(onnx, device="cpu").denoise(noisy[0].numpy())
    diff = (torch.from_numpy(got).float() - expected[0].permute(1, 2, 0).clamp(0, 1) * 255).abs()
    assert float(diff.max()) <= 1.0


def test_a_resumed_ddp_run_matches_an_uninterrupted_one(ddp_run, seedlike_dir, tmp_path):
    """Per-rank random states (dropout, swap) travel in last.pt: 2 + 1 epochs = 3 epochs."""
    out, _ = ddp_run
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    for name in ("last.pt", "metrics.jsonl"):
        (resumed / name).write_bytes((out / name).read_bytes())
    args = _course_args(seedlike_dir, resumed)
    assert _fit(*args, "--epochs", "3", "--nproc", "2", "--resume").returncode == 0
    straight = tmp_path / "straight"
    assert (
        _fit(*_course_args(seedlike_dir, straight), "--epochs", "3", "--nproc", "2").returncode == 0
    )
    a, b = load_checkpoint(resumed / "last.pt"), load_checkpoint(straight / "last.pt")
    for name, value in a.state_dict.items():
        assert torch.equal(value, b.state_dict[name]), name
    rows = [json.loads(r) for r in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]


def test_resume_with_another_number_of_processes_is_refused(ddp_run, seedlike_dir, tmp_path):
    out, _ = ddp_run
    (tmp_path / "last.pt").write_bytes((out / "last.pt").read_bytes())
    result = _fit(*_course_args(seedlike_dir, tmp_path), "--epochs", "3", "--resume")
    assert result.returncode == 2
    assert "saved by a run of 2 process(es), this run has 1" in result.stderr
    assert "--nproc 2" in result.stderr


def test_a_data_error_exits_2_once_and_names_the_file(tmp_path):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"not a pickle")
    result = _fit("--course", bad, "--out", tmp_path / "o", "--nproc", "2", "--no-progress")
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "bad.pkl" in result.stderr and "[rank 1]" not in result.stderr
    assert not (tmp_path / "o" / "last.pt").exists()


def test_a_global_batch_smaller_than_the_ranks_is_refused(seedlike_dir, tmp_path):
    args = _course_args(seedlike_dir, tmp_path)
    args[args.index("--batch-size") + 1] = "1"
    result = _fit(*args, "--epochs", "1", "--nproc", "2")
    assert result.returncode == 2
    assert "--batch-size 1 is the global batch" in result.stderr


def test_a_time_budget_stops_every_rank_at_the_same_step(seedlike_dir, tmp_path):
    args = _course_args(seedlike_dir, tmp_path)
    result = _fit(*args, "--epochs", "1000", "--minutes", "0.02", "--nproc", "2", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["stopped"].startswith("time budget of 0.02 minutes")
    assert summary["epochs"] < 1000


def _proc(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


def test_a_rank_that_dies_leaving_after_it_finished_is_not_a_failed_run(tmp_path, caplog):
    """gloo can end a rank while it leaves the process group, after the closing barrier:
    with its finished file written (as shutdown() writes it), the run has succeeded."""
    marks = [tmp_path / "rank-0.finished", tmp_path / "rank-1.finished"]
    leave = "import pathlib, sys; pathlib.Path(sys.argv[1]).write_bytes(b''); sys.exit({})"
    procs = [
        subprocess.Popen([sys.executable, "-c", leave.format(0), str(marks[0])]),
        subprocess.Popen([sys.executable, "-c", leave.format(134), str(marks[1])]),
    ]
    with caplog.at_level("WARNING", logger="n2n_train.distributed"):
        assert _wait_all(procs, 0.05, finished=marks) is None
    assert "rank 1 ended with status 134 after finishing the run" in caplog.text


def test_a_rank_that_dies_before_it_finished_fails_the_run(tmp_path):
    marks = [tmp_path / "rank-0.finished", tmp_path / "rank-1.finished"]
    marks[0].write_bytes(b"")
    procs = [_proc("import sys; sys.exit(0)"), _proc("import sys; sys.exit(3)")]
    assert _wait_all(procs, 0.05, finished=marks) == (1, 3)
