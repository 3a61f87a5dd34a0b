"""Reference execution of a Core ML ML Program, op by op in torch: there is no Core ML runtime off Apple platforms.

The program is read as Core ML reads it: the package's spec (`mlProgram`) and its weight blobs. Every value is kept in
the dtype the program declares, so an fp16 program stores fp16 activations (each op computes in fp32, then rounds its
result); constexpr 8-bit weights are dequantized as declared. Only the ops our students convert to are implemented;
loading a program with any other op is an error naming it. Results are labelled "CoreML (reference execution)": they
check the converted program, not Apple's kernels.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from facelm.errors import UserError
from facelm.inference import BatchFn

_BLOB_SENTINEL = 0xDEADBEEF
_CASTS = {"fp16": torch.float16, "fp32": torch.float32, "int32": torch.int32, "bool": torch.bool}


def _dtypes() -> dict[int, tuple[np.dtype, torch.dtype]]:
    from coremltools.proto import MIL_pb2 as mil

    return {mil.FLOAT16: (np.float16, torch.float16), mil.FLOAT32: (np.float32, torch.float32),
            mil.INT8: (np.int8, torch.int8), mil.UINT8: (np.uint8, torch.uint8), mil.INT32: (np.int32, torch.int32),
            mil.INT64: (np.int64, torch.int64), mil.BOOL: (np.bool_, torch.bool)}


class _Args:
    """An op's inputs (and, for constexpr ops, attributes) by parameter name."""

    def __init__(self, values: dict[str, list]):
        self.values = values

    def __getitem__(self, name: str):
        return self.values[name][0]

    def get(self, name: str, default=None):
        return self.values[name][0] if name in self.values else default

    def ints(self, name: str) -> list[int]:
        return [int(v) for v in self[name].reshape(-1).tolist()]

    def all(self, name: str) -> list:
        return self.values[name]


def _f32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.is_floating_point() else x


def _padding(args: _Args, spatial: int) -> list[int]:
    """F.pad order (last axis first) from MIL's [before, after] per spatial axis; only explicit padding is supported."""
    kind = args.get("pad_type", "valid")
    if kind == "valid":
        return [0] * (2 * spatial)
    if kind != "custom":
        raise UserError(f"Core ML pad_type {kind!r} is not implemented by the reference executor")
    pad = args.ints("pad")
    return [p for axis in reversed(range(spatial)) for p in pad[2 * axis: 2 * axis + 2]]


def _conv(a: _Args) -> torch.Tensor:
    x, weight = _f32(a["x"]), _f32(a["weight"])
    bias = _f32(a["bias"]) if a.get("bias") is not None else None
    spatial = weight.dim() - 2
    conv = F.conv2d if spatial == 2 else F.conv1d
    return conv(F.pad(x, _padding(a, spatial)), weight, bias, a.ints("strides"), 0, a.ints("dilations"), int(a["groups"]))


def _max_pool(a: _Args) -> torch.Tensor:
    x = F.pad(_f32(a["x"]), _padding(a, 2), value=float("-inf"))
    return F.max_pool2d(x, a.ints("kernel_sizes"), a.ints("strides"), ceil_mode=bool(a["ceil_mode"]))


def _linear(a: _Args) -> torch.Tensor:
    bias = _f32(a["bias"]) if a.get("bias") is not None else None
    return F.linear(_f32(a["x"]), _f32(a["weight"]), bias)


def _slice_by_index(a: _Args) -> torch.Tensor:
    x = a["x"]
    begin, end = a.ints("begin"), a.ints("end")
    stride = a.ints("stride") if a.get("stride") is not None else [1] * x.dim()
    masks = {m: a.ints(m) if a.get(m) is not None else [0] * x.dim() for m in ("begin_mask", "end_mask", "squeeze_mask")}
    index = []
    for axis in range(x.dim()):
        if masks["squeeze_mask"][axis]:
            index.append(begin[axis])
            continue
        start = None if masks["begin_mask"][axis] else begin[axis]
        stop = None if masks["end_mask"][axis] else end[axis]
        index.append(slice(start, stop, stride[axis]))
    return x[tuple(index)]


def _concat(a: _Args) -> torch.Tensor:
    values, axis = a.all("values"), int(a["axis"])
    if not bool(a.get("interleave", False)):
        return torch.cat(values, axis)
    axis = axis % values[0].dim()
    stacked = torch.stack(values, axis + 1)  # interleave: v0[0], v1[0], ..., v0[1], v1[1], ...
    return stacked.flatten(axis, axis + 1)


def _split(a: _Args) -> list[torch.Tensor]:
    x, axis = a["x"], int(a["axis"])
    if a.get("split_sizes") is not None:
        return list(torch.split(x, a.ints("split_sizes"), axis))
    return list(torch.chunk(x, int(a["num_splits"]), axis))


def _affine_dequantize(a: _Args) -> torch.Tensor:
    """iOS 16 constexpr: (quantized - zero_point) * scale, per tensor or per channel along `axis`."""
    data = a["quantized_data"].float()
    shape = [1] * data.dim()
    axis = int(a["axis"]) % data.dim()

    def along(v: torch.Tensor) -> torch.Tensor:
        v = v.float()
        if v.numel() == 1:
            return v.reshape([])
        shape[axis] = -1
        return v.reshape(shape)

    return (data - along(a["zero_point"])) * along(a["scale"])


def _upsample_nearest(a: _Args) -> torch.Tensor:
    scale = (float(a["scale_factor_height"]), float(a["scale_factor_width"]))
    return F.interpolate(_f32(a["x"]), scale_factor=scale, mode="nearest")


_KERNELS: dict[str, Callable[[_Args], torch.Tensor | list[torch.Tensor]]] = {
    "conv": _conv,
    "linear": _linear,
    "max_pool": _max_pool,
    "relu": lambda a: F.relu(_f32(a["x"])),
    "clip": lambda a: torch.clamp(_f32(a["x"]), float(a["alpha"]), float(a["beta"])),
    "sigmoid_hard": lambda a: torch.clamp(float(a["alpha"]) * _f32(a["x"]) + float(a["beta"]), 0.0, 1.0),
    "thresholded_relu": lambda a: torch.where(_f32(a["x"]) > float(a["alpha"]), _f32(a["x"]), 0.0),
    "add": lambda a: _f32(a["x"]) + _f32(a["y"]),
    "sub": lambda a: _f32(a["x"]) - _f32(a["y"]),
    "mul": lambda a: _f32(a["x"]) * _f32(a["y"]),
    "real_div": lambda a: _f32(a["x"]) / _f32(a["y"]),
    "reduce_mean": lambda a: _f32(a["x"]).mean(a.ints("axes"), keepdim=bool(a.get("keep_dims", False))),
    "reduce_sum": lambda a: _f32(a["x"]).sum(a.ints("axes"), keepdim=bool(a.get("keep_dims", False))),
    "softmax": lambda a: torch.softmax(_f32(a["x"]), int(a["axis"])),
    "upsample_nearest_neighbor": _upsample_nearest,
    "reshape": lambda a: a["x"].reshape(a.ints("shape")),
    "transpose": lambda a: a["x"].permute(a.ints("perm")),
    "slice_by_index": _slice_by_index,
    "concat": _concat,
    "split": _split,
    "cast": lambda a: a["x"].to(_CASTS[a["dtype"]]),
    "constexpr_affine_dequantize": _affine_dequantize,
}


class MLProgram:
    """A saved .mlpackage's main function, ready to run one (1, 3, S, S) input at a time."""

    def __init__(self, package: Path):
        import coremltools as ct

        model = ct.models.MLModel(str(package), skip_model_load=True)
        spec = model.get_spec()
        if not spec.HasField("mlProgram"):
            raise UserError(f"{package}: not an ML Program; the reference executor runs ML Programs only")
        self.model_dir = Path(model.weights_dir).parent  # what "@model_path" means in blob file names
        self.dtypes = _dtypes()
        self.blobs: dict[str, bytes] = {}
        function = spec.mlProgram.functions["main"]
        block = function.block_specializations[function.opset]
        unknown = sorted({op.type for op in block.operations} - set(_KERNELS) - {"const"})
        if unknown:
            raise UserError(f"{package}: Core ML op(s) {', '.join(unknown)} not implemented by the reference executor")
        self.inputs = {i.name: i.type.tensorType for i in function.inputs}
        self.outputs = list(block.outputs)
        self.constants: dict[str, object] = {}
        self.ops = []
        for op in block.operations:
            if op.type == "const":
                self.constants[op.outputs[0].name] = self._value(op.attributes["val"])
            elif op.type.startswith("constexpr_"):  # weights: computed once, like Core ML does at load
                attributes = _Args({k: [self._value(v)] for k, v in op.attributes.items() if k != "name"})
                self.constants[op.outputs[0].name] = self._typed(_KERNELS[op.type](attributes), op.outputs[0].type)
            else:
                self.ops.append((op.type, self._bindings(op), list(op.outputs)))

    def _value(self, value):
        """A const value: a tensor in its declared dtype (from the spec or a weight blob), or a Python string."""
        tensor_type = value.type.tensorType
        shape = [d.constant.size for d in tensor_type.dimensions]
        if value.HasField("blobFileValue"):
            array = self._blob(value.blobFileValue.fileName, value.blobFileValue.offset, tensor_type.dataType)
            return torch.from_numpy(array.reshape(shape).copy())
        literal = value.immediateValue.tensor
        kind = literal.WhichOneof("value")
        if kind == "strings":
            return literal.strings.values[0] if not shape else list(literal.strings.values)
        numpy_dtype, _ = self.dtypes[tensor_type.dataType]
        if kind == "bytes":
            array = np.frombuffer(literal.bytes.values, numpy_dtype)
        else:
            array = np.asarray(getattr(literal, kind).values, numpy_dtype)
        return torch.from_numpy(array.reshape(shape).copy())

    def _blob(self, file_name: str, offset: int, data_type: int) -> np.ndarray:
        """MIL blob storage: at `offset` a 64-byte header (sentinel, dtype, size, data offset), then the data."""
        if file_name not in self.blobs:
            self.blobs[file_name] = (self.model_dir / file_name.replace("@model_path/", "")).read_bytes()
        data = self.blobs[file_name]
        sentinel = int(np.frombuffer(data, np.uint32, 1, offset)[0])
        size, start = (int(v) for v in np.frombuffer(data, np.uint64, 2, offset + 8))
        if sentinel != _BLOB_SENTINEL:
            raise ValueError(f"{file_name}: no blob at offset {offset}")
        numpy_dtype, _ = self.dtypes[data_type]
        return np.frombuffer(data, numpy_dtype, size // np.dtype(numpy_dtype).itemsize, start)

    def _typed(self, value: torch.Tensor, value_type) -> torch.Tensor:
        """Round a result to the dtype the program declares for it (fp16 storage in an fp16 program)."""
        if not value_type.HasField("tensorType"):
            return value
        return value.to(self.dtypes[value_type.tensorType.dataType][1])

    def _bindings(self, op) -> dict[str, list[tuple[str, object]]]:
        """Each input's arguments as ("name", value name) or ("value", literal), literals parsed once."""
        return {name: [("name", b.name) if b.WhichOneof("binding") == "name" else ("value", self._value(b.value))
                       for b in argument.arguments] for name, argument in op.inputs.items()}

    def __call__(self, item: np.ndarray) -> np.ndarray:
        env = dict(self.constants)
        for name, tensor_type in self.inputs.items():
            env[name] = torch.from_numpy(np.ascontiguousarray(item)).reshape(
                [d.constant.size for d in tensor_type.dimensions]).to(self.dtypes[tensor_type.dataType][1])
        for op_type, bindings, outputs in self.ops:
            args = _Args({name: [env[ref] if kind == "name" else ref for kind, ref in refs] for name, refs in bindings.items()})
            results = _KERNELS[op_type](args)
            results = results if isinstance(results, list) else [results]
            for output, result in zip(outputs, results):
                env[output.name] = self._typed(result, output.type)
        return env[self.outputs[0]].float().numpy()


def load_reference(path: Path, threads: int | None = None) -> BatchFn:
    """A batch function (N, 3, S, S) -> (N, K, 3) running the package's program item by item."""
    if threads:
        torch.set_num_threads(threads)
    program = MLProgram(Path(path))

    @torch.no_grad()
    def run(batch: np.ndarray) -> np.ndarray:
        return np.concatenate([program(item[None]) for item in batch])

    return run
