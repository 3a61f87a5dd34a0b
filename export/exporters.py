"""One export function per format, all with the same signature: `export_<format>(ctx) -> Path`.

`run_export` times each one, logs size, embeds and writes the metadata sidecar, and turns a failure into a report
row (removing anything half-written), so exporting every format always finishes.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from facelm.contract import finalise_meta, sidecar_path, write_sidecar
from facelm.formats import Format

ONNX_OPSET = 18
log = logging.getLogger("facelm.export")


@dataclass
class ExportContext:
    model: torch.nn.Module  # single-head, eval, fp32, CPU: (B, 3, S, S) -> (B, K, 3)
    meta: dict  # artefact_meta(...) of the checkpoint
    out_dir: Path
    stem: str
    calibration: np.ndarray  # (N, 3, S, S) normalised real face crops from the training split
    done: dict[str, Path] = field(default_factory=dict)  # format name -> artefact, for chained exports

    @property
    def sample(self) -> torch.Tensor:
        return torch.from_numpy(self.calibration[:1])

    def path(self, fmt: Format) -> Path:
        return self.out_dir / f"{self.stem}{fmt.suffix}"


def _set_onnx_metadata(model, meta: dict) -> None:
    """The format-independent contract under metadata_props key `facelm` (the sidecar adds the file's own hash)."""
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = "facelm", json.dumps(meta, sort_keys=True)


def export_onnx_fp32(ctx: ExportContext, fmt: Format) -> tuple[Path, str]:
    """torch.onnx (dynamo) at a fixed opset, dynamic batch, then onnxslim; the sidecar is embedded in metadata_props."""
    import onnx
    import onnxslim

    path = ctx.path(fmt)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.onnx.export(ctx.model, (ctx.sample,), dynamo=True, opset_version=ONNX_OPSET,
                                input_names=["image"], output_names=["landmarks"],
                                dynamic_shapes={"x": {0: batch}}, verbose=False)
    model = onnxslim.slim(program.model_proto)
    model.producer_name, model.producer_version = "facelm", ctx.meta["facelm_version"]
    _set_onnx_metadata(model, ctx.meta)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path, f"torch.onnx dynamo opset {ONNX_OPSET} + onnxslim {onnxslim.__version__}"


class _CalibrationReader:
    def __init__(self, crops: np.ndarray, batch: int = 16):
        self.batches = iter([{"image": crops[i: i + batch]} for i in range(0, len(crops), batch)])

    def get_next(self):
        return next(self.batches, None)


def export_onnx_int8(ctx: ExportContext, fmt: Format) -> tuple[Path, str]:
    """Static int8, QDQ, per-channel weights, calibrated (MinMax) on real face crops of the training split."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = ctx.done["onnx_fp32"]
    path = ctx.path(fmt)
    prepared = path.with_name(path.name + ".prep.onnx")
    try:
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(path), _CalibrationReader(ctx.calibration), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    finally:
        prepared.unlink(missing_ok=True)
    model = onnx.load(path)
    _set_onnx_metadata(model, ctx.meta)
    onnx.save(model, path)
    return path, f"onnxruntime.quantization static QDQ per-channel, MinMax on {len(ctx.calibration)} crops"


EXPORTERS: dict[str, Callable[[ExportContext, Format], tuple[Path, str]]] = {
    "onnx_fp32": export_onnx_fp32,
    "onnx_int8": export_onnx_int8,
}
REQUIRES = {"onnx_int8": "onnx_fp32"}


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    sidecar_path(path).unlink(missing_ok=True)


def run_export(ctx: ExportContext, fmt: Format) -> dict:
    """Export one format: a row with status, file, size, converter and seconds; never raises for converter errors."""
    row = {"format": fmt.name, "precision": fmt.precision, "runtime": fmt.runtime}
    needed = REQUIRES.get(fmt.name)
    if needed and needed not in ctx.done:
        return {**row, "status": "skipped", "error": f"needs {needed}, which did not export"}
    start = time.time()
    target = ctx.path(fmt)
    try:
        path, converter = EXPORTERS[fmt.name](ctx, fmt)
    except ImportError as exc:
        _remove(target)
        return {**row, "status": "failed", "error": f"converter not installed ({exc.name}): pip install 'facelm[{fmt.extra}]'"}
    except Exception as exc:
        _remove(target)
        log.error(f"{fmt.name}: failure {time.time() - start:.1f}s: {type(exc).__name__}: {exc}")
        return {**row, "status": "failed", "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    seconds = time.time() - start
    meta = finalise_meta(ctx.meta, path, fmt.name, fmt.precision, converter, fmt.runtime)
    meta["input"] = {**meta["input"], "layout": fmt.layout}
    write_sidecar(path, meta)
    ctx.done[fmt.name] = path
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
    log.info(f"{fmt.name}: success {seconds:.1f}s, saved as {path} ({size / 1e6:.2f} MB)")
    return {**row, "status": "ok", "file": path.name, "size_mb": size / 1e6, "converter": converter,
            "seconds": seconds, "sha256": meta["sha256"]}
