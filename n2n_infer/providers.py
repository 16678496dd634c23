"""Which onnxruntime execution providers to ask for, and why CUDA is or is not usable.

``device`` strings (``auto``, ``cpu``, ``cuda``, ``cuda:N``) and explicit
``providers=[...]`` lists both end here as the list handed to
``onnxruntime.InferenceSession``. With ``auto``, CUDA is only tried on a machine
with an NVIDIA driver (:func:`nvidia_driver_present`): elsewhere trying it
costs load time and memory, many times what the CPU session itself costs, for
nothing (onnxruntime loads its CUDA provider library and the CUDA libraries;
docs/runtime.md, "Load cost").
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.metadata
import importlib.util
import io
import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort

from n2n_infer.elfdeps import needed_libraries
from n2n_infer.errors import ProviderError

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEVICES = ("auto", "cpu", "cuda", "openvino")
#: What onnxruntime takes: a provider name, or a name and its options.
ProviderSpec = str | tuple[str, dict[str, Any]]
#: The NVIDIA driver's user-space library, by platform (what CUDA itself loads first).
DRIVER_LIBRARY = {"linux": "libcuda.so.1", "win32": "nvcuda.dll"}
#: Libraries the CUDA provider loads at run time rather than links against.
RUNTIME_LOADED = {"NVIDIA driver": "libcuda.so.1", "cuDNN 9": "libcudnn.so.9"}
#: Used when the provider library cannot be read (onnxruntime-gpu 1.31 links CUDA 13).
FALLBACK_LINKED = {"CUDA runtime": "libcudart.so.13", "cuBLAS": "libcublasLt.so.13"}


def parse_device(device: str) -> tuple[str, str]:
    """``"cuda:1"`` -> ``("cuda", "1")``; ``"openvino:bf16"`` -> ``("openvino", "bf16")``;
    ``"auto"`` -> ``("auto", "")``.

    Raises:
        ProviderError: not ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``openvino``,
            ``openvino:f32`` or ``openvino:bf16``.
    """
    kind, _, index = device.partition(":")
    good_index = (kind == "cuda" and index.isdigit()) or (
        kind == "openvino" and index in ("f32", "bf16")
    )
    if kind not in DEVICES or (index and not good_index) or (not index and device.endswith(":")):
        raise ProviderError(
            f"device {device!r}: expected 'auto', 'cpu', 'cuda', 'cuda:N', 'openvino', "
            "'openvino:f32' or 'openvino:bf16'"
        )
    return kind, index


@functools.cache
def nvidia_driver_present() -> bool:
    """Whether the NVIDIA driver's user-space library loads (once per process).

    ``libcuda.so.1`` (Linux) or ``nvcuda.dll`` (Windows) is what the CUDA
    runtime itself opens first, so without it CUDA cannot start whatever else
    is installed. Loading it through the dynamic loader follows
    ``LD_LIBRARY_PATH`` and the loader cache and also finds WSL2's driver
    (``/usr/lib/wsl/lib``), where ``/dev/nvidia*`` and ``/proc/driver/nvidia``
    do not exist. A failed load takes well under a millisecond; other
    platforms (macOS) have no CUDA.
    """
    library = DRIVER_LIBRARY.get(sys.platform)
    if library is None:
        return False
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


@functools.cache
def _note_no_driver() -> None:
    """Say once per process why ``auto`` runs on the CPU without trying CUDA."""
    log.info(
        "no NVIDIA driver found (%s does not load); device 'auto' runs on CPU",
        DRIVER_LIBRARY.get(sys.platform, "no CUDA on this platform"),
    )


def requested_providers(
    device: str,
    cuda_options: Mapping[str, str] | None = None,
    providers: Sequence[ProviderSpec] | None = None,
) -> list[ProviderSpec]:
    """The providers to ask onnxruntime for, in order of preference.

    ``auto`` asks for CUDA first when this onnxruntime build has it and the
    machine has an NVIDIA driver, then CPU; ``cuda`` or ``cuda:N`` asks for CUDA
    (device N) then CPU, and the caller checks that CUDA was really used;
    ``cpu`` asks for the CPU only. ``cuda_options`` are the CUDA provider's
    options (``device_id`` is set from ``device``). An explicit ``providers``
    list replaces ``device`` (see :func:`explicit_providers`).

    Raises:
        ProviderError: ``device`` is not one of these forms; CUDA was asked for
            and this onnxruntime build has no CUDA provider; ``providers`` is
            given with a ``device`` other than ``auto``, or is unusable.
    """
    if providers is not None:
        if device != "auto":
            raise ProviderError(
                f"device {device!r} and providers={list(providers)!r} both given: "
                "pass one of them (providers replaces device)"
            )
        return explicit_providers(providers, cuda_options)
    kind, index = parse_device(device)
    if kind in ("cpu", "openvino"):  # openvino: onnxruntime's CPU session reads the metadata
        return [CPU]
    available = ort.get_available_providers()
    if CUDA not in available:
        if kind == "cuda":
            raise ProviderError(
                f"device {device!r}: this onnxruntime build ({ort.__version__}) has no CUDA "
                f"provider (available: {', '.join(available)}); {_package_advice()}"
            )
        log.info("onnxruntime %s has no CUDA provider; running on CPU", ort.__version__)
        return [CPU]
    if kind == "auto" and not nvidia_driver_present():
        _note_no_driver()
        return [CPU]
    preload_cuda_libraries()
    return [(CUDA, {**(cuda_options or {}), "device_id": index or "0"}), CPU]


def explicit_providers(
    providers: Sequence[ProviderSpec], cuda_options: Mapping[str, str] | None = None
) -> list[ProviderSpec]:
    """Check a ``providers=[...]`` list as onnxruntime users write it; CPU is appended if absent.

    Each entry is a provider name (``"OpenVINOExecutionProvider"``) or a
    ``(name, options)`` tuple. A bare ``CUDAExecutionProvider`` gets
    ``cuda_options`` (device 0).

    Raises:
        ProviderError: not a list of names or ``(name, dict)`` pairs, a name
            listed twice, or a provider that this onnxruntime build does not
            have; the message lists the available providers.
    """
    if isinstance(providers, str | tuple) or not isinstance(providers, Sequence):
        raise ProviderError(
            f"providers: expected a list of provider names or (name, options) pairs, "
            f"got {providers!r}"
        )
    available = ort.get_available_providers()
    out: list[ProviderSpec] = []
    for i, spec in enumerate(providers):
        name, options = _split_spec(spec, i)
        if name not in available:
            known = name in ort.get_all_providers()
            raise ProviderError(
                f"providers[{i}] {name!r}: "
                f"{'not in this onnxruntime build' if known else 'unknown provider'} "
                f"({ort.__version__}; available: {', '.join(available)})"
            )
        if name in (_name(s) for s in out):
            raise ProviderError(f"providers[{i}] {name!r}: listed twice")
        if name == CUDA:
            preload_cuda_libraries()
            options = {"device_id": "0", **(cuda_options or {})} if options is None else options
        out.append(name if options is None else (name, options))
    if CPU not in (_name(s) for s in out):
        out.append(CPU)
    return out


def _split_spec(spec: object, i: int) -> tuple[str, dict[str, Any] | None]:
    if isinstance(spec, str):
        return spec, None
    if (
        isinstance(spec, tuple)
        and len(spec) == 2
        and isinstance(spec[0], str)
        and isinstance(spec[1], Mapping)
    ):
        return spec[0], dict(spec[1])
    raise ProviderError(
        f"providers[{i}]: expected a provider name or a (name, options dict) pair, got {spec!r}"
    )


def _name(spec: ProviderSpec) -> str:
    return spec if isinstance(spec, str) else spec[0]


def check_providers_used(
    used: Sequence[str],
    requested: Sequence[ProviderSpec],
    device: str,
    model: Path,
    explicit: bool = False,
) -> None:
    """Compare the providers a session really uses with those asked for.

    With ``device="auto"``, a CUDA provider that did not start gives one
    warning that says why (the machine has a driver, so this is worth a look);
    with ``cuda`` it is an error. With an ``explicit`` providers list, none of
    its accelerators starting is an error, and some of them dropped while
    another started gives a warning.

    Raises:
        ProviderError: the accelerator asked for explicitly is not in use.
    """
    wanted = [_name(s) for s in requested if _name(s) != CPU]
    dropped = [name for name in wanted if name not in used]
    if not dropped:
        return
    why = cuda_failure_reason() if CUDA in dropped else "see onnxruntime's log (-vv)"
    if explicit and len(dropped) == len(wanted):
        raise ProviderError(
            f"providers {', '.join(wanted)}: onnxruntime could not start any of them for "
            f"{model.name} (in use: {', '.join(used)}): {why}"
        )
    if explicit:
        log.warning("providers %s did not start (%s); using %s", dropped, why, list(used))
    elif device.startswith("cuda"):
        raise ProviderError(
            f"device {device!r}: onnxruntime could not start CUDA for {model.name}: {why}"
        )
    else:
        log.warning("CUDA is not usable (%s); running on CPU", why)


def _package_advice() -> str:
    """What to do about the installed onnxruntime packages when CUDA is missing."""
    installed = set()
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            importlib.metadata.version(dist)
            installed.add(dist)
    if installed == {"onnxruntime", "onnxruntime-gpu"}:
        return (
            "the CPU-only 'onnxruntime' package is installed beside 'onnxruntime-gpu' and "
            "shadows it: pip uninstall -y onnxruntime onnxruntime-gpu && "
            "pip install onnxruntime-gpu"
        )
    return "install onnxruntime-gpu (pip install 'n2n[cuda]') instead of onnxruntime"


def preload_cuda_libraries() -> None:
    """Load pip-installed CUDA/cuDNN libraries (``n2n[cuda]``) before the session.

    Uses ``onnxruntime.preload_dlls`` when the ``nvidia`` pip packages are
    present; otherwise the system's libraries are found by the loader as usual.
    """
    if importlib.util.find_spec("nvidia") is None or not hasattr(ort, "preload_dlls"):
        return
    try:
        with stdout_to_log():  # preload_dlls reports a library it cannot load with print()
            ort.preload_dlls()
    except Exception as exc:  # a best effort: the session reports what is really missing
        log.debug("onnxruntime.preload_dlls failed: %s", exc)


@contextlib.contextmanager
def stdout_to_log() -> Iterator[None]:
    """Keep what onnxruntime's Python layer prints off stdout; log it at DEBUG instead."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        text = buffer.getvalue().strip()
        if text:
            log.debug("onnxruntime printed: %s", text)


def cuda_libraries() -> dict[str, str]:
    """The shared libraries this onnxruntime's CUDA provider needs on Linux, by description.

    The CUDA ones are read from the provider library's own ELF dependencies,
    so the names follow the installed onnxruntime-gpu (CUDA 12 or 13 builds).
    """
    provider = Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
    linked = {
        name.removeprefix("lib").split(".so")[0]: name
        for name in needed_libraries(provider)
        if name.startswith(("libcu", "libnv")) and name != RUNTIME_LOADED["NVIDIA driver"]
    }
    return {
        "NVIDIA driver": RUNTIME_LOADED["NVIDIA driver"],
        **(linked or FALLBACK_LINKED),
        "cuDNN 9": RUNTIME_LOADED["cuDNN 9"],
    }


def missing_cuda_libraries() -> list[str]:
    """Which of :func:`cuda_libraries` cannot be loaded (Linux only; else empty)."""
    if not sys.platform.startswith("linux"):
        return []
    missing = []
    for what, soname in cuda_libraries().items():
        try:
            ctypes.CDLL(soname)
        except OSError:
            missing.append(f"{what} ({soname})")
    return missing


def cuda_failure_reason() -> str:
    """A one-line reason why onnxruntime's CUDA provider did not start."""
    missing = missing_cuda_libraries()
    if missing:
        return (
            f"missing {', '.join(missing)}; install the NVIDIA driver and "
            "pip install 'n2n[cuda]' for the CUDA and cuDNN libraries that the installed "
            f"onnxruntime-gpu {ort.__version__} needs"
        )
    return "the CUDA libraries load but no usable GPU was found (check nvidia-smi)"
