"""Deployment formats, one record each: how it is exported and from what, which runtime runs it, how far its accuracy
may move and what installs it. export/, eval, bench/, the gate and the tests all read these records, by name."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from facelm.contract import read_sidecar, sidecar_path
from facelm.errors import UserError
from facelm.runtimes import COREML_REFERENCE, LITERT, NCNN, ONNXRUNTIME, Runtime

UNTIMED_COREML = ("Core ML runs only on Apple devices; here the reference executor runs the program op by op in torch, "
                  "so its timing says nothing about Core ML")
ONNX_TOOLS = ("onnx", "onnxslim", "onnxruntime")
TFLITE_TOOLS = ("litert_torch", "ai_edge_quantizer", "ai_edge_litert")
NCNN_TOOLS = ("pnnx", "ncnn")
COREML_TOOLS = ("coremltools",)


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    precision: str  # fp32, fp16 (weights stored in fp16), w8 (8-bit weights, fp16 compute), int8 (weights and activations)
    # NME points its accuracy may move: |delta| against PyTorch at export, worsening against the baseline in the gate
    tolerance: float
    runtime: Runtime  # what evaluates it here
    layout: str  # input layout of the exported graph
    exporter: str  # its function in facelm.export.exporters, (context, format) -> (path, converter description)
    modules: tuple[str, ...]  # the Python modules its converter and runtime import
    extra: str = "export"  # pip extra that installs them
    derived_from: str = ""  # the format it is converted from, which must export first
    notes: str = ""  # what a user of the file needs beyond the contract: names, I/O types, companion files
    companions: tuple[str, ...] = ()  # suffixes of files that must sit beside the artefact
    unavailable: str = ""  # why this format cannot be produced here; reported, never faked
    untimed: str = ""  # why its latency here says nothing about the device it ships to: accuracy only, never timed

    def installed(self) -> bool:
        """Whether this machine has its converter and runtime."""
        return all(importlib.util.find_spec(module) for module in self.modules)


TFLITE_NOTES = "signature serving_default: input image, output landmarks; batch 1"
COREML_NOTES = "ML Program (iOS 16+), input image and output landmarks as float32 MultiArrays, fp16 compute"
FORMATS: tuple[Format, ...] = (
    Format("onnx_fp32", ".onnx", "fp32", 0.02, ONNXRUNTIME, "NCHW", "export_onnx_fp32", ONNX_TOOLS,
           notes="dynamic batch"),
    Format("onnx_int8", ".int8.onnx", "int8", 0.10, ONNXRUNTIME, "NCHW", "export_onnx_int8", ONNX_TOOLS,
           derived_from="onnx_fp32", notes="dynamic batch; QDQ: float32 input and output, int8 inside"),
    Format("tflite_fp32", ".tflite", "fp32", 0.02, LITERT, "NHWC", "export_tflite_fp32", TFLITE_TOOLS,
           notes=TFLITE_NOTES),
    Format("tflite_fp16", ".fp16.tflite", "fp16", 0.05, LITERT, "NHWC", "export_tflite_fp16", TFLITE_TOOLS,
           derived_from="tflite_fp32", notes=f"{TFLITE_NOTES}; fp16 weights dequantized on load"),
    Format("tflite_int8", ".int8.tflite", "int8", 0.10, LITERT, "NHWC", "export_tflite_int8", TFLITE_TOOLS,
           derived_from="tflite_fp32", notes=f"{TFLITE_NOTES}; full-integer int8 weights and activations, float32 "
                                             "input and output (QUANTIZE / DEQUANTIZE inside)"),
    Format("ncnn_fp16", ".ncnn.param", "fp16", 0.05, NCNN, "NCHW", "export_ncnn_fp16", NCNN_TOOLS,
           notes="blobs image (Mat c=3, h=w=size, no batch) and landmarks (Mat h=points, w=3); weights in the .ncnn.bin "
                 "beside it (fp16 storage)", companions=(".ncnn.bin",)),
    Format("ncnn_int8", ".int8.ncnn.param", "int8", 0.10, NCNN, "NCHW", "", NCNN_TOOLS, companions=(".int8.ncnn.bin",),
           derived_from="ncnn_fp16",
           unavailable="needs ncnn2table and ncnn2int8, which neither the ncnn nor the pnnx wheel ships (no Debian "
                       "package either)"),
    Format("coreml_fp16", ".mlpackage", "fp16", 0.05, COREML_REFERENCE, "NCHW", "export_coreml_fp16", COREML_TOOLS,
           notes=COREML_NOTES, untimed=UNTIMED_COREML),
    Format("coreml_w8", ".w8.mlpackage", "w8", 0.08, COREML_REFERENCE, "NCHW", "export_coreml_w8", COREML_TOOLS,
           derived_from="coreml_fp16", notes=f"{COREML_NOTES}, 8-bit per-channel weights (constexpr_affine_dequantize)",
           untimed=UNTIMED_COREML),
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


@dataclass(frozen=True)
class ExportedModel:
    path: Path
    meta: dict

    @property
    def label(self) -> str:
        return f"{self.meta['model']['arch']}@{self.meta['model']['input_size']}"

    @property
    def size_mb(self) -> float:
        """The artefact with its companion files (an NCNN .bin); a directory (.mlpackage) counts all it holds."""
        size = 0
        for name in self.meta.get("files", [self.path.name]):
            path = self.path.with_name(name)
            size += sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
        return size / 1e6


def _is_artefact(path: Path) -> bool:
    return not path.name.endswith(".json") and any(path.name.endswith(f.suffix) for f in FORMATS)


def exported_models(folder: Path) -> list[ExportedModel]:
    """Every exported model in `folder` with its checked sidecar, in format order; a model file without one, or a
    sidecar without its model, is an error (not skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder; pass the folder 'facelm export --out' wrote")
    found = {p for p in folder.iterdir() if _is_artefact(p)}
    found |= {p.with_suffix("") for p in folder.glob("*.json") if _is_artefact(p.with_suffix(""))}
    if not found:
        suffixes = ", ".join(sorted({f.suffix for f in FORMATS}))
        raise UserError(f"{folder}: no exported models ({suffixes} with a .json sidecar); run 'facelm export' first")
    for path in found:
        if not path.exists():
            raise UserError(f"{sidecar_path(path)}: sidecar without its model {path.name}; copy the model beside it")
    models = [ExportedModel(path, read_sidecar(path)) for path in found]
    order = {f.name: i for i, f in enumerate(FORMATS)}
    return sorted(models, key=lambda m: (m.label, order.get(m.meta["format"], len(order)), m.path.name))
