"""Denoiser workers for data-parallel engines: callable classes for Ray Data's ``map_batches``.

Plain Python (numpy and the runtime only; nothing here imports Ray), so that
they can be tested, and used by other engines, without a cluster. Each worker
builds one :class:`~n2n_infer.Denoiser` from a :class:`DenoiserSpec` and a
:class:`ShippedModel` (a bundled model by name, any other model file as
bytes: no file system is shared with the driver). :class:`DenoiseFiles` is
what :func:`n2n_infer.ray.denoise_folder_ray` runs on whole files;
:class:`DenoisePlanes` the body of the actors it sends a split TIFF stack's planes
to, in chunks (the driver reads and writes the stack); :class:`DenoiseImages`
plugs the runtime into your own pipelines.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from n2n_infer.batch import FileResult, convert_file, run_guarded
from n2n_infer.denoiser import model_file
from n2n_infer.errors import N2NError, first_line
from n2n_infer.options import DenoiserOptions
from n2n_infer.registry import models_dir

__all__ = ["DenoiseFiles", "DenoiseImages", "DenoisePlanes", "DenoiserSpec", "ShippedModel"]


#: How each worker builds its :class:`~n2n_infer.Denoiser`: the one description of a
#: Denoiser, :class:`~n2n_infer.options.DenoiserOptions` (``intra_op_threads`` 0 lets
#: onnxruntime choose all the node's cores: give the CPUs each worker reserves).
DenoiserSpec = DenoiserOptions


@dataclass(frozen=True)
class ShippedModel:
    """A model as it travels to the workers: a bundled name, or a file's name and bytes."""

    name: str | None
    data: bytes | None = None

    @classmethod
    def of(cls, model: str | None) -> ShippedModel:
        """Name a bundled model; read any other model file (on the driver). ``None``: the
        bundled defaults (``photo``, and ``grey`` for grey images), chosen on the worker.

        Raises:
            ModelLoadError: neither a bundled name nor an existing file (a folder
                is named as one).
        """
        path = model_file(model)  # checked on the driver, also for the default
        if model is None:
            return cls(None)
        if path.parent == models_dir() and (model is None or Path(model).name == str(model)):
            return cls(path.stem)
        return cls(path.name, path.read_bytes())

    def materialise(self, scratch: Path) -> str | None:
        """The name or path a worker passes to :class:`~n2n_infer.Denoiser` (None: the
        bundled defaults)."""
        if self.data is None:
            return None if self.name is None else str(self.name)
        path = scratch / str(self.name)
        path.write_bytes(self.data)
        return str(path)


class _WorkerBase:
    """One :class:`~n2n_infer.Denoiser` per Ray actor, built from a spec and a shipped model."""

    def __init__(self, spec: DenoiserSpec, model: ShippedModel | None = None) -> None:
        self._scratch = Path(tempfile.mkdtemp(prefix="n2n-ray-"))
        shipped = model if model is not None else ShippedModel.of(spec.model)
        self.denoiser = spec.build(shipped.materialise(self._scratch))
        self._providers = ",".join(self.denoiser.providers)

    def close(self) -> None:
        """Remove the worker's scratch folder (a shipped model file is loaded by then)."""
        shutil.rmtree(getattr(self, "_scratch", ""), ignore_errors=True)

    def __del__(self) -> None:
        self.close()


class DenoiseImages(_WorkerBase):
    """A callable class for ``Dataset.map_batches``: denoise a column of images of any sizes.

    Each batch's ``column`` holds numpy images (H×W or H×W×C, uint8/uint16/float,
    sizes may differ, as :meth:`~n2n_infer.Denoiser.denoise_batch` takes them);
    the denoised images, same shapes and dtypes, go to ``out_column``.

    >>> ds.map_batches(DenoiseImages, fn_constructor_kwargs={"spec": DenoiserSpec("photo")},
    ...                compute=ray.data.ActorPoolStrategy(size=4), batch_format="numpy")
    """

    def __init__(
        self,
        spec: DenoiserSpec,
        model: ShippedModel | None = None,
        column: str = "image",
        out_column: str = "denoised",
    ) -> None:
        super().__init__(spec, model)
        self.column, self.out_column = column, out_column

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Add ``out_column`` to ``batch`` (a dict of numpy columns)."""
        denoised = self.denoiser.denoise_batch(list(batch[self.column]))
        return {**batch, self.out_column: object_column(denoised)}


class DenoiseFiles(_WorkerBase):
    """A callable class for ``Dataset.map_batches``: image files' bytes in, denoised files out.

    Input columns (:data:`IN_COLUMNS`): ``name`` (the relative name; its
    suffix picks the format), ``data`` (the file's bytes), ``ref`` (a clean
    reference's bytes), ``has_ref`` (whether there is one) and ``read_error``
    (why the driver could not read the file, or ``""``). Output columns
    (:data:`OUT_COLUMNS`): those of a :class:`~n2n_infer.batch.FileResult`
    (``notes`` as JSON), ``output`` (the encoded output, ``b""`` on error)
    and ``providers``. Each file goes through
    :func:`~n2n_infer.batch.convert_file` in the actor's scratch folder.
    """

    def __init__(
        self, spec: DenoiserSpec, model: ShippedModel | None = None, tile: bool | None = None
    ) -> None:
        super().__init__(spec, model)
        self.tile = tile

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Denoise each row of ``batch``; a failure becomes that row's error."""
        rows = [self._one(*row) for row in zip(*(batch[k] for k in IN_COLUMNS), strict=True)]
        return {k: object_column([row[k] for row in rows]) for k in OUT_COLUMNS}

    def _one(
        self, name: str, data: bytes, ref: bytes, has_ref: bool, read_error: str
    ) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(dir=self._scratch) as tmp:
            src = Path(tmp, "in", Path(name).name)
            dst = Path(tmp, "out", src.name)
            ref_path = Path(tmp, "ref", src.name) if has_ref else None
            for path, content in ((src, data), (ref_path, ref)):
                if path is not None:
                    path.parent.mkdir()
                    path.write_bytes(bytes(content))
            dst.parent.mkdir()
            result = run_guarded(
                name, src, lambda: self._convert(src, dst, name, ref_path, read_error)
            )
            output = dst.read_bytes() if result.status == "ok" else b""
        return {**_result_columns(result), "output": output, "providers": self._providers}

    def _convert(
        self, src: Path, dst: Path, name: str, ref: Path | None, read_error: str
    ) -> FileResult:
        if read_error:
            raise N2NError(read_error)
        return convert_file(self.denoiser, src, dst, name, ref, self.tile)


class DenoisePlanes(_WorkerBase):
    """The body of a Ray actor that denoises chunks of a split TIFF stack's planes.

    The driver (:func:`n2n_infer.ray.denoise_folder_ray`) reads the stack, finds
    its levels once over the whole stack and maps every plane by its channel's
    levels, as the local engine does (:mod:`n2n_infer.stacks`); it sends the
    mapped planes here in chunks, maps the results back and writes the output
    itself. A chunk goes through :meth:`~n2n_infer.Denoiser.denoise_iter`, as the
    local engine's planes do, and is one batch of ``batch_size`` planes (the last
    may hold fewer), so the model calls, and the results, are the local engine's.
    """

    def facts(self) -> dict[str, Any]:
        """What the driver needs before it splits a stack: the providers used, and the
        model's ``z_context`` (neighbouring planes it takes on each side: 0 for a model
        of one plane; such a model's stacks are not split)."""
        z_context = getattr(self.denoiser.info, "z_context", 0)
        return {"providers": self._providers, "z_context": int(z_context or 0)}

    def denoise(
        self,
        planes: list[np.ndarray],
        tile: bool | None = None,
        layout: str = "hwc",
        levels: str | None = None,
    ) -> tuple[list[np.ndarray], str]:
        """The denoised ``planes`` in order and ``""``; or ``[]`` and why they could not
        be denoised (one line; the driver reports it for the stack's file). ``levels``:
        ``"full"`` for planes the driver has mapped (:meth:`~n2n_infer.Denoiser.denoise_iter`)."""
        try:
            return list(self.denoiser.denoise_iter(planes, layout, tile, levels)), ""
        except Exception as exc:  # reported for the stack's file, as the local engine does
            text = first_line(str(exc))
            if isinstance(exc, N2NError | OSError) and text:
                return [], text
            return [], f"{type(exc).__name__}: {text}" if text else type(exc).__name__


IN_COLUMNS = ("name", "data", "ref", "has_ref", "read_error")
OUT_COLUMNS = (
    "name", "status", "error", "seconds", "size_hw", "psnr_noisy", "psnr_denoised", "notes",
    "output", "providers",
)  # fmt: skip


def object_column(values: list[Any]) -> np.ndarray:
    """A 1-D object array of ``values`` (numpy would stack equal-shaped arrays into one)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _result_columns(r: FileResult) -> dict[str, Any]:
    return {
        "name": r.name,
        "status": r.status,
        "error": r.error,
        "seconds": r.seconds,
        "size_hw": json.dumps(list(r.size_hw) if r.size_hw else None),
        "psnr_noisy": r.psnr_noisy,
        "psnr_denoised": r.psnr_denoised,
        "notes": json.dumps(r.notes),
    }


def result_of(row: dict[str, Any]) -> FileResult:
    """The :class:`~n2n_infer.batch.FileResult` of one :class:`DenoiseFiles` output row."""
    size = json.loads(row["size_hw"])
    return FileResult(
        str(row["name"]),
        str(row["status"]),
        str(row["error"]),
        float(row["seconds"]),
        (int(size[0]), int(size[1])) if size else None,
        _float_or_none(row["psnr_noisy"]),
        _float_or_none(row["psnr_denoised"]),
        list(json.loads(row["notes"])),
    )


def _float_or_none(value: Any) -> float | None:
    return None if value is None or value != value else float(value)  # NaN is missing
