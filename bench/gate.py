"""CI regression gates for the released student's exports: accuracy per format on 300-W common, and latency as
ratios timed in the same run. Exits 1 with a readable diff when a gate fails.

    python bench/gate.py --models weights/export --candidate runs/export  # as CI runs it, DATA set
    python bench/gate.py --models weights/export --refresh  # rewrite the baseline (git diff it)

Accuracy: NME per format of the released exports (--models) and, with --candidate, of a fresh export of the same
checkpoint by the current code, against the baseline's, within each format's tolerance (facelm/formats.py). Every
format is gated on accuracy, Core ML included: its programs run through the reference executor
(facelm/coreml_reference.py), which checks the converted program; their latency is never gated, as that timing would
be torch's, not Core ML's.

Latency is never gated as a raw time. Each latency number is a ratio timed in interleaved rounds: the model timed
between two timings of its yardstick, and the median over rounds of model p10 / yardstick p10. The fast tail (p10)
rather than p50, because other processes inflate the slow runs. Two yardsticks:
- fresh export vs release (with --candidate): each fresh export against the released export of the same format, in
  the same runtime. Unchanged code gives 1.0 on any CPU, so this gate holds on every machine.
- release vs reference: each released export against a fixed reference workload (a MobileNetV2-like ONNX net built
  in memory; its int8 quantization for int8 models, its fp32 form for the rest; onnxruntime, one thread), compared with
  the ratio the baseline holds for this CPU model. These ratios repeat from run to run on one CPU model but not
  across models: between two 2-core Xeons they moved by 20-50%, as vector width and caches favour one runtime's
  kernels over another's. So the baseline keeps one set per CPU model, --refresh writes this machine's, and on a CPU
  model the baseline does not know this check is reported, not gated.
A format over its latency limit is timed once more and the lower ratio counts: a real slowdown fails both times.
Needs onnx + onnxruntime for the reference.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run by path: bench/ itself is sys.path[0]
    import standalone

    standalone.enable()

from facelm.bench.measure import (  # noqa: E402
    RuntimeMissing,
    cpu_name,
    load_faces,
    load_runtime,
    model_accuracy,
    model_input,
    time_calls,
)
from facelm.errors import UserError  # noqa: E402
from facelm.faces import EvalSet  # noqa: E402
from facelm.formats import ExportedModel, exported_models, get_format, tolerances  # noqa: E402  # noqa: E402
from facelm.inference import BatchFn  # noqa: E402
from facelm.paths import RELEASED_EXPORTS
from facelm.quiet import configure_output  # noqa: E402
from facelm.reports.tables import text_table  # noqa: E402
from facelm.runtimes import load_exported  # noqa: E402
from facelm.splits import common_test_paths  # noqa: E402

BASELINE = Path(__file__).resolve().parent / "baseline.json"
LATENCY_TOLERANCE = 0.15  # relative worsening of the latency ratio
LATENCY_PERCENTILE = 10  # per timed block: the fast tail, least disturbed by other processes
REFERENCE_VERSION = 2  # bump when the reference nets change: ratios against another reference are not comparable
REFERENCE = ("MobileNetV2-0.25-like net (17 inverted residual blocks, 8.4 M MACs), 1x3x112x112, onnxruntime, 1 thread; "
             "int8 models against its static int8 QDQ quantization, all others against its fp32 form")
REFERENCE_BLOCKS = ((1, 8, 1, 1), (6, 8, 2, 2), (6, 8, 3, 2), (6, 16, 4, 2), (6, 24, 3, 1), (6, 40, 3, 2), (6, 80, 1, 1))
ROUNDING = {"nme": 3, "fr10": 2, "auc10": 4, "latency_ratio": 3}


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm gate", add_help=add_help, description=__doc__.split("\n\n")[0])
    data = os.environ.get("DATA")
    p.add_argument("--models", type=Path, default=RELEASED_EXPORTS,
                   help="folder of the released student's exports (default: weights/export)")
    p.add_argument("--data", type=Path, nargs="+", default=common_test_paths(Path(data)) if data else None,
                   help="faces the baseline was measured on (default: 300-W common, $DATA/300w/testset and "
                        "$DATA/lfpw/testset)")
    p.add_argument("--candidate", type=Path, default=None,
                   help="a fresh export of the released checkpoint by the current code (`make export` writes "
                        "runs/export): its accuracy is gated too, and its latency against the release's")
    p.add_argument("--baseline", type=Path, default=BASELINE, help="baseline JSON (default: bench/baseline.json)")
    p.add_argument("--refresh", action="store_true", help="measure and rewrite the baseline instead of checking it")
    p.add_argument("--rounds", type=int, default=15, help="interleaved latency rounds; the median ratio is gated (default: 15)")
    p.add_argument("--runs", type=int, default=40, help="timed runs per model or reference per round (default: 40)")
    p.add_argument("--warmup", type=int, default=20, help="untimed runs of each before the rounds (default: 20)")
    p.add_argument("--tolerance", action="append", default=[], metavar="FORMAT=POINTS",
                   help="override the NME points a format may worsen by (default: its tolerance in facelm/formats.py)")
    p.add_argument("--latency-tolerance", type=float, default=LATENCY_TOLERANCE,
                   help=f"relative latency-ratio worsening allowed (default: {LATENCY_TOLERANCE})")
    return p


def reference_net() -> bytes:
    """The fp32 reference workload as ONNX bytes, built in memory with fixed seeded weights: a MobileNetV2-0.25-like
    net at 112 px (17 inverted residual blocks, 101 nodes, 8.4 M MACs), so that it shares the student's mix of
    small convolutions and per-node overhead."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, weights = [], [numpy_helper.from_array(np.float32(0), "zero"), numpy_helper.from_array(np.float32(6), "six")]

    def conv(x: str, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, relu6: bool = True) -> str:
        i = len(weights)
        weights.append(numpy_helper.from_array((rng.standard_normal((cout, cin // groups, kernel, kernel)) * 0.1)
                                               .astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], group=groups, strides=[stride] * 2,
                                      pads=[kernel // 2] * 4))
        if relu6:
            nodes.append(helper.make_node("Clip", [f"c{i}", "zero", "six"], [f"r{i}"]))
        return f"r{i}" if relu6 else f"c{i}"

    x, cin = conv("image", 3, 8, 3, 2), 8
    for expand, cout, repeats, first_stride in REFERENCE_BLOCKS:
        for j in range(repeats):
            stride, mid = first_stride if j == 0 else 1, cin * expand
            h = conv(conv(x, cin, mid) if expand > 1 else x, mid, mid, 3, stride, mid)
            h = conv(h, mid, cout, relu6=False)
            if stride == 1 and cin == cout:
                nodes.append(helper.make_node("Add", [x, h], [h + "+"]))
                h += "+"
            x, cin = h, cout
    weights.append(numpy_helper.from_array((rng.standard_normal((256, 204)) * 0.01).astype(np.float32), "fc"))
    nodes += [helper.make_node("GlobalAveragePool", [conv(x, cin, 256)], ["pool"]),
              helper.make_node("Flatten", ["pool"], ["flat"]), helper.make_node("MatMul", ["flat", "fc"], ["out"])]
    graph = helper.make_graph(nodes, "facelm_gate_reference",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 112, 112])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9).SerializeToString()


class _NoiseReader:
    """Calibration for the int8 reference: 8 seeded noise inputs, so the quantized net is the same every run."""

    def __init__(self):
        rng = np.random.default_rng(1)
        self.batches = iter([{"image": rng.standard_normal((1, 3, 112, 112)).astype(np.float32)} for _ in range(8)])

    def get_next(self):
        return next(self.batches, None)


def quantized(model: bytes) -> bytes:
    """Static int8 QDQ, per-channel, as the int8 export does it."""
    import logging
    import tempfile

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "reference.onnx", Path(folder) / "reference.int8.onnx"
        source.write_bytes(model)
        logging.disable(logging.WARNING)  # its advice to pre-process is for real models
        try:
            quantize_static(str(source), str(target), _NoiseReader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        finally:
            logging.disable(logging.NOTSET)
        return target.read_bytes()


@functools.cache
def reference_model(precision: str) -> bytes:
    """The reference net of one precision ('fp32' or 'int8') as ONNX bytes, built once per process."""
    return quantized(reference_net()) if precision == "int8" else reference_net()


Call = Callable[[], object]


def reference_calls(precisions: set[str]) -> dict[str, Call]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    feed = {"image": np.random.default_rng(0).standard_normal((1, 3, 112, 112)).astype(np.float32)}
    sessions = {p: ort.InferenceSession(reference_model(p), options, providers=["CPUExecutionProvider"]) for p in precisions}
    return {p: (lambda session=session: session.run(None, feed)) for p, session in sessions.items()}


def reference_precision(precision: str) -> str:
    """int8 models are timed against the int8 reference, all others (fp32, fp16, w8) against the fp32 one."""
    return "int8" if precision == "int8" else "fp32"


def fast_tail(call: Call, runs: int) -> float:
    return float(np.percentile(time_calls(call, 0, runs), LATENCY_PERCENTILE))


def latency_ratios(pairs: dict[str, tuple[Call, Call]], args: argparse.Namespace) -> dict[str, float]:
    """For each name -> (model, yardstick): median over rounds of model p10 / the mean of the yardstick's p10 just
    before and just after it."""
    for model, yardstick in pairs.values():
        time_calls(model, args.warmup, 1)
        time_calls(yardstick, args.warmup, 1)
    ratios = {name: [] for name in pairs}
    for _ in range(args.rounds):
        for name, (model, yardstick) in pairs.items():
            before, now, after = fast_tail(yardstick, args.runs), fast_tail(model, args.runs), fast_tail(yardstick, args.runs)
            ratios[name].append(now / ((before + after) / 2))
    return {name: float(np.median(values)) for name, values in ratios.items()}


def confirm_slow(ratios: dict[str, float], limits: dict[str, float], pairs: dict[str, tuple[Call, Call]],
                 args: argparse.Namespace, notes: list[str]) -> dict[str, float]:
    """Time every pair over its limit once more and keep the lower ratio: a real slowdown is over the limit both
    times, a burst of load from other processes rarely is."""
    slow = {name: pairs[name] for name, limit in limits.items() if ratios[name] > limit}
    if not slow:
        return ratios
    again = latency_ratios(slow, args)
    notes += [f"{name}: latency ratio {ratios[name]:.3f} over its limit {limits[name]:.3f}, timed again: {again[name]:.3f}; "
              "the lower one counts" for name in slow]
    return {**ratios, **{name: min(ratios[name], again[name]) for name in slow}}


def gated_ratios(pairs: dict[str, tuple[Call, Call]], limits: dict[str, float], args: argparse.Namespace,
                 notes: list[str]) -> dict[str, float]:
    """Latency ratios rounded for the report, formats over their limit timed twice."""
    ratios = confirm_slow(latency_ratios(pairs, args), limits, pairs, args, notes)
    return {name: round(ratio, ROUNDING["latency_ratio"]) for name, ratio in ratios.items()}


def untimed_runtime(path: Path) -> BatchFn:
    """The batch function of a format that is scored here but never timed (Core ML through its reference executor)."""
    try:
        return load_exported(path)[0]
    except UserError as exc:  # load_exported turns the runtime's ImportError into a UserError: that is a skip here
        if isinstance(exc.__context__, ImportError):
            raise RuntimeMissing(str(exc)) from None
        raise


def measured(models: list[ExportedModel], faces: EvalSet, folder: Path,
             notes: list[str]) -> tuple[dict[str, dict], dict[str, Call]]:
    """Per format: accuracy on `faces` (NME / FR@10 / AUC@10, rounded) and, unless its format is untimed, a batch-1
    call on one thread. Models whose runtime is not installed here are noted and left out."""
    rows, calls = {}, {}
    for model in models:
        name = model.meta["format"]
        if name in rows:
            raise UserError(f"{folder}: two {name} models ({rows[name]['file']}, {model.path.name}); keep one")
        untimed = get_format(name).untimed
        try:
            run = untimed_runtime(model.path) if untimed else load_runtime(model.path, 1)
        except RuntimeMissing as exc:
            notes.append(f"skipped {model.path}: {exc}")
            continue
        if not untimed:
            x = model_input(model.meta)
            calls[name] = lambda run=run, x=x: run(x)
        accuracy = model_accuracy(run, model.meta, faces)
        rows[name] = {"file": model.path.name, "precision": model.meta["precision"],
                      **{key: round(accuracy[key], digits) for key, digits in ROUNDING.items() if key in accuracy}}
    return rows, calls


@dataclass
class Measured:
    """One gate run: accuracy rows of the released exports and of the fresh ones (empty without --candidate);
    latency ratios of each release to the reference and of each fresh export to its release; the CPU they ran on."""
    released: dict[str, dict]
    fresh: dict[str, dict]
    vs_reference: dict[str, float]
    vs_release: dict[str, float]
    cpu: str


def accuracy_checks(name: str, base: dict, now: dict | None, label: str, nme_tol: dict[str, float],
                    rows: list[tuple], failures: list[str]) -> None:
    if now is None:
        failures.append(f"{name}: {label} in the baseline but not measured (runtime missing or model not exported)")
        rows.append((name, f"NME % ({label})", f"{base['nme']:.3f}", "missing", "-", "-", "FAIL"))
        return
    limit = nme_tol[name]
    delta = now["nme"] - base["nme"]
    bad = delta > limit
    rows.append((name, f"NME % ({label})", f"{base['nme']:.3f}", f"{now['nme']:.3f}", f"{delta:+.3f}", f"+{limit:.3f}",
                 "FAIL" if bad else "ok"))
    if bad:
        failures.append(f"{name}: NME of the {label} {now['nme']:.3f}% is {delta:+.3f} points from the baseline "
                        f"{base['nme']:.3f}% (limit +{limit:.3f} for {name})")
    for key, text, digits in (("fr10", "FR@10 %", 2), ("auc10", "AUC@10", 4)):
        rows.append((name, f"{text} ({label})", f"{base[key]:.{digits}f}", f"{now[key]:.{digits}f}",
                     f"{now[key] - base[key]:+.{digits}f}", "-", "info"))


def latency_check(name: str, label: str, base: float | None, now: float | None, latency_tol: float,
                  rows: list[tuple], failures: list[str]) -> None:
    """One latency row: gated against `base` when there is one, reported as info when there is none; a format that is
    never timed says so."""
    if get_format(name).untimed:
        rows.append((name, label, "-", "-", "-", "-", "not gated: never timed (see the note)"))
        return
    if now is None:
        return
    if base is None:
        rows.append((name, label, "-", f"{now:.3f}", "-", "-", "info"))
        return
    change = now / base - 1
    bad = change > latency_tol
    rows.append((name, label, f"{base:.3f}", f"{now:.3f}", f"{change:+.1%}", f"+{latency_tol:.0%}", "FAIL" if bad else "ok"))
    if bad:
        failures.append(f"{name}: {label} {now:.3f} is {change:+.1%} from {base:.3f} (limit +{latency_tol:.0%})")


def compare(baseline: dict, run: Measured, nme_tol: dict[str, float], latency_tol: float) -> tuple[list[tuple], list[str]]:
    """Diff rows (format, check, baseline, now, change, limit, result) and the failures, one line each."""
    rows, failures = [], []
    reference_base = baseline["latency_ratio_by_cpu"].get(run.cpu, {})
    for name, base in sorted(baseline["formats"].items()):
        accuracy_checks(name, base, run.released.get(name), "release", nme_tol, rows, failures)
        latency_check(name, "latency release/reference", reference_base.get(name), run.vs_reference.get(name),
                      latency_tol, rows, failures)
        if run.fresh or run.vs_release:
            accuracy_checks(name, base, run.fresh.get(name), "fresh export", nme_tol, rows, failures)
            latency_check(name, "latency fresh/release", 1.0, run.vs_release.get(name), latency_tol, rows, failures)
    for name in sorted((set(run.released) | set(run.fresh)) - set(baseline["formats"])):
        rows.append((name, "NME %", "-", "new", "-", "-", "FAIL"))
        failures.append(f"{name}: exported but not in the baseline, so nothing gates it; run `make gate-refresh` and "
                        "commit the baseline")
    return rows, failures


def read_baseline(path: Path) -> dict:
    try:
        baseline = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: cannot read the baseline ({exc}); restore it with git or write it with --refresh") from None
    version = baseline.get("reference", {}).get("version")
    if version != REFERENCE_VERSION or "latency_ratio_by_cpu" not in baseline:
        raise UserError(f"{path}: written by another version of the gate (reference v{version}, this gate times "
                        f"v{REFERENCE_VERSION} and keeps ratios per CPU); refresh the baseline with --refresh")
    return baseline


def checkpoints(models: list[ExportedModel]) -> list[str]:
    return sorted({m.meta["model"]["checkpoint_sha256"] for m in models})


def baseline_document(run: Measured, models: list[ExportedModel], faces: EvalSet, previous: dict | None) -> dict:
    """What --refresh writes: stable keys, rounded numbers, nothing that changes between identical runs. Latency ratios
    of other CPUs are kept while they belong to the same checkpoint and reference; this CPU's are replaced."""
    by_cpu = {}
    if previous is not None and previous["checkpoint_sha256"] == checkpoints(models):
        by_cpu = dict(previous["latency_ratio_by_cpu"])
    by_cpu[run.cpu] = run.vs_reference
    return {"checkpoint_sha256": checkpoints(models), "data": faces.label, "faces": len(faces.gt),
            "formats": run.released, "latency_ratio_by_cpu": by_cpu,
            "latency": "per CPU model: median over interleaved rounds of model p10 / reference p10, batch 1, 1 thread",
            "reference": {"version": REFERENCE_VERSION, "workload": REFERENCE},
            "refresh": "DATA=... python bench/gate.py --models weights/export --refresh"}


def previous_baseline(path: Path) -> dict | None:
    """The baseline --refresh replaces, when it is one this gate can keep ratios from."""
    try:
        return read_baseline(path)
    except UserError:
        return None


def fresh_models(args: argparse.Namespace, released: list[ExportedModel]) -> list[ExportedModel]:
    """The --candidate exports, which must come from the released checkpoint for the A/B to mean anything."""
    if args.candidate is None:
        return []
    if not args.candidate.is_dir():
        raise UserError(f"{args.candidate}: no fresh export there; run `make export` first (or leave out --candidate)")
    models = exported_models(args.candidate)
    if checkpoints(models) != checkpoints(released):
        raise UserError(f"{args.candidate}: exported from checkpoint {checkpoints(models)[0][:8]}, the release in "
                        f"{args.models} from {checkpoints(released)[0][:8]}; export the released student (`make export`)")
    return models


def measure(args: argparse.Namespace, released_models: list[ExportedModel], fresh_exports: list[ExportedModel], faces: EvalSet,
            baseline: dict | None, notes: list[str]) -> Measured:
    cpu = cpu_name()
    released, released_calls = measured(released_models, faces, args.models, notes)
    fresh, fresh_calls = measured(fresh_exports, faces, args.candidate, notes) if fresh_exports else ({}, {})
    references = reference_calls({reference_precision(row["precision"]) for row in released.values()})
    to_reference = {name: (call, references[reference_precision(released[name]["precision"])])
                    for name, call in released_calls.items()}
    reference_base = {} if baseline is None else baseline["latency_ratio_by_cpu"].get(cpu, {})
    if baseline is not None and not reference_base:
        known = ", ".join(sorted(baseline["latency_ratio_by_cpu"])) or "none"
        notes.append(f"no reference ratios for this CPU ({cpu}; the baseline has: {known}), so release/reference is "
                     "reported, not gated; `make gate-refresh` on this machine adds them")
    limits = {name: ratio * (1 + args.latency_tolerance) for name, ratio in reference_base.items() if name in to_reference}
    vs_reference = gated_ratios(to_reference, limits, args, notes)
    to_release = {name: (call, released_calls[name]) for name, call in fresh_calls.items() if name in released_calls}
    vs_release = gated_ratios(to_release, {name: 1 + args.latency_tolerance for name in to_release}, args, notes)
    return Measured(released, fresh, vs_reference, vs_release, cpu)


def main(args: argparse.Namespace) -> bool:
    """True when every gate passes (or the baseline was refreshed)."""
    if not args.data:
        data = os.environ.get("DATA")
        where = f"no 300w/testset or lfpw/testset under DATA={data}" if data else "DATA is not set"
        raise UserError(f"no faces: {where}; set DATA to the data root or pass --data DATA/300w/testset DATA/lfpw/testset")
    if min(args.rounds, args.runs) < 1:
        raise UserError("--rounds and --runs must be at least 1")
    nme_tol = tolerances(args.tolerance)
    baseline = None if args.refresh else read_baseline(args.baseline)
    models = exported_models(args.models)
    candidates = fresh_models(args, models)
    faces = load_faces(args.data, models[0].meta["scheme"]["name"])
    if baseline is not None and baseline["faces"] != len(faces.gt):
        raise UserError(f"{faces.label}: {len(faces.gt)} faces but the baseline was measured on {baseline['faces']} "
                        f"({baseline['data']}); pass those folders")
    notes = [f"{name}: accuracy gated, latency not: {fmt.untimed}" for name, fmt in
             sorted({m.meta["format"]: get_format(m.meta["format"]) for m in models}.items()) if fmt.untimed]
    run = measure(args, models, candidates, faces, baseline, notes)
    if baseline is not None and baseline["checkpoint_sha256"] != checkpoints(models):
        notes.append("these models come from another checkpoint than the baseline's; after a new release, refresh the "
                     "baseline in the same commit")
    print(f"CPU: {run.cpu}")
    for note in notes:
        print("- " + note)
    if args.refresh:
        document = baseline_document(run, models, faces, previous_baseline(args.baseline))
        args.baseline.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        print(text_table(("format", "file", "NME %", "FR@10 %", "AUC@10", "latency release/reference"),
                         [(n, r["file"], f"{r['nme']:.3f}", f"{r['fr10']:.2f}", f"{r['auc10']:.4f}",
                           f"{run.vs_reference[n]:.3f}" if n in run.vs_reference else "not timed")
                          for n, r in sorted(run.released.items())], "llrrrr"))
        print(f"wrote {args.baseline} (reference ratios for {len(document['latency_ratio_by_cpu'])} CPU model(s)); "
              "review the change with git diff")
        return True
    rows, failures = compare(baseline, run, nme_tol, args.latency_tolerance)
    print(text_table(("format", "check", "baseline", "now", "change", "limit", "result"), rows, "llrrrrl"))
    if failures:
        print(f"gate FAILED ({len(failures)}):\n" + "\n".join("  " + f for f in failures))
        return False
    gated = ["accuracy"] + (["latency release/reference"] if run.cpu in baseline["latency_ratio_by_cpu"] else []) + \
        (["latency fresh/release"] if run.vs_release else [])
    untimed = sorted(name for name in baseline["formats"] if get_format(name).untimed)
    print(f"gate passed: {len(baseline['formats'])} format(s) within tolerance of {args.baseline} "
          f"(gated: {', '.join(gated)})" + (f"; latency not gated for {', '.join(untimed)}" if untimed else ""))
    return True


def cli(argv: list[str] | None = None) -> int:
    try:
        return 0 if main(get_args_parser().parse_args(argv)) else 1
    except UserError as exc:
        print(f"gate: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    configure_output()  # third-party import noise held back, as every facelm command does
    sys.exit(cli())
