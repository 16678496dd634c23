"""The CUDA path, proven in one go on a machine with one NVIDIA GPU (run by gpu_check.sh).

    bash scripts/gpu_check.sh                  # on the GPU machine: bench/results/gpu.{json,md}
    bash scripts/gpu_check.sh --dry-run        # anywhere: every step on the CPU, small sizes

Each step runs on its own: a step that fails is recorded with its error and the
next one runs. The JSON is rewritten after every step, so a run cut short still
leaves what it measured. The steps, riskiest first (docs/notes on the CUDA path):
environment, the CUDA-marked tests, the first run, node placement, failures
(out of memory under a cap, a device that does not exist, auto without a GPU),
parity against the CPU for every shipped model (fp32, and fp16 exported from its
checkpoint), shape churn (first calls of new sizes, alternating shapes, the
self-ensemble), throughput (batch 1-64 at 256x256, 1080p, 4K; binding on/off;
fp32/fp16; TensorRT when it loads; the CPU provider for scale), GPU memory over
many sizes, two threads on one Denoiser, `n2n-infer batch --device cuda`, and a
short bf16 training on CUDA exported and checked.

The measuring process imports no torch (the runtime never does); exports and
training run as subprocesses. ``--dry-run`` runs every step on the CPU with
small sizes (CI runs it); it never writes into bench/results unless told to.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from n2n_infer.metrics import psnr

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # bench.report when run as a script

EXAMPLES = REPO / "examples"


@dataclass
class Plan:
    """Sizes and limits: the GPU's, or small ones for ``--dry-run`` on the CPU."""

    dry: bool
    device: str
    batches: tuple[int, ...]
    side: int  # square images of the batch sweep
    hd: tuple[int, int]  # the "1080p" image
    uhd: tuple[int, int]  # the "4K" image
    churn_sizes: int
    repeats: int
    train_steps: int
    train_batch: int

    @classmethod
    def make(cls, dry: bool) -> Plan:
        if dry:
            return cls(True, "cpu", (1, 2, 4), 64, (90, 160), (180, 320), 4, 2, 5, 8)
        return cls(
            False, "cuda", (1, 2, 4, 8, 16, 32, 64), 256, (1080, 1920), (2160, 3840), 20, 5, 300, 32
        )


@dataclass
class Run:
    """The results so far, written to OUT/gpu.json after every step."""

    out: Path
    plan: Plan
    deadline: float
    results: dict[str, Any] = field(default_factory=dict)

    def step(self, name: str, fn: Callable[[Run], dict[str, Any]], reserve: float = 0.0) -> None:
        """Run one step; record its result, its error or that the budget ran out."""
        left = self.deadline - time.monotonic()
        if left < reserve:
            self.results["steps"][name] = {"status": "skipped", "why": f"{left:.0f} s left"}
            self.save()
            return
        t0 = time.monotonic()
        print(f"[gpu_check] {name} ...", flush=True)
        try:
            entry = {"status": "ok", **fn(self)}
            if entry.get("passed") is False:
                entry["status"] = "failed"
        except Exception as exc:  # a step's failure is a finding: record it and go on
            entry = {
                "status": "error",
                "error": f"{type(exc).__name__}: {first_line(exc)}",
                "traceback": traceback.format_exc(limit=6).splitlines()[-6:],
            }
        entry["seconds"] = round(time.monotonic() - t0, 2)
        self.results["steps"][name] = entry
        print(f"[gpu_check] {name}: {entry['status']} in {entry['seconds']} s", flush=True)
        self.save()

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "gpu.json"
        tmp = path.with_suffix(".json.part")
        tmp.write_text(neutral(json.dumps(self.results, indent=1, default=str)) + "\n")
        tmp.replace(path)


# --------------------------------------------------------------------------- helpers


def neutral(text: str) -> str:
    """``text`` without this machine's paths: the repository as ``.``, temporary folders as
    ``$TMP`` (the results are committed)."""
    text = text.replace(str(REPO) + os.sep, "").replace(str(REPO), ".")
    site = os.environ.get("N2N_GPU_SITE")
    if site:
        text = text.replace(site, "$N2N_GPU_SITE")
    return re.sub(re.escape(tempfile.gettempdir()) + r"/n2n-[\w.-]+", "$TMP", text)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def timed(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    """First call, then the median and min of ``repeats`` more, in seconds."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"first_s": first, "median_s": statistics.median(times), "min_s": min(times)}


@functools.cache
def load_examples(side: int = 0) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """The bundled noisy examples and their clean originals, uint8 H×W×3 (top-left
    ``side``×``side`` crops when ``side`` is set: the dry run's small sizes)."""
    from n2n_infer.imageio import as_rgb_u8, read_image

    noisy, clean = [], []
    for path in sorted((EXAMPLES / "noisy").glob("*.png")):
        pair = as_rgb_u8(read_image(path)), as_rgb_u8(read_image(EXAMPLES / "clean" / path.name))
        for out, img in zip((noisy, clean), pair, strict=True):
            out.append(np.ascontiguousarray(img[:side, :side]) if side else img)
    return tuple(noisy), tuple(clean)


def mosaic(images: Sequence[np.ndarray], h: int, w: int) -> np.ndarray:
    """An h×w uint8 image tiled from ``images`` (real photo content at any size)."""
    rows = []
    y = 0
    k = 0
    while y < h:
        row, x = [], 0
        tile_h = images[k % len(images)].shape[0]
        while x < w:
            img = images[k % len(images)][:tile_h]
            k += 1
            pad = tile_h - img.shape[0]
            if pad:
                img = np.pad(img, ((0, pad), (0, 0), (0, 0)), mode="reflect")
            row.append(img)
            x += img.shape[1]
        rows.append(np.concatenate(row, axis=1)[:, :w])
        y += tile_h
    return np.ascontiguousarray(np.concatenate(rows)[:h])


@functools.cache
def shipped_models() -> tuple[tuple[str, Path, Path | None], ...]:
    """(name, .onnx, .pt or None) for every bundled colour model (the steps feed RGB; the
    1-channel grey model is not checked on the GPU yet)."""
    from n2n_infer.registry import DEFAULT_GREY_MODEL, available_models, resolve_model

    out = []
    for name in available_models():
        if name == DEFAULT_GREY_MODEL:
            continue
        onnx_path = resolve_model(name)
        pt = onnx_path.with_suffix(".pt")
        out.append((name, onnx_path, pt if pt.is_file() else None))
    return tuple(out)


def subprocess_step(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> dict:
    """Run a command; its exit status, time and the tail of its output."""
    t0 = time.monotonic()
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-8:]
    return {
        "command": " ".join(cmd[:1] and [Path(cmd[0]).name, *cmd[1:]]),
        "exit": proc.returncode,
        "seconds": round(time.monotonic() - t0, 2),
        "tail": tail,
    }


def gpu_memory_mib() -> float | None:
    """GPU memory in use, from nvidia-smi: this process's if it is listed, else the whole
    GPU's (the check runs alone on its machine); None without nvidia-smi."""
    query = ["nvidia-smi", "--format=csv,noheader,nounits"]
    try:
        apps = subprocess.run(
            [*query, "--query-compute-apps=pid,used_memory"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout
        for line in apps.splitlines():
            pid, _, mib = line.partition(",")
            if pid.strip() == str(os.getpid()):
                return float(mib)
        total = subprocess.run(
            [*query, "--query-gpu=memory.used"], capture_output=True, text=True, timeout=20
        ).stdout.split()
        return float(total[0]) if total else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None


# --------------------------------------------------------------------------- steps


def step_environment(run: Run) -> dict[str, Any]:
    import onnxruntime as ort

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "onnxruntime_file": str(Path(ort.__file__).parent),
        "providers_available": ort.get_available_providers(),
        "build_info": getattr(ort, "get_build_info", lambda: "")(),
        "torch_in_process": "torch" in sys.modules,
        "ld_library_path_set_by_script": os.environ.get("N2N_GPU_LD_PATH", ""),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    try:
        smi = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,driver_version,memory.total,compute_cap",
                "--format=csv,noheader",
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
        env["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
        head = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout
        m = re.search(r"CUDA Version:\s*([\d.]+)", head)
        env["driver_cuda_version"] = m.group(1) if m else ""
    except (OSError, subprocess.TimeoutExpired) as exc:
        env["nvidia_smi"] = f"not available ({type(exc).__name__})"
    from n2n_infer.providers import cuda_libraries, missing_cuda_libraries

    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    env["cuda_libraries"] = cuda_libraries() if has_cuda else {}
    env["missing_cuda_libraries"] = missing_cuda_libraries() if env["cuda_libraries"] else []
    return env


def step_tests(run: Run) -> dict[str, Any]:
    """The tests marked ``cuda`` (tests/infer/test_cuda.py); on the CPU they skip, saying why."""
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "cuda",
        "-q",
        "-rfEs",
        "-p",
        "no:cacheprovider",
        "--tb=line",
        "tests/infer/test_cuda.py",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return {
        "command": "python -m pytest " + " ".join(cmd[3:]),
        "exit": proc.returncode,
        "passed": proc.returncode == 0,
        "summary": lines[-1] if lines else "",
        "not_passed": [ln[:400] for ln in lines if ln.startswith(("FAILED", "ERROR", "SKIPPED"))],
        "failure_lines": [ln[:400] for ln in lines if ln.startswith(("E ", "/", "tests/"))][:20],
    }


def step_first_run(run: Run) -> dict[str, Any]:
    from n2n_infer import Denoiser

    noisy, _ = load_examples()
    h, w = run.plan.hd
    img = mosaic(noisy, h, w)
    t0 = time.perf_counter()
    d = Denoiser(device=run.plan.device)
    created = time.perf_counter() - t0
    t0 = time.perf_counter()
    d.denoise(img)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    d.denoise(img)
    second = time.perf_counter() - t0
    maps = Path("/proc/self/maps")
    loaded = (
        sorted(
            {
                line.split()[-1]
                for line in maps.read_text().splitlines()
                if "libcudnn" in line or "libcublas" in line or "libcudart" in line
            }
        )
        if maps.exists()
        else []
    )
    return {
        "providers": d.providers,
        "io_binding": d.io_binding,
        "pad_multiple": d.pad_multiple,
        "image": f"{h}x{w}",
        "create_s": created,
        "first_denoise_s": first,
        "second_denoise_s": second,
        "cuda_libraries_loaded": loaded,
    }


def step_placement(run: Run) -> dict[str, Any]:
    """Which provider runs each node, from onnxruntime's profile of one run."""
    import onnxruntime as ort

    from n2n_infer.providers import requested_providers
    from n2n_infer.session import SessionConfig, session_options

    out = {}
    for name, onnx_path, _ in shipped_models():
        opts = session_options(SessionConfig())
        opts.enable_profiling = True
        opts.profile_file_prefix = str(run.out / f"profile_{name}")
        sess = ort.InferenceSession(
            str(onnx_path), sess_options=opts, providers=requested_providers(run.plan.device)
        )
        x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
        sess.run(None, {"noisy": x})
        prof = Path(sess.end_profiling())
        events = json.loads(prof.read_text())
        prof.unlink()
        by_provider: dict[str, set[str]] = {}
        for ev in events:
            args = ev.get("args", {})
            if ev.get("cat") == "Node" and "provider" in args:
                by_provider.setdefault(args["provider"], set()).add(args.get("op_name", "?"))
        out[name] = {p: sorted(ops) for p, ops in by_provider.items()}
    return {"ops_by_provider": out}


def step_failures(run: Run) -> dict[str, Any]:
    from n2n_infer import Denoiser, InferenceError, ProviderError, SessionConfig

    res: dict[str, Any] = {}
    # a device that does not exist
    try:
        Denoiser(device="cuda:7")
        res["cuda_7"] = "no error (unexpected)"
    except ProviderError as exc:
        res["cuda_7"] = f"ProviderError: {exc}"
    except Exception as exc:
        res["cuda_7"] = f"UNEXPECTED {type(exc).__name__}: {exc}"
    # out of memory under a cap: a large untiled image
    if run.plan.dry:
        res["mem_cap"] = "skipped: no GPU (the cap is a CUDA arena option)"
    else:
        try:
            d = Denoiser(device="cuda", session_config=SessionConfig(gpu_mem_limit_mb=64))
            img = np.full((2160, 3840, 3), 128, np.uint8)
            d.denoise(img, tile=False)
            res["mem_cap"] = "no error (unexpected: 4K untiled under 64 MiB)"
        except InferenceError as exc:
            res["mem_cap"] = f"InferenceError: {str(exc)[:300]}"
        except Exception as exc:
            res["mem_cap"] = f"UNEXPECTED {type(exc).__name__}: {str(exc)[:300]}"
    # auto with the GPU hidden, and doctor, in subprocesses (stdout must stay clean)
    code = (
        "import logging,sys; logging.basicConfig(level=logging.INFO, stream=sys.stderr);"
        "from n2n_infer import Denoiser; print(Denoiser().providers)"
    )
    hidden = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    res["auto_gpu_hidden"] = {
        "exit": hidden.returncode,
        "stdout": hidden.stdout.strip(),
        "log": hidden.stderr.strip().splitlines()[-3:],
    }
    doctor = subprocess.run(
        [sys.executable, "-m", "n2n_infer.cli", "doctor"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    res["doctor"] = {"exit": doctor.returncode, "output": doctor.stdout.strip().splitlines()[-12:]}
    return res


_EXPORTS: dict[tuple[Path, str], Path] = {}


def exported(pt: Path, precision: str) -> Path:
    """``pt`` exported at ``precision`` into a temporary folder, once per process."""
    key = (pt, precision)
    if key not in _EXPORTS:
        out = Path(tempfile.mkdtemp(prefix="n2n-gpu-")) / f"{pt.stem}.{precision}.onnx"
        cmd = [
            sys.executable,
            "-m",
            "n2n_export.cli",
            "onnx",
            str(pt),
            str(out),
            "--precision",
            precision,
            "--no-card",
            "--no-parity",  # step_parity compares this file with the CPU's fp32 itself
        ]
        res = subprocess_step(cmd, timeout=240)
        if res["exit"] != 0:
            raise RuntimeError(f"export of {pt.name} as {precision} failed: {res['tail'][-3:]}")
        _EXPORTS[key] = out
    return _EXPORTS[key]


def step_parity(run: Run) -> dict[str, Any]:
    """CUDA against the CPU on the examples: fp32 files, fp16 exported from the checkpoints;
    tiled against untiled, binding on against off, shape buckets against the stride."""
    from n2n_infer import Denoiser, SessionConfig

    noisy, clean = load_examples(128 if run.plan.dry else 0)
    res: dict[str, Any] = {}
    for k, (name, onnx_path, pt) in enumerate(shipped_models()):
        cpu = Denoiser(onnx_path, device="cpu")
        ref = [cpu.denoise(x) for x in noisy]
        ref_f = [cpu.denoise(x.astype(np.float32) / 255) for x in noisy]
        ref_psnr = statistics.mean(psnr(r, c) for r, c in zip(ref, clean, strict=True))
        rows = {}
        variants = [("fp32", onnx_path)]
        if pt is not None and run.plan.dry and k > 0:
            rows["fp16"] = {"error": "not exported in the dry run (time)"}
        elif pt is not None:
            try:
                variants.append(("fp16", exported(pt, "fp16")))
            except Exception as exc:
                rows["fp16"] = {"error": str(exc)[:400]}
        for precision, path in variants:
            for binding in (True, False):
                d = Denoiser(
                    path, device=run.plan.device, session_config=SessionConfig(io_binding=binding)
                )
                outs = [d.denoise(x.astype(np.float32) / 255) for x in noisy]
                outs8 = [d.denoise(x) for x in noisy]
                rows[f"{precision}/binding={'on' if binding else 'off'}"] = {
                    "providers": d.providers,
                    "max_abs_diff_vs_cpu_fp32": max(
                        float(np.abs(o - r).max()) for o, r in zip(outs, ref_f, strict=True)
                    ),
                    "uint8_max_diff_vs_cpu_fp32": max(
                        int(np.abs(o.astype(int) - r.astype(int)).max())
                        for o, r in zip(outs8, ref, strict=True)
                    ),
                    "psnr_db": statistics.mean(
                        psnr(o, c) for o, c in zip(outs8, clean, strict=True)
                    ),
                    "psnr_cost_db_vs_cpu_fp32": ref_psnr
                    - statistics.mean(psnr(o, c) for o, c in zip(outs8, clean, strict=True)),
                }
        res[name] = {"cpu_fp32_psnr_db": ref_psnr, "examples": len(noisy), "rows": rows}
    # tiled against untiled, and the shape bucket against the stride, on the device
    d = Denoiser(device=run.plan.device, tile_size=256 if run.plan.dry else 512)
    d_bucket = Denoiser(device=run.plan.device, session_config=SessionConfig(shape_bucket=64))
    img = mosaic(noisy, 700 if run.plan.dry else 1500, 900 if run.plan.dry else 2000)
    untiled, tiled = d.denoise(img, tile=False), d.denoise(img, tile=True)
    bucketed = d_bucket.denoise(img, tile=False)
    diff = np.abs(untiled.astype(int) - bucketed.astype(int))
    res["tiled_vs_untiled"] = {
        "image": f"{img.shape[0]}x{img.shape[1]}",
        "max_uint8_diff": int(np.abs(untiled.astype(int) - tiled.astype(int)).max()),
    }
    res["bucket_vs_stride"] = {
        "pad_multiple": [d.pad_multiple, d_bucket.pad_multiple],
        "max_uint8_diff": int(diff.max()),
        "pixels_differing": int((diff > 0).any(axis=2).sum()),
        "psnr_between_db": psnr(untiled, bucketed),
    }
    return res


def step_churn(run: Run) -> dict[str, Any]:
    """First-call latency of new sizes (bucketed or not), alternating shapes, ensemble 8."""
    from n2n_infer import Denoiser, SessionConfig

    rng = np.random.default_rng(1)
    noisy, _ = load_examples()
    top = 160 if run.plan.dry else 1000
    sizes = [
        (int(rng.integers(top // 4, top)), int(rng.integers(top // 4, top)))
        for _ in range(run.plan.churn_sizes)
    ]
    res: dict[str, Any] = {"sizes": [f"{h}x{w}" for h, w in sizes]}
    for label, bucket in (("stride", None), ("bucket64", 64)):
        d = Denoiser(device=run.plan.device, session_config=SessionConfig(shape_bucket=bucket))
        d.denoise(mosaic(noisy, 64, 64))  # warm
        firsts, seconds = [], []
        for h, w in sizes:
            img = mosaic(noisy, h, w)
            t = timed(lambda img=img, d=d: d.denoise(img), 1)
            firsts.append(t["first_s"])
            seconds.append(t["median_s"])
        res[label] = {
            "first_call_ms_median": 1000 * statistics.median(firsts),
            "first_call_ms_max": 1000 * max(firsts),
            "repeat_call_ms_median": 1000 * statistics.median(seconds),
            "total_first_calls_s": sum(firsts),
        }
        h, w = run.plan.hd
        a, b = mosaic(noisy, h, w), mosaic(noisy, w, h)
        d.denoise(a), d.denoise(b)
        t0 = time.perf_counter()
        for _ in range(run.plan.repeats):
            d.denoise(a)
            d.denoise(b)
        res[label]["alternating_hw_wh_ms_per_call"] = (
            1000 * (time.perf_counter() - t0) / (2 * run.plan.repeats)
        )
        t = timed(lambda a=a, d=d: d.denoise(a), run.plan.repeats)
        res[label]["same_shape_ms_per_call"] = 1000 * t["median_s"]
    d8 = Denoiser(device=run.plan.device, ensemble=8)
    h, w = run.plan.hd
    t = timed(lambda: d8.denoise(mosaic(noisy, h, w)), 2)
    res["ensemble8_hd"] = {"first_s": t["first_s"], "median_s": t["median_s"]}
    return res


def _mps(pixels: int, seconds: float) -> float:
    return pixels / seconds / 1e6


def step_throughput(run: Run) -> dict[str, Any]:
    from n2n_infer import Denoiser, SessionConfig

    noisy, _ = load_examples()
    rows = []
    paths: list[tuple[str, Path]] = [("fp32", shipped_models()[0][1])]
    photo_pt = shipped_models()[0][2]
    if photo_pt is not None:
        try:
            paths.append(("fp16", exported(photo_pt, "fp16")))
        except Exception as exc:
            rows.append({"precision": "fp16", "error": str(exc)[:300]})
    s = run.plan.side
    hd, uhd = mosaic(noisy, *run.plan.hd), mosaic(noisy, *run.plan.uhd)
    for precision, path in paths:
        for binding in (True, False):
            d = Denoiser(
                path,
                device=run.plan.device,
                batch_size=64,
                session_config=SessionConfig(io_binding=binding),
            )
            tag = {"precision": precision, "binding": binding, "providers": d.providers[:1]}
            rng = np.random.default_rng(0)
            for n in run.plan.batches:
                x = rng.random((n, 3, s, s), dtype=np.float32)
                t = timed(lambda x=x, d=d: d.denoise_nchw(x), run.plan.repeats)
                model_only = timed(
                    lambda x=x, d=d: d.engine.run(x),  # the engine alone: the model call
                    run.plan.repeats,
                )
                rows.append(
                    {
                        **tag,
                        "case": f"{n}x{s}x{s}",
                        "median_s": t["median_s"],
                        "mp_per_s": _mps(n * s * s, t["median_s"]),
                        "model_call_s": model_only["median_s"],
                    }
                )
            for label, img in (("1080p", hd), ("4K", uhd)):
                t = timed(lambda img=img, d=d: d.denoise(img), max(2, run.plan.repeats // 2))
                rows.append(
                    {
                        **tag,
                        "case": f"{label} {img.shape[0]}x{img.shape[1]} uint8",
                        "median_s": t["median_s"],
                        "first_s": t["first_s"],
                        "mp_per_s": _mps(img.shape[0] * img.shape[1], t["median_s"]),
                    }
                )
            # host share on 1080p untiled: the model call alone on the padded input
            x = np.ascontiguousarray(hd.transpose(2, 0, 1)[None].astype(np.float32) / 255)
            x = np.pad(
                x,
                (
                    (0, 0),
                    (0, 0),
                    (0, -x.shape[2] % d.pad_multiple),
                    (0, -x.shape[3] % d.pad_multiple),
                ),
                mode="reflect",
            )
            t = timed(
                lambda x=x, d=d: d.engine.run(x),
                run.plan.repeats,
            )
            rows.append(
                {
                    **tag,
                    "case": "1080p model call only (float32 NCHW in, out)",
                    "median_s": t["median_s"],
                    "mp_per_s": _mps(hd.shape[0] * hd.shape[1], t["median_s"]),
                }
            )
    # the arena shrinking after every call (the default under a memory cap): its cost
    d = Denoiser(
        device=run.plan.device, batch_size=64, session_config=SessionConfig(gpu_arena_shrink=True)
    )
    tag = {"precision": "fp32", "binding": False, "providers": d.providers[:1], "shrink": True}
    x = np.random.default_rng(0).random((run.plan.batches[-1], 3, s, s), dtype=np.float32)
    t = timed(lambda: d.denoise_nchw(x), run.plan.repeats)
    rows.append(
        {
            **tag,
            "case": f"{len(x)}x{s}x{s} arena shrink",
            "median_s": t["median_s"],
            "mp_per_s": _mps(x.size // 3, t["median_s"]),
        }
    )
    t = timed(lambda: d.denoise(hd), max(2, run.plan.repeats // 2))
    rows.append(
        {
            **tag,
            "case": "1080p uint8 arena shrink",
            "median_s": t["median_s"],
            "mp_per_s": _mps(hd.shape[0] * hd.shape[1], t["median_s"]),
        }
    )
    res: dict[str, Any] = {"rows": rows}
    # TensorRT's provider, when it loads
    try:
        d = Denoiser(providers=["TensorrtExecutionProvider", "CUDAExecutionProvider"])
        t = timed(lambda: d.denoise(hd), 2)
        res["tensorrt"] = {
            "providers": d.providers,
            "hd_median_s": t["median_s"],
            "hd_first_s": t["first_s"],
        }
    except Exception as exc:
        res["tensorrt"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    # the CPU provider on the same 1080p image, for scale
    cpu = Denoiser(device="cpu")
    t = timed(lambda: cpu.denoise(hd), 1)
    res["cpu_provider_hd"] = {
        "median_s": t["median_s"],
        "threads": os.cpu_count(),
        "mp_per_s": _mps(hd.shape[0] * hd.shape[1], t["median_s"]),
    }
    return res


def step_memory(run: Run) -> dict[str, Any]:
    """GPU memory after denoising 30 sizes: no cap, with and without giving the arena's
    unused memory back after every call; a 2 GiB cap, untiled and in 512-pixel tiles."""
    from n2n_infer import Denoiser, SessionConfig

    noisy, _ = load_examples()
    rng = np.random.default_rng(2)
    top = 160 if run.plan.dry else 1400
    sizes = [(int(rng.integers(64, top)), int(rng.integers(64, top))) for _ in range(30)]
    imgs = [mosaic(noisy, h, w) for h, w in sizes]
    res: dict[str, Any] = {"sizes": len(sizes), "max_size": top}
    configs = {
        "no_cap (default)": (SessionConfig(), False),
        "no_cap_shrink": (SessionConfig(gpu_arena_shrink=True), False),
        "cap_2048_untiled": (SessionConfig(gpu_mem_limit_mb=2048), False),
        "cap_2048_tiled_512": (SessionConfig(gpu_mem_limit_mb=2048), True),
    }
    for label, (cfg, tile) in configs.items():
        entry: dict[str, Any] = {"mib_before": gpu_memory_mib()}
        d = Denoiser(device=run.plan.device, session_config=cfg, tile_size=512, batch_size=1)
        t0 = time.perf_counter()
        try:
            for i, img in enumerate(imgs):
                d.denoise(img, tile=tile or None)
                if i == 9:
                    entry["mib_after_10"] = gpu_memory_mib()
            entry["mib_after_30"] = gpu_memory_mib()
            entry["seconds_30_sizes"] = time.perf_counter() - t0
        except Exception as exc:
            entry["error"] = f"{type(exc).__name__} at size {i + 1}: {first_line(exc)[:300]}"
        res[label] = entry
        del d
    return res


def step_threads(run: Run) -> dict[str, Any]:
    """Two threads on one Denoiser give what one thread gives."""
    from n2n_infer import Denoiser

    noisy, _ = load_examples()
    d = Denoiser(device=run.plan.device)
    imgs = [mosaic(noisy, 300 + 16 * i, 400) for i in range(6)]
    serial = [d.denoise(x) for x in imgs]
    results: dict[int, np.ndarray] = {}
    errors: list[str] = []

    def work(idx: list[int]) -> None:
        try:
            for i in idx:
                results[i] = d.denoise(imgs[i])
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(list(range(k, 6, 2)),)) for k in (0, 1)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "seconds": time.perf_counter() - t0,
        "errors": errors,
        "identical_to_serial": all(np.array_equal(results[i], serial[i]) for i in range(6)),
        "max_diff": max(int(np.abs(results[i].astype(int) - serial[i]).max()) for i in results),
    }


def step_batch_cli(run: Run) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="n2n-batch-"))
    cmd = [
        sys.executable,
        "-m",
        "n2n_infer.cli",
        "batch",
        str(EXAMPLES / "noisy"),
        str(out),
        "--device",
        run.plan.device,
        "--reference",
        str(EXAMPLES / "clean"),
    ]
    res = subprocess_step(cmd, timeout=240)
    res["outputs"] = sorted(p.name for p in out.iterdir())
    return res


def _fit_command(run: Run, out: Path, steps_per_epoch: str, batch: str) -> list[str]:
    """``n2n-train fit`` for 2 epochs of 64² patches of the example photos on the device."""
    return [
        sys.executable,
        "-m",
        "n2n_train.cli",
        "fit",
        "--photos",
        str(EXAMPLES / "clean"),
        "--out",
        str(out),
        "--device",
        run.plan.device,
        "--epochs",
        "2",
        "--steps-per-epoch",
        steps_per_epoch,
        "--batch-size",
        batch,
        "--patch-size",
        "64",
        "--preset",
        "study",
        "--no-progress",
    ]


def step_train(run: Run) -> dict[str, Any]:
    """A few hundred bf16 steps on the device, exported, checked, loaded on the device."""
    from n2n_infer import Denoiser

    work = Path(tempfile.mkdtemp(prefix="n2n-train-"))
    steps = run.plan.train_steps
    fit = _fit_command(run, work / "run", str(max(1, steps // 2)), str(run.plan.train_batch))
    fit += ["--precision", "fp32" if run.plan.dry else "bf16", "--optimizer", "adam"]
    res: dict[str, Any] = {"fit": subprocess_step(fit, timeout=300)}
    if res["fit"]["exit"] != 0:
        raise RuntimeError(f"training failed: {res['fit']['tail'][-3:]}")
    metrics = (work / "run" / "metrics.jsonl").read_text().splitlines()
    res["metrics"] = [json.loads(line) for line in metrics][-2:]
    export = [
        sys.executable,
        "-m",
        "n2n_export.cli",
        "onnx",
        str(work / "run" / "best.pt"),
        str(work / "mine.onnx"),
        "--images",
        str(EXAMPLES / "clean"),
    ]
    res["export_with_parity"] = subprocess_step(export, timeout=300)
    if res["export_with_parity"]["exit"] != 0:
        raise RuntimeError(f"export failed: {res['export_with_parity']['tail'][-3:]}")
    d = Denoiser(work / "mine.onnx", device=run.plan.device)
    noisy, clean = load_examples()
    res["trained_model"] = {
        "providers": d.providers,
        "psnr_examples_db": statistics.mean(
            psnr(d.denoise(x), c) for x, c in zip(noisy, clean, strict=True)
        ),
    }
    return res


def _gpu_count() -> int:
    """GPUs that nvidia-smi lists (0 without it)."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def step_ddp(run: Run) -> dict[str, Any]:
    """``fit --nproc 2``: NCCL with one process per GPU and the ranks' weights compared
    after every step; with one GPU the second rank must be refused (exit 2, by name)."""
    gpus = 0 if run.plan.dry else _gpu_count()
    work = Path(tempfile.mkdtemp(prefix="n2n-ddp-"))
    fit = [*_fit_command(run, work / "run", "3", "8"), "--nproc", "2", "--check-sync", "1"]
    res: dict[str, Any] = {"gpus": gpus, "fit": subprocess_step(fit, timeout=240)}
    if run.plan.dry or gpus >= 2:
        res["expected"] = "two ranks train, weights identical after every step"
        if res["fit"]["exit"] != 0:
            raise RuntimeError(f"DDP training failed: {res['fit']['tail'][-3:]}")
        from n2n_train.checkpoint import load_checkpoint

        res["distributed"] = load_checkpoint(work / "run" / "last.pt").summary.get("distributed")
        if (res["distributed"] or {}).get("sync_checks") != 6:
            raise RuntimeError(f"expected 6 weight comparisons, got {res['distributed']}")
    else:
        res["expected"] = "one GPU: the second rank is refused with exit 2"
        tail = " ".join(res["fit"]["tail"])
        if res["fit"]["exit"] != 2 or "has no GPU" not in tail:
            raise RuntimeError(f"expected exit 2 naming the missing GPU: {res['fit']}")
    return res


STEPS: list[tuple[str, Callable[[Run], dict[str, Any]], float]] = [
    ("environment", step_environment, 0),
    ("first_run", step_first_run, 0),
    ("tests_cuda", step_tests, 60),
    ("placement", step_placement, 20),
    ("failures", step_failures, 30),
    ("parity", step_parity, 60),
    ("batch_cli", step_batch_cli, 30),
    ("train_bf16", step_train, 60),
    ("ddp", step_ddp, 30),
    ("throughput", step_throughput, 60),
    ("churn", step_churn, 40),
    ("threads", step_threads, 15),
    ("memory", step_memory, 30),
]


# --------------------------------------------------------------------------- report


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown(results: dict[str, Any]) -> str:
    """The JSON as a readable page: status per step, the tables that matter."""
    steps = results["steps"]
    lines = [
        f"# GPU check ({'dry run on the CPU' if results['dry_run'] else 'CUDA'})",
        "",
        f"Measured {results['date']} on {results['machine']} by `{results['command']}`"
        f" ({results['seconds']:.0f} s). Raw figures: `gpu.json` beside this file.",
        "",
        "| step | status | seconds | note |",
        "| --- | --- | --- | --- |",
    ]
    for name, entry in steps.items():
        note = entry.get("error") or entry.get("why") or entry.get("summary") or ""
        lines.append(f"| {name} | {entry['status']} | {_fmt(entry.get('seconds', ''))} | {note} |")
    env = steps.get("environment", {})
    if env.get("status") == "ok":
        lines += ["", "## Environment", ""]
        for key in (
            "nvidia_smi",
            "driver_cuda_version",
            "onnxruntime",
            "providers_available",
            "missing_cuda_libraries",
            "ld_library_path_set_by_script",
        ):
            lines.append(f"- {key}: {_fmt(env.get(key))}")
    first = steps.get("first_run", {})
    if first.get("status") == "ok":
        lines += ["", "## First run", ""]
        for key in (
            "providers",
            "io_binding",
            "pad_multiple",
            "image",
            "create_s",
            "first_denoise_s",
            "second_denoise_s",
            "cuda_libraries_loaded",
        ):
            lines.append(f"- {key}: {_fmt(first.get(key))}")
    parity = steps.get("parity", {})
    if parity.get("status") == "ok":
        lines += [
            "",
            "## Parity against the CPU (fp32) on examples/",
            "",
            "| model | variant | largest abs. diff. (float) | largest abs. diff. (uint8) "
            "| PSNR dB | cost dB |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name, entry in parity.items():
            if not isinstance(entry, dict) or "rows" not in entry:
                continue
            for variant, row in entry["rows"].items():
                if "error" in row:
                    lines.append(f"| {name} | {variant} | error: {row['error'][:80]} | | | |")
                    continue
                lines.append(
                    f"| {name} | {variant} | {row['max_abs_diff_vs_cpu_fp32']:.2e} | "
                    f"{row['uint8_max_diff_vs_cpu_fp32']} | {row['psnr_db']:.3f} | "
                    f"{row['psnr_cost_db_vs_cpu_fp32']:+.4f} |"
                )
        lines += [
            "",
            f"- tiled vs untiled: {parity.get('tiled_vs_untiled')}",
            f"- shape bucket vs stride: {parity.get('bucket_vs_stride')}",
        ]
    thr = steps.get("throughput", {})
    if thr.get("status") == "ok":
        lines += [
            "",
            "## Throughput",
            "",
            "Default settings (no binding, no buckets, no arena shrinking) unless a row says.",
            "",
            "| precision | binding | case | median s | MP/s |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in thr["rows"]:
            if "error" in row:
                lines.append(f"| {row['precision']} | | error: {row['error'][:80]} | | |")
                continue
            lines.append(
                f"| {row['precision']} | {'on' if row['binding'] else 'off'} | {row['case']} | "
                f"{row['median_s']:.4f} | {row['mp_per_s']:.1f} |"
            )
        lines += [
            "",
            f"- TensorRT: {thr.get('tensorrt')}",
            f"- CPU provider, same 1080p image: {thr.get('cpu_provider_hd')}",
        ]
    for name in (
        "churn",
        "memory",
        "threads",
        "failures",
        "batch_cli",
        "train_bf16",
        "ddp",
        "placement",
        "tests_cuda",
    ):
        entry = steps.get(name, {})
        if entry.get("status") == "ok":
            body = {k: v for k, v in entry.items() if k not in ("status", "seconds")}
            lines += [
                "",
                f"## {name}",
                "",
                "```",
                json.dumps(body, indent=1, default=str)[:4000],
                "```",
            ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="every step on the CPU, small")
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu.json and gpu.md")
    parser.add_argument("--budget", type=float, default=450, help="seconds for all steps")
    parser.add_argument("--only", default="", help="comma-separated step names")
    parser.add_argument("--md-only", action="store_true", help="rewrite gpu.md from gpu.json")
    args = parser.parse_args(argv)
    if args.md_only:
        results = json.loads((args.out / "gpu.json").read_text())
        (args.out / "gpu.md").write_text(markdown(results))
        return 0
    plan = Plan.make(args.dry_run)
    run = Run(args.out, plan, time.monotonic() + args.budget)
    run.results = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "command": "bash scripts/gpu_check.sh" + (" --dry-run" if plan.dry else ""),
        "dry_run": plan.dry,
        "plan": plan.__dict__,
        "steps": {},
        "seconds": 0.0,
    }
    only = {s for s in args.only.split(",") if s}
    t0 = time.monotonic()
    for name, fn, reserve in STEPS:
        if not only or name in only:
            run.step(name, fn, reserve)
        if run.results["steps"].get(name, {}).get("status") == "ok" and name == "environment":
            gpu = run.results["steps"][name].get("nvidia_smi", "")
            if gpu and not gpu.startswith("not available") and not plan.dry:
                run.results["machine"] = f"{gpu.split(',')[0]}; {run.results['machine']}"
    run.results["seconds"] = time.monotonic() - t0
    run.save()
    (args.out / "gpu.md").write_text(markdown(run.results))
    failed = [n for n, e in run.results["steps"].items() if e["status"] in ("error", "failed")]
    print(f"[gpu_check] wrote {args.out / 'gpu.json'} and gpu.md; failed steps: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
