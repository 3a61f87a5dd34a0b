"""Deployment formats, declared once: export/, eval, bench/ and the CLI all read this table, by name."""
from __future__ import annotations

from dataclasses import dataclass

from facelm.errors import UserError


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    precision: str
    runtime: str  # which runtime evaluates it here
    layout: str  # input layout of the exported graph
    extra: str  # pip extra that installs its converter and runtime
    tolerance: float  # default |delta NME| (points) allowed against PyTorch


FORMATS: tuple[Format, ...] = (
    Format("onnx_fp32", ".onnx", "fp32", "onnxruntime", "NCHW", "export", 0.02),
    Format("onnx_int8", ".int8.onnx", "int8", "onnxruntime", "NCHW", "export", 0.15),
)


def get_format(name: str) -> Format:
    for fmt in FORMATS:
        if fmt.name == name:
            return fmt
    raise UserError(f"unknown format {name!r}: choose from {', '.join(f.name for f in FORMATS)}")
