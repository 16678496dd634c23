"""TIFF stacks on the Ray engine, each one task or split by planes over the workers:
the same bytes and report as the local engine, bad stacks reported, no partial
output, a bounded number of chunks in flight, and the rule that chooses.

One in-process Ray cluster of 2 CPUs serves the module; the bundled photo model on
the CPU, batches of 2 planes (so a stack makes several chunks).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
from PIL import Image

from n2n_infer.batch import denoise_folder
from n2n_infer.denoiser import Denoiser
from tests.conftest import synthetic_photo

ray = pytest.importorskip("ray")
n2n_ray = pytest.importorskip("n2n_infer.ray")

H, W = 32, 48
BATCH = 2


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """A local Ray cluster of 2 CPUs, started once for the module."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def _spec() -> n2n_ray.DenoiserSpec:
    return n2n_ray.DenoiserSpec("photo", device="cpu", batch_size=BATCH, intra_op_threads=1)


def _smooth(rng: np.random.Generator, n: int) -> np.ndarray:
    """n smooth planes in [0, 1] of H×W."""
    yy, xx = np.mgrid[0:H, 0:W]
    return np.stack(
        [0.4 + 0.3 * np.sin(xx / (4 + i) + rng.uniform(0, 3)) * np.cos(yy / 6) for i in range(n)]
    )


def _dim_ome(path: Path, rng: np.random.Generator) -> None:
    """A dim uint16 ZYX OME-TIFF whose planes span very different ranges (so levels per
    plane, or per chunk, would give other bytes than levels per stack)."""
    gain = np.linspace(50, 3000, 10)[:, None, None]
    clean = 100 + gain * _smooth(rng, 10)
    noisy = np.clip(np.rint(clean + rng.normal(0, 40, clean.shape)), 0, 16383).astype(np.uint16)
    tifffile.imwrite(
        path, noisy, ome=True, compression="zlib", predictor=True,
        metadata={"axes": "ZYX", "PhysicalSizeZ": 1.5, "PhysicalSizeX": 0.25},
    )  # fmt: skip


def _imagej_tzyx(path: Path, rng: np.random.Generator) -> None:
    data = np.rint(255 * _smooth(rng, 6) + rng.normal(0, 12, (6, H, W)))
    data = np.clip(data, 0, 255).astype(np.uint8).reshape(2, 3, H, W)
    tifffile.imwrite(
        path, data, imagej=True, resolution=(5.0, 5.0),
        metadata={"axes": "TZYX", "spacing": 2.5, "unit": "um", "finterval": 0.5},
    )  # fmt: skip


def _rgb_pages(path: Path, rng: np.random.Generator) -> None:
    pages = [Image.fromarray(synthetic_photo(rng, H, W)) for _ in range(3)]
    pages[0].save(path, save_all=True, append_images=pages[1:], compression="tiff_deflate")


@pytest.fixture(scope="module")
def in_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three stacks of the kinds the runtime takes, an image, and two bad TIFFs."""
    folder = tmp_path_factory.mktemp("in")
    rng = np.random.default_rng(32)
    _dim_ome(folder / "zyx.ome.tif", rng)
    _imagej_tzyx(folder / "tzyx.tif", rng)
    _rgb_pages(folder / "rgb.tif", rng)
    Image.fromarray(synthetic_photo(rng, 20, 28)).save(folder / "a.png")
    (folder / "broken.tif").write_bytes(b"II*\0" + b"\xff" * 40)
    pages = [np.zeros((H, W), np.uint8), np.zeros((H, W + 4), np.uint8)]
    with tifffile.TiffWriter(folder / "mixed.tif") as tw:  # two series: refused by name
        for page in pages:
            tw.write(page, photometric="minisblack")
    return folder


def _tree(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _entries(report: object) -> list[dict]:
    entries = report.to_dict()["files"]
    return [{k: v for k, v in e.items() if k != "seconds"} for e in entries]


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every ``_RemotePlanes`` (one per split stack) the driver makes, kept for the test."""
    kept: list = []

    class Recorded(n2n_ray._RemotePlanes):
        def __init__(self, *args: object) -> None:
            super().__init__(*args)
            kept.append(self)

    monkeypatch.setattr(n2n_ray, "_RemotePlanes", Recorded)
    return kept


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory, in_dir: Path) -> tuple[Path, list[dict]]:
    """The local engine's outputs and report entries on ``in_dir``."""
    out = tmp_path_factory.mktemp("local") / "out"
    report = denoise_folder(_spec().build(), in_dir, out)
    return out, _entries(report)


@pytest.mark.parametrize("split", [True, False], ids=["split", "whole"])
def test_stacks_split_or_whole_give_the_local_engines_bytes_and_report(
    cluster, in_dir, local, made, tmp_path, split
):
    before = _tree(in_dir)
    out = tmp_path / "out"
    report, providers = n2n_ray.denoise_folder_ray(
        _spec(), in_dir, out, workers=2, split_stacks=split
    )

    local_out, local_entries = local
    assert _tree(out) == _tree(local_out)
    assert sorted(_tree(out)) == ["a.png", "rgb.tif", "tzyx.tif", "zyx.ome.tif"]
    assert _entries(report) == local_entries  # notes too: kind, planes, the stack's levels
    failed = {e["name"]: e["error"] for e in _entries(report) if e["status"] == "error"}
    assert sorted(failed) == ["broken.tif", "mixed.tif"]
    assert "2 image series" in failed["mixed.tif"]
    zyx = next(e for e in _entries(report) if e["name"] == "zyx.ome.tif")
    assert any("over the whole stack" in note for note in zyx["notes"])
    assert providers == ["CPUExecutionProvider"]
    assert _tree(in_dir) == before
    if not split:
        assert made == []
        return
    assert len(made) == 4  # zyx, tzyx, rgb and mixed (refused on the driver, before any chunk)
    assert sorted(p.chunks for p in made) == [0, 2, 3, 5]  # 3, 6 and 10 planes, chunks of 2
    assert max(p.peak for p in made) <= n2n_ray.CHUNKS_PER_WORKER * 2
    with (
        tifffile.TiffFile(in_dir / "zyx.ome.tif") as a,
        tifffile.TiffFile(out / "zyx.ome.tif") as b,
    ):
        sa, sb = a.series[0], b.series[0]
        assert (sb.kind, sb.axes, sb.shape, sb.dtype) == (sa.kind, sa.axes, sa.shape, sa.dtype)
        assert b.ome_metadata == a.ome_metadata
        assert b.pages[0].compression == a.pages[0].compression
        noisy, denoised = sa.asarray(), sb.asarray()
    assert noisy.min() <= denoised.min() and denoised.max() <= noisy.max()  # the stack's range
    with tifffile.TiffFile(out / "tzyx.tif") as t:
        assert (t.series[0].axes, t.imagej_metadata["spacing"]) == ("TZYX", 2.5)


# --- the driver side, without a model: chunks, their bound, failures ----------------------


class _Echo:
    """A :class:`~n2n_infer.workers.DenoisePlanes` actor's stand-in: every chunk back as it
    came; the chunk numbered ``fail`` (of all sent to any echo) fails as a worker's would."""

    def __init__(self, sent: list[int], fail: int | None = None) -> None:
        self.sent, self.fail = sent, fail
        self.levels: list[str | None] = []
        self.denoise = SimpleNamespace(remote=self._denoise)

    def _denoise(self, chunk: list, tile: object, layout: str, levels: str | None) -> object:
        self.sent.append(len(chunk))
        self.levels.append(levels)
        if len(self.sent) - 1 == self.fail:
            return ray.put(([], "out of memory (test)"))
        return ray.put(([np.array(c) for c in chunk], ""))


def test_chunks_in_flight_are_capped_and_the_driver_holds_only_those(cluster):
    sent: list[int] = []
    planes = n2n_ray._RemotePlanes([_Echo(sent), _Echo(sent)], _spec())
    per_chunk, cap = n2n_ray._chunking(H * W * 4, BATCH, 2)
    assert (per_chunk, cap) == (BATCH, n2n_ray.CHUNKS_PER_WORKER * 2)
    read, held = [0], []

    def source() -> Iterator[np.ndarray]:
        for i in range(41):
            read[0] += 1
            yield np.full((H, W), i / 41, np.float32)

    out = []
    for done, plane in enumerate(planes.denoise_iter(source())):
        held.append(read[0] - done)  # planes read and not yet given back
        out.append(plane)
    assert [float(p[0, 0]) for p in out] == [np.float32(i / 41) for i in range(41)]  # in order
    assert sent == [BATCH] * 20 + [1]
    assert planes.chunks == 21 and planes.peak == cap
    assert max(held) <= (cap + 1) * per_chunk  # the chunks in flight and the one being filled


def test_chunks_are_a_batch_and_bounded_in_bytes():
    assert n2n_ray._chunking(1 << 20, 8, 4) == (8, 8)
    per_chunk, in_flight = n2n_ray._chunking(300 << 20, 8, 16)  # planes of 300 MiB
    assert per_chunk == 1 and in_flight == (1 << 30) // (300 << 20)
    assert n2n_ray._chunking(900 << 20, 8, 16) == (1, 2)  # two chunks at least


def _job(src: Path, out: Path) -> object:
    from n2n_infer.batch import FileJob

    return FileJob(src, Path(src.name), out / src.name, src.parent.resolve(), None)


def _ray_job(workers: int = 2, overwrite: bool = False, skip: bool = False) -> object:
    return n2n_ray._RayJob(_spec(), n2n_ray.ShippedModel("photo"), workers, 1, 0, None,
                           overwrite, skip)  # fmt: skip


def test_a_chunk_failing_on_its_worker_fails_the_stack_and_leaves_no_output(cluster, tmp_path):
    src = tmp_path / "in" / "s.tif"
    src.parent.mkdir()
    data = np.rint(1000 * _smooth(np.random.default_rng(3), 9)).astype(np.uint16)
    tifffile.imwrite(src, data, photometric="minisblack")
    out = tmp_path / "out"
    out.mkdir()
    sent: list[int] = []
    echoes = [_Echo(sent, fail=2), _Echo(sent, fail=2)]
    planes = n2n_ray._RemotePlanes(echoes, _spec())
    result = n2n_ray.run_guarded(
        "s.tif", src, lambda: n2n_ray._convert_split(_job(src, out), planes, _ray_job())
    )
    assert result.status == "error"
    assert result.error == "out of memory (test) (planes 4-5, on a Ray worker)"
    assert {v for e in echoes for v in e.levels} == {"full"}  # mapped on the driver
    assert list(out.iterdir()) == []  # neither the output nor its temporary file
    assert planes.stopped is None  # a file's failure, not the job's


def test_a_plane_failing_on_the_driver_midway_leaves_no_output(cluster, tmp_path):
    src = tmp_path / "in" / "s.tif"
    src.parent.mkdir()
    data = np.rint(200 * _smooth(np.random.default_rng(4), 12)).astype(np.uint8)
    tifffile.imwrite(src, data, photometric="minisblack", compression="zlib")
    with tifffile.TiffFile(src) as tif:  # plane 9's compressed bytes garbled
        offset, count = tif.pages[9].dataoffsets[0], tif.pages[9].databytecounts[0]
    with open(src, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * count)
    out = tmp_path / "out"
    out.mkdir()
    sent: list[int] = []
    planes = n2n_ray._RemotePlanes([_Echo(sent), _Echo(sent)], _spec())
    result = n2n_ray.run_guarded(
        "s.tif", src, lambda: n2n_ray._convert_split(_job(src, out), planes, _ray_job())
    )
    assert result.status == "error" and "plane 9" in result.error, result.error
    assert sent  # chunks were in flight when it failed
    assert list(out.iterdir()) == []


def test_a_ray_failure_stops_the_job_and_names_what_was_written(cluster, tmp_path, monkeypatch):
    """An actor gone for good is the job's failure (RayJobError), not one file's."""
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "s.tif", np.zeros((3, H, W), np.uint8), photometric="minisblack")

    dead, get = object(), ray.get

    class Dead:
        def __init__(self) -> None:
            self.denoise = SimpleNamespace(remote=lambda *args: dead)
            self.facts = SimpleNamespace(
                remote=lambda: ray.put({"providers": "CPUExecutionProvider", "z_context": 0})
            )

    def get_or_die(refs: object, **kwargs: object) -> object:
        if refs is dead:  # what ray.get raises for an actor that died for good
            raise ray.exceptions.ActorDiedError()
        return get(refs, **kwargs)

    monkeypatch.setattr(ray, "get", get_or_die)
    monkeypatch.setattr(n2n_ray, "_plane_actors", lambda job: [Dead(), Dead()])
    monkeypatch.setattr(n2n_ray, "_release", lambda actors: None)
    with pytest.raises(n2n_ray.RayJobError, match="stopped after 0 files were written"):
        n2n_ray.denoise_folder_ray(_spec(), folder, tmp_path / "out", workers=2)
    assert not any((tmp_path / "out").iterdir())


# --- the rule ---------------------------------------------------------------------------


@pytest.fixture
def mixed_folder(tmp_path: Path) -> tuple[Path, Path]:
    """Two stacks (s1 larger), a 2-D TIFF and a PNG; and an output folder."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    tifffile.imwrite(folder / "s1.tif", np.zeros((6, H, W), np.uint8), photometric="minisblack")
    tifffile.imwrite(folder / "s2.tif", np.zeros((2, H, W), np.uint8), photometric="minisblack")
    tifffile.imwrite(folder / "flat.tif", np.zeros((H, W), np.uint8), photometric="minisblack")
    Image.fromarray(np.zeros((H, W), np.uint8)).save(folder / "p.png")
    return folder, out


def _chosen(folder: Path, out: Path, split: bool | None, **job: object) -> list[str]:
    from n2n_infer.batch import plan_jobs

    jobs = plan_jobs(folder, out)
    return sorted(n2n_ray._stacks_to_split(jobs, _ray_job(**job), split))


def test_stacks_are_split_when_fewer_than_the_workers(mixed_folder):
    folder, out = mixed_folder
    assert _chosen(folder, out, None, workers=3) == ["s1.tif", "s2.tif"]
    assert _chosen(folder, out, None, workers=2) == []  # each worker has a stack
    assert _chosen(folder, out, None, workers=1) == []
    assert _chosen(folder, out, True, workers=1) == ["s1.tif", "s2.tif"]
    assert _chosen(folder, out, False, workers=8) == []
    (out / "s2.tif").write_bytes(b"done")  # skipped or refused: not to do, not counted
    assert _chosen(folder, out, None, workers=2, skip=True) == ["s1.tif"]
    assert _chosen(folder, out, None, workers=2, overwrite=True) == []


def test_a_stack_too_large_to_travel_whole_is_split_unless_told_not_to(mixed_folder, monkeypatch):
    folder, out = mixed_folder
    limit = ((folder / "s1.tif").stat().st_size + (folder / "s2.tif").stat().st_size) // 2
    monkeypatch.setattr(n2n_ray, "MAX_FILE_BYTES", limit)
    assert _chosen(folder, out, None, workers=1) == ["s1.tif"]
    assert _chosen(folder, out, False, workers=1) == []  # then refused by size, as before
    from n2n_infer.batch import plan_jobs

    big = next(j for j in plan_jobs(folder, out) if j.name == "s1.tif")
    assert "more than any image file" in n2n_ray._unreadable(big).error


def test_a_model_of_neighbouring_planes_keeps_each_stack_one_task(
    cluster, tmp_path, monkeypatch, made
):
    folder = tmp_path / "in"
    folder.mkdir()
    _imagej_tzyx(folder / "t.tif", np.random.default_rng(9))

    class ZContext:
        def __init__(self) -> None:
            facts = {"providers": "CPUExecutionProvider", "z_context": 1}
            self.facts = SimpleNamespace(remote=lambda: ray.put(facts))

    monkeypatch.setattr(n2n_ray, "_plane_actors", lambda job: [ZContext(), ZContext()])
    monkeypatch.setattr(n2n_ray, "_release", lambda actors: None)
    report, _ = n2n_ray.denoise_folder_ray(
        _spec(), folder, tmp_path / "ray", workers=2, split_stacks=True
    )
    local = denoise_folder(_spec().build(), folder, tmp_path / "local")
    assert made == []  # no plane was sent: the stack went whole
    assert _entries(report) == _entries(local)
    assert _tree(tmp_path / "ray") == _tree(tmp_path / "local")


def test_the_plane_worker_denoises_a_chunk_as_the_local_denoiser_and_reports_failures():
    worker = n2n_ray.DenoisePlanes(_spec())
    try:
        assert worker.facts() == {"providers": "CPUExecutionProvider", "z_context": 0}
        rng = np.random.default_rng(5)
        chunk = [rng.uniform(0, 1, (H, W)).astype(np.float32) for _ in range(3)]
        planes, error = worker.denoise(chunk)
        local = Denoiser("photo", device="cpu", batch_size=BATCH, intra_op_threads=1)
        assert error == ""
        for got, want in zip(planes, local.denoise_iter(chunk), strict=True):
            assert np.array_equal(got, want)
        dim = [c * np.float32(0.2) for c in chunk]  # mapped by the driver: not again here
        planes, error = worker.denoise(dim, None, "hwc", "full")
        assert error == ""
        for got, want in zip(planes, local.denoise_iter(dim, levels="full"), strict=True):
            assert np.array_equal(got, want)
        assert not np.array_equal(planes[0], next(local.denoise_iter(dim)))
        planes, error = worker.denoise([np.full((H, W), 2.0, np.float32)])
        assert planes == [] and "[0, 1]" in error and "\n" not in error
    finally:
        worker.close()
