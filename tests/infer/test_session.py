"""Providers and session options, GPU paths through their CPU fallback and error messages."""

import logging

import numpy as np
import onnxruntime as ort
import pytest

from n2n_infer import Denoiser, InferenceError, ProviderError, SessionConfig
from n2n_infer import providers as prov
from n2n_infer import session as sess
from n2n_infer.registry import resolve_model

PHOTO = resolve_model(None)


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ("auto", ("auto", "")),
        ("cpu", ("cpu", "")),
        ("cuda", ("cuda", "")),
        ("cuda:3", ("cuda", "3")),
    ],
)
def test_device_strings(device, expected):
    assert prov.parse_device(device) == expected


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cpu:0", "", "cuda:", "CUDA", "cuda:-1"])
def test_bad_device_strings(device):
    with pytest.raises(ProviderError, match="expected 'auto', 'cpu', 'cuda', 'cuda:N'"):
        prov.parse_device(device)


@pytest.fixture
def cuda_build(monkeypatch):
    """Pretend a machine with an NVIDIA driver and a CUDA provider that cannot start."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: [prov.CUDA, prov.CPU])
    monkeypatch.setattr(prov, "nvidia_driver_present", lambda: True)
    monkeypatch.setattr(prov, "missing_cuda_libraries", lambda: ["cuDNN 9 (libcudnn.so.9)"])
    real = ort.InferenceSession

    def cpu_only(path, sess_options=None, providers=None, **kwargs):
        return real(path, sess_options=sess_options, providers=[prov.CPU], **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", cpu_only)


def _pretend_nvidia_packages(monkeypatch):
    """``importlib.util.find_spec("nvidia")`` finds the pip NVIDIA packages."""
    real = prov.importlib.util.find_spec
    fake = lambda name, *a: object() if name == "nvidia" else real(name, *a)  # noqa: E731
    monkeypatch.setattr(prov.importlib.util, "find_spec", fake)


@pytest.fixture
def cpu_build(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: [prov.CPU])


def test_auto_falls_back_with_one_line_saying_why(cuda_build, caplog):
    with caplog.at_level(logging.WARNING, logger="n2n_infer"):
        d = Denoiser(device="auto")
    assert d.providers == [prov.CPU]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "missing cuDNN 9 (libcudnn.so.9)" in lines[0] and "running on CPU" in lines[0]


def test_explicit_cuda_that_cannot_start_names_what_is_missing(cuda_build):
    with pytest.raises(
        ProviderError, match=r"device 'cuda:1'.*missing cuDNN 9 \(libcudnn\.so\.9\)"
    ):
        Denoiser(device="cuda:1")


def test_cuda_options_reach_onnxruntime(cuda_build):
    cfg = SessionConfig(cudnn_conv_algo_search="EXHAUSTIVE", gpu_mem_limit_mb=512)
    name, opts = prov.requested_providers("cuda:2", cfg.cuda_options())[0]
    assert name == prov.CUDA
    assert opts == {
        "device_id": "2",
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        "arena_extend_strategy": "kSameAsRequested",
        "gpu_mem_limit": str(512 * 1024 * 1024),
    }


def test_cpu_only_build_explains_the_package_to_install(cpu_build, monkeypatch):
    monkeypatch.setattr(prov.importlib.metadata, "version", lambda dist: "1.20.0")
    with pytest.raises(ProviderError, match="CPU-only 'onnxruntime' package is installed beside"):
        Denoiser(device="cuda")
    assert Denoiser(device="auto").providers == [prov.CPU]


def test_cpu_only_build_without_gpu_package(cpu_build, monkeypatch):
    def version(dist):
        if dist == "onnxruntime":
            return "1.20.0"
        raise prov.importlib.metadata.PackageNotFoundError(dist)

    monkeypatch.setattr(prov.importlib.metadata, "version", version)
    with pytest.raises(ProviderError, match="install onnxruntime-gpu"):
        Denoiser(device="cuda")


def test_pip_nvidia_libraries_are_preloaded_before_the_session(cuda_build, monkeypatch):
    order = []
    _pretend_nvidia_packages(monkeypatch)
    monkeypatch.setattr(ort, "preload_dlls", lambda: order.append("preload"), raising=False)
    inner = ort.InferenceSession
    monkeypatch.setattr(
        ort, "InferenceSession", lambda *a, **k: order.append("session") or inner(*a, **k)
    )
    Denoiser(device="auto")
    assert order == ["preload", "session"]


def test_missing_libraries_are_listed_by_name(monkeypatch):
    def fake_cdll(name):
        if name in ("libcudnn.so.9", "libcuda.so.1"):
            raise OSError(name)

    monkeypatch.setattr(prov.sys, "platform", "linux")
    monkeypatch.setattr(prov.ctypes, "CDLL", fake_cdll)
    assert prov.missing_cuda_libraries() == [
        "NVIDIA driver (libcuda.so.1)",
        "cuDNN 9 (libcudnn.so.9)",
    ]
    monkeypatch.setattr(prov.ctypes, "CDLL", lambda name: None)
    assert "no usable GPU" in prov.cuda_failure_reason()


def test_cuda_library_names_come_from_the_installed_provider():
    from pathlib import Path

    from n2n_infer.elfdeps import needed_libraries

    provider = Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
    libs = prov.cuda_libraries()
    assert libs["NVIDIA driver"] == "libcuda.so.1" and libs["cuDNN 9"] == "libcudnn.so.9"
    if provider.is_file():  # onnxruntime-gpu: the CUDA sonames it really links
        linked = needed_libraries(provider)
        cuda_linked = [n for n in linked if n.startswith("libcudart.so.")]
        assert cuda_linked and cuda_linked[0] in libs.values()


def test_elf_dependencies_of_real_and_foreign_files(tmp_path):
    import sys

    from n2n_infer.elfdeps import needed_libraries

    if sys.platform.startswith("linux"):
        assert any(n.startswith("libc.so") for n in needed_libraries("/bin/ls"))
    (tmp_path / "x.so").write_bytes(b"\x7fELF" + b"\x02\x01" + b"\0" * 10)
    assert needed_libraries(tmp_path / "x.so") == []
    assert needed_libraries(tmp_path / "missing.so") == []


def test_session_options_are_applied():
    cfg = SessionConfig(intra_op_threads=1, graph_optimization="basic")
    opts = sess.session_options(cfg)
    assert opts.intra_op_num_threads == 1
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    d = Denoiser(device="cpu", session_config=cfg)
    assert d.engine.session.get_session_options().intra_op_num_threads == 1


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (SessionConfig(intra_op_threads=-1), "intra_op_threads"),
        (SessionConfig(graph_optimization="max"), "graph_optimization 'max'"),
        (SessionConfig(cudnn_conv_algo_search="fast"), "cudnn_conv_algo_search 'fast'"),
        (SessionConfig(gpu_mem_limit_mb=-5), "gpu_mem_limit_mb"),
    ],
)
def test_bad_session_settings_are_named(cfg, message):
    with pytest.raises(ValueError, match=message):
        Denoiser(device="cpu", session_config=cfg)


def test_io_binding_gives_the_same_output(photo):
    """The I/O-binding path (used on CUDA) run on the CPU device gives the plain path's numbers."""
    bound = Denoiser(device="cpu", session_config=SessionConfig(io_binding=True))
    assert bound.io_binding and not photo.io_binding
    x = np.random.default_rng(0).random((3, 3, 20, 28), dtype=np.float32)
    np.testing.assert_array_equal(bound.denoise_nchw(x), photo.denoise_nchw(x))


def test_onnxruntime_failures_become_inference_errors(photo):
    with pytest.raises(InferenceError, match=r"onnxruntime failed on a 1×3×5×8 batch"):
        sess.run_model(photo.engine.session, np.zeros((1, 3, 5, 8), np.float32))


def test_providers_are_read_back_from_the_session(photo):
    assert photo.providers == photo.engine.session.get_providers() == [prov.CPU]


@pytest.fixture
def no_driver(monkeypatch):
    """A machine with onnxruntime-gpu and the nvidia pip packages but no NVIDIA driver."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: [prov.CUDA, prov.CPU])
    monkeypatch.setattr(prov, "nvidia_driver_present", lambda: False)
    _pretend_nvidia_packages(monkeypatch)
    prov._note_no_driver.cache_clear()
    yield
    prov._note_no_driver.cache_clear()


def test_auto_without_a_driver_costs_what_cpu_costs(no_driver, monkeypatch, caplog):
    """No preload of the CUDA libraries, no CUDA provider asked for, one INFO line, no WARNING."""
    preloads, asked = [], []
    monkeypatch.setattr(ort, "preload_dlls", lambda: preloads.append(1), raising=False)
    real = ort.InferenceSession

    def recording(path, sess_options=None, providers=None, **kwargs):
        asked.append(providers)
        return real(path, sess_options=sess_options, providers=providers)

    monkeypatch.setattr(ort, "InferenceSession", recording)
    with caplog.at_level(logging.DEBUG, logger="n2n_infer"):
        first, second = Denoiser(device="auto"), Denoiser(device="auto")
    assert preloads == [] and asked == [[prov.CPU], [prov.CPU]]
    assert first.providers == second.providers == [prov.CPU]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    infos = [r.getMessage() for r in caplog.records if "NVIDIA driver" in r.getMessage()]
    assert infos == [
        "no NVIDIA driver found (libcuda.so.1 does not load); device 'auto' runs on CPU"
    ]
    assert all(r.levelno == logging.INFO for r in caplog.records if "NVIDIA" in r.getMessage())


def test_auto_on_this_machine_without_a_driver_logs_no_warning(caplog):
    """Unmocked: on a machine without a driver (this CI), ``auto`` never warns."""
    if prov.nvidia_driver_present():
        pytest.skip("this machine has an NVIDIA driver")
    with caplog.at_level(logging.INFO, logger="n2n_infer"):
        d = Denoiser(device="auto")
    assert d.providers == [prov.CPU]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_driver_detection(monkeypatch):
    def no_library(name):
        raise OSError(name)

    loaded = []
    for platform, cdll, expected in [
        ("linux", no_library, False),
        ("linux", loaded.append, True),
        ("win32", loaded.append, True),
        ("darwin", loaded.append, False),
    ]:
        prov.nvidia_driver_present.cache_clear()
        monkeypatch.setattr(prov.sys, "platform", platform)
        monkeypatch.setattr(prov.ctypes, "CDLL", cdll)
        assert prov.nvidia_driver_present() is expected
    prov.nvidia_driver_present.cache_clear()
    assert loaded == ["libcuda.so.1", "nvcuda.dll"]


def test_explicit_cpu_provider_list(caplog):
    d = Denoiser(providers=["CPUExecutionProvider"])
    assert d.providers == [prov.CPU] and not d.io_binding
    d = Denoiser(
        providers=[("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"})]
    )
    assert d.providers == [prov.CPU]


def test_explicit_providers_get_cpu_appended_and_cuda_options(monkeypatch):
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["TensorrtExecutionProvider", prov.CUDA, prov.CPU]
    )
    monkeypatch.setattr(prov, "preload_cuda_libraries", lambda: None)
    cfg = SessionConfig(gpu_mem_limit_mb=1)
    got = prov.explicit_providers(["TensorrtExecutionProvider", prov.CUDA], cfg.cuda_options())
    assert got[0] == "TensorrtExecutionProvider" and got[-1] == prov.CPU
    assert got[1] == (prov.CUDA, {**cfg.cuda_options(), "device_id": "0"})
    mine = (prov.CUDA, {"device_id": "3"})
    assert prov.explicit_providers([mine, prov.CPU]) == [mine, prov.CPU]


@pytest.mark.parametrize(
    ("providers", "message"),
    [
        (["OpenVINOExecutionProvider"], r"'OpenVINOExecutionProvider': not in this onnxruntime"),
        (["NoSuchExecutionProvider"], r"'NoSuchExecutionProvider': unknown provider"),
        ("CPUExecutionProvider", "expected a list of provider names"),
        ([("CPUExecutionProvider",)], r"providers\[0\]: expected a provider name or a \(name"),
        ([42], r"providers\[0\]: expected a provider name"),
        ([prov.CPU, prov.CPU], r"providers\[1\] 'CPUExecutionProvider': listed twice"),
    ],
)
def test_unusable_provider_lists_are_named(providers, message):
    with pytest.raises(ProviderError, match=message) as info:
        Denoiser(device="auto", providers=providers)
    if "onnxruntime" in message or "unknown" in message:
        assert "available: " in str(info.value) and prov.CPU in str(info.value)


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:1"])
def test_providers_and_a_device_are_exclusive(device):
    with pytest.raises(ProviderError, match=rf"device '{device}' and providers=.*pass one of them"):
        Denoiser(device=device, providers=["CPUExecutionProvider"])


def test_explicit_cuda_that_cannot_start_is_an_error(cuda_build):
    with pytest.raises(ProviderError, match=r"CUDAExecutionProvider: onnxruntime could not start"):
        Denoiser(providers=["CUDAExecutionProvider"])


def test_accelerators_of_a_list_that_did_not_start_are_warned_about(caplog):
    from pathlib import Path

    asked = ["TensorrtExecutionProvider", (prov.CUDA, {}), prov.CPU]
    with caplog.at_level(logging.WARNING, logger="n2n_infer"):
        prov.check_providers_used([prov.CUDA, prov.CPU], asked, "auto", Path("m.onnx"), True)
    assert "TensorrtExecutionProvider" in caplog.text and "did not start" in caplog.text
    with pytest.raises(ProviderError, match="could not start any of them"):
        prov.check_providers_used([prov.CPU], asked, "auto", Path("m.onnx"), True)


class _Providers:
    """A session stand-in that reports the providers (and CUDA options) in use."""

    def __init__(self, providers, device_id="0"):
        self._providers = providers
        self._device_id = device_id

    def get_providers(self):
        return self._providers

    def get_provider_options(self):
        return {prov.CUDA: {"device_id": self._device_id}}


@pytest.mark.parametrize(
    ("in_use", "io_binding", "expected"),
    [
        ([prov.CUDA, prov.CPU], True, ("cuda", 2)),
        (["TensorrtExecutionProvider", prov.CUDA, prov.CPU], True, ("cpu", 0)),
        (["OpenVINOExecutionProvider", prov.CPU], False, ("", 0)),
        ([prov.CPU], False, ("", 0)),
        ([prov.CUDA, prov.CPU], False, ("", 0)),
        ([prov.CPU], True, ("cpu", 0)),
    ],
)
def test_io_binding_when_asked_for_on_the_first_provider_in_use(in_use, io_binding, expected):
    from n2n_infer.engines import binding_device

    assert binding_device(_Providers(in_use, device_id="2"), io_binding) == expected


@pytest.mark.parametrize(
    ("cfg", "shrinks"),
    [
        (SessionConfig(), False),
        (SessionConfig(gpu_mem_limit_mb=2048), False),
        (SessionConfig(gpu_arena_shrink=True), True),
    ],
)
def test_the_cuda_arena_shrinks_after_each_call_when_asked(cfg, shrinks):
    opts = cfg.run_options(cuda_device_id=1)
    assert opts.log_severity_level == 4
    entry = opts.get_run_config_entry(sess.ARENA_SHRINK_KEY) if shrinks else None
    assert entry == ("gpu:1" if shrinks else None)
    assert cfg.run_options(cuda_device_id=None) is sess._QUIET_RUN  # nothing to shrink on the CPU


def test_out_of_memory_errors_say_what_to_try(photo, monkeypatch):
    class Full:
        def run(self, *a):
            raise RuntimeError(
                "Error in execution: ... BFCArena::AllocateRawInternal Available memory of 1 is "
                "smaller than requested bytes of 2"
            )

    with pytest.raises(InferenceError, match=r"out of memory: tile the image"):
        sess.run_model(Full(), np.zeros((1, 3, 8, 8), np.float32))
