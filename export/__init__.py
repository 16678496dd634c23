"""Checkpoint -> self-contained ONNX file, and parity checks against torch.

The public names load on first use, so that ``n2n-export --help`` (``export.cli``)
starts without importing torch or onnx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'n2n_export' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
