"""Run an exported model with its own runtime, from its file and sidecar alone. No torch here (bench/ uses it), except
the Core ML reference executor, which is imported only when a Core ML package is loaded."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from facelm.contract import read_sidecar
from facelm.errors import UserError
from facelm.inference import BatchFn
from facelm.quiet import first_call_native_noise_filtered


def onnxruntime_fn(path: Path, threads: int | None) -> BatchFn:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def litert_fn(path: Path, threads: int | None) -> BatchFn:
    """LiteRT interpreter on the `serving_default` signature; the models are batch 1, so items run one by one."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path), num_threads=threads or None).get_signature_runner("serving_default")
    return first_call_native_noise_filtered(
        lambda batch: np.stack([runner(image=item[None])["landmarks"][0] for item in batch]))


def ncnn_fn(path: Path, threads: int | None) -> BatchFn:
    """ncnn on the .param and the .bin beside it, one item per extractor (an ncnn Mat has no batch axis)."""
    import ncnn

    net = ncnn.Net()
    if threads:
        net.opt.num_threads = threads
    weights = path.with_name(path.name.removesuffix(".param") + ".bin")
    if net.load_param(str(path)) != 0 or net.load_model(str(weights)) != 0:
        raise ValueError(f"ncnn cannot read {path.name} with {weights.name}")

    def run_one(item: np.ndarray) -> np.ndarray:
        data = np.ascontiguousarray(item, dtype=np.float32)  # ncnn.Mat(data) wraps it without a copy: keep it alive
        extractor = net.create_extractor()
        extractor.input("image", ncnn.Mat(data))
        status, out = extractor.extract("landmarks")
        if status != 0:
            raise RuntimeError(f"ncnn extract failed ({status})")
        return np.array(out)

    return lambda batch: np.stack([run_one(item) for item in batch])


def coreml_reference_fn(path: Path, threads: int | None) -> BatchFn:
    from facelm.coreml_reference import load_reference

    return load_reference(path, threads)


@dataclass(frozen=True)
class Runtime:
    name: str  # as sidecars record it
    load: Callable[[Path, int | None], BatchFn]  # (model file, threads) -> batch function on NCHW normalised crops
    package: str  # what to install for it


ONNXRUNTIME = Runtime("onnxruntime", onnxruntime_fn, "onnxruntime")
LITERT = Runtime("LiteRT", litert_fn, "ai-edge-litert")
NCNN = Runtime("ncnn", ncnn_fn, "ncnn")
# no Core ML runtime off Apple: facelm/coreml_reference.py executes the saved program op by op in torch
COREML_REFERENCE = Runtime("CoreML (reference execution)", coreml_reference_fn, "coremltools and torch")
RUNTIMES = {runtime.name: runtime for runtime in (ONNXRUNTIME, LITERT, NCNN, COREML_REFERENCE)}


def load_exported(path: Path, threads: int | None = None) -> tuple[BatchFn, dict]:
    """A batch function taking NCHW normalised crops (as facelm.inference feeds them) and the model's sidecar."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: model file not found")
    meta = read_sidecar(path)
    if meta["runtime"] not in RUNTIMES:
        raise UserError(f"{path}: no runtime here for {meta['runtime']!r}; runtimes: {', '.join(RUNTIMES)}")
    runtime = RUNTIMES[meta["runtime"]]
    try:
        run = runtime.load(path, threads)
    except ImportError:
        raise UserError(f"{path}: runtime {runtime.package} is not installed; pip install 'facelm[export]'") from None
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{path}: {meta['runtime']} cannot load it ({type(exc).__name__}): corrupt or truncated file") from None
    if meta["input"]["layout"] == "NHWC":
        return (lambda batch: run(np.ascontiguousarray(batch.transpose(0, 2, 3, 1)))), meta
    return run, meta
