"""Run an exported model with its own runtime, from its file and sidecar alone. No torch here: bench/ uses it."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from facelm.contract import read_sidecar
from facelm.errors import UserError
from facelm.inference import BatchFn


def onnxruntime_fn(path: Path, threads: int | None) -> BatchFn:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


RUNTIMES: dict[str, tuple[Callable[[Path, int | None], BatchFn], str]] = {
    "onnxruntime": (onnxruntime_fn, "onnxruntime"),
}


def load_exported(path: Path, threads: int | None = None) -> tuple[BatchFn, dict]:
    """A batch function taking NCHW normalised crops (as facelm.inference feeds them) and the model's sidecar."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: model file not found")
    meta = read_sidecar(path)
    if meta["runtime"] not in RUNTIMES:
        raise UserError(f"{path}: no runtime here for {meta['runtime']!r}; runtimes: {', '.join(RUNTIMES)}")
    loader, package = RUNTIMES[meta["runtime"]]
    try:
        run = loader(path, threads)
    except ImportError:
        raise UserError(f"{path}: runtime {package} is not installed; pip install 'facelm[export]'") from None
    except Exception as exc:
        raise UserError(f"{path}: {meta['runtime']} cannot load it ({type(exc).__name__}): corrupt or truncated file") from None
    if meta["input"]["layout"] == "NHWC":
        return (lambda batch: run(np.ascontiguousarray(batch.transpose(0, 2, 3, 1)))), meta
    return run, meta
