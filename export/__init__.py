"""Checkpoint -> self-contained ONNX file, and parity checks against torch."""

from export.exporter import OPSET, export_onnx
from export.parity import ParityError, ParityReport, check_parity

__all__ = ["OPSET", "ParityError", "ParityReport", "check_parity", "export_onnx"]
