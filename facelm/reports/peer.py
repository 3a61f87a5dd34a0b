"""dlib's 68-point ERT beside our models on the same faces, under two protocols, so the comparison is fair both ways.

- `own detector`: dlib's pipeline as users run it, its HOG detector's box (the largest whose centre lies in the face's
  landmark box); faces it does not find get the second protocol's box, and the count is reported.
- `ground-truth box`: the landmark box mapped to dlib's box convention by the inverse of the HOG calibration fitted on
  training faces (`facelm calibrate-detector`), on every face: the counterpart of our ground-truth-landmark crops.

    facelm peer --data $DATA [--json runs/peer/peer.json]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from facelm.detect import BoxCalibration, read_calibration
from facelm.engine import model_batch_fn
from facelm.errors import UserError
from facelm.faces import EvalSet
from facelm.labellers import dlib_model_file, dlib_own_pipeline, dlib_points, dlib_predictor, dlib_version
from facelm.metrics import landmark_report
from facelm.paths import RELEASED_CALIBRATION, RELEASED_STUDENT, RELEASED_TEACHER, RUNS, shown
from facelm.runs import make_run_dir, provenance, write_json
from facelm.schemes import get_scheme
from facelm.splits import common_test_paths

PROTOCOLS = ("own detector", "ground-truth box")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm peer", add_help=add_help,
                                description="dlib's 68-point ERT beside our models, under two box protocols.")
    data = os.environ.get("DATA")
    p.add_argument("--data", type=Path, default=Path(data) if data else None,
                   help="data root holding 300w/testset and lfpw/testset (default: $DATA)")
    p.add_argument("--models", type=Path, nargs="*", default=[RELEASED_TEACHER, RELEASED_STUDENT],
                   help="our models, on ground-truth landmark crops (default: the released teacher and student)")
    p.add_argument("--calibration", type=Path, default=RELEASED_CALIBRATION,
                   help=f"the fitted HOG box calibration (default: {shown(RELEASED_CALIBRATION)})")
    p.add_argument("--json", type=Path, default=None,
                   help="report to write; `make peer` passes docs/results/peer.json (default: runs/peer/<time>-peer/peer.json)")
    return p


def dlib_under_protocol(faces: EvalSet, hog: BoxCalibration, protocol: str) -> tuple[np.ndarray, str]:
    """dlib's points (N, 68, 2) under one protocol, and a note saying which boxes it had."""
    predictor = dlib_predictor()  # first: a missing dlib is one line saying which extra to install
    if protocol == "own detector":
        return dlib_own_pipeline(predictor, faces.images, faces.gt, hog)
    boxes = [hog.detector_box(points) for points in faces.gt]
    return (np.stack([dlib_points(predictor, image, box, 1) for image, box in zip(faces.images, boxes)]),
            "ground-truth landmark box mapped to dlib's box convention (inverse HOG calibration)")


def dlib_under_protocols(faces: EvalSet, hog: BoxCalibration) -> dict[str, dict]:
    """dlib's points under each protocol, scored like our models: {protocol: report with a `box` note}."""
    reports = {}
    for protocol in PROTOCOLS:
        pred, note = dlib_under_protocol(faces, hog, protocol)
        reports[protocol] = scored(faces, pred) | {"box": note}
    return reports


def scored(faces: EvalSet, pred: np.ndarray) -> dict:
    report = landmark_report(pred, faces.gt, faces.scheme)
    report["parts"] = faces.parts_report(pred, np.ones(pred.shape[:2], np.float32))
    return {k: v for k, v in report.items() if k not in ("per_image_nme", "spearman_conf_error")}


def our_model(path: Path, faces: EvalSet) -> dict:
    run, head, _, size, runtime = model_batch_fn(path, None)
    report, _, _ = faces.evaluate(run, size)
    return {k: v for k, v in report.items() if k != "per_image_nme"} | {"head": head, "runtime": runtime,
                                                                          "box": "ground-truth landmark box"}


def main(args: argparse.Namespace) -> dict:
    if args.data is None:
        raise UserError("no data root: pass --data DIR or set DATA (the folder holding 300w/testset and lfpw/testset)")
    paths = common_test_paths(args.data)
    if not paths:
        raise UserError(f"{args.data}: no 300w/testset or lfpw/testset under this data root")
    faces = EvalSet(paths, get_scheme("68"))
    hog = read_calibration(args.calibration, "hog")
    report = {"data": faces.label, "n": len(faces.samples),
              "dlib": {"model": dlib_model_file().name, "version": dlib_version(),
                       "size_mb": dlib_model_file().stat().st_size / 1e6,
                       "protocols": dlib_under_protocols(faces, hog)},
              "models": {shown(path): our_model(path, faces) for path in args.models}, **provenance()}
    args.json = args.json or make_run_dir(RUNS / "peer", "peer") / "peer.json"
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, report)
    args.json.with_suffix(".md").write_text(peer_markdown(report))
    print(peer_markdown(report))
    print(f"-> {args.json}")
    return report


def peer_markdown(report: dict) -> str:
    parts = list(next(iter(report["dlib"]["protocols"].values()))["parts"])
    lines = [f"On `{report['data']}` ({report['n']} faces). NME %, inter-ocular.", "",
             "| model | box | " + " | ".join(parts) + " | common | FR@10 % | AUC@10 |",
             "|---|---|" + "---|" * (len(parts) + 3)]
    rows = [(f"dlib ERT 68 ({report['dlib']['size_mb']:.1f} MB)", protocol, r)
            for protocol, r in report["dlib"]["protocols"].items()]
    rows += [(Path(name).stem, "ground-truth landmark box", r) for name, r in report["models"].items()]
    for name, box, r in rows:
        lines.append(f"| {name} | {box} | " + " | ".join(f"{r['parts'][p]['nme']:.3f}" for p in parts)
                     + f" | {r['nme']:.3f} | {r['fr10']:.2f} | {r['auc10']:.4f} |")
    return "\n".join(lines) + "\n"
