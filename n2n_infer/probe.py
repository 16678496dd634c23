"""Which CPU engine ``device="auto"`` runs a model on: measured on this machine, cached.

CPU flags cannot say which engine is fastest: of two CPUs that both report
AVX-512 BF16, one ran OpenVINO bf16 much faster than onnxruntime fp32 and the
other slower (docs/runtime.md, "Speed"). So ``auto``, when it runs on the CPU,
times every installed engine on the model itself, keeps those whose outputs stay
within :data:`MAX_DELTA_DB` and :data:`MAX_ABS_DIFF` of onnxruntime fp32, and
picks the fastest; another engine must beat onnxruntime fp32 by :data:`MIN_GAIN`
to be chosen, so noise never makes ``auto`` slower than onnxruntime.

The probe runs once per model, machine and library versions: its verdict is kept
in ``engines.json`` in the user's cache folder (:func:`cache_dir`), keyed by the
model's sha256, the CPU's model name and flags, the usable cores, the thread
setting and the versions of n2n, onnxruntime and OpenVINO; when any of them
changes, the probe runs again. A cache that cannot be read or written is
ignored with one warning. ``N2N_ENGINE_PROBE=0`` turns the probe off (``auto``
then runs onnxruntime on the CPU, as a named ``device="cpu"`` does); a named
device is never probed.

The probe's input is one synthetic, photo-like 256×256 image with Gaussian noise
of sigma 25 (:func:`probe_images`), deterministic, so that every machine judges
parity on the same numbers; its timed calls are interleaved across the
engines and stop after :data:`PROBE_SECONDS` (at least two calls each).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from n2n_infer.files import sha256_file, write_text_atomic

log = logging.getLogger(__name__)

__all__ = [
    "ENV_CACHE",
    "ENV_PROBE",
    "EngineChoice",
    "EngineResult",
    "cache_dir",
    "cached_choice",
    "candidate_engines",
    "choose",
    "choose_engine",
    "fingerprint",
    "probe",
    "probe_enabled",
]

#: Set to 0, false, no or off to turn the probe off (``auto`` then means onnxruntime).
ENV_PROBE = "N2N_ENGINE_PROBE"
#: Overrides the cache folder (default: ``$XDG_CACHE_HOME/n2n`` or ``~/.cache/n2n``).
ENV_CACHE = "N2N_CACHE"
CACHE_FILE = "engines.json"
CACHE_FORMAT = 1
#: Entries kept in the cache file (the oldest are dropped).
MAX_ENTRIES = 64
#: The reference engine: onnxruntime fp32 on the CPU.
REFERENCE = "cpu"
#: Wall-clock budget of the timed calls, seconds.
PROBE_SECONDS = 2.0
#: Timed calls per engine at most (the median is kept).
MAX_ROUNDS = 7
#: Parity: PSNR against the probe's clean image at most this much below onnxruntime fp32's.
MAX_DELTA_DB = 0.02
#: Parity: no output value further than this from onnxruntime fp32's (1.0 = full scale).
MAX_ABS_DIFF = 0.02
#: Another engine is chosen only when at least this much faster than the reference.
MIN_GAIN = 1.15
#: Edge of the probe image (rounded up to the model's stride).
PROBE_EDGE = 256
SIGMA = 25 / 255

#: A model call: float32 N×C×H×W in, the same shape out.
Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class EngineResult:
    """One engine's showing in the probe.

    Attributes:
        engine: a device string (``"cpu"``, ``"openvino:f32"``, ``"openvino:bf16"``).
        seconds: median seconds of one call on the probe image (NaN if it failed).
        speed: the reference's seconds over this engine's (1.0 for the reference).
        delta_psnr_db: the reference's PSNR minus this engine's, against the probe's
            clean image (positive: this engine is worse).
        max_abs_diff: the largest difference from the reference's output.
        passed: within :data:`MAX_DELTA_DB` and :data:`MAX_ABS_DIFF`, and ran.
        error: why it could not run, if it could not.
    """

    engine: str
    seconds: float
    speed: float
    delta_psnr_db: float
    max_abs_diff: float
    passed: bool
    error: str = ""


@dataclass(frozen=True)
class EngineChoice:
    """What ``auto`` runs on this CPU and why.

    Attributes:
        engine: the chosen device string.
        source: ``"probe"`` (measured now), ``"cache"`` (measured before on this
            machine), or ``"off"`` (the probe is turned off: onnxruntime).
        results: every engine's measurement (empty when ``source`` is ``"off"``).
        measured: when the measurement was made (ISO 8601, UTC), if it was.
    """

    engine: str
    source: str
    results: tuple[EngineResult, ...] = ()
    measured: str = ""
    fingerprint: dict[str, Any] = field(default_factory=dict)

    def short(self) -> str:
        """The choice and its speed, in a few words."""
        chosen = next((r for r in self.results if r.engine == self.engine), None)
        speed = f", {chosen.speed:.2f}× onnxruntime fp32" if chosen else ""
        when = f" (measured {self.measured[:10]})" if self.measured else ""
        return f"{self.engine}{speed}{when}"

    def summary(self) -> str:
        """One line: the choice, and each engine's speed and parity."""
        parts = [
            f"{r.engine} {r.speed:.2f}× ({'parity ok' if r.passed else _why_not(r)})"
            for r in self.results
        ]
        how = {"probe": "measured now", "cache": f"measured {self.measured}", "off": "probe off"}
        detail = f": {', '.join(parts)}" if parts else ""
        return f"{self.engine} ({how.get(self.source, self.source)}){detail}"


def _why_not(r: EngineResult) -> str:
    if r.error:
        return f"failed: {r.error}"
    return f"parity failed: {r.delta_psnr_db:+.3f} dB, max diff {r.max_abs_diff:.3g}"


def probe_enabled() -> bool:
    """False when :data:`ENV_PROBE` is set to 0, false, no or off."""
    return os.environ.get(ENV_PROBE, "1").strip().lower() not in ("0", "false", "no", "off")


def cache_dir() -> Path:
    """:data:`ENV_CACHE`, else ``%LOCALAPPDATA%\\n2n`` on Windows, else
    ``$XDG_CACHE_HOME/n2n`` or ``~/.cache/n2n``."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "n2n"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "n2n"


def candidate_engines() -> list[str]:
    """The CPU engines installed here: onnxruntime fp32 always; OpenVINO fp32, and bf16
    where OpenVINO reports native bf16, when the ``openvino`` package imports."""
    found = [REFERENCE]
    if not _has_openvino():
        return found
    found.append("openvino:f32")
    try:
        from n2n_infer.ov_backend import cpu_capabilities

        if "BF16" in cpu_capabilities():
            found.append("openvino:bf16")
    except Exception as exc:  # OpenVINO's own errors: probe what could be asked
        log.debug("OpenVINO capabilities unreadable: %s", exc)
    return found


def _has_openvino() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


@functools.cache
def _cpu_facts() -> tuple[str, str]:
    """The CPU's model name and its flags (Linux: /proc/cpuinfo), else what platform says."""
    name, flags = platform.processor() or platform.machine(), ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", errors="replace") as f:
        for line in f:
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and name in ("", platform.processor(), platform.machine()):
                name = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = " ".join(sorted(value.split()))
            if key == "" and flags:
                break  # the first processor's block is enough
    return name, flags


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return ""


def fingerprint(model_sha256: str, threads: int) -> dict[str, Any]:
    """What a cached verdict depends on: the model, the CPU, the cores, the threads and
    the engines' versions."""
    name, flags = _cpu_facts()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on macOS or Windows
        cores = os.cpu_count() or 1
    import onnxruntime as ort

    return {
        "model_sha256": model_sha256,
        "cpu": name,
        "cpu_flags": flags,
        "machine": platform.machine(),
        "cores": cores,
        "threads": threads,
        "n2n": _version("n2n"),
        "onnxruntime": ort.__version__,
        "openvino": _version("openvino"),
    }


def probe_images(stride: int, channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The probe's ``(clean, noisy)``: float32 1×C×E×E, E = :data:`PROBE_EDGE` rounded up to
    ``stride``; the same numbers on every machine.

    The clean image is photo-like: a random field whose amplitude spectrum falls as
    1/f^1.5, mostly shared by the channels, with flat patches on it; the photo model
    denoises it (sigma 25) nearly as well as real held-out photos, so parity is judged
    at a photo's quality: on a flat synthetic image, which denoises much better, the
    same bf16 rounding costs several times as many dB (docs/runtime.md, "Devices and
    session options").
    """
    edge = -(-PROBE_EDGE // stride) * stride
    rng = np.random.default_rng(20261205)
    shared = _field(rng, edge)
    clean = np.stack(
        [0.5 + 0.2 * (0.8 * shared + 0.2 * _field(rng, edge)) for _ in range(channels)]
    )
    for _ in range(12):
        y0, x0 = rng.integers(0, edge - 8, 2)
        h, w = rng.integers(6, edge // 4, 2)
        patch = clean[:, y0 : y0 + h, x0 : x0 + w]
        clean[:, y0 : y0 + h, x0 : x0 + w] = (
            rng.uniform(0, 1, (channels, 1, 1)) + 0.3 * patch - 0.15
        )
    clean = np.clip(clean, 0, 1).astype(np.float32)[None]
    noise = rng.normal(0, SIGMA, clean.shape).astype(np.float32)
    return clean, np.clip(clean + noise, 0, 1).astype(np.float32)


def _field(rng: np.random.Generator, edge: int) -> np.ndarray:
    """An edge×edge random field of zero mean and unit deviation, amplitude ∝ 1/f^1.5."""
    f = np.fft.fftfreq(edge)
    radius = np.hypot(*np.meshgrid(f, f))
    radius[0, 0] = 1.0
    spectrum = (rng.normal(size=(edge, edge)) + 1j * rng.normal(size=(edge, edge))) / radius**1.5
    spectrum[0, 0] = 0.0
    field = np.fft.ifft2(spectrum).real
    return (field - field.mean()) / field.std()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - b) ** 2))
    return math.inf if mse == 0 else -10 * math.log10(mse)


def probe(
    runners: Mapping[str, Runner], stride: int, channels: int = 3, budget_s: float = PROBE_SECONDS
) -> tuple[EngineResult, ...]:
    """Time each engine on the probe image and check its outputs against the reference's.

    ``runners`` maps device strings to model calls and must hold :data:`REFERENCE`.
    Each engine runs once untimed (its first call), then the timed calls go round
    the engines in turn until ``budget_s`` is spent or each has run
    :data:`MAX_ROUNDS` times (two rounds at least). An engine whose call raises
    is reported as failed, never chosen.
    """
    clean, noisy = probe_images(stride, channels)
    outputs: dict[str, np.ndarray] = {}
    errors: dict[str, str] = {}
    for name, run in runners.items():
        try:
            outputs[name] = np.asarray(run(noisy), dtype=np.float32)
            if outputs[name].shape != noisy.shape or not np.isfinite(outputs[name]).all():
                raise ValueError(f"output of shape {outputs[name].shape} or not finite")
        except Exception as exc:  # an engine's own error types: it is out of the running
            errors[name] = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            outputs.pop(name, None)
    if REFERENCE not in outputs:
        raise RuntimeError(f"the reference engine failed the probe: {errors.get(REFERENCE)}")
    times: dict[str, list[float]] = {name: [] for name in outputs}
    start = time.perf_counter()
    for rounds in range(MAX_ROUNDS):
        if rounds >= 2 and time.perf_counter() - start > budget_s:
            break
        for name in outputs:
            t0 = time.perf_counter()
            runners[name](noisy)
            times[name].append(time.perf_counter() - t0)
    ref_seconds = statistics.median(times[REFERENCE])
    ref_psnr = _psnr(outputs[REFERENCE], clean)
    results = []
    for name in runners:
        if name in errors:
            results.append(
                EngineResult(name, math.nan, 0.0, math.nan, math.nan, False, errors[name])
            )
            continue
        seconds = statistics.median(times[name])
        delta = ref_psnr - _psnr(outputs[name], clean)
        diff = float(np.abs(outputs[name] - outputs[REFERENCE]).max())
        passed = delta <= MAX_DELTA_DB and diff <= MAX_ABS_DIFF
        results.append(EngineResult(name, seconds, ref_seconds / seconds, delta, diff, passed))
    return tuple(results)


def choose(results: tuple[EngineResult, ...], min_gain: float = MIN_GAIN) -> str:
    """The fastest engine that passed parity, if it beats the reference by ``min_gain``;
    else the reference."""
    passed = [r for r in results if r.passed and r.engine != REFERENCE]
    best = max(passed, key=lambda r: r.speed, default=None)
    return best.engine if best is not None and best.speed >= min_gain else REFERENCE


def choose_engine(
    model: Path,
    threads: int,
    build: Callable[[str], Runner],
    stride: int,
    channels: int = 3,
    engines: list[str] | None = None,
) -> EngineChoice:
    """What ``auto`` runs ``model`` on with ``threads`` CPU threads (0: the engines' default).

    ``build(engine)`` returns a model call for a device string of ``engines``
    (default :func:`candidate_engines`). With one engine installed, or the probe
    off, the answer is the reference without a measurement. Otherwise a cached
    verdict for the same :func:`fingerprint` is reused; else the probe runs and
    its verdict is cached. Problems with the cache are logged once as a warning
    and never raised.

    Raises:
        RuntimeError: the reference engine failed the probe (the caller's own
            load-time check normally catches a broken model first).
    """
    engines = candidate_engines() if engines is None else engines
    if not probe_enabled() or engines == [REFERENCE]:
        return EngineChoice(REFERENCE, "off" if not probe_enabled() else "probe")
    facts = fingerprint(sha256_file(model), threads)
    key = _key(facts)
    cache = _read_cache()
    cached = cache.get(key)
    if cached is not None and cached.get("engine") in engines:
        return _from_entry(cached, facts)
    runners = {}
    for name in engines:
        try:
            runners[name] = build(name)
        except Exception as exc:  # an engine that cannot start is out of the running
            log.info("engine %s not probed: %s", name, exc)
    results = probe(runners, stride, channels)
    choice = EngineChoice(choose(results), "probe", results, _now(), facts)
    log.info("engine probe for %s: %s", model.name, choice.summary())
    cache[key] = {
        "engine": choice.engine,
        "measured": choice.measured,
        "fingerprint": facts,
        "results": [asdict(r) for r in results],
    }
    _write_cache(cache)
    return choice


def cached_choice(model: Path, threads: int = 0) -> EngineChoice | None:
    """The verdict cached for ``model`` on this machine, without measuring anything; None when
    there is none (or the probe is off)."""
    if not probe_enabled():
        return None
    facts = fingerprint(sha256_file(model), threads)
    entry = _read_cache().get(_key(facts))
    return None if entry is None else _from_entry(entry, facts)


def _key(facts: dict[str, Any]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:32]


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _from_entry(entry: dict[str, Any], facts: dict[str, Any]) -> EngineChoice:
    results = []
    for r in entry.get("results", []):
        with contextlib.suppress(TypeError):
            results.append(EngineResult(**r))
    return EngineChoice(entry["engine"], "cache", tuple(results), str(entry.get("measured")), facts)


#: The cache problems met in this process: only the first is said (as a warning).
_CACHE_NOTES: list[str] = []


def _warn_once(message: str) -> None:
    if not _CACHE_NOTES:
        log.warning("%s (the engine choice is measured again each time)", message)
    _CACHE_NOTES.append(message)


def _read_cache() -> dict[str, Any]:
    """The cache's entries, or an empty dict (with one warning) when it cannot be read."""
    path = cache_dir() / CACHE_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        _warn_once(f"engine cache {path} ignored: {exc}")
        return {}
    entries = doc.get("entries") if isinstance(doc, dict) else None
    if not isinstance(entries, dict) or doc.get("format") != CACHE_FORMAT:
        _warn_once(f"engine cache {path} ignored: not a format-{CACHE_FORMAT} engine cache")
        return {}
    return {k: v for k, v in entries.items() if isinstance(v, dict) and "engine" in v}


def _write_cache(entries: dict[str, Any]) -> None:
    folder = cache_dir()
    kept = dict(sorted(entries.items(), key=lambda kv: str(kv[1].get("measured")))[-MAX_ENTRIES:])
    text = json.dumps({"format": CACHE_FORMAT, "entries": kept}, indent=1) + "\n"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder / CACHE_FILE, text)
    except (OSError, ValueError) as exc:
        _warn_once(f"engine cache not saved in {folder}: {exc}")


def auto_engine(
    reference: Any, model: Path, stride: int, threads: int, channels: int = 3
) -> tuple[Any, EngineChoice]:
    """The engine ``auto`` runs on the CPU: ``reference`` (onnxruntime's
    :class:`~n2n_infer.engines.OrtEngine`, already checked) or an OpenVINO engine of the
    same file, by :func:`choose_engine`; candidates are built through the same seam
    (:mod:`n2n_infer.engines`) as a named device.

    An engine chosen from the cache that cannot start now, or fails the load-time
    test run, gives onnxruntime back with a warning.
    """
    from n2n_infer.engines import check_engine
    from n2n_infer.ov_backend import OpenVINOEngine

    engines: dict[str, Any] = {REFERENCE: reference}

    def open_candidate(name: str) -> Any:
        if name not in engines:
            precision = name.partition(":")[2] or "f32"
            engines[name] = OpenVINOEngine(reference.session, model, precision, threads)
        return engines[name]

    def build(name: str) -> Runner:
        return open_candidate(name).run

    try:
        choice = choose_engine(model, threads, build, stride, channels)
    except RuntimeError as exc:  # the reference failed: the caller's checks speak for the model
        log.warning("engine probe failed (%s); running onnxruntime", exc)
        return reference, EngineChoice(REFERENCE, "off")
    if choice.engine == REFERENCE:
        return reference, choice
    try:
        engine = open_candidate(choice.engine)
        if choice.source == "cache":
            check_engine(engine, model, stride, channels)
    except Exception as exc:  # the engine's own errors: onnxruntime still runs the model
        log.warning("engine %s could not start (%s); running onnxruntime", choice.engine, exc)
        return reference, EngineChoice(REFERENCE, choice.source, choice.results, choice.measured)
    return engine, choice
