"""`facelm pareto`: every student family as a point of 300-W common NME against its int8 TFLite latency (one thread,
torch-free) and its size, beside dlib's ERT and the teacher; the released default is picked from it.

    facelm pareto --data DATA    # after `facelm student-report` wrote docs/results/student_families.json

Each family's run is exported to int8 TFLite by `facelm export` (calibrated and verified on 300-W common like any
release) and timed in a fresh process, batch 1, one thread, through LiteRT, as the bench times it. Beside each p50 it
gives the ratio to the gate's int8 reference workload timed in the same rounds (bench/gate.py), so a slower machine
can be told from a slower model. dlib's point is its own pipeline on common (`docs/results/peer.json`) at its bench
latency given the box (`docs/results/bench.json`); the teacher's is PyTorch eager (`docs/results/model_stats.json`),
since teachers are not exported.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from facelm.errors import UserError
from facelm.formats import exported_models
from facelm.paths import DOCS, RELEASED_TEACHER, RESULTS, RUNS, shown
from facelm.runs import file_sha256, provenance, write_json

FORMAT = "tflite_int8"
LATENCY_ROUNDS = argparse.Namespace(rounds=15, runs=40, warmup=20)  # the gate's defaults


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm pareto", add_help=add_help, description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=os.environ.get("DATA"),
                   help="data root: calibration and verification faces of the exports (default: $DATA)")
    p.add_argument("--families", type=Path, default=RESULTS / "student_families.json",
                   help="the family report of `facelm student-report` (default: docs/results/student_families.json)")
    p.add_argument("--peer", type=Path, default=RESULTS / "peer.json", help="dlib and the teacher on common "
                   "(default: docs/results/peer.json)")
    p.add_argument("--bench", type=Path, default=RESULTS / "bench.json", help="dlib's latency (default: docs/results/bench.json)")
    p.add_argument("--model-stats", type=Path, default=RESULTS / "model_stats.json",
                   help="the teacher's eager latency and size (default: docs/results/model_stats.json)")
    p.add_argument("--exports", type=Path, default=RUNS / "pareto", help="int8 TFLite per family (default: runs/pareto)")
    p.add_argument("--runs", type=int, default=200, help="timed runs per family, batch 1 (default: 200)")
    p.add_argument("--figure", type=Path, default=DOCS / "figures" / "pareto.png", help="(default: docs/figures/pareto.png)")
    p.add_argument("--json", type=Path, default=RESULTS / "pareto.json", help="(default: docs/results/pareto.json)")
    return p


def read_json(path: Path, made_by: str) -> dict:
    if not path.is_file():
        raise UserError(f"{path}: not found; `{made_by}` writes it")
    return json.loads(path.read_text())


def int8_export(run: Path, out: Path, data: Path) -> Path:
    """The run's student as int8 TFLite, exported and verified by `facelm export`; an export of the same checkpoint
    already in `out` is kept."""
    from facelm.export.run import get_args_parser as export_parser
    from facelm.export.run import main as export

    checkpoint = run / "last.pt"
    if not checkpoint.is_file():
        raise UserError(f"{run}: no last.pt; the family report names a run folder that is gone")
    sha = file_sha256(checkpoint)
    if out.is_dir():
        done = [m.path for m in exported_models(out) if m.meta["format"] == FORMAT
                and m.meta["model"]["checkpoint_sha256"] == sha]
        if done:
            return done[0]
    export(export_parser().parse_args(["--checkpoint", str(checkpoint), "--out", str(out), "--data", str(data),
                                       "--formats", FORMAT]))
    return next(m.path for m in exported_models(out) if m.meta["format"] == FORMAT)


def timed(path: Path, runs: int) -> dict:
    """p50 at one thread in a fresh, torch-free process (the bench's worker), and the ratio to the gate's int8
    reference workload over interleaved rounds in this process."""
    from facelm.bench.gate import latency_ratios, reference_calls
    from facelm.bench.measure import load_runtime, model_input
    from facelm.bench.run import run_worker
    from facelm.contract import read_sidecar

    meta = read_sidecar(path)
    row = run_worker({"kind": "model", "path": str(path), "meta": meta, "threads": 1, "warmup": 20, "runs": runs,
                      "data": None, "scheme": meta["scheme"]["name"], "mirror": False})
    if "skipped" in row:
        raise UserError(f"{path.name}: {row['skipped']}")
    run, x = load_runtime(path, 1), model_input(meta)
    ratio = latency_ratios({"model": (lambda: run(x), reference_calls({"int8"})["int8"])}, LATENCY_ROUNDS)["model"]
    return {"p50_ms": row["p50_ms"], "reference_ratio": ratio, "size_mb": path.stat().st_size / 1e6}


def student_points(families: dict, exports: Path, data: Path, runs: int) -> list[dict]:
    """One point per trained family: its test (common) and validation NME, and its int8 TFLite timing and size."""
    points = []
    for row in families["rows"]:
        if not row.get("run"):
            continue
        if row.get("test_nme") is None:
            raise UserError(f"{row['run']}: no test NME in the family report; rerun `facelm student-report` on runs "
                            "made since the validation split")
        path = int8_export(Path(row["run"]), exports / Path(row["run"]).name, data)
        points.append({"kind": "student", "label": row["arch"], "run": row["run"], "file": shown(path),
                       "nme": row["test_nme"], "validation_nme": row["nme"], "params": row["params"],
                       "mflops": row["mflops"], "runtime": "LiteRT int8, 1 thread", **timed(path, runs)})
    if not points:
        raise UserError("the family report holds no trained family; train some (docs/student.md) and run "
                        "`facelm student-report` first")
    return points


def reference_points(peer: dict, bench: dict, stats: dict) -> list[dict]:
    """dlib (own detector, latency given the box) and the released teacher (PyTorch eager: teachers are not
    exported), whose arch and input size its release card gives."""
    dlib = peer["dlib"]
    dlib_ms = next(r["p50_ms"] for r in bench["rows"] if r["runtime"] == "dlib" and r["threads"] == 1)
    teacher = peer["models"][shown(RELEASED_TEACHER)]
    spec = read_json(RELEASED_TEACHER.with_suffix(".json"), "facelm release")["spec"]
    stat = next((r for r in stats["rows"] if r["model"] == spec["arch"] and r["input_size"] == spec["input_size"]
                 and r["head_type"] == spec["head"]), None)
    if stat is None:
        raise UserError(f"{spec['arch']} at {spec['input_size']} px ({spec['head']} head) is not in the model stats; "
                        "run `make model-stats`")
    return [{"kind": "dlib", "label": "dlib ERT", "nme": dlib["protocols"]["own detector"]["nme"], "p50_ms": dlib_ms,
             "size_mb": dlib["size_mb"], "runtime": "dlib, given the box"},
            {"kind": "teacher", "label": f"teacher {spec['arch']}", "nme": teacher["nme"], "p50_ms": stat["eager_p50_ms"],
             "size_mb": stat["fp32_mb"], "runtime": "PyTorch eager fp32, 1 thread"}]


def released_pick(points: list[dict]) -> dict | None:
    """The smallest student (int8 size) under dlib's NME on common, None when none is."""
    dlib = next(p for p in points if p["kind"] == "dlib")
    better = [p for p in points if p["kind"] == "student" and p["nme"] < dlib["nme"]]
    return min(better, key=lambda p: p["size_mb"]) if better else None


def plot_pareto(points: list[dict], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    styles = {"student": ("o", "tab:blue"), "dlib": ("s", "tab:red"), "teacher": ("D", "tab:gray")}
    dlib = next(p for p in points if p["kind"] == "dlib")
    for ax, key, label in ((axes[0], "p50_ms", "p50 latency, ms (log)"), (axes[1], "size_mb", "size, MB (log)")):
        for p in points:
            marker, colour = styles[p["kind"]]
            ax.scatter(p[key], p["nme"], marker=marker, color=colour, s=40, zorder=3)
            ax.annotate(p["label"], (p[key], p["nme"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.axhline(dlib["nme"], color="tab:red", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("NME % on 300-W common (554)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(args: argparse.Namespace) -> dict:
    if args.data is None:
        raise UserError("no data: set DATA or pass --data (the exports are calibrated and verified on its faces)")
    families = read_json(args.families, "facelm student-report")
    points = student_points(families, args.exports, Path(args.data), args.runs)
    points += reference_points(read_json(args.peer, "facelm peer"), read_json(args.bench, "facelm bench"),
                               read_json(args.model_stats, "facelm model-stats --time"))
    pick = released_pick(points)
    schedule = families["schedule"]
    title = (f"students: int8 TFLite, LiteRT, 1 thread; {schedule['epochs']} x {schedule['steps_per_epoch']} steps from "
             f"teacher {schedule['teacher_sha256'][:8]}; dlib: own detector, given the box; teacher: PyTorch eager")
    plot_pareto(points, args.figure, title)
    result = {"schedule": schedule, "points": points,
              "pick": {"label": pick["label"], "run": pick["run"], "rule": "smallest int8 TFLite under dlib's NME on "
                       "common"} if pick else None,
              "reference": "ratio: p10 of the model over p10 of the gate's int8 reference workload (bench/gate.py), "
                           "interleaved rounds", "figure": shown(args.figure), **provenance()}
    write_json(args.json, result)
    for p in sorted(points, key=lambda p: p["size_mb"]):
        ratio = f", {p['reference_ratio']:.2f}x reference" if "reference_ratio" in p else ""
        print(f"{p['label']:24s} NME {p['nme']:.3f}%  p50 {p['p50_ms']:.3f} ms{ratio}  {p['size_mb']:.2f} MB  ({p['runtime']})")
    print("pick: " + (f"{pick['label']} ({pick['run']})" if pick else "no student beats dlib on common"))
    print(f"wrote {args.figure} and {args.json}")
    return result
