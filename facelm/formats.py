"""Deployment formats, declared once: export/, eval, bench/ and the CLI all read this table, by name."""
from __future__ import annotations

from dataclasses import dataclass

from facelm.errors import UserError

COREML_REFERENCE = "CoreML (reference execution)"  # no Core ML runtime off Apple: export/coreml_reference.py runs it
UNTIMED_COREML = ("Core ML runs only on Apple devices; here the reference executor runs the program op by op in torch, "
                  "so its timing says nothing about Core ML")


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    precision: str  # fp32, fp16 (weights stored in fp16), w8 (8-bit weights, fp16 compute), int8 (weights and activations)
    # NME points its accuracy may move: |delta| against PyTorch at export, worsening against the baseline in the gate
    tolerance: float
    runtime: str  # which runtime evaluates it here
    layout: str  # input layout of the exported graph
    extra: str  # pip extra that installs its converter and runtime
    notes: str = ""  # what a user of the file needs beyond the contract: names, I/O types, companion files
    companions: tuple[str, ...] = ()  # suffixes of files that must sit beside the artefact
    unavailable: str = ""  # why this format cannot be produced here; reported, never faked
    untimed: str = ""  # why its latency here says nothing about the device it ships to: accuracy only, never timed


FORMATS: tuple[Format, ...] = (
    Format("onnx_fp32", ".onnx", "fp32", 0.02, "onnxruntime", "NCHW", "export", "dynamic batch"),
    Format("onnx_int8", ".int8.onnx", "int8", 0.10, "onnxruntime", "NCHW", "export",
           "dynamic batch; QDQ: float32 input and output, int8 inside"),
    Format("tflite_fp32", ".tflite", "fp32", 0.02, "LiteRT", "NHWC", "export",
           "signature serving_default: input image, output landmarks; batch 1"),
    Format("tflite_fp16", ".fp16.tflite", "fp16", 0.05, "LiteRT", "NHWC", "export",
           "signature serving_default: input image, output landmarks; batch 1; fp16 weights dequantized on load"),
    Format("tflite_int8", ".int8.tflite", "int8", 0.10, "LiteRT", "NHWC", "export",
           "signature serving_default: input image, output landmarks; batch 1; full-integer int8 weights and "
           "activations, float32 input and output (QUANTIZE / DEQUANTIZE inside)"),
    Format("ncnn_fp16", ".ncnn.param", "fp16", 0.05, "ncnn", "NCHW", "export",
           "blobs image (Mat c=3, h=w=size, no batch) and landmarks (Mat h=points, w=3); weights in the .ncnn.bin "
           "beside it (fp16 storage)", companions=(".ncnn.bin",)),
    Format("ncnn_int8", ".int8.ncnn.param", "int8", 0.10, "ncnn", "NCHW", "export", companions=(".int8.ncnn.bin",),
           unavailable="needs ncnn2table and ncnn2int8, which neither the ncnn nor the pnnx wheel ships (no Debian "
                       "package either)"),
    Format("coreml_fp16", ".mlpackage", "fp16", 0.05, COREML_REFERENCE, "NCHW", "export",
           "ML Program (iOS 16+), input image and output landmarks as float32 MultiArrays, fp16 compute",
           untimed=UNTIMED_COREML),
    Format("coreml_w8", ".w8.mlpackage", "w8", 0.08, COREML_REFERENCE, "NCHW", "export",
           "ML Program (iOS 16+), input image and output landmarks as float32 MultiArrays, fp16 compute, 8-bit "
           "per-channel weights (constexpr_affine_dequantize)", untimed=UNTIMED_COREML),
)


def get_format(name: str) -> Format:
    for fmt in FORMATS:
        if fmt.name == name:
            return fmt
    raise UserError(f"unknown format {name!r}: choose from {', '.join(f.name for f in FORMATS)}")


def tolerances(overrides: list[str]) -> dict[str, float]:
    """Each format's NME tolerance from its record, `FORMAT=POINTS` overrides applied; a bad one is a UserError."""
    table = {f.name: f.tolerance for f in FORMATS}
    for text in overrides:
        name, _, value = text.partition("=")
        get_format(name)
        try:
            table[name] = float(value)
        except ValueError:
            raise UserError(f"--tolerance {text!r}: expected FORMAT=POINTS, e.g. onnx_int8=0.2") from None
    return table
