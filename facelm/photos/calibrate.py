"""Fit each detector's box-to-crop calibration on a training split, and measure each detector on real faces.

    facelm calibrate-detector --data $DATA [--detectors blazeface blazeface-full hog] [--model weights/student_mobilenetv2_035.pt]
                              [--out runs/calibrate/detector_calibration.json] [--report runs/calibrate/detector.json]

Writes the calibration file (`--calibration` of `facelm predict`, `track` and `stability`; `make calibrate-detector`
writes the released `weights/detector_calibration.json`) and a report with a .md table beside it (`make` writes
`docs/results/detector.json`). Per detector: recall on the test crops (a hit is a detection whose centre lies in the
ground-truth landmark box), false positives per image (every other detection), ms per 640x480 frame at one thread, and
on the 300-W common faces it finds, the NME of the whole pipeline (detector, calibrated crop, model) against
ground-truth crops of the same faces.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

from facelm.annotations import Sample, load_annotations
from facelm.detect import (
    DETECTORS,
    BoxCalibration,
    Detector,
    detector_name,
    face_in_box,
    fit_calibration,
    make_detector,
    write_calibration,
)
from facelm.errors import UserError
from facelm.faces import decode_all
from facelm.landmarker import Landmarker, load_landmarker
from facelm.metrics import landmark_report
from facelm.paths import RELEASED_STUDENT, RUNS, shown
from facelm.runs import file_sha256, provenance, write_json
from facelm.schemes import get_scheme
from facelm.splits import COMMON_TEST
from facelm.video.tracking import face_and_shifted_confidences, fitted_loss_confidence

RUN_FOLDER = RUNS / "calibrate"
RECALL_SPLITS = {"300w/testset": "68", "lfpw/testset": "68", "wflw": "98"}
FRAME = (640, 480)
TIMED_FRAMES = 200


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm calibrate-detector", add_help=add_help)
    p.add_argument("--data", type=Path, default=os.environ.get("DATA"), help="data root (default: $DATA)")
    p.add_argument("--detectors", nargs="+", choices=DETECTORS, default=list(DETECTORS),
                   help=f"detectors to fit and measure (default: all: {' '.join(DETECTORS)})")
    p.add_argument("--fit-split", default="300w/trainset", help="split the mapping is fitted on (default: 300w/trainset)")
    p.add_argument("--model", type=Path, default=RELEASED_STUDENT, help=f"model measured (default: {shown(RELEASED_STUDENT)})")
    p.add_argument("--out", type=Path, default=RUN_FOLDER / "detector_calibration.json",
                   help="calibration file; the detectors fitted replace theirs in it (default: "
                        f"{RUN_FOLDER}/detector_calibration.json; `make calibrate-detector` writes weights/)")
    p.add_argument("--report", type=Path, default=RUN_FOLDER / "detector.json",
                   help=f"report, with a .md table beside it (default: {RUN_FOLDER}/detector.json)")
    return p


def split_samples(data: Path, split: str, scheme_name: str = "68") -> list[Sample]:
    """A split's faces; a folder holding several WFLW lists (wflw/) gives all of them."""
    lists = sorted((data / split).rglob("list_98pt_rect_attr_*.txt"))
    if lists:
        return [s for path in lists for s in load_annotations(path, get_scheme(scheme_name))]
    return load_annotations(data / split, get_scheme(scheme_name))


def detected_faces(folder: Path, detector: Detector, limit: int | None = None
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


def recall(detector: Detector, samples: list[Sample]) -> dict:
    """Faces found (a detection centred in the landmark box) and false positives (every other detection) per image."""
    hits = false_positives = 0
    for sample, image in zip(samples, decode_all([s.image for s in samples])):
        boxes, _ = detector(image)
        hit = len(boxes) > 0 and face_in_box(boxes, sample.points) is not None
        hits += hit
        false_positives += len(boxes) - hit
    return {"faces": len(samples), "hits": hits, "recall": hits / len(samples),
            "false_positives_per_image": false_positives / len(samples)}


def timing_frame() -> np.ndarray:
    """The group photo `facelm sample-photos` writes (six faces), resized to FRAME."""
    from facelm.photos.samples import insightface_group_photo

    image = cv2.imread(str(insightface_group_photo()))
    return cv2.cvtColor(cv2.resize(image, FRAME, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)


def ms_per_frame(detector: Detector, frame: np.ndarray, runs: int = TIMED_FRAMES) -> dict:
    for _ in range(5):
        detector(frame)
    ms = []
    for _ in range(runs):
        start = time.perf_counter()
        detector(frame)
        ms.append((time.perf_counter() - start) * 1e3)
    p50, p90 = np.percentile(ms, [50, 90])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "min_ms": float(np.min(ms)), "frame": f"{FRAME[0]}x{FRAME[1]}",
            "threads": 1, "runs": runs}


def landmarks_from_detections(landmarker: Landmarker, images: list[np.ndarray], boxes: np.ndarray, calibration,
                              refine: int) -> np.ndarray:
    """(N, K, 2) landmarks from calibrated detector crops, each re-cropped `refine` times on its own landmarks."""
    return np.stack([landmarker.from_detection(image, box, calibration, refine)[0] for image, box in zip(images, boxes)])


def pipeline_nme(landmarker: Landmarker, detector: Detector, calibration: BoxCalibration, data: Path) -> dict:
    """On the common faces the detector finds: NME of ground-truth crops and of detector crops (as they are,
    calibrated, calibrated and refined once as `facelm predict` does)."""
    found = [detected_faces(data / split, detector) for split in COMMON_TEST]
    images = [image for f in found for image in f[0]]
    gt, boxes = np.concatenate([f[1] for f in found]), np.concatenate([f[2] for f in found])
    crops = {"ground-truth landmark box": np.stack([landmarker.from_boxes(image, [points])[0][0]
                                                    for image, points in zip(images, gt)]),
             "detector box as it is (no calibration)": landmarks_from_detections(landmarker, images, boxes, BoxCalibration(), 0),
             "detector box, calibrated": landmarks_from_detections(landmarker, images, boxes, calibration, 0),
             "detector box, calibrated, refined once": landmarks_from_detections(landmarker, images, boxes, calibration, 1)}
    report = {"faces": sum(f[4] for f in found), "detected": len(gt), "crops": {}}
    for name, pred in crops.items():
        full = landmark_report(pred, gt, landmarker.scheme)
        report["crops"][name] = {k: full[k] for k in ("nme", "fr10", "auc10")}
    return report


def track_loss_fit(landmarker: Landmarker, images: list[np.ndarray], landmarks: np.ndarray) -> dict:
    """The tracker's loss-of-track threshold for this model, with the confidences it was fitted from."""
    on_face, shifted = face_and_shifted_confidences(landmarker, images, landmarks)
    return {"loss_confidence": fitted_loss_confidence(on_face, shifted), "model": shown(landmarker.path),
            "checkpoint_sha256": landmarker.checkpoint_sha256, "faces": len(on_face),
            "on_face_p1": float(np.percentile(on_face, 1)), "on_face_p99": float(np.percentile(on_face, 99)),
            "half_face_shift_median": float(np.median(shifted)),
            "rule": "halfway between on_face_p1 (eval crops from the labels) and half_face_shift_median (the same "
                    "crops shifted sideways by half the landmark box side); mean confidence over the points"}


def measure_detector(name: str, landmarker: Landmarker, data: Path, fit_split: str, frame: np.ndarray) -> dict:
    detector = make_detector(name)
    _, fit_gt, fit_boxes, _, fit_total = detected_faces(data / fit_split, detector)
    calibration = fit_calibration(fit_boxes, fit_gt)
    print(f"{name}: calibration from {len(fit_gt)}/{fit_total} faces of {fit_split}: {asdict(calibration)}")
    result = {"name": detector_name(name), "calibration": asdict(calibration),
              "fit": {"split": fit_split, "faces": fit_total, "detected": len(fit_gt)},
              "recall": {split: recall(detector, split_samples(data, split, scheme))
                         for split, scheme in RECALL_SPLITS.items()},
              "speed": ms_per_frame(make_detector(name, threads=1), frame),
              "common": pipeline_nme(landmarker, detector, calibration, data)}
    for split, r in result["recall"].items():
        print(f"  {split:14s} recall {r['recall']:.2%} ({r['hits']}/{r['faces']}), "
              f"{r['false_positives_per_image']:.3f} false positives per image")
    common = result["common"]["crops"]
    print(f"  {result['speed']['p50_ms']:.2f} ms per {result['speed']['frame']} frame (p50, 1 thread); common NME: "
          + ", ".join(f"{crop} {r['nme']:.3f}" for crop, r in common.items()))
    return result


def markdown(report: dict) -> str:
    splits = list(RECALL_SPLITS)
    rows = []
    for name, r in report["detectors"].items():
        crops = r["common"]["crops"]
        rows.append(f"| {name} | " + " | ".join(f"{r['recall'][s]['recall']:.1%}" for s in splits)
                    + f" | {np.mean([r['recall'][s]['false_positives_per_image'] for s in splits]):.3f}"
                    f" | {r['speed']['p50_ms']:.2f} | {r['common']['detected']}/{r['common']['faces']}"
                    f" | {crops['ground-truth landmark box']['nme']:.3f}"
                    f" | {crops['detector box, calibrated']['nme']:.3f}"
                    f" | {crops['detector box, calibrated, refined once']['nme']:.3f} |")
    return "\n".join([
        f"Detectors on real faces, {report['model']} for the landmarks ({report['machine']['cpu']}, "
        f"{report['machine']['cores']} cores). Recall: a detection centred in the ground-truth landmark box; false "
        "positives: every other detection, per image, over the three splits. ms: p50 per 640x480 frame (the group "
        "photo), one thread. NME on the 300-W common faces (300w/testset + lfpw/testset) the detector finds, with "
        "ground-truth crops of the same faces and with the detector's calibrated crop, as it is and refined once on "
        "its own landmarks (`facelm predict`'s default).", "",
        "| detector | recall " + " | recall ".join(f"`{s}`" for s in splits)
        + " | FP / image | ms / frame | common faces found | NME GT crop | NME detector crop | NME refined once |",
        "|---|" + "---|" * (len(splits) + 6), *rows, ""])


def main(args: argparse.Namespace) -> dict:
    if args.data is None:
        raise UserError("no data: set DATA=/path/to/data (e.g. DATA=../shared/data) or pass --data")
    data, start = Path(args.data), time.time()
    cv2.setNumThreads(1)
    landmarker = load_landmarker(args.model)
    frame = timing_frame()
    fit_samples = split_samples(data, args.fit_split)
    track_loss = track_loss_fit(landmarker, decode_all([s.image for s in fit_samples]),
                                np.stack([s.points for s in fit_samples]))
    print(f"track lost below mean confidence {track_loss['loss_confidence']:.3f} for {args.model}")
    detectors = {}
    for name in args.detectors:
        detectors[name] = measure_detector(name, landmarker, data, args.fit_split, frame)
        write_calibration(args.out, name, BoxCalibration(**detectors[name]["calibration"]), {
            "fitted_on": args.fit_split, "faces": detectors[name]["fit"]["faces"],
            "detected": detectors[name]["fit"]["detected"]}, {
            "rule": "landmark box centre = detector centre + (dx, dy) * s; side = scale * s; s = detector box side",
            "track_loss": track_loss, **provenance()})
    print(f"-> {args.out}")
    report = {"model": shown(args.model), "model_sha256": file_sha256(args.model), "runtime": landmarker.runtime,
              "fit_split": args.fit_split, "recall_splits": RECALL_SPLITS, "common": list(COMMON_TEST),
              "timing_frame": "insightface t1.jpg (six faces) resized to 640x480", "detectors": detectors,
              "seconds": time.time() - start, **provenance()}
    args.report.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.report, report)
    args.report.with_suffix(".md").write_text(markdown(report))
    print(f"-> {args.report}, {args.report.with_suffix('.md')}")
    return report
