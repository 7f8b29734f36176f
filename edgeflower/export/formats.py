"""The export formats as a table: adding one is one entry."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Format(str, Enum):
    TFLITE_FLOAT = "tflite_float"
    TFLITE_INT8 = "tflite_int8"
    ONNX_FLOAT = "onnx_float"
    ONNX_INT8 = "onnx_int8"


@dataclass(frozen=True)
class FormatSpec:
    fmt: Format
    filename: str
    failed_filename: str  # a failed artifact is kept under a name nobody mistakes for a passing one
    runtime: str
    quantized: bool
    needs_int8_flag: bool
    needs_onnx: bool


FORMATS: dict[Format, FormatSpec] = {
    Format.TFLITE_FLOAT: FormatSpec(Format.TFLITE_FLOAT, "model_float.tflite", "model_float.FAILED.tflite",
                                    "litert", False, False, False),
    Format.TFLITE_INT8: FormatSpec(Format.TFLITE_INT8, "model_int8.tflite", "model_int8.FAILED.tflite",
                                   "litert", True, True, False),
    Format.ONNX_FLOAT: FormatSpec(Format.ONNX_FLOAT, "model.onnx", "model.FAILED.onnx", "onnxruntime",
                                  False, False, True),
    Format.ONNX_INT8: FormatSpec(Format.ONNX_INT8, "model_int8.onnx", "model_int8.FAILED.onnx", "onnxruntime",
                                 True, True, True),
}
