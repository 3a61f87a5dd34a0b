"""Fit the detector-box-to-crop calibration on a training split and measure what it costs on the test split.

    facelm calibrate-detector --data $DATA [--model weights/student_mobilenetv2_035.pt]

Writes `weights/detector_calibration.json` (what `facelm predict` and `facelm track` read) and
`docs/results/detector.json` + `.md`: on the test faces the detector finds, NME with ground-truth crops, with the
uncalibrated and the calibrated detector crop, and with the calibrated crop refined once from the first pass's
landmarks.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from facelm.annotations import load_annotations
from facelm.dataset import decode_all
from facelm.detect import (
    DETECTOR_NAME,
    RELEASED_CALIBRATION,
    BoxCalibration,
    FaceDetector,
    face_in_box,
    fit_calibration,
    write_calibration,
)
from facelm.errors import UserError
from facelm.landmarker import Landmarker, load_landmarker
from facelm.metrics import landmark_report
from facelm.runs import file_sha256, provenance, write_json
from facelm.schemes import get_scheme
from facelm.stage import RELEASED_STUDENT
from facelm.tracking import face_and_shifted_confidences, fitted_loss_confidence


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm calibrate-detector", add_help=add_help)
    p.add_argument("--data", type=Path, default=os.environ.get("DATA"), help="data root (default: $DATA)")
    p.add_argument("--fit-split", default="300w/trainset", help="split the mapping is fitted on (default: 300w/trainset)")
    p.add_argument("--test-split", default="300w/testset", help="split it is measured on (default: 300w/testset)")
    p.add_argument("--model", type=Path, default=RELEASED_STUDENT, help=f"model measured (default: {RELEASED_STUDENT})")
    p.add_argument("--out", type=Path, default=RELEASED_CALIBRATION, help=f"calibration file (default: {RELEASED_CALIBRATION})")
    p.add_argument("--report", type=Path, default=Path("docs/results/detector.json"),
                   help="report, with a .md table beside it (default: docs/results/detector.json)")
    return p


def detected_faces(folder: Path, detector: FaceDetector, limit: int | None = None
                   ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, list[str], int]:
    """Images, ground truth (N, K, 2) and detector boxes (N, 4) of the faces the detector finds, their names, and
    how many faces the folder (or its first `limit`) has."""
    samples = load_annotations(folder, get_scheme("68"))[:limit]
    images = decode_all([s.image for s in samples])
    kept_images, gts, boxes, names = [], [], [], []
    for sample, image in zip(samples, images):
        found, _ = detector(image)
        index = face_in_box(found, sample.points) if len(found) else None
        if index is not None:
            kept_images.append(image)
            gts.append(sample.points)
            boxes.append(found[index])
            names.append(sample.image.name)
    if not names:
        raise UserError(f"{folder}: the detector found none of the {len(samples)} faces; is this a face folder?")
    return kept_images, np.stack(gts), np.stack(boxes), names, len(samples)


def landmarks_from_detections(landmarker: Landmarker, images: list[np.ndarray], boxes: np.ndarray, calibration,
                              refine: int) -> np.ndarray:
    """(N, K, 2) landmarks from calibrated detector crops, each re-cropped `refine` times on its own landmarks."""
    return np.stack([landmarker.from_detection(image, box, calibration, refine)[0] for image, box in zip(images, boxes)])


def track_loss_fit(landmarker: Landmarker, images: list[np.ndarray], landmarks: np.ndarray) -> dict:
    """The tracker's loss-of-track threshold for this model, with the confidences it was fitted from."""
    on_face, shifted = face_and_shifted_confidences(landmarker, images, landmarks)
    return {"loss_confidence": fitted_loss_confidence(on_face, shifted), "model": str(landmarker.path),
            "checkpoint_sha256": landmarker.checkpoint_sha256, "faces": len(on_face),
            "on_face_p1": float(np.percentile(on_face, 1)), "on_face_p99": float(np.percentile(on_face, 99)),
            "half_face_shift_median": float(np.median(shifted)),
            "rule": "halfway between on_face_p1 (eval crops from the labels) and half_face_shift_median (the same "
                    "crops shifted sideways by half the landmark box side); mean confidence over the points"}


def markdown(report: dict) -> str:
    rows = [f"| {name} | {r['nme']:.3f} | {r['fr10']:.2f} | {r['auc10']:.4f} |" for name, r in report["crops"].items()]
    return "\n".join([
        f"Detector-box vs ground-truth-box crops on `{report['test_split']}`: {report['model']}, the "
        f"{report['detected']} of {report['faces']} faces the detector finds.", "",
        "| crop | NME % | FR@10 % | AUC@10 |", "|---|---|---|---|", *rows, ""])


def main(args: argparse.Namespace) -> dict:
    if args.data is None:
        raise UserError("no data: set DATA=/path/to/data (e.g. DATA=../shared/data) or pass --data")
    detector = FaceDetector()
    start = time.time()
    landmarker = load_landmarker(args.model)
    fit_images, fit_gt, fit_boxes, _, fit_total = detected_faces(Path(args.data) / args.fit_split, detector)
    calibration = fit_calibration(fit_boxes, fit_gt)
    track_loss = track_loss_fit(landmarker, fit_images, fit_gt)
    write_calibration(args.out, calibration, {
        "fitted_on": args.fit_split, "faces": fit_total, "detected": len(fit_gt),
        "rule": "landmark box centre = detector centre + (dx, dy) * s; side = scale * s; s = detector box side",
        "track_loss": track_loss, **provenance()})
    print(f"calibration from {len(fit_gt)}/{fit_total} faces of {args.fit_split}: {asdict(calibration)}; track lost "
          f"below mean confidence {track_loss['loss_confidence']:.3f} for {args.model} -> {args.out}")

    images, gt, boxes, names, total = detected_faces(Path(args.data) / args.test_split, detector)
    scheme = landmarker.scheme
    truth_crops = np.stack([landmarker.from_boxes(image, [points])[0][0] for image, points in zip(images, gt)])
    crops = {"ground-truth landmark box": truth_crops,
             "detector box as it is (no calibration)": landmarks_from_detections(landmarker, images, boxes, BoxCalibration(), 0),
             "detector box, calibrated": landmarks_from_detections(landmarker, images, boxes, calibration, 0),
             "detector box, calibrated, refined once": landmarks_from_detections(landmarker, images, boxes, calibration, 1)}
    report = {"detector": DETECTOR_NAME, "calibration": asdict(calibration), "fit_split": args.fit_split,
              "test_split": args.test_split, "faces": total, "detected": len(names), "model": str(args.model),
              "model_sha256": file_sha256(args.model), "runtime": landmarker.runtime, "seconds": time.time() - start,
              "crops": {}}
    for name, pred in crops.items():
        full = landmark_report(pred, gt, scheme)
        report["crops"][name] = {k: full[k] for k in ("nme", "fr10", "auc10")}
        print(f"{name:40s} NME {full['nme']:.3f}%  FR@10 {full['fr10']:.2f}%  AUC@10 {full['auc10']:.4f}")
    write_json(args.report, {**report, **provenance()})
    args.report.with_suffix(".md").write_text(markdown(report))
    return report
