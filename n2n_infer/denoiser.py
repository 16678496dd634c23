"""The :class:`Denoiser`: numpy (or PIL) images in, denoised images of the same kind out."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from itertools import takewhile
from pathlib import Path
from typing import Any

import numpy as np

from n2n_infer.arrays import (
    ImageArray,
    as_image,
    check_levels,
    finish,
    new_output,
    restore_chw,
    to_unit,
)
from n2n_infer.engines import Engine, open_engine
from n2n_infer.ensemble import check_size, run_ensemble
from n2n_infer.errors import (
    ArgumentError,
    ImageError,
    InferenceError,
    ModelLoadError,
)
from n2n_infer.grey import grey_mode_for, is_grey, merge_phases, phase_stacks
from n2n_infer.metadata import GREY_NATIVE, KEY_PRECISION, MAX_AUTO_OVERLAP, ModelInfo
from n2n_infer.options import MAX_BATCH_PIXELS, MAX_UNTILED_PIXELS, DenoiserOptions
from n2n_infer.padding import crop, pad_to_multiple
from n2n_infer.probe import EngineChoice, auto_engine
from n2n_infer.providers import CPU, ProviderSpec, parse_device
from n2n_infer.registry import DEFAULT_GREY_MODEL, available_models, resolve_model
from n2n_infer.session import SessionConfig, read_metadata
from n2n_infer.tiling import (
    TileSpec,
    default_overlap,
    default_tile_size,
    denoise_context_tiled,
    denoise_tiled,
    tile_count,
)

log = logging.getLogger(__name__)

DEFAULT_TILE_SIZE = 512


def model_file(model: str | os.PathLike[str] | None) -> Path:
    """The model file ``model`` names: a bundled model's name, a path to an ``.onnx``
    file, or ``None`` for the bundled default (see :func:`n2n_infer.registry.resolve_model`).

    Raises:
        ArgumentError: ``model`` is not a string, a path or ``None``.
        ModelLoadError: no such bundled model or file; a folder says it is one,
            and what is expected instead (the bundled names listed).
    """
    if model is not None and not isinstance(model, str | os.PathLike):
        raise ArgumentError(
            f"model: expected a bundled model's name, a path to an .onnx file or None, "
            f"got {model!r} ({type(model).__name__})"
        )
    try:
        return resolve_model(model)
    except ModelLoadError:
        folder = Path(model) if model is not None else None
        # a folder holding a package's files keeps the package's own, precise message
        if folder is not None and folder.is_dir() and not _holds_a_package(folder):
            raise ModelLoadError(
                f"model {os.fspath(model)}: is a folder, not a model: expected an .onnx file "
                f"or a bundled model's name ({', '.join(available_models()) or 'none bundled'})"
            ) from None
        raise


def _holds_a_package(folder: Path) -> bool:
    return any((folder / name).exists() for name in ("rdf.yaml", "n2n-package.json"))


def _integer(name: str, value: Any, minimum: int, or_none: str = "") -> int:
    """``value`` as an int (numpy integers accepted, bools not), at least ``minimum``.

    Raises:
        ArgumentError: naming ``name``, what was expected and what was given.
    """
    wanted = f"an integer >= {minimum}{or_none}"
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ArgumentError(f"{name}: expected {wanted}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ArgumentError(f"{name}: expected {wanted}, got {value}")
    return int(value)


def _optional_integer(name: str, value: Any, minimum: int) -> int | None:
    """``None``, or ``value`` checked as by :func:`_integer`."""
    return None if value is None else _integer(name, value, minimum, " or None")


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ArgumentError(f"{name}: expected a string, got {value!r} ({type(value).__name__})")
    return value


class Denoiser:
    """Denoise images with an n2n ONNX model on CUDA or the CPU.

    Args:
        model: a bundled model name (``"photo"``, ``"grey"``), a path to an ``.onnx``
            file, or ``None`` for the bundled defaults: ``photo`` for colour images
            and, with ``grey="auto"``, the grey-native ``grey`` model for grey ones
            (loaded, with these same options, at the first grey image). A
            1-channel (grey) model runs grey images as they are and a colour
            image channel by channel (R, G and B each as a grey image: the noise
            of each channel is removed, but the colour model, which sees the
            three together, does better on colour photos). A z-context model
            (metadata format 3: plane z of a stack from planes z−K..z+K) denoises
            stacks with a Z axis only (``denoise(volume, axes="ZYX")``, stack files;
            see :meth:`denoise_planes`): 2-D images are refused, and ``"auto"``
            runs it on onnxruntime without the engine probe.
        device: ``"auto"`` (CUDA when usable, else CPU: on a machine without
            an NVIDIA driver CUDA is not tried, which costs what ``"cpu"``
            costs and is said once at INFO; with a driver, a CUDA that cannot
            start gives one warning that says why; on the CPU, the fastest
            installed engine whose outputs match onnxruntime fp32, measured
            once per model and machine and cached: see :mod:`n2n_infer.probe`
            and :attr:`engine_choice`), ``"cpu"`` (onnxruntime fp32), ``"cuda"``
            or ``"cuda:N"`` (an error if CUDA cannot be used), ``"openvino"``,
            ``"openvino:f32"`` or ``"openvino:bf16"``. A named device is never
            probed.
        providers: instead of ``device``, the onnxruntime execution providers
            to use, in order, as names or ``(name, options)`` pairs (e.g.
            ``["OpenVINOExecutionProvider"]``, ``[("ROCMExecutionProvider",
            {"device_id": 0})]``, ``["TensorrtExecutionProvider",
            "CUDAExecutionProvider"]``). ``"CPUExecutionProvider"`` is appended
            as the fallback when absent; a bare ``"CUDAExecutionProvider"``
            gets ``session_config``'s CUDA options. :attr:`providers` tells
            which ones the session really uses.
        batch_size: images (or tiles) run together in one call to the model.
        intra_op_threads: CPU threads per call; 0 lets onnxruntime choose
            (overrides ``session_config.intra_op_threads`` when non-zero).
        tile_size: edge of the square tiles large images are cut into (a
            multiple of the model's stride); ``None`` picks 512, or four times the
            overlap for models whose overlap would leave too little of a 512 tile.
        tile_overlap: pixels shared by neighbouring tiles; ``None`` picks four
            times the model's receptive radius rounded up to the stride.
        max_untiled_pixels: images with more pixels are tiled automatically.
        max_batch_pixels: fewer images (or tiles) than ``batch_size`` go into
            one model call when they would exceed this many pixels together
            (peak memory grows with it: ``docs/runtime.md``, "Large images: tiles").
        session_config: onnxruntime settings (threads, graph optimisation, CUDA
            options, I/O binding); see :class:`~n2n_infer.session.SessionConfig`.
        ensemble: 1, 2, 4 or 8: average the model's outputs over that many
            flips/rotations of each image (self-ensemble), at that many times
            the cost (what it gains: ``docs/quality.md``). Tiled and untiled
            results still agree.
        grey: how grey images (one channel, grey + alpha, or colour with three
            equal channels) go through a colour model (a 1-channel model runs
            them as they are, whatever this says). ``"phases"``: as four
            colour images made of the image's pixel phases (see
            :mod:`n2n_infer.grey`), for the same model time as a colour image;
            ``"replicate"``: the grey copied into R, G and B, which leaves most
            of the noise in with models trained on independent channel noise;
            ``"auto"`` (default): as the model states (``"phases"`` unless its
            training noise is shared by neighbouring pixels or it learned grey
            images copied into RGB); with no model named, grey images go to the
            bundled ``grey`` model instead.
        levels: how pixel values map to the model's [0, 1]. ``"auto"``
            (default): by the dtype's full scale, except a dim image, 16-bit with
            no value above 16383 (a microscope's or a scientific camera's counts)
            or float with none above 0.25, which is mapped by its own min..max and
            its result mapped back; ``"full"``: always by the dtype's full scale
            (255, 65535; floats as they are).
            See :mod:`n2n_infer.arrays`.

    Raises:
        ModelLoadError: missing or corrupt file, a folder, not an n2n model, unknown
            metadata format version, implausible metadata (stride above 256,
            a receptive radius above 4096, a channel count other than 3, a
            format-1 config of too many levels), unexpected inputs/outputs, or a
            test run on a tiny image that fails or gives an output of another
            shape or with NaN; the message names the file.
        ProviderError: CUDA (or an accelerator of ``providers``) was asked for
            explicitly and cannot be used; an unknown or unavailable provider
            (the message lists the available ones); ``providers`` together
            with a ``device`` other than ``"auto"``.
        ArgumentError: (a ``ValueError`` and a ``TypeError``) an argument of the
            wrong type (a float or a bool where an integer is expected: numpy
            integers are fine) or out of range, checked before anything is
            loaded; the message names the argument, what was expected and what
            was given.
        ValueError: an unknown ``grey`` or ``levels`` setting, an ``ensemble``
            size other than 1, 2, 4, 8, tiles that do not fit the model's stride.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        device: str = "auto",
        batch_size: int = 8,
        intra_op_threads: int = 0,
        *,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        max_untiled_pixels: int = MAX_UNTILED_PIXELS,
        max_batch_pixels: int = MAX_BATCH_PIXELS,
        session_config: SessionConfig | None = None,
        ensemble: int = 1,
        grey: str = "auto",
        providers: Sequence[ProviderSpec] | None = None,
        levels: str = "auto",
    ) -> None:
        # every argument is checked before anything is loaded
        batch_size = _integer("batch_size", batch_size, 1)
        intra_op_threads = _integer("intra_op_threads", intra_op_threads, 0)
        tile_size = _optional_integer("tile_size", tile_size, 1)
        tile_overlap = _optional_integer("tile_overlap", tile_overlap, 0)
        max_untiled_pixels = _integer("max_untiled_pixels", max_untiled_pixels, 0)
        max_batch_pixels = _integer("max_batch_pixels", max_batch_pixels, 1)
        device = _text("device", device)
        grey_mode_for(_text("grey", grey))  # reject an unknown mode before loading anything
        check_levels(_text("levels", levels))
        if session_config is not None and not isinstance(session_config, SessionConfig):
            raise ArgumentError(
                "session_config: expected a SessionConfig or None, "
                f"got {session_config!r} ({type(session_config).__name__})"
            )
        #: What this Denoiser was built from (see :class:`~n2n_infer.options.DenoiserOptions`).
        self.options = DenoiserOptions(
            model,
            device,
            batch_size,
            intra_op_threads,
            tile_size=tile_size,
            tile_overlap=tile_overlap,
            max_untiled_pixels=max_untiled_pixels,
            max_batch_pixels=max_batch_pixels,
            session_config=session_config,
            ensemble=ensemble,
            grey=grey,
            providers=None if providers is None else tuple(providers),
            levels=levels,
        )
        self.levels = levels
        self.ensemble = check_size(ensemble)
        self.path = model_file(model)
        self.batch_size = batch_size
        self.max_untiled_pixels = max_untiled_pixels
        self.max_batch_pixels = max_batch_pixels
        config = self.options.session()
        kind = parse_device(device)[0]
        #: The backend running the model (see :mod:`n2n_infer.engines`).
        self.engine: Engine = open_engine(self.path, device, providers, config)
        self.info = ModelInfo.from_props(read_metadata(self.engine.session, self.path), self.path)
        #: The model's channels: 3 (RGB) or 1 (a grey-native model).
        self.channels = self.info.channels
        #: K of a z-context model (planes z−K..z+K of a stack in, plane z out), else 0.
        self.z_context = self.info.z_context
        #: The model input's channels: :attr:`channels`, or ``2K + 1`` planes.
        self.in_channels = self.info.in_channels
        mode = grey_mode_for(grey, self.info.grey)
        self.grey = GREY_NATIVE if self.channels == 1 else mode
        #: With no model named and ``grey="auto"``: the bundled grey model's Denoiser,
        #: opened at the first grey image (see :meth:`_grey_denoiser`).
        self._grey_model: Denoiser | None = None
        self._grey_default = (
            model is None
            and grey == "auto"
            and self.channels == 3
            and DEFAULT_GREY_MODEL in available_models()
        )
        #: What ``auto`` chose among this CPU's engines, measured (see :mod:`n2n_infer.probe`);
        #: None when a device or providers were named, or when CUDA runs.
        self.engine_choice: EngineChoice | None = None
        # a z-context model runs on onnxruntime: the probe's other engines expect outputs of
        # their input's shape
        if kind == "auto" and providers is None and self.providers[0] == CPU and not self.z_context:
            self.engine, self.engine_choice = auto_engine(
                self.engine, self.path, self.stride, config.intra_op_threads, self.channels
            )
        overlap = tile_overlap
        if overlap is None:
            overlap = default_overlap(self.info.receptive_radius, self.stride)
            if overlap > MAX_AUTO_OVERLAP:
                raise ModelLoadError(
                    f"{self.path}: its receptive radius of {self.info.receptive_radius} px "
                    f"implies a tile overlap of {overlap} px (more than {MAX_AUTO_OVERLAP}); "
                    "pass tile_overlap to use this model"
                )
        if tile_size is None:
            tile_size = default_tile_size(overlap, self.stride, DEFAULT_TILE_SIZE)
        self.tiles = TileSpec(tile_size, overlap)
        self.tiles.check(self.stride)
        bucket = config.shape_bucket or self.stride
        #: Untiled inputs are padded to multiples of this (the stride, or a shape bucket).
        self.pad_multiple = -(-bucket // self.stride) * self.stride
        #: The model call on a float32 N×3×H×W batch whose sides are multiples of the
        #: stride: the engine's call, wrapped in the ensemble when there is one (composed
        #: once, here, so that a call goes straight to the engine); for a 1-channel model,
        #: channel by channel. ``_run_grey``: a 1-channel model's call on grey images (their
        #: first channel only, the result given as three equal channels).
        self._run, self._run_grey = self._composed_run()

    @classmethod
    def from_options(cls, options: DenoiserOptions) -> Denoiser:
        """The Denoiser ``options`` describe (as :meth:`DenoiserOptions.build`)."""
        return options.build()

    def _composed_run(
        self,
    ) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
        call = self.engine.run
        if self.ensemble > 1:
            call = partial(run_ensemble, call, n=self.ensemble)
        if self.channels == 3 or self.z_context:
            return call, call
        return partial(_channel_by_channel, call), partial(_first_channel, call)

    def _grey_denoiser(self) -> Denoiser | None:
        """The bundled grey model's Denoiser (same options), for grey images when no model
        was named; None when this Denoiser runs them itself."""
        if not self._grey_default:
            return None
        if self._grey_model is None:
            options = dataclasses.replace(self.options, model=DEFAULT_GREY_MODEL)
            self._grey_model = options.build()
            log.info("grey images: the bundled %r model", DEFAULT_GREY_MODEL)
        return self._grey_model

    @property
    def providers(self) -> list[str]:
        """The execution providers the session really uses, in order."""
        return list(self.engine.providers)

    @property
    def io_binding(self) -> bool:
        """Whether model calls bind inputs and outputs on the device."""
        return self.engine.io_binding

    @property
    def metadata(self) -> dict[str, Any]:
        """The model's metadata as a dict (JSON values decoded)."""
        return {
            "name": self.info.name,
            "format_version": self.info.format_version,
            "stride": self.info.stride,
            "precision": self.info.raw.get(KEY_PRECISION, "fp32"),
            "noise": self.info.noise,
            "noise_description": self.info.noise_description,
            "architecture": self.info.architecture,
            "channels": self.info.channels,
            "z_context": self.info.z_context,
            "receptive_radius": self.info.receptive_radius,
            "grey": self.info.grey,
            "config": self.info.config,
            "training": self.info.training,
            "psnr": self.info.psnr,
            "exporter": self.info.exporter,
        }

    @property
    def stride(self) -> int:
        """Heights and widths are padded to multiples of this before the model runs."""
        return self.info.stride

    def denoise(
        self,
        image: Any,
        layout: str = "hwc",
        tile: bool | None = None,
        *,
        on_tile: Callable[[int, int], None] | None = None,
        axes: str | None = None,
    ) -> Any:
        """Denoise one image, or a stack with ``axes``; the result has the input's shape,
        dtype and layout.

        Args:
            image: numpy H×W (grey), H×W×1, H×W×3 (RGB) or H×W×4 (RGBA: alpha
                passed through untouched), of dtype uint8, uint16 or float32/64
                in [0, 1], either byte order, any strides; or a PIL image (one
                of the same mode comes back; modes in
                :data:`n2n_infer.arrays.PIL_READS`: 16-bit grey ``I;16*``,
                ``I`` within 0..65535, ``F`` within [0, 1], ``1``, ``L``,
                ``LA``, ``La``, ``P``, ``RGB``, ``RGBA``, ``RGBa``, ``RGBX``,
                ``YCbCr``, ``HSV``). Any H, W ≥ 1, at most
                :data:`n2n_infer.arrays.MAX_PIXELS` pixels: the image is
                reflect-padded to the model's stride and cropped back. Grey
                images go through the colour model as set by ``grey`` (see the
                class) and come back grey.
            layout: ``"hwc"`` or ``"chw"`` (C×H×W arrays from torch-style code).
            tile: ``None`` tiles images over ``max_untiled_pixels``; ``True``
                always tiles, ``False`` never does.
            on_tile: called as ``on_tile(done, total)`` after each tile of a
                tiled image (a grey image's four phase images, and an
                ensemble's transforms, are counted in ``total``); not called
                for an image that is not tiled.
            axes: for a numpy stack, what its axes are, e.g. ``"ZCYX"``,
                ``"TZYX"`` or ``"TYXS"``: letters among T, Z, C, Q, Y, X and S
                (samples: RGB when 3, last), each once, Y and X required. Every
                2-D plane is denoised (each channel as a grey image, RGB samples
                as a colour image), dim 16-bit or float data mapped by the levels of its
                whole channel; the result has the stack's shape and dtype. See
                :func:`n2n_infer.stacks.denoise_axes`. ``None``: one 2-D image.

        Raises:
            ImageError: (a ``ValueError``) NaN/inf, floats outside [0, 1], a wrong
                number of dimensions or channels, an empty array, more than
                ``MAX_PIXELS`` pixels, a dtype other than uint8, uint16,
                float32, float64, a masked array, a PIL mode that cannot be
                given back faithfully (``CMYK``, ``LAB``, ``PA``, ``P`` with
                transparency) or a PIL image that cannot be read (truncated
                file, closed image).
            InferenceError: not enough memory to denoise it (try ``tile=True``
                or smaller tiles).
        """
        if axes is not None:
            from n2n_infer.stacks import denoise_axes

            return denoise_axes(self, image, axes, tile=tile)
        if self.z_context:
            self._refuse_images("image")
        checked = as_image(image, 0, layout, levels=self.levels)
        return self._denoise_chunk([checked], tile, on_tile)[0]

    def denoise_batch(
        self, images: Sequence[Any] | np.ndarray, layout: str = "hwc", tile: bool | None = None
    ) -> list[Any] | np.ndarray:
        """Denoise a list of images (any sizes and kinds) or an N×H×W×C array, in order.

        Images of one size run together in batches of ``batch_size``; tiles of
        large images are batched too. An array in gives an array out (N×C×H×W
        with ``layout="chw"``; an empty one gives an empty one of its shape and
        dtype, an empty list an empty list). Every image is checked before any
        runs.

        Raises:
            ImageError: an image is unusable (see :meth:`denoise`); the message
                names its index.
            InferenceError: not enough memory to denoise them.
        """
        if self.z_context:
            self._refuse_images("images")
        if isinstance(images, np.ndarray):
            if images.ndim != 4:
                raise ImageError(f"images: expected an N×H×W×C array, got shape {images.shape}")
            if len(images) == 0:  # check what one image of this shape and dtype would be
                as_image(np.broadcast_to(np.zeros((), images.dtype), images.shape[1:]), 0, layout)
                return np.empty_like(images)
            return np.stack(self.denoise_batch(list(images), layout, tile), dtype=images.dtype)
        checked = [as_image(img, i, layout, levels=self.levels) for i, img in enumerate(images)]
        return self._denoise_chunk(checked, tile) if checked else []

    def denoise_iter(
        self,
        images: Iterable[Any],
        layout: str = "hwc",
        tile: bool | None = None,
        levels: str | None = None,
    ) -> Iterator[Any]:
        """Denoise images from any iterable lazily, yielding results in order.

        At most ``batch_size`` images (and their results) are held at a time, and
        no more than fill one model call (``max_batch_pixels``; an image larger
        than that runs alone, so it is held alone), so a generator that reads files
        one by one streams with bounded memory. ``levels`` overrides the Denoiser's
        own setting for these images: ``"full"`` for images already mapped to the
        model's [0, 1] by the caller (the planes of a stack, mapped by their
        channel's levels, :mod:`n2n_infer.stacks`).

        Raises:
            ImageError: an image is unusable (its index is named), after the
                results of the images read before it have been yielded.
            Exception: whatever the source iterator raises, likewise after the
                results of the images already read.
        """
        if self.z_context:
            self._refuse_images("images")

        def full(chunk: list[ImageArray]) -> bool:
            pixels = sum(img.size_hw[0] * img.size_hw[1] for img in chunk)
            return len(chunk) == self.batch_size or pixels >= self.max_batch_pixels

        mapping = self.levels if levels is None else _text("levels", levels)
        check_levels(mapping)
        checked = (as_image(img, i, layout, levels=mapping) for i, img in enumerate(images))
        yield from _in_chunks(checked, full, partial(self._denoise_chunk, tile=tile))

    def _refuse_images(self, what: str) -> None:
        """Raise the error a z-context model gives for 2-D images.

        Raises:
            ImageError: always, naming ``what`` and the model.
        """
        k = self.z_context
        raise ImageError(
            f"{what}: a 2-D image, but {self.path.name} is a z-context model (it denoises "
            f"plane z of a stack from planes z-{k}..z+{k}): give a stack with a Z axis, "
            "e.g. denoise(volume, axes='ZYX'), or a TIFF stack to n2n-infer batch"
        )

    def denoise_planes(
        self, contexts: Iterable[np.ndarray], tile: bool | None = None
    ) -> Iterator[np.ndarray]:
        """A z-context model on ``contexts``, lazily: each a float32 (2K+1)×H×W array of
        the planes z−K..z+K in [0, 1]; yields each plane z denoised, float32 H×W in
        [0, 1], in order. At most ``batch_size`` contexts are held at a time; a context
        over ``max_untiled_pixels`` (or any, with ``tile=True``) is tiled, every tile
        cutting its planes alike. :mod:`n2n_infer.stacks` feeds it (``denoise(array,
        axes=...)``, stack files).

        Raises:
            ImageError: this model has no z-context, or a context is not float32
                (2K+1)×H×W (its index is named).
            InferenceError: the model failed or memory ran out.
            Exception: whatever ``contexts`` raises, after the planes of the contexts
                already read.
        """
        if not self.z_context:
            raise ImageError(
                f"{self.path.name} is not a z-context model: denoise its planes one by one "
                "(denoise, denoise_iter)"
            )

        def checked(i: int, context: Any) -> np.ndarray:
            if (
                not isinstance(context, np.ndarray)
                or context.dtype != np.float32
                or context.ndim != 3
                or context.shape[0] != self.in_channels
            ):
                raise ImageError(
                    f"context {i}: expected float32 {self.in_channels}×H×W planes, got "
                    f"{getattr(context, 'dtype', type(context).__name__)} "
                    f"{getattr(context, 'shape', '')}"
                )
            return context

        yield from _in_chunks(
            (checked(i, c) for i, c in enumerate(contexts)),
            lambda chunk: len(chunk) == self.batch_size,
            partial(self._denoise_contexts, tile=tile),
        )

    def _denoise_contexts(self, contexts: list[np.ndarray], tile: bool | None) -> list[np.ndarray]:
        """The output planes of ``contexts`` (same-sized untiled ones batched), in order."""
        out: list[np.ndarray] = []
        try:
            i = 0
            while i < len(contexts):
                c, h, w = contexts[i].shape
                if h * w > self.max_untiled_pixels if tile is None else tile:
                    per_call = self._per_call(self.tiles.size, self.tiles.size, c)
                    out.append(
                        denoise_context_tiled(
                            contexts[i], self.tiles, self.stride, per_call, self._run
                        )
                    )
                    i += 1
                    continue
                shape, step = contexts[i].shape, self._per_call(h, w, c)
                part = list(takewhile(partial(_same_shape, shape), contexts[i : i + step]))
                padded, size = pad_to_multiple(np.stack(part), self.pad_multiple)
                out += list(crop(self._run(padded), size)[:, 0])
                i += len(part)
        except MemoryError as exc:
            h, w = contexts[0].shape[1:]
            raise InferenceError(
                f"not enough memory to denoise {len(contexts)} plane(s) of {h}×{w} pixels from "
                f"{self.in_channels} planes each; try tile=True, a smaller tile_size, "
                "batch_size or max_batch_pixels"
            ) from exc
        return out

    def denoise_nchw(self, noisy: np.ndarray) -> np.ndarray:
        """Run the model on float32 N×C×H×W in [0, 1] (C: :attr:`in_channels`: 3 for RGB,
        1 for grey, 2K+1 planes for a z-context model); returns the raw output.

        The output has the input's shape (a z-context model's: N×1×H×W) and is not
        clipped (this is what the export parity check compares with torch); with
        ``ensemble > 1`` it is
        the mean over the flips/rotations. Any H, W ≥ 1 is accepted: the
        batch is reflect-padded to the stride and cropped back; never tiled.

        Raises:
            ImageError: not a float32 N×C×H×W array.
            InferenceError: onnxruntime failed (out of memory included), or the
                model's output is not finite or not of its input's shape; the
                message names the model file.
        """
        if (
            not isinstance(noisy, np.ndarray)
            or noisy.ndim != 4
            or noisy.shape[1] != self.in_channels
            or noisy.dtype != np.float32
        ):
            raise ImageError(
                f"denoise_nchw expects float32 N×{self.in_channels}×H×W, got "
                f"{getattr(noisy, 'dtype', type(noisy))} {getattr(noisy, 'shape', '')}"
            )
        run = self.engine.run
        if self.ensemble > 1:
            run = partial(run_ensemble, run, n=self.ensemble)
        padded, size = pad_to_multiple(noisy, self.pad_multiple)
        parts = [
            run(padded[i : i + self.batch_size]) for i in range(0, len(padded), self.batch_size)
        ]
        joined = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return np.ascontiguousarray(crop(joined, size))

    def _per_call(self, h: int, w: int, planes: int = 1) -> int:
        """Images (or tiles) of h×w per model call: ``batch_size``, capped by pixels (each
        image ``planes`` model inputs: 3 for colour through a 1-channel model)."""
        return max(1, min(self.batch_size, self.max_batch_pixels // (h * w * planes)))

    def _denoise_chunk(
        self,
        images: list[ImageArray],
        tile: bool | None,
        on_tile: Callable[[int, int], None] | None = None,
    ) -> list[Any]:
        try:
            if self.channels == 1 or self._grey_default:
                return self._denoise_split(images, tile, on_tile)
            grey: list[int] = []
            if self.grey == "phases":
                for i, img in enumerate(images):
                    if is_grey(img):
                        grey.append(i)
            if not grey:
                return self._denoise_colour(images, tile, on_tile)
            taken = set(grey)
            rest = [i for i in range(len(images)) if i not in taken]
            stacks = [
                ImageArray(s, s, levels=images[i].levels)  # the grey image's own levels
                for i in grey
                for s in phase_stacks(images[i])
            ]
            results = self._denoise_colour([images[i] for i in rest] + stacks, tile, on_tile)
            out: list[Any] = [None] * len(images)
            for k, i in enumerate(rest):
                out[i] = results[k]
            for k, i in enumerate(grey):
                first = len(rest) + 4 * k
                plane = merge_phases(
                    results[first : first + 4], images[i].size_hw, images[i].levels
                )
                out[i] = restore_chw(images[i], np.broadcast_to(plane, (3, *plane.shape)))
            return out
        except MemoryError as exc:  # numpy's, for an image that fits the pixel limit but not RAM
            h, w = max((img.size_hw for img in images), key=lambda hw: hw[0] * hw[1])
            raise InferenceError(
                f"not enough memory to denoise {len(images)} image(s) of up to {h}×{w} pixels; "
                "try tile=True, a smaller tile_size, batch_size or max_batch_pixels"
            ) from exc

    def _denoise_split(
        self,
        images: list[ImageArray],
        tile: bool | None,
        on_tile: Callable[[int, int], None] | None,
    ) -> list[Any]:
        """Grey images and colour ones apart: a 1-channel model runs grey images on one
        channel and colour ones channel by channel; with no model named, grey images go
        to the bundled grey model."""
        grey = [i for i, img in enumerate(images) if is_grey(img)]
        taken = set(grey)
        colour = [i for i in range(len(images)) if i not in taken]
        out: list[Any] = [None] * len(images)
        if grey:
            other = self._grey_denoiser()
            part = [images[i] for i in grey]
            if other is not None:
                results = other._denoise_chunk(part, tile, on_tile)
            else:
                results = self._denoise_colour(part, tile, on_tile, self._run_grey)
            for i, result in zip(grey, results, strict=True):
                out[i] = result
        if colour:
            planes = 3 if self.channels == 1 else 1
            part = [images[i] for i in colour]
            results = self._denoise_colour(part, tile, on_tile, self._run, planes)
            for i, result in zip(colour, results, strict=True):
                out[i] = result
        return out

    def _denoise_colour(
        self,
        images: list[ImageArray],
        tile: bool | None,
        on_tile: Callable[[int, int], None] | None = None,
        run: Callable[[np.ndarray], np.ndarray] | None = None,
        planes: int = 1,
    ) -> list[Any]:
        run = run or self._run
        out: list[Any] = [None] * len(images)
        tiled: list[int] = []
        groups: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            h, w = img.rgb.shape[:2]
            if h * w > self.max_untiled_pixels if tile is None else tile:
                tiled.append(i)
            else:
                groups.setdefault((h, w), []).append(i)
        m = self.pad_multiple
        for (h, w), idx in groups.items():
            step = max(1, min(self.batch_size, self.max_batch_pixels // (h * w * planes)))
            for start in range(0, len(idx), step):
                part = idx[start : start + step]
                nchw = np.empty((len(part), 3, h, w), np.float32)
                for k, i in enumerate(part):
                    to_unit(images[i].rgb, images[i].levels, nchw[k])
                if h % m or w % m:
                    nchw = pad_to_multiple(nchw, m)[0]
                denoised = run(nchw)
                for k, i in enumerate(part):
                    out[i] = restore_chw(images[i], denoised[k, :, :h, :w])
        if tiled:
            self._denoise_tiled(images, tiled, out, on_tile, run, planes)
        return out

    def _denoise_tiled(
        self,
        images: list[ImageArray],
        tiled: list[int],
        out: list[Any],
        on_tile: Callable[[int, int], None] | None,
        run: Callable[[np.ndarray], np.ndarray],
        planes: int = 1,
    ) -> None:
        jobs = ((images[i], new_output(images[i])) for i in tiled)
        per_call = self._per_call(self.tiles.size, self.tiles.size, planes)
        counted = None
        if on_tile is not None:
            total = sum(tile_count(images[i].size_hw, self.tiles, self.stride) for i in tiled)
            done = iter(range(1, total + 1))

            def counted() -> None:
                on_tile(next(done), total)

        results = denoise_tiled(jobs, self.tiles, self.stride, per_call, run, counted)
        for i, filled in zip(tiled, results, strict=True):
            out[i] = finish(images[i], filled)

    def __repr__(self) -> str:
        extra = f", ensemble={self.ensemble}" if self.ensemble > 1 else ""
        extra += f", grey={self.grey!r}" if self.grey not in ("phases", GREY_NATIVE) else ""
        extra += f", levels={self.levels!r}" if self.levels != "auto" else ""
        return f"Denoiser({str(self.path)!r}, providers={self.providers}{extra})"


def _in_chunks(
    items: Iterator[Any], full: Callable[[list[Any]], bool], run: Callable[[list[Any]], list[Any]]
) -> Iterator[Any]:
    """``run`` on ``items`` a chunk at a time (a chunk ends when ``full`` says so), its
    results yielded in order. When ``items`` raises (the source, or a check of an
    item), the results of the items already read are yielded first."""
    chunk: list[Any] = []
    try:
        for item in items:
            chunk.append(item)
            if full(chunk):
                done, chunk = chunk, []
                yield from run(done)
    except Exception:
        if chunk:  # the source (or an item) failed: first give back what was read
            yield from run(chunk)
        raise
    if chunk:
        yield from run(chunk)


def _same_shape(shape: tuple[int, ...], array: np.ndarray) -> bool:
    return array.shape == shape


def _channel_by_channel(call: Callable[[np.ndarray], np.ndarray], nchw: np.ndarray) -> np.ndarray:
    """A 1-channel model's ``call`` on N×C×H×W: each channel as one grey image."""
    n, c, h, w = nchw.shape
    return call(np.ascontiguousarray(nchw).reshape(n * c, 1, h, w)).reshape(n, c, h, w)


def _first_channel(call: Callable[[np.ndarray], np.ndarray], nchw: np.ndarray) -> np.ndarray:
    """A 1-channel model's ``call`` on grey images held as N×3×H×W (three equal channels):
    the first channel only, its result given back as three equal channels."""
    out = call(np.ascontiguousarray(nchw[:, :1]))
    return np.broadcast_to(out, (out.shape[0], nchw.shape[1], *out.shape[2:]))
