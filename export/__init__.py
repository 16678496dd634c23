"""Checkpoint -> self-contained ONNX file, and parity checks against torch.

The public names load on first use, so that ``n2n-export --help`` (``export.cli``)
starts without importing torch or onnx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from n2n_infer.lazy import lazy_names

if TYPE_CHECKING:
    from n2n_export.exporter import OPSET, export_onnx
    from n2n_export.parity import ParityError, ParityReport, check_parity

#: Public name -> the module that defines it.
_HOMES = {
    "OPSET": "n2n_export.exporter",
    "export_onnx": "n2n_export.exporter",
    "ParityError": "n2n_export.parity",
    "ParityReport": "n2n_export.parity",
    "check_parity": "n2n_export.parity",
}

__all__ = ["OPSET", "ParityError", "ParityReport", "check_parity", "export_onnx"]


__getattr__, __dir__ = lazy_names(__name__, _HOMES, globals())
