"""`facelm track VIDEO --out DIR`: follow one face through a video; write an annotated video and a JSON track.

    facelm track clip.mp4 --out runs/track [--model weights/student_mobilenetv2_035.pt | model.onnx ...] [--no-smooth]

`DIR/<stem>.tracked.mp4` is the video with the points drawn (red = low confidence, green = high) and the square the
model looked at. `DIR/<stem>.track.json` holds the video's fps and size, the model, the smoothing settings and, per
frame, its `index`, `time` (s) and `faces`: none or one face with `box` (x0, y0, x1, y1 around the crop),
`crop` (its 4 corners; rotated with the face), `points` (K x 2, smoothed when smoothing is on), `raw_points`,
`confidence` (K) and `redetected` (the face came from the detector in this frame). A video with no face gives a
track whose frames have no faces. See docs/tracking.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from facelm.detect import add_detector_args, make_detector, read_calibration
from facelm.draw import draw_face
from facelm.errors import UserError
from facelm.landmarker import add_model_args, load_landmarker
from facelm.paths import shown
from facelm.video.tracking import LOSS_CONFIDENCE, OneEuroParams, TrackedFrame, Tracker, loss_confidence_for

FALLBACK_FPS = 30.0  # for containers that do not state a frame rate


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    defaults = OneEuroParams()
    p = argparse.ArgumentParser("facelm track", add_help=add_help,
                                description="Track face landmarks through a video: annotated video + JSON track.")
    p.add_argument("video", type=Path, help="video file OpenCV can read (.mp4, .avi, ...)")
    p.add_argument("--out", type=Path, required=True, help="folder for <stem>.tracked.mp4 and <stem>.track.json")
    add_model_args(p)
    add_detector_args(p)
    p.add_argument("--no-smooth", action="store_true", help="write the raw points (no One-Euro smoothing)")
    p.add_argument("--min-cutoff", type=float, default=defaults.min_cutoff,
                   help=f"One-Euro cutoff at rest, Hz; lower is steadier (default: {defaults.min_cutoff:g})")
    p.add_argument("--beta", type=float, default=defaults.beta,
                   help=f"One-Euro speed coefficient, Hz per inter-ocular distance per s; higher lags less "
                        f"(default: {defaults.beta:g})")
    p.add_argument("--d-cutoff", type=float, default=defaults.d_cutoff,
                   help=f"cutoff of the speed estimate, Hz (default: {defaults.d_cutoff:g})")
    p.add_argument("--confidence-weighting", action=argparse.BooleanOptionalAction,
                   default=defaults.confidence_weighted,
                   help="scale each point's min cutoff by its confidence, so unsure points are smoothed harder "
                        f"(default: {'on' if defaults.confidence_weighted else 'off'}, as tuned by facelm stability)")
    p.add_argument("--loss-confidence", type=float, default=None,
                   help="re-detect when the mean confidence falls below this (default: the threshold fitted for the "
                        f"model in --calibration by 'facelm calibrate-detector', else {LOSS_CONFIDENCE})")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the model and OpenCV (default: 1)")
    return p


def open_video(path: Path) -> tuple[cv2.VideoCapture, float]:
    """An opened capture and its frame rate."""
    if not path.is_file():
        raise UserError(f"{path}: no such video file")
    # FFmpeg's own log line about a bad file would come before our one-line error; OpenCV reads this variable at the
    # process's first capture, and a user who sets it keeps theirs
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise UserError(f"{path}: cannot open as a video (not a video file, or a codec OpenCV lacks)")
    fps = capture.get(cv2.CAP_PROP_FPS)
    return capture, fps if math.isfinite(fps) and fps > 0 else FALLBACK_FPS


def video_frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """BGR frames until the video ends (or stops decoding)."""
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield frame


def smoothing_params(args: argparse.Namespace) -> OneEuroParams | None:
    if args.no_smooth:
        return None
    return OneEuroParams(args.min_cutoff, args.beta, args.d_cutoff, args.confidence_weighting)


def face_json(frame: TrackedFrame) -> dict:
    (x0, y0), (x1, y1) = frame.crop.min(axis=0), frame.crop.max(axis=0)
    return {"box": [round(float(v), 2) for v in (x0, y0, x1, y1)], "crop": np.round(frame.crop, 2).tolist(),
            "points": np.round(frame.smoothed, 2).tolist(), "raw_points": np.round(frame.points, 2).tolist(),
            "confidence": np.round(frame.confidence, 4).tolist(), "redetected": frame.redetected}


def annotated(image_bgr: np.ndarray, frame: TrackedFrame) -> np.ndarray:
    """The frame with the model's crop outlined and the (smoothed) points coloured by confidence."""
    if not frame.found:
        return image_bgr
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    crop_colour = (255, 200, 0) if frame.redetected else (255, 255, 255)
    cv2.polylines(rgb, [np.round(frame.crop).astype(np.int32)], True, crop_colour, 1, cv2.LINE_AA)
    draw_face(rgb, frame.smoothed, frame.confidence)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def video_writer(path: Path, fps: float, shape: tuple[int, ...]) -> cv2.VideoWriter:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (shape[1], shape[0]))
    if not writer.isOpened():
        raise UserError(f"{path}: OpenCV cannot write an mp4v video here")
    return writer


def main(args: argparse.Namespace) -> dict:
    import torch

    capture, fps = open_video(args.video)
    landmarker = load_landmarker(args.model, args.head, args.mirror)
    params = smoothing_params(args)
    loss_confidence = args.loss_confidence if args.loss_confidence is not None else loss_confidence_for(
        landmarker, args.calibration)
    detector = make_detector(args.detector, threads=args.threads)
    tracker = Tracker(landmarker, detector, read_calibration(args.calibration, args.detector), params, loss_confidence)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    video_out, json_out = args.out / f"{args.video.stem}.tracked.mp4", args.out / f"{args.video.stem}.track.json"
    writer, frames, seconds, shape = None, [], 0.0, None
    for index, image in enumerate(video_frames(capture)):
        start = time.perf_counter()
        frame = tracker.update(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), index / fps)
        seconds += time.perf_counter() - start
        writer = writer or video_writer(video_out, fps, image.shape)
        writer.write(annotated(image, frame))
        frames.append({"index": index, "time": round(index / fps, 4), "faces": [face_json(frame)] if frame.found else []})
        shape = image.shape
    capture.release()
    if writer is None:
        raise UserError(f"{args.video}: no frame could be decoded (empty or damaged video)")
    writer.release()
    track = {"video": str(args.video), "fps": fps, "width": shape[1], "height": shape[0], "model": shown(args.model),
             "runtime": landmarker.runtime, "head": landmarker.head, "scheme": landmarker.scheme.name,
             "one_euro": asdict(params) if params else None, "loss_confidence": loss_confidence,
             "threads": args.threads, "tracking_fps": len(frames) / seconds, "frames": frames}
    json_out.write_text(json.dumps(track) + "\n")
    with_face = sum(bool(f["faces"]) for f in frames)
    detections = sum(f["faces"][0]["redetected"] for f in frames[1:] if f["faces"])
    print(f"{args.video}: {len(frames)} frames, face in {with_face} ({with_face / len(frames):.0%}), {detections} "
          f"re-detections after the first frame, {track['tracking_fps']:.1f} frames/s ({args.threads} thread) "
          f"-> {video_out}, {json_out}")
    return track
