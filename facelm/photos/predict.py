"""Landmarks on photos: find faces, crop each by the model's own rule, run any model, write JSON and an overlay.

    facelm predict photo.jpg|folder --out predictions [--model weights/student_mobilenetv2_035.pt | model.onnx ...]

Per image `<stem>.json` holds `faces`: for each face its detector `box` (x0, y0, x1, y1), `points` (K x 2, image
pixels) and `confidence` (K, in [0, 1]); `<stem>.jpg` is the overlay, points coloured red (low confidence) to green.
Two images of a folder with the same stem (a.jpg, a.png) are written under their full names (a.jpg.json, a.png.json).
An image with no face is a valid result with an empty `faces` list and a `note`. In a folder, an image that cannot be
read is reported and skipped; the command then ends with an error that counts them.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from facelm.detect import BoxCalibration, Detector, add_detector_args, make_detector, read_calibration
from facelm.draw import draw_face
from facelm.errors import UserError
from facelm.faces import read_rgb
from facelm.landmarker import Landmarker, add_model_args, load_landmarker
from facelm.paths import shown

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm predict", add_help=add_help)
    p.add_argument("input", type=Path, help="an image, or a folder of images")
    p.add_argument("--out", type=Path, required=True, help="folder for the JSON and overlay of each image")
    add_model_args(p)
    # full range: a group photo's faces are small in the frame, where the short-range model finds none
    add_detector_args(p, "blazeface-full")
    p.add_argument("--refine", type=int, default=1,
                   help="re-crop each face on its own landmarks this many times (default: 1; see docs/results/detector.md)")
    p.add_argument("--min-score", type=float, default=None,
                   help="drop detections scored below this (default: the detector's own, 0.5 for BlazeFace, 0.0 for "
                        "hog, where 0.2 drops badge-like false faces and a few %% of real faces on 300w/trainset)")
    p.add_argument("--upsample", type=int, default=1,
                   help="hog detector upsampling: 1 finds faces down to ~40 px (default: 1)")
    return p


def image_paths(path: Path) -> list[Path]:
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise UserError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        return paths
    if not path.exists():
        raise UserError(f"{path}: no such image or folder")
    return [path]


def output_stems(paths: list[Path]) -> list[str]:
    """The name each image's JSON and overlay get: its stem, or its full name where another input has the same stem."""
    stems = [p.stem for p in paths]
    return [p.name if stems.count(p.stem) > 1 else p.stem for p in paths]


def faces_in_image(image: np.ndarray, detector: Detector, landmarker: Landmarker, calibration: BoxCalibration,
                   refine: int) -> list[dict]:
    """Every detected face: box, detector score, points (K, 2) and confidences (K,)."""
    boxes, scores = detector(image)
    faces = []
    for box, score in zip(boxes, scores):
        points, confidence = landmarker.from_detection(image, box, calibration, refine)
        faces.append({"box": [round(float(v), 2) for v in box], "score": round(float(score), 4),
                      "points": np.round(points, 2).tolist(), "confidence": np.round(confidence, 4).tolist()})
    return faces


def overlay(image: np.ndarray, faces: list[dict]) -> np.ndarray:
    canvas = image.copy()
    for face in faces:
        draw_face(canvas, np.asarray(face["points"]), np.asarray(face["confidence"]), np.asarray(face["box"]))
    return canvas


def main(args: argparse.Namespace) -> list[dict]:
    paths = image_paths(args.input)
    landmarker = load_landmarker(args.model, args.head, args.mirror)
    calibration = read_calibration(args.calibration, args.detector)
    detector = make_detector(args.detector, args.min_score, args.upsample)
    results, unreadable = [], []
    for path, stem in zip(paths, output_stems(paths)):
        try:
            image = read_rgb(path)
        except UserError as exc:
            if len(paths) == 1:
                raise
            print(f"skipped: {exc}", file=sys.stderr)
            unreadable.append(path)
            continue
        start = time.perf_counter()
        faces = faces_in_image(image, detector, landmarker, calibration, args.refine)
        result = {"image": str(path), "width": image.shape[1], "height": image.shape[0], "model": shown(args.model),
                  "runtime": landmarker.runtime, "head": landmarker.head, "scheme": landmarker.scheme.name,
                  "detector": args.detector, "seconds": round(time.perf_counter() - start, 4), "faces": faces}
        if not faces:
            result["note"] = f"no face found by the {args.detector} detector"
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{stem}.json").write_text(json.dumps(result) + "\n")
        cv2.imwrite(str(args.out / f"{stem}.jpg"), cv2.cvtColor(overlay(image, faces), cv2.COLOR_RGB2BGR))
        print(f"{path}: {len(faces)} face{'s' * (len(faces) != 1)} in {result['seconds'] * 1000:.0f} ms "
              f"-> {args.out / stem}.json, .jpg" + (f" ({result['note']})" if not faces else ""))
        results.append(result)
    if unreadable:
        raise UserError(f"{len(unreadable)} of {len(paths)} images could not be read (listed above); the other "
                        f"{len(results)} were written to {args.out}")
    return results
