"""One export function per format, all with the same signature: `export_<format>(ctx, fmt) -> (artefact, converter)`.

`run_export` times each one, logs size, writes the metadata sidecar (the exporters embed it where the format allows),
and turns a failure into a report row (removing anything half-written), so exporting every format always finishes.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from facelm.contract import artefact_files, finalise_meta, format_meta, sidecar_path, write_sidecar
from facelm.formats import Format
from facelm.models import LandmarkHead, SingleHead
from facelm.quiet import native_noise_filtered

ONNX_OPSET = 18
TFLITE_SIGNATURE = "serving_default"
COREML_TARGET = "iOS16"  # the oldest target with constexpr 8-bit weights; every ML Program op we use exists there
log = logging.getLogger("facelm.export")


@dataclass
class ExportContext:
    model: torch.nn.Module  # deploy_model of the head, eval, fp32, CPU: (B, 3, S, S) -> (B, K, 3)
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

    def embedded(self, fmt: Format) -> str:
        """The format's contract as embedded in the model (the sidecar adds converter, runtime and file hashes)."""
        return json.dumps(format_meta(self.meta, fmt), sort_keys=True)


class DeployModel(torch.nn.Module):
    """A SingleHead's function with the head's linear layer split in two, point offsets and confidence logits,
    concatenated, then the mean shape added last. Same outputs; but int8 quantizers now give offsets and logits
    separate scales (one scale spanning the logits costs pixels on every point), and the offsets' scale spans only
    their spread around the mean shape rather than the whole crop (a converter folds an earlier constant add into
    the linear layer's bias); the final concat and add are left float."""

    def __init__(self, single: SingleHead):
        super().__init__()
        head = single.net.heads[single.head]
        self.trunk, self.reduce, self.n_points = single.net.trunk, head.reduce, head.n_points
        mean = head.mean_shape.detach().clone()
        self.register_buffer("mean_shape", torch.cat([mean, torch.zeros(self.n_points, 1)], dim=-1))  # (K, 3), logit 0
        weight = head.fc.weight.detach().view(self.n_points, 3, -1)
        bias = head.fc.bias.detach().view(self.n_points, 3)
        self.points = torch.nn.Linear(weight.shape[-1], 2 * self.n_points)
        self.confidence = torch.nn.Linear(weight.shape[-1], self.n_points)
        with torch.no_grad():
            self.points.weight.copy_(weight[:, :2].reshape(2 * self.n_points, -1))
            self.points.bias.copy_(bias[:, :2].reshape(-1))
            self.confidence.weight.copy_(weight[:, 2])
            self.confidence.bias.copy_(bias[:, 2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.flatten(self.reduce(self.trunk(x)), 1)
        offsets = self.points(features).view(-1, self.n_points, 2)
        return torch.cat([offsets, self.confidence(features).view(-1, self.n_points, 1)], dim=-1) + self.mean_shape


def deploy_model(single: SingleHead) -> torch.nn.Module:
    """What the exporters convert: an FC head split by `DeployModel`; an integral head as it is, since the int8
    exports keep its soft-argmax read-out float (see `_onnx_float_tail`)."""
    return DeployModel(single) if isinstance(single.net.heads[single.head], LandmarkHead) else single


def _set_onnx_metadata(model, text: str) -> None:
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = "facelm", text


def export_onnx_fp32(ctx: ExportContext, fmt: Format) -> tuple[Path, str]:
    """torch.onnx (dynamo) at a fixed opset, dynamic batch, then onnxslim; the contract is in metadata_props `facelm`."""
    import onnx
    import onnxslim

    path = ctx.path(fmt)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.onnx.export(ctx.model, (ctx.sample,), dynamo=True, opset_version=ONNX_OPSET,
                                input_names=["image"], output_names=["landmarks"],
                                dynamic_shapes={"x": {0: batch}}, verbose=False)
    model = onnxslim.slim(program.model_proto)
    model.producer_name, model.producer_version = "facelm", ctx.meta["facelm_version"]
    _set_onnx_metadata(model, ctx.embedded(fmt))
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path, f"torch.onnx dynamo opset {ONNX_OPSET} + onnxslim {onnxslim.__version__}"


class _CalibrationReader:
    def __init__(self, crops: np.ndarray, batch: int = 16):
        self.batches = iter([{"image": crops[i: i + batch]} for i in range(0, len(crops), batch)])

    def get_next(self):
        return next(self.batches, None)


def _float_tail(kinds: list[str], inputs: list[list], outputs: list[list], graph_output, names: tuple[str, str, str]
                ) -> list[int]:
    """Indices of the ops int8 leaves float, in a graph given as each op's kind, inputs and outputs, with `names` its
    (concat, add, softmax) kinds: the op producing the graph output and a concat feeding it (DeployModel's mean-shape
    add; the integral head's concat of points and confidences) and, for an integral head, its soft-argmax read-out:
    the log-prior add feeding each softmax, the softmax and every op after it. An int8 softmax over a heatmap rounds
    most cells' weights to zero, and one scale cannot span the log-prior's range."""
    concat, add, softmax = names
    producer = {t: i for i, outs in enumerate(outputs) for t in outs}
    consumers: dict = {}
    for j, ins in enumerate(inputs):
        for t in ins:
            consumers.setdefault(t, []).append(j)

    def feeding(i: int, kind: str) -> list[int]:
        return [producer[t] for t in inputs[i] if t in producer and kinds[producer[t]] == kind]

    def downstream(i: int) -> list[int]:
        seen: dict[int, None] = {}
        queue = [j for t in outputs[i] for j in consumers.get(t, [])]
        while queue:
            j = queue.pop(0)
            if j not in seen:
                seen[j] = None
                queue += [k for t in outputs[j] for k in consumers.get(t, [])]
        return list(seen)

    last = producer[graph_output]
    tail = [last] + feeding(last, concat)
    for i in (i for i, kind in enumerate(kinds) if kind == softmax):
        tail += feeding(i, add) + [i] + downstream(i)
    return list(dict.fromkeys(tail))


def _onnx_float_tail(graph) -> list[str]:
    """Names of the nodes int8 leaves float (see `_float_tail`)."""
    nodes = list(graph.node)
    tail = _float_tail([n.op_type for n in nodes], [list(n.input) for n in nodes], [list(n.output) for n in nodes],
                       "landmarks", ("Concat", "Add", "Softmax"))
    return [nodes[i].name for i in tail]


def export_onnx_int8(ctx: ExportContext, fmt: Format) -> tuple[Path, str]:
    """Static int8, QDQ, per-channel weights, calibrated (MinMax) on real face crops of the training split; the nodes
    assembling the output (see `_onnx_float_tail`) stay float."""
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
                        calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=_onnx_float_tail(onnx.load(prepared).graph))
    finally:
        prepared.unlink(missing_ok=True)
    model = onnx.load(path)
    _set_onnx_metadata(model, ctx.embedded(fmt))
    onnx.save(model, path)
    return path, f"onnxruntime.quantization static QDQ per-channel, MinMax on {len(ctx.calibration)} crops"


class _NHWCInput(torch.nn.Module):
    """NHWC image in (the layout mobile camera buffers have), named `landmarks` out: the TFLite signature."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"landmarks": self.model(image.permute(0, 3, 1, 2))}


def _tflite_with_metadata(content: bytes, text: str) -> bytes:
    """The flatbuffer with `text` (the contract as JSON) as its metadata entry `facelm`, added or replaced. Buffers the
    quantizer stored after the flatbuffer (offset / size) are moved inside it, so any flatbuffer reader sees them."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    for buffer in model.buffers:
        if (buffer.offset or 0) > 1:
            buffer.data = np.frombuffer(content, np.uint8, buffer.size, buffer.offset)
            buffer.offset = buffer.size = 0
    entry = next((m for m in model.metadata or [] if m.name == b"facelm"), None)
    if entry is None:
        entry = schema.MetadataT()
        entry.name, entry.buffer = "facelm", len(model.buffers)
        model.buffers.append(schema.BufferT())
        model.metadata = (model.metadata or []) + [entry]
    model.buffers[entry.buffer].data = np.frombuffer(text.encode(), np.uint8)
    builder = flatbuffers.Builder(len(content) + len(text) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def export_tflite_fp32(ctx: ExportContext, fmt: Format) -> tuple[Path, str]:
    """litert-torch (torch.export -> StableHLO -> TFLite, no TensorFlow); NHWC input, contract in the metadata table."""
    path = ctx.path(fmt)
    sample = ctx.sample.permute(0, 2, 3, 1).contiguous()
    with native_noise_filtered():  # its C++ converter logs past Python: absl's preamble, oneDNN, op counts
        import litert_torch

        converted = litert_torch.signature(TFLITE_SIGNATURE, _NHWCInput(ctx.model).eval(), sample_kwargs={"image": sample})
        content = converted.convert().model_content()
    path.write_bytes(_tflite_with_metadata(content, ctx.embedded(fmt)))
    return path, f"litert-torch {litert_torch.__version__}, NHWC input"


def _global_min_max(quantizer, content: bytes, calibration: dict) -> dict:
    """Each tensor's min and max over all calibration crops. `Quantizer.calibrate` keeps a moving average (0.95) of
    each crop's min and max instead, so the ranges follow the last few dozen crops and clip the rest: on the student
    released 2026-12-04 that cost 0.11 to 0.16 NME points, depending on the crop count alone."""
    from ai_edge_quantizer import calibrator, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(quantizer.get_quantization_recipe())
    calib = calibrator.Calibrator(bytes(content), num_threads=1, qsv_update_func=qsv_utils.min_max_update)
    with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar takes no option to turn it off; errors still raise
        calib.calibrate(calibration, manager)
    return calib.get_model_qsvs()


def _quantize_tflite(quantizer, path: Path, meta_text: str, qsvs: dict | None = None) -> None:
    with contextlib.redirect_stderr(io.StringIO()):  # a tqdm bar its enable_progress_bar option does not reach
        result = quantizer.quantize(qsvs, enable_progress_report=False)
    path.write_bytes(_tflite_with_metadata(bytes(result.quantized_model), meta_text))


def export_tflite_fp16(ctx: ExportContext, fmt: Format) -> tuple[Path, str]:
    """The fp32 model's weights cast to fp16 (ai-edge-quantizer float casting); compute stays fp32 on CPU."""
    from ai_edge_quantizer import qtyping, quantizer
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    path = ctx.path(fmt)
    fp16 = quantizer.Quantizer(bytearray(ctx.done["tflite_fp32"].read_bytes()))
    fp16.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                                algorithm_key=AlgorithmName.FLOAT_CASTING)
    _quantize_tflite(fp16, path, ctx.embedded(fmt))
    return path, f"litert-torch + ai-edge-quantizer {version('ai-edge-quantizer')} fp16 weights"


def _tflite_float_tail(content: bytes) -> list[tuple[str, str]]:
    """(output tensor name, op) of the ops int8 leaves float (see `_float_tail`): the quantizer's recipe names ops by
    their output tensor."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    graph = model.subgraphs[0]
    codes = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    kinds = [codes[max(c.builtinCode, c.deprecatedBuiltinCode)]
             for c in (model.operatorCodes[op.opcodeIndex] for op in graph.operators)]
    tail = _float_tail(kinds, [list(op.inputs) for op in graph.operators], [list(op.outputs) for op in graph.operators],
                       graph.outputs[0], ("CONCATENATION", "ADD", "SOFTMAX"))
    return [(graph.tensors[graph.operators[i].outputs[0]].name.decode(), kinds[i]) for i in tail]


def export_tflite_int8(ctx: ExportContext, fmt: Format) -> tuple[Path, str]:
    """Full-integer int8 (weights per-channel, activations per-tensor, MinMax on real crops); graph input and output
    stay float32 with QUANTIZE / DEQUANTIZE inside, so it is fed exactly like the fp32 model. The ops assembling
    the output (see `_tflite_float_tail`) stay float."""
    from ai_edge_quantizer import qtyping, quantizer, recipe
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    path = ctx.path(fmt)
    content = ctx.done["tflite_fp32"].read_bytes()
    int8 = quantizer.Quantizer(bytearray(content), recipe.static_wi8_ai8())
    float_ops = [(".*", qtyping.TFLOperationName.INPUT), (".*", qtyping.TFLOperationName.OUTPUT)]
    # the recipe matches an op by its output tensors' names, each followed by ';'
    float_ops += [(f"^{re.escape(name)};$", getattr(qtyping.TFLOperationName, op))
                  for name, op in _tflite_float_tail(content)]
    for regex, op in float_ops:
        int8.update_quantization_recipe(regex=regex, operation_name=op, algorithm_key=AlgorithmName.NO_QUANTIZE)
    crops = np.ascontiguousarray(ctx.calibration.transpose(0, 2, 3, 1))
    qsvs = _global_min_max(int8, content, {TFLITE_SIGNATURE: [{"image": crop[None]} for crop in crops]})
    _quantize_tflite(int8, path, ctx.embedded(fmt), qsvs)
    return path, (f"litert-torch + ai-edge-quantizer {version('ai-edge-quantizer')} static int8, float I/O, "
                  f"MinMax on {len(crops)} crops")


def _rename_ncnn_blobs(param: str, names: dict[str, str]) -> str:
    """pnnx names the graph's blobs in0 / out0; give them the contract's names (whole tokens only)."""
    lines = param.splitlines()
    renamed = [" ".join(names.get(token, token) for token in line.split()) for line in lines[2:]]
    return "\n".join(lines[:2] + renamed) + "\n"


def export_ncnn_fp16(ctx: ExportContext, fmt: Format) -> tuple[Path, str]:
    """TorchScript trace -> pnnx -> NCNN .param (the artefact) + .bin (weights, fp16 storage) beside it. pnnx's own
    side files (pnnx graph, python, onnx) stay in a temporary folder."""
    import pnnx

    param, weights = artefact_files(ctx.path(fmt), fmt)
    size = ctx.meta["model"]["input_size"]
    with tempfile.TemporaryDirectory(prefix="facelm-pnnx-") as tmp:
        work = Path(tmp)
        torch.jit.trace(ctx.model, ctx.sample).save(str(work / "model.pt"))
        outputs = {"pnnxparam": "m.pnnx.param", "pnnxbin": "m.pnnx.bin", "pnnxpy": "m_pnnx.py",
                   "pnnxonnx": "m.pnnx.onnx", "ncnnparam": "m.ncnn.param", "ncnnbin": "m.ncnn.bin", "ncnnpy": "m_ncnn.py"}
        command = [pnnx.EXEC_PATH, str(work / "model.pt"), f"inputshape=[1,3,{size},{size}]f32", "fp16=1",
                   *(f"{key}={work / name}" for key, name in outputs.items())]
        done = subprocess.run(command, cwd=work, capture_output=True, text=True)
        if done.returncode != 0 or not (work / "m.ncnn.bin").exists():
            raise RuntimeError(f"pnnx exited with {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}")
        param.write_text(_rename_ncnn_blobs((work / "m.ncnn.param").read_text(), {"in0": "image", "out0": "landmarks"}))
        shutil.copyfile(work / "m.ncnn.bin", weights)
    return param, f"pnnx {version('pnnx')} (TorchScript trace), fp16 storage"


def coreml_program(model: torch.nn.Module, sample: torch.Tensor, precision: str):
    """An ML Program (MLModel) of a (1, 3, S, S) -> (1, K, 3) module, float32 input and output, compute in `precision`
    ("fp16" or "fp32"). torch.export is the front end: coremltools' TorchScript path fails on torch 2.13."""
    import coremltools as ct

    program = torch.export.export(model, (sample,)).run_decompositions({})
    compute = ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32
    return ct.convert(program, inputs=[ct.TensorType(name="image", shape=tuple(sample.shape), dtype=np.float32)],
                      outputs=[ct.TensorType(name="landmarks", dtype=np.float32)], convert_to="mlprogram",
                      compute_precision=compute, minimum_deployment_target=getattr(ct.target, COREML_TARGET))


def save_mlpackage(mlmodel, path: Path, meta_text: str) -> Path:
    """Save with the contract in user-defined metadata `facelm` and description fields, reproducibly: no conversion
    date, deterministic protobuf, manifest ids derived from item paths, no ExecuTorch debug-handle file."""
    meta = json.loads(meta_text)
    mlmodel.user_defined_metadata["facelm"] = meta_text
    mlmodel.short_description = (f"facelm {meta['scheme']['n_points']}-point face landmarks ({meta['model']['arch']}, "
                                 f"{meta['model']['input_size']} px, {meta['precision']})")
    mlmodel.author, mlmodel.version, mlmodel.license = "facelm", meta["facelm_version"], "non-commercial research only"
    mlmodel.input_description["image"] = f"{meta['input']['normalisation']}; {meta['crop']['rule']}"
    mlmodel.output_description["landmarks"] = f"{meta['output']['layout']}; {meta['output']['coordinates']}"
    mlmodel.save(str(path))
    (path / "executorch_debug_handle_mapping.json").unlink(missing_ok=True)
    spec_file = path / "Data" / "com.apple.CoreML" / "model.mlmodel"
    spec = type(mlmodel.get_spec())()
    spec.ParseFromString(spec_file.read_bytes())
    spec.description.metadata.userDefined.pop("com.github.apple.coremltools.conversion_date", None)
    spec_file.write_bytes(spec.SerializeToString(deterministic=True))
    _normalise_manifest(path / "Manifest.json")
    return path


def _normalise_manifest(manifest: Path) -> None:
    """coremltools names package items with random UUIDs; use UUIDs derived from each item's path instead, written
    the way Core ML's package reader rewrites the file on load (sorted keys), so loading never changes the hash."""
    data = json.loads(manifest.read_text())
    ids = {old: str(uuid.uuid5(uuid.NAMESPACE_URL, "facelm:" + item["path"])) for old, item in data["itemInfoEntries"].items()}
    data["itemInfoEntries"] = {ids[old]: item for old, item in data["itemInfoEntries"].items()}
    data["rootModelIdentifier"] = ids[data["rootModelIdentifier"]]
    manifest.write_text(json.dumps(data, indent=4, sort_keys=True) + "\n")


def export_coreml_fp16(ctx: ExportContext, fmt: Format) -> tuple[Path, str]:
    """ML Program, fp16 compute with float32 I/O; contract in user-defined metadata `facelm`."""
    import coremltools as ct

    path = save_mlpackage(coreml_program(ctx.model, ctx.sample, "fp16"), ctx.path(fmt), ctx.embedded(fmt))
    return path, f"coremltools {ct.__version__} (torch.export), ML Program {COREML_TARGET}, fp16 compute"


def export_coreml_w8(ctx: ExportContext, fmt: Format) -> tuple[Path, str]:
    """The fp16 program with 8-bit symmetric per-channel weights (constexpr_affine_dequantize), fp16 compute."""
    import coremltools as ct
    import coremltools.optimize.coreml as cto

    fp16 = ct.models.MLModel(str(ctx.done["coreml_fp16"]), skip_model_load=True)
    config = cto.OptimizationConfig(cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8",
                                                                granularity="per_channel"))
    path = save_mlpackage(cto.linear_quantize_weights(fp16, config), ctx.path(fmt), ctx.embedded(fmt))
    return path, f"coremltools {ct.__version__} linear_quantize_weights int8 per-channel on coreml_fp16"


def exporter(fmt: Format) -> Callable[[ExportContext, Format], tuple[Path, str]]:
    """The function the format's record names: (context, format) -> (artefact path, converter description)."""
    return globals()[fmt.exporter]


def _remove(path: Path, fmt: Format) -> None:
    for item in artefact_files(path, fmt):
        if item.is_dir():
            shutil.rmtree(item, ignore_errors=True)
        else:
            item.unlink(missing_ok=True)
    sidecar_path(path).unlink(missing_ok=True)


def artefact_size(path: Path, fmt: Format) -> int:
    files = [p for item in artefact_files(path, fmt) for p in (item.rglob("*") if item.is_dir() else [item])]
    return sum(p.stat().st_size for p in files if p.is_file())


def one_line(exc: Exception) -> str:
    """`Type: first line of the message`, for a report cell."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def run_export(ctx: ExportContext, fmt: Format) -> dict:
    """Export one format: a row with status, file, size, converter and seconds; never raises for converter errors."""
    row = {"format": fmt.name, "precision": fmt.precision, "runtime": fmt.runtime.name}
    if fmt.unavailable:
        log.warning(f"{fmt.name}: not available: {fmt.unavailable}")
        return {**row, "status": "not available", "error": fmt.unavailable}
    if fmt.derived_from and fmt.derived_from not in ctx.done:
        return {**row, "status": "skipped", "error": f"needs {fmt.derived_from}, which did not export"}
    start = time.time()
    target = ctx.path(fmt)
    _remove(target, fmt)
    try:
        path, converter = exporter(fmt)(ctx, fmt)
    except ImportError as exc:
        _remove(target, fmt)
        log.error(f"{fmt.name}: converter not installed ({exc.name})")
        return {**row, "status": "failed", "error": f"converter not installed ({exc.name}): pip install 'facelm[{fmt.extra}]'"}
    except Exception as exc:
        _remove(target, fmt)
        log.error(f"{fmt.name}: failure {time.time() - start:.1f}s: {type(exc).__name__}: {exc}")
        return {**row, "status": "failed", "error": one_line(exc)}
    seconds = time.time() - start
    meta = finalise_meta(format_meta(ctx.meta, fmt), path, fmt, converter)
    write_sidecar(path, meta)
    ctx.done[fmt.name] = path
    size = artefact_size(path, fmt)
    log.info(f"{fmt.name}: success {seconds:.1f}s, saved as {path} ({size / 1e6:.2f} MB)")
    return {**row, "status": "ok", "file": path.name, "size_mb": size / 1e6, "converter": converter,
            "seconds": seconds, "sha256": meta["sha256"]}
