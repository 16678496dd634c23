"""``device="auto"`` on the CPU: the engine probe and its cache, with fake engines and a fake
clock (no test here depends on how fast this machine is)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from n2n_infer import probe
from n2n_infer.probe import REFERENCE, EngineResult, choose, choose_engine


class FakeClock:
    """``time.perf_counter`` for the probe: advanced by the fake engines' costs only."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(probe.time, "perf_counter", fake)
    return fake


@pytest.fixture(autouse=True)
def probe_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The probe on (the suite turns it off elsewhere), its cache in a fresh folder."""
    monkeypatch.setenv(probe.ENV_PROBE, "1")
    monkeypatch.setenv(probe.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setattr(probe, "_CACHE_NOTES", [])
    return tmp_path / "cache"


def engine(clock: FakeClock, cost: float, offset: float = 0.0, calls: list | None = None):
    """A fake model: the identity (plus ``offset``), costing ``cost`` fake seconds a call."""

    def run(x: np.ndarray) -> np.ndarray:
        clock.now += cost
        if calls is not None:
            calls.append(x.shape)
        return np.clip(x + offset, 0, 1)

    return run


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"not really a model: only its checksum is read here")
    return path


def fakes(clock: FakeClock, costs: dict[str, float], offsets: dict[str, float] | None = None):
    built: list[str] = []
    offsets = offsets or {}

    def build(name: str):
        built.append(name)
        return engine(clock, costs[name], offsets.get(name, 0.0))

    return build, built


ENGINES = [REFERENCE, "openvino:f32", "openvino:bf16"]


def test_the_faster_engine_is_chosen(clock, model) -> None:
    build, _ = fakes(clock, {REFERENCE: 1.0, "openvino:f32": 0.9, "openvino:bf16": 0.45})
    choice = choose_engine(model, 0, build, stride=8, engines=ENGINES)
    assert choice.engine == "openvino:bf16" and choice.source == "probe"
    speeds = {r.engine: r.speed for r in choice.results}
    assert speeds[REFERENCE] == 1.0 and speeds["openvino:bf16"] == pytest.approx(1 / 0.45)


def test_failing_parity_is_never_chosen(clock, model) -> None:
    # bf16 is 4x faster but off by 0.05: it fails parity; f32 is only 1.05x: noise
    costs = {REFERENCE: 1.0, "openvino:f32": 1 / 1.05, "openvino:bf16": 0.25}
    build, _ = fakes(clock, costs, {"openvino:bf16": 0.05})
    choice = choose_engine(model, 0, build, stride=8, engines=ENGINES)
    assert choice.engine == REFERENCE
    bf16 = next(r for r in choice.results if r.engine == "openvino:bf16")
    assert not bf16.passed and bf16.max_abs_diff == pytest.approx(0.05, abs=1e-3)
    assert "parity failed" in choice.summary()


def test_a_small_parity_error_within_tolerance_is_accepted(clock, model) -> None:
    build, _ = fakes(clock, {REFERENCE: 1.0, "openvino:bf16": 0.5}, {"openvino:bf16": 0.001})
    choice = choose_engine(model, 0, build, stride=8, engines=[REFERENCE, "openvino:bf16"])
    assert choice.engine == "openvino:bf16"


def test_an_engine_that_fails_is_reported_and_not_chosen(clock, model) -> None:
    def build(name: str):
        if name == "openvino:f32":
            raise RuntimeError("cannot compile")
        if name == "openvino:bf16":

            def broken(x: np.ndarray) -> np.ndarray:
                raise RuntimeError("illegal instruction\nmore lines")

            return broken
        return engine(clock, 1.0)

    choice = choose_engine(model, 0, build, stride=8, engines=ENGINES)
    assert choice.engine == REFERENCE
    (bf16,) = [r for r in choice.results if r.engine == "openvino:bf16"]
    assert bf16.error == "illegal instruction" and not bf16.passed
    assert [r.engine for r in choice.results] == [REFERENCE, "openvino:bf16"]


def test_the_probe_is_bounded_by_its_budget(clock, model) -> None:
    calls: list = []

    def build(name: str):
        return engine(clock, 1.5, calls=calls)  # every call blows the budget

    choose_engine(model, 0, build, stride=8, engines=[REFERENCE, "openvino:f32"])
    # one untimed call each, then two timed rounds (the minimum), then the budget stops it
    assert len(calls) == 2 * 3
    assert calls[0] == (1, 3, 256, 256)


def test_the_probe_image_follows_the_stride_and_is_the_same_everywhere() -> None:
    clean, noisy = probe.probe_images(stride=64)
    assert clean.shape == noisy.shape == (1, 3, 256, 256)
    assert probe.probe_images(stride=512)[0].shape == (1, 3, 512, 512)
    assert probe.probe_images(stride=8, channels=1)[0].shape == (1, 1, 256, 256)
    assert np.array_equal(noisy, probe.probe_images(stride=64)[1])
    assert 19 < -10 * np.log10(np.mean((noisy - clean) ** 2)) < 24


def test_the_cached_verdict_is_reused(clock, model, probe_on) -> None:
    build, built = fakes(clock, {REFERENCE: 1.0, "openvino:bf16": 0.5})
    first = choose_engine(model, 0, build, stride=8, engines=[REFERENCE, "openvino:bf16"])
    assert sorted(built) == sorted([REFERENCE, "openvino:bf16"])
    built.clear()
    again = choose_engine(model, 0, build, stride=8, engines=[REFERENCE, "openvino:bf16"])
    assert built == [] and again.source == "cache" and again.engine == first.engine
    assert again.results == first.results
    doc = json.loads((probe_on / "engines.json").read_text())
    (entry,) = doc["entries"].values()
    assert entry["engine"] == "openvino:bf16" and entry["fingerprint"]["model_sha256"]


@pytest.mark.parametrize(
    "change",
    ["onnxruntime", "openvino", "cpu", "cpu_flags", "threads", "model"],
)
def test_the_cache_is_invalidated_by_a_change(clock, model, monkeypatch, change) -> None:
    build, built = fakes(clock, {REFERENCE: 1.0, "openvino:bf16": 0.5})
    choose_engine(model, 0, build, stride=8, engines=[REFERENCE, "openvino:bf16"])
    built.clear()
    threads = 0
    if change == "onnxruntime":
        import onnxruntime

        monkeypatch.setattr(onnxruntime, "__version__", "9.9.9")
    elif change == "openvino":
        real = probe._version
        monkeypatch.setattr(probe, "_version", lambda d: "2099.1" if d == "openvino" else real(d))
    elif change in ("cpu", "cpu_flags"):
        name, flags = probe._cpu_facts()
        other = (name + " v2", flags) if change == "cpu" else (name, flags + " amx_bf16")
        monkeypatch.setattr(probe, "_cpu_facts", lambda: other)
    elif change == "threads":
        threads = 2
    else:
        model.write_bytes(b"another model")
    again = choose_engine(model, threads, build, stride=8, engines=[REFERENCE, "openvino:bf16"])
    assert again.source == "probe" and sorted(built) == sorted([REFERENCE, "openvino:bf16"])


def test_an_unwritable_cache_is_ignored_with_one_warning(clock, model, probe_on, caplog) -> None:
    probe_on.parent.mkdir(exist_ok=True)
    probe_on.write_text("a file where the cache folder should be")
    build, built = fakes(clock, {REFERENCE: 1.0, "openvino:bf16": 0.5})
    with caplog.at_level(logging.WARNING, logger="n2n_infer.probe"):
        for _ in range(3):
            choice = choose_engine(model, 0, build, stride=8, engines=[REFERENCE, "openvino:bf16"])
            assert choice.engine == "openvino:bf16"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "engine cache" in warnings[0].getMessage()
    assert built.count(REFERENCE) == 3  # measured each time, as nothing could be kept


def test_a_broken_cache_is_ignored_and_replaced(clock, model, probe_on, caplog) -> None:
    probe_on.mkdir(parents=True)
    (probe_on / "engines.json").write_text('{"format": 1, "entries": [1, 2')
    build, _ = fakes(clock, {REFERENCE: 1.0, "openvino:bf16": 0.5})
    with caplog.at_level(logging.WARNING, logger="n2n_infer.probe"):
        choice = choose_engine(model, 0, build, stride=8, engines=[REFERENCE, "openvino:bf16"])
    assert choice.engine == "openvino:bf16"
    assert any("ignored" in r.getMessage() for r in caplog.records)
    assert json.loads((probe_on / "engines.json").read_text())["format"] == 1


def test_a_cache_naming_an_engine_no_longer_installed_is_not_trusted(clock, model) -> None:
    build, built = fakes(clock, {REFERENCE: 1.0, "openvino:bf16": 0.5})
    choose_engine(model, 0, build, stride=8, engines=[REFERENCE, "openvino:bf16"])
    built.clear()
    choice = choose_engine(model, 0, build, stride=8, engines=[REFERENCE])
    assert choice.engine == REFERENCE and built == []


@pytest.mark.parametrize("value", ["0", "off", "False", "no"])
def test_the_probe_is_turned_off_by_the_variable(clock, model, monkeypatch, value) -> None:
    monkeypatch.setenv(probe.ENV_PROBE, value)
    build, built = fakes(clock, {REFERENCE: 1.0, "openvino:bf16": 0.1})
    choice = choose_engine(model, 0, build, stride=8, engines=[REFERENCE, "openvino:bf16"])
    assert choice.engine == REFERENCE and choice.source == "off" and built == []


def test_choose_needs_a_real_gain() -> None:
    def r(name: str, speed: float, passed: bool = True) -> EngineResult:
        return EngineResult(name, 1 / speed, speed, 0.0, 0.0, passed)

    assert choose((r(REFERENCE, 1.0), r("openvino:f32", 1.1))) == REFERENCE
    assert choose((r(REFERENCE, 1.0), r("openvino:f32", 1.2), r("openvino:bf16", 2.0))) == (
        "openvino:bf16"
    )
    assert choose((r(REFERENCE, 1.0), r("openvino:bf16", 2.0, passed=False))) == REFERENCE


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(probe.ENV_CACHE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert probe.cache_dir() == tmp_path / "n2n"


# --- Denoiser: where the probe runs and where it never does -------------------------------


def _no_probe(*args, **kwargs):
    raise AssertionError("the engine probe ran")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"device": "cpu"},
        {"device": "openvino"},
        {"providers": ["CPUExecutionProvider"]},
    ],
)
def test_a_named_device_is_never_probed(monkeypatch, kwargs) -> None:
    if kwargs.get("device") == "openvino":
        pytest.importorskip("openvino")
    from n2n_infer import Denoiser

    monkeypatch.setattr(probe, "choose_engine", _no_probe)
    d = Denoiser(**kwargs)
    assert d.engine_choice is None


def test_auto_with_the_probe_off_runs_onnxruntime(monkeypatch) -> None:
    from n2n_infer import Denoiser

    monkeypatch.setenv(probe.ENV_PROBE, "0")
    d = Denoiser()
    assert d.providers == ["CPUExecutionProvider"]
    assert d.engine_choice is not None and d.engine_choice.source == "off"


def test_auto_runs_what_the_probe_chose_and_reuses_it(probe_on) -> None:
    """Real engines: whatever wins on this CPU, Denoiser() runs it, and its outputs stay
    within the probe's tolerance of onnxruntime fp32; the second Denoiser() reads the cache."""
    from n2n_infer import Denoiser

    first = Denoiser()
    choice = first.engine_choice
    assert choice is not None and choice.source == "probe"
    expected = {"cpu": "CPUExecutionProvider", "openvino:f32": "OpenVINO CPU f32"}
    expected["openvino:bf16"] = "OpenVINO CPU bf16"
    assert first.providers[0] == expected[choice.engine]
    assert {r.engine for r in choice.results} == set(probe.candidate_engines())
    again = Denoiser()
    assert again.engine_choice.source == "cache" and again.providers == first.providers
    x = probe.probe_images(first.stride)[1][:, :, :64, :96]
    reference = Denoiser(device="cpu").denoise_nchw(x)
    assert np.abs(first.denoise_nchw(x) - reference).max() <= probe.MAX_ABS_DIFF


def test_a_cached_engine_that_cannot_start_gives_onnxruntime_back(
    clock, monkeypatch, probe_on, caplog
) -> None:
    pytest.importorskip("openvino")
    from n2n_infer import Denoiser, ov_backend

    fake = probe.EngineChoice("openvino:bf16", "cache", (), "2026-12-05T00:00:00Z")
    monkeypatch.setattr(probe, "choose_engine", lambda *a, **k: fake)

    def broken(*args, **kwargs):
        raise RuntimeError("the plugin is gone")

    monkeypatch.setattr(ov_backend.OpenVINOEngine, "__init__", broken)
    with caplog.at_level(logging.WARNING, logger="n2n_infer.probe"):
        d = Denoiser()
    assert d.providers == ["CPUExecutionProvider"] and d.engine_choice.engine == REFERENCE
    assert any("could not start" in r.getMessage() for r in caplog.records)


# --- what doctor and info say ---------------------------------------------------------------


def test_doctor_shows_each_engines_speed_and_parity_and_the_choice(clock, monkeypatch) -> None:
    from n2n_infer.doctor import engine_lines

    results = (
        EngineResult(REFERENCE, 1.0, 1.0, 0.0, 0.0, True),
        EngineResult("openvino:f32", 1.4, 0.71, 0.0, 1e-6, True),
        EngineResult("openvino:bf16", 0.5, 2.0, 0.008, 0.007, True),
    )
    fake = probe.EngineChoice(REFERENCE, "cache", results, "2026-12-05T00:00:00Z")
    monkeypatch.setattr(probe, "choose_engine", lambda *a, **k: fake)
    lines = engine_lines(None)
    assert lines[0].startswith("auto on this CPU: cpu (CPUExecutionProvider; measured 2026-12-05")
    assert any(
        "openvino:bf16" in line and "2.00x" in line and "parity ok" in line for line in lines
    )
    assert lines[-1].startswith("int8: a named choice, never made by auto")


def test_doctor_says_when_the_probe_is_off(monkeypatch) -> None:
    from n2n_infer.doctor import engine_lines

    monkeypatch.setenv(probe.ENV_PROBE, "0")
    assert "the engine probe is off: N2N_ENGINE_PROBE=0" in engine_lines(None)[0]


def test_info_shows_the_cached_choice_without_measuring(clock, monkeypatch, probe_on) -> None:
    from click.testing import CliRunner

    from n2n_infer.cli import main
    from n2n_infer.registry import resolve_model

    monkeypatch.setattr(probe, "choose_engine", _no_probe)
    out = CliRunner().invoke(main, ["info"]).output
    assert "engine (auto)  not measured here yet (n2n-infer doctor measures it)" in out
    build, _ = fakes(clock, {REFERENCE: 1.0, "openvino:bf16": 0.5})
    choose_engine(resolve_model(None), 0, build, stride=8, engines=[REFERENCE, "openvino:bf16"])
    out = CliRunner().invoke(main, ["info"]).output
    assert "engine (auto)  openvino:bf16, 2.00× onnxruntime fp32 (measured 20" in out
