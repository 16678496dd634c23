"""One description of a :class:`~n2n_infer.Denoiser`: the frozen :class:`DenoiserOptions`.

The constructor's arguments, the CLI's settings and the Ray workers' spec
(:data:`n2n_infer.workers.DenoiserSpec` is this type) are the same value, so a
setting added to the Denoiser is added here once. Importing this module loads
neither numpy nor onnxruntime.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from n2n_infer.denoiser import Denoiser
    from n2n_infer.providers import ProviderSpec
    from n2n_infer.session import SessionConfig

#: Images with more pixels than this are tiled when ``tile`` is left to ``None`` (1920×1080 is not).
MAX_UNTILED_PIXELS = 2_100_000
#: At most this many pixels go into one model call: two 512×512 tiles, or eight 256×256
#: images. The model's activations grow with the pixels in a call and decide a large
#: image's peak memory; half the former 2²⁰ cut that peak by more than a third at no cost
#: in speed (docs/runtime.md, "Batching" and "Large images").
MAX_BATCH_PIXELS = 1 << 19


@dataclass(frozen=True)
class DenoiserOptions:
    """Everything a :class:`~n2n_infer.Denoiser` is built from; the fields are its
    constructor's arguments (see there), checked when it is built.

    ``model`` is a bundled model's name, a path to an ``.onnx`` file, or ``None``
    for the bundled default (the Ray workers ship a driver's file to themselves).
    The CPU thread count lives here alone: :meth:`session` folds a non-zero
    ``intra_op_threads`` into ``session_config``.
    """

    model: str | Path | None = None
    device: str = "auto"
    batch_size: int = 8
    intra_op_threads: int = 0
    tile_size: int | None = None
    tile_overlap: int | None = None
    max_untiled_pixels: int = MAX_UNTILED_PIXELS
    max_batch_pixels: int = MAX_BATCH_PIXELS
    session_config: SessionConfig | None = None
    ensemble: int = 1
    grey: str = "auto"
    providers: Sequence[ProviderSpec] | None = None
    levels: str = "auto"

    def session(self) -> SessionConfig:
        """The onnxruntime settings: ``session_config`` (or the defaults) with a non-zero
        ``intra_op_threads`` in place of its own thread count."""
        from n2n_infer.session import SessionConfig

        config = self.session_config or SessionConfig()
        if self.intra_op_threads:
            config = replace(config, intra_op_threads=self.intra_op_threads)
        return config

    def arguments(self) -> dict[str, Any]:
        """The fields as keyword arguments of :class:`~n2n_infer.Denoiser`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def build(self, model: str | Path | None = None) -> Denoiser:
        """A :class:`~n2n_infer.Denoiser` of these options (of ``model`` when given).

        Raises:
            ModelLoadError, ProviderError, ValueError: as :class:`~n2n_infer.Denoiser`.
        """
        from n2n_infer.denoiser import Denoiser

        options = self if model is None else replace(self, model=model)
        return Denoiser(**options.arguments())
