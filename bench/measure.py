"""In-process measurements: find exported models, load them with their own runtime, time them at batch 1, score
them on annotated faces (facelm.faces.EvalSet, as every evaluation); the same for dlib's 68-point ERT (the peer).
numpy, opencv and the installed runtimes; no torch."""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np

from facelm.contract import read_sidecar
from facelm.detect import BLAZEFACE_MODELS, blazeface_model_file, make_detector, read_calibration
from facelm.errors import UserError
from facelm.faces import EvalSet
from facelm.inference import BatchFn
from facelm.labellers import dlib_own_pipeline
from facelm.metrics import SUMMARY_KEYS
from facelm.paths import RELEASED_CALIBRATION
from facelm.runtimes import COREML_REFERENCE, RUNTIMES, load_exported
from facelm.schemes import get_scheme

# the fitted HOG box-to-crop mapping (`make calibrate-detector`), inverted to put a landmark box in dlib's convention
DLIB_TIMING_IMAGE = 256  # dlib is timed on a fixed noise image with a 128 px box: its cost does not depend on pixels
DETECTOR_FRAME = (480, 640)  # height, width: face detectors are timed on one VGA frame


ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
             "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
             "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd44": "Cortex-X1",
             "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd48": "Cortex-X2", "0xd4d": "Cortex-A715",
             "0xd4e": "Cortex-X3", "0xd80": "Cortex-A520", "0xd81": "Cortex-A720", "0xd82": "Cortex-X4"}


class RuntimeMissing(Exception):
    """The model's runtime is not installed here: the model is skipped with a note, not an error."""


def arm_cores(cpuinfo: str) -> str | None:
    """'4x Cortex-A55 + 4x Cortex-A76' from /proc/cpuinfo on Arm, where there is no 'model name' line."""
    parts = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("CPU part")]
    counts = Counter(ARM_PARTS.get(part, f"Arm part {part}") for part in parts)
    return " + ".join(f"{n}x {name}" for name, n in counts.items()) or None


def cpu_name() -> str:
    """The CPU as the bench and the gate name it: /proc/cpuinfo's model name, or the Arm core mix where there is none."""
    from facelm.runs import machine

    try:
        return arm_cores(Path("/proc/cpuinfo").read_text()) or machine()["cpu"]
    except OSError:
        return machine()["cpu"]


def load_runtime(path: Path, threads: int) -> BatchFn:
    """The model's batch function; RuntimeMissing when its runtime is not installed or is no on-device runtime."""
    runtime = read_sidecar(path, check_hash=False)["runtime"]
    if runtime == COREML_REFERENCE.name:
        raise RuntimeMissing("Core ML runs only on Apple devices; the reference executor here runs it through torch, "
                             "so its timing would say nothing about Core ML")
    try:
        run, _ = load_exported(path, threads)
    except UserError as exc:  # load_exported turns the runtime's ImportError into a UserError: that is a skip here
        if isinstance(exc.__context__, ImportError):
            raise RuntimeMissing(f"runtime {runtime} is not installed here (pip install {RUNTIMES[runtime].package})") from None
        raise
    return run


def model_input(meta: dict) -> np.ndarray:
    """A fixed batch-1 input (seeded normal noise, the scale of normalised pixels): latency does not depend on it."""
    size = meta["model"]["input_size"]
    return np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)


def time_calls(call, warmup: int, runs: int) -> np.ndarray:
    """Milliseconds of each of `runs` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        call()
        times[i] = time.perf_counter() - start
    return times * 1e3


def latency_stats(ms: np.ndarray) -> dict:
    p50, p90 = np.percentile(ms, [50, 90])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "min_ms": float(ms.min())}


def check_faces(paths: list[Path], scheme_name: str) -> int:
    """Number of annotated faces in the folders (reads the annotations only), so a bad folder fails before any timing."""
    from facelm.annotations import load_annotations

    return sum(len(load_annotations(path, get_scheme(scheme_name))) for path in paths)


def load_faces(paths: list[Path], scheme_name: str) -> EvalSet:
    return EvalSet(paths, get_scheme(scheme_name))


def scores(report: dict) -> dict:
    """What the bench keeps of an evaluation report: NME, FR@10 and AUC@10, on each folder too."""
    return {k: report[k] for k in (*SUMMARY_KEYS, "parts") if k in report}


def model_accuracy(run: BatchFn, meta: dict, faces: EvalSet) -> dict:
    """NME / FR@10 / AUC@10 through the runtime, one face at a time (some formats have a fixed batch of 1), on crops
    taken from the ground-truth landmarks by the sidecar's crop rule."""
    if meta["scheme"]["name"] != faces.scheme.name:
        raise UserError(f"{meta['file']}: scheme {meta['scheme']['name']} but the faces are scheme {faces.scheme.name}")
    report = faces.evaluate(run, meta["model"]["input_size"], batch_size=1)[0]
    return {**scores(report), "box": "ground-truth landmark box, sidecar crop rule"}


def dlib_rect(box):
    import dlib

    return dlib.rectangle(*(int(round(v)) for v in box))


def dlib_timing_call(predictor):
    """A call of the predictor on a fixed noise image with a fixed box (timing only)."""
    size = DLIB_TIMING_IMAGE
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    rect = dlib_rect((size / 4, size / 4, 3 * size / 4, 3 * size / 4))
    return lambda: predictor(image, rect)


def detector_timing_call(name: str) -> tuple:
    """A call of the named face detector at one thread on a fixed noise frame (its cost hardly depends on the pixels:
    weighted NMS of a few faces adds well under 0.1 ms), and the detector's model file, size and runtime.
    RuntimeMissing when the detector's runtime or model file is not installed."""
    try:
        detector = make_detector(name, threads=1)
    except UserError as exc:
        raise RuntimeMissing(str(exc)) from None
    frame = np.random.default_rng(0).integers(0, 256, (*DETECTOR_FRAME, 3), dtype=np.uint8)
    if name in BLAZEFACE_MODELS:
        path = blazeface_model_file(BLAZEFACE_MODELS[name])
        info = {"file": path.name, "size_mb": path.stat().st_size / 1e6, "runtime": "LiteRT"}
    else:
        info = {"file": "(built into dlib)", "size_mb": None, "runtime": "dlib"}
    return lambda: detector(frame), info


def dlib_accuracy(predictor, faces: EvalSet) -> dict:
    if faces.scheme.name != "68":
        raise UserError(f"{faces.label}: dlib predicts 68 points, the faces are scheme {faces.scheme.name}")
    pred, box = dlib_own_pipeline(predictor, faces.images, faces.gt, read_calibration(RELEASED_CALIBRATION, "hog"))
    report = faces.scored(pred)
    return {**scores(report), "box": box}
