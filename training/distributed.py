"""Data-parallel training over several processes with torch's DistributedDataParallel.

``n2n-train fit --nproc N`` runs N processes on this machine (through
``torch.distributed.run``, the module behind ``torchrun``); on several machines
each one runs ``torchrun --nnodes ... -m n2n_train.cli fit ...`` (see
``docs/scaling.md``). Every process reads the same data files, builds the same
validation set and starts from rank 0's weights; what differs is the share of
each global batch it trains on:

- ``--batch-size`` is the *global* batch: rank r trains on its share of it
  (sizes differ by at most one), and its loss is weighted by its share so that
  the averaged gradient is the gradient of the whole batch's mean loss, as in a
  single process;
- course pairs: one shuffled order per epoch, the same on every rank (a shared
  generator), each global batch split between ranks, so an epoch still visits
  every pair once; a last batch smaller than the number of ranks is dropped;
- photos and own noisy images: each rank crops and noises its share from its
  own generator, seeded per rank (:func:`rank_seed`), so ranks draw different
  patches and a rerun draws the same ones;
- augmentation and dropout draw from per-rank generators too;
- validation is split between ranks and the sums are reduced, so every rank
  sees the same validation loss and only rank 0 writes files.

Batch norm normalises over each rank's share (its running statistics are
rank 0's, which DDP broadcasts before every forward pass); on one process it is
the whole batch. With one process nothing here changes the single-process
random streams.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

#: How long a rank waits for the others (rendezvous, collectives) before failing.
TIMEOUT = datetime.timedelta(minutes=30)

#: Environment variable naming the file a rank writes once it has finished its run and met
#: the others at the closing barrier (set by :func:`launch`): a rank that then dies while
#: leaving the process group has lost nothing, and the launcher does not count it a failure.
FINISHED_ENV = "N2N_RANK_FINISHED"

#: Odd 63-bit constant (the golden ratio's) that spreads rank seeds apart.
_SPREAD = 0x9E3779B97F4A7C15
#: Mixed into the seed of the shared epoch order (so it is not rank 0's stream).
_ORDER = 0x5DEECE66D


class DistributedError(RuntimeError):
    """A distributed run cannot start as asked (environment, devices, batch size)."""


class DesyncError(DistributedError):
    """The ranks of a running distributed run hold different weights."""


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank ``rank``'s random streams: ``seed`` itself on rank 0, spread apart
    on the others (reproducible: the same rank always gets the same seed)."""
    if rank == 0:
        return seed
    return (seed + rank * _SPREAD) & (2**63 - 1)


def order_seed(seed: int) -> int:
    """Seed of the epoch order that all ranks share."""
    return (seed ^ _ORDER) & (2**63 - 1)


@dataclass(frozen=True)
class Dist:
    """This process's place in a run: rank ``rank`` of ``world`` (one process: 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def active(self) -> bool:
        """Whether there are other processes (collectives are needed)."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, logs and plots."""
        return self.rank == 0

    def share(self, n: int) -> tuple[int, int]:
        """``[start, stop)`` of this rank's part of ``n`` items (sizes differ by at most 1)."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum of ``values`` over all ranks (float64)."""
        return self._reduce(values, "SUM")

    def max(self, values: Sequence[float]) -> list[float]:
        """Element-wise maximum of ``values`` over all ranks (float64)."""
        return self._reduce(values, "MAX")

    def _reduce(self, values: Sequence[float], op: str) -> list[float]:
        if not self.active:
            return [float(v) for v in values]
        t = torch.tensor(list(values), dtype=torch.float64, device=self._device())
        torch.distributed.all_reduce(t, op=getattr(torch.distributed.ReduceOp, op))
        return t.cpu().tolist()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (pickled between this run's own processes)."""
        if not self.active:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0, device=self._cpu_or_cuda())
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` in rank order, on every rank."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def _device(self) -> torch.device:
        if self.backend == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def _cpu_or_cuda(self) -> torch.device | None:
        return self._device() if self.backend == "nccl" else None


#: One process, no collectives.
SINGLE = Dist()


def max_processes(device: str) -> int:
    """The most processes ``--nproc`` may start on this machine for ``device``.

    CUDA: one per visible GPU (a second process on one GPU is refused anyway, by
    its rank, after every process has started). CPU: one per logical CPU, and at
    least 2 so that a two-process run can be tried on any machine: more
    processes than cores only run slower (each has its own copy of the model and
    data), and a mistyped ``--nproc 1000`` would start a thousand.
    """
    if device.startswith("cuda"):
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    return max(2, os.cpu_count() or 1)


def check_nproc(nproc: int, device: str) -> None:
    """Refuse a number of processes this machine cannot run (see :func:`max_processes`).

    Raises:
        DistributedError: ``nproc`` below 1 or above :func:`max_processes`.
    """
    if nproc < 1:
        raise DistributedError(f"--nproc {nproc}: expected 1 or more processes")
    if nproc == 1:
        return
    cap = max_processes(device)
    if nproc <= cap:
        return
    if device.startswith("cuda"):
        raise DistributedError(
            f"--nproc {nproc} with --device {device}: process {cap} has no GPU ({cap} "
            "visible); start at most one process per GPU"
        )
    raise DistributedError(
        f"--nproc {nproc}: at most {cap} processes on this machine ({os.cpu_count()} "
        "logical CPUs); more only run slower"
    )


def in_launched_run() -> bool:
    """Whether this process was started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def backend_for(device: str) -> str:
    """``nccl`` for CUDA, ``gloo`` for the CPU."""
    return "nccl" if device.startswith("cuda") else "gloo"


def rank_device(device: str, dist: Dist) -> str:
    """The device of this rank: ``cuda`` becomes ``cuda:LOCAL_RANK`` in a distributed run.

    Raises:
        DistributedError: a run of several processes on one explicit ``cuda:N``.
    """
    if not dist.active or not device.startswith("cuda"):
        return device
    if device != "cuda":
        raise DistributedError(
            f"--device {device}: with several processes, pass plain 'cuda' (each process "
            "takes the GPU of its local rank)"
        )
    return f"cuda:{dist.local_rank}"


def init_from_environment(device: str) -> Dist:
    """Join the process group that torchrun describes in the environment.

    Without ``WORLD_SIZE`` > 1 this is :data:`SINGLE` and nothing is started.

    Raises:
        DistributedError: the environment is incomplete, or there are more
            processes on this machine than GPUs for a CUDA run.
    """
    if not in_launched_run():
        return SINGLE
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError) as exc:
        raise DistributedError(f"torchrun environment incomplete or not integers: {exc}") from exc
    backend = backend_for(device)
    if backend == "nccl":
        if local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"local rank {local_rank} has no GPU: {torch.cuda.device_count()} visible; "
                "start at most one process per GPU"
            )
        torch.cuda.set_device(local_rank)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend, timeout=TIMEOUT)
    log.info("rank %d of %d (local %d), backend %s", rank, world, local_rank, backend)
    return Dist(rank=rank, world=world, local_rank=local_rank, backend=backend)


def shutdown(dist: Dist, finished: bool = True) -> None:
    """Leave the process group (a no-op for one process).

    ``finished``: every rank got here after the same work, so they first meet
    at a barrier. Otherwise a rank that tears its connections down while
    another is still between its last collective and its own teardown can take
    that rank down with it (gloo's transport threads end the process with
    ``terminate called without an active exception``, exit status 1, after a
    run that trained and saved normally). A rank that failed leaves without
    the barrier: the others would wait for it in vain, and the launcher stops
    them.

    The barrier narrows that window but does not close it: gloo can still end a rank
    that is leaving as its peer closes the connections. So a finished rank first
    writes the file named by ``N2N_RANK_FINISHED`` (:data:`FINISHED_ENV`, set by
    :func:`launch`): past the barrier every rank's checkpoints and metrics are
    written, and the launcher reads a later death as a teardown fault, not a failed
    run.
    """
    if not (dist.active and torch.distributed.is_initialized()):
        return
    if finished:
        torch.distributed.barrier()
        marker = os.environ.get(FINISHED_ENV)
        if marker:
            Path(marker).write_bytes(b"")
    torch.distributed.destroy_process_group()


def wrap(model: nn.Module, dist: Dist) -> nn.Module:
    """``model`` in DistributedDataParallel (rank 0's weights are broadcast to all), or
    ``model`` itself for one process."""
    if not dist.active:
        return model
    ids = [dist.local_rank] if dist.backend == "nccl" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def weights_digest(model: nn.Module) -> str:
    """sha256 of every parameter and buffer, in order (equal digests: identical weights)."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def check_in_sync(model: nn.Module, dist: Dist, step: int) -> None:
    """Raise unless every rank holds bit-identical weights after global ``step``.

    Raises:
        DesyncError: the ranks' weights differ (names the ranks that differ from rank 0).
    """
    digests = dist.gather(weights_digest(model))
    differ = [r for r, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise DesyncError(
            f"after step {step}: the weights of rank(s) {differ} differ from rank 0's"
        )


def free_port() -> int:
    """A TCP port free on this machine now (for the processes' rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch(nproc: int, argv: Sequence[str], poll_s: float = 0.2) -> tuple[int, list[str]]:
    """Run ``python -m n2n_train.cli ARGV`` as ``nproc`` processes on this machine, the
    way torchrun's standalone mode would; return the run's exit status.

    Each process gets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and a free local
    ``MASTER_PORT``, and one intra-op thread unless ``OMP_NUM_THREADS`` is set
    (``--threads`` overrides both). Rank 0's output is shown as it comes; the
    others' error output is kept and shown only when they fail and rank 0 did
    not. When one process fails the others are stopped after a grace period,
    and the status is rank 0's failure, else the first one's (so a data error
    still exits 2). A process that ends with an error after it has finished the
    run (:data:`FINISHED_ENV`, see :func:`shutdown`) is logged, not counted. Returns
    the status and, when a rank other than 0 failed, the last lines of its error
    output (``[rank r] ...``).

    Raises:
        DistributedError: ``nproc`` < 2.
    """
    if nproc < 2:
        raise DistributedError(f"--nproc {nproc}: launching needs at least 2 processes")
    cmd = [sys.executable, "-m", "n2n_train.cli", *argv]
    base = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    base["WORLD_SIZE"] = base["LOCAL_WORLD_SIZE"] = str(nproc)
    base.setdefault("OMP_NUM_THREADS", "1")
    log.info("launching %d processes: %s", nproc, " ".join(cmd))
    with tempfile.TemporaryDirectory(prefix="n2n-ranks-") as tmp:
        logs = [Path(tmp) / f"rank-{r}.log" for r in range(nproc)]
        marks = [Path(tmp) / f"rank-{r}.finished" for r in range(nproc)]
        procs = []
        for rank in range(nproc):
            env = dict(base, RANK=str(rank), LOCAL_RANK=str(rank))
            env[FINISHED_ENV] = str(marks[rank])
            if rank == 0:
                procs.append(subprocess.Popen(cmd, env=env))
            else:
                with logs[rank].open("wb") as err:
                    procs.append(
                        subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
                    )
        failed = _wait_all(procs, poll_s, finished=marks)
        if failed is None:
            return 0, []
        rank, status = failed
        if rank == 0:
            return status, []
        tail = logs[rank].read_text(errors="replace").strip().splitlines()[-20:]
        return status, [f"[rank {rank}] {line}" for line in tail]


def _wait_all(
    procs: list[subprocess.Popen[bytes]],
    poll_s: float,
    grace_s: float = 10.0,
    finished: Sequence[Path] = (),
) -> tuple[int, int] | None:
    """Wait for every process; None when all succeed. After a failure the others get
    ``grace_s`` to end on their own (a data error ends every rank), then are stopped;
    returns (rank, exit status) of rank 0's failure if it failed, else the first one's.
    A process whose ``finished[rank]`` file exists when it ends has done its work: an
    error status then is logged as a fault in leaving the process group, not a failure."""
    deadline = None
    excused: set[int] = set()
    try:
        while True:
            codes = [p.poll() for p in procs]
            for r, c in enumerate(codes):
                if c not in (None, 0) and r < len(finished) and finished[r].exists():
                    if r not in excused:
                        excused.add(r)
                        log.warning(
                            "rank %d ended with status %d after finishing the run (a fault "
                            "in leaving the process group); its work is complete",
                            r,
                            c,
                        )
                    codes[r] = 0
            if all(c == 0 for c in codes):
                return None
            failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            if failed and deadline is None:
                deadline = time.monotonic() + grace_s
            if failed and (all(c is not None for c in codes) or time.monotonic() > deadline):
                _stop(procs)
                rank, code = failed[0]
                return rank, (code if code > 0 else 1)
            time.sleep(poll_s)
    except KeyboardInterrupt:
        _stop(procs)
        raise


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
