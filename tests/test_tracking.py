"""Video tracking: the One-Euro filter, NMJ on known answers, the tracker on a synthetic clip of a real face, and
`facelm track` on generated videos (good, unreadable, faceless)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facelm.annotations import load_annotations
from facelm.cli import main as cli
from facelm.detect import BoxCalibration, HogDetector, make_detector, read_calibration, write_calibration
from facelm.errors import UserError
from facelm.faces import read_rgb
from facelm.landmarker import load_landmarker
from facelm.metrics import normalised_mean_jitter, point_errors
from facelm.paths import RELEASED_STUDENT
from facelm.schemes import SCHEME_68, get_scheme
from facelm.video.stability import ClipSettings, ClipTrack, scores, synthetic_clip, tracking_counts
from facelm.video.track import get_args_parser as track_parser
from facelm.video.track import main as track
from facelm.video.tracking import (
    LOSS_CONFIDENCE,
    OneEuroFilter,
    OneEuroParams,
    Tracker,
    fitted_loss_confidence,
    loss_confidence_for,
    smooth_sequence,
)

ROOT = Path(__file__).resolve().parent.parent
FPS = 30.0
# the released HOG calibration, rounded: tests do not depend on the file
CALIBRATION = BoxCalibration(dx=-0.015, dy=0.092, scale=1.007)


def filtered(params: OneEuroParams, signal: np.ndarray, confidence: np.ndarray | None = None) -> np.ndarray:
    """(T, K, 2) signal through one filter at FPS, with a unit inter-ocular scale."""
    one_euro = OneEuroFilter(params)
    return np.stack([one_euro(t / FPS, x, confidence) for t, x in enumerate(signal)])


def test_one_euro_passes_a_constant_exactly():
    signal = np.tile(np.array([[12.25, -3.5], [0.0, 7.0]]), (40, 1, 1))
    out = filtered(OneEuroParams(min_cutoff=0.5, beta=2.0), signal, np.array([0.9, 0.1]))
    np.testing.assert_array_equal(out, signal)


def test_one_euro_reduces_the_variance_of_a_noisy_constant():
    noisy = 5.0 + np.random.default_rng(0).normal(0, 1.0, (300, 3, 2))
    out = filtered(OneEuroParams(min_cutoff=1.0, beta=0.0), noisy)
    assert out[30:].var() < 0.2 * noisy[30:].var()
    assert abs(out[30:].mean() - 5.0) < 0.2


def test_one_euro_lags_less_on_a_fast_move_with_a_larger_beta():
    t = np.arange(60) / FPS
    ramp = np.repeat((20.0 * np.clip(t - 0.5, 0, None))[:, None, None], 2, axis=2)  # still, then 20 units/s
    lag = {beta: np.abs(filtered(OneEuroParams(min_cutoff=0.5, beta=beta), ramp) - ramp)[30:].mean()
           for beta in (0.0, 0.5, 5.0)}
    assert lag[5.0] < lag[0.5] < lag[0.0]
    assert lag[5.0] < 0.3 * lag[0.0]


def test_a_low_confidence_point_is_smoothed_harder():
    noisy = np.random.default_rng(1).normal(0, 1.0, (300, 2, 2))
    out = filtered(OneEuroParams(min_cutoff=2.0, beta=0.0, confidence_weighted=True), noisy, np.array([1.0, 0.1]))
    assert out[30:, 1].var() < 0.5 * out[30:, 0].var()
    unweighted = filtered(OneEuroParams(min_cutoff=2.0, beta=0.0, confidence_weighted=False), noisy, np.array([1.0, 0.1]))
    assert unweighted[30:, 1].var() == pytest.approx(unweighted[30:, 0].var(), rel=0.3)


def test_one_euro_needs_increasing_times():
    one_euro = OneEuroFilter()
    one_euro(1.0, np.zeros((1, 2)))
    with pytest.raises(ValueError, match="increase"):
        one_euro(1.0, np.ones((1, 2)))


def clip_gt(n_frames: int, iod: float = 10.0) -> np.ndarray:
    """(T, 68, 2) ground truth whose outer eye corners are `iod` apart in every frame, drifting a little."""
    gt = np.random.default_rng(2).uniform(20, 80, (n_frames, 68, 2))
    a, b = SCHEME_68.eye_corners
    gt[:, a], gt[:, b] = (40.0, 50.0), (40.0 + iod, 50.0)
    return gt + np.linspace(0, 5, n_frames)[:, None, None]


def test_nmj_of_a_constant_offset_is_zero():
    gt = clip_gt(12)
    assert normalised_mean_jitter(gt + np.array([3.0, -4.0]), gt, SCHEME_68) == pytest.approx(0.0, abs=1e-12)


def test_nmj_of_alternating_errors_is_their_full_swing():
    gt = clip_gt(9)
    signs = np.where(np.arange(9) % 2 == 0, 1.0, -1.0)[:, None, None]
    pred = gt + signs * np.array([0.3, 0.4])  # |e| = 0.5 px, each step 1 px, iod 10 px
    assert normalised_mean_jitter(pred, gt, SCHEME_68) == pytest.approx(10.0)


def test_nmj_counts_only_steps_between_valid_frames():
    gt = clip_gt(6)
    pred = gt.copy()
    pred[3] += 100.0  # a wild frame the tracker did not report
    pred[4:] += np.array([0.6, 0.8])  # one 1-px step, 3 -> 4, which is not counted either
    valid = np.array([True, True, True, False, True, True])
    assert normalised_mean_jitter(pred, gt, SCHEME_68, valid) == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(normalised_mean_jitter(pred, gt, SCHEME_68, np.array([True, False] * 3)))


@pytest.fixture(scope="module")
def landmarker():
    return load_landmarker(ROOT / RELEASED_STUDENT)


@pytest.fixture(scope="module")
def face_clips(data_root):
    """30 frames of each of the first 8 test faces moving smoothly, each its own motion (seeded as `facelm stability`
    seeds them), with their exact per-frame ground truth."""
    samples = load_annotations(data_root / "300w" / "testset", get_scheme("68"))[:8]
    return [synthetic_clip(read_rgb(s.image), s.points, 30, np.random.default_rng([0, i]), ClipSettings())
            for i, s in enumerate(samples)]


def tracked(tracker: Tracker, frames: list[np.ndarray]) -> list:
    return [tracker.update(frame, t / FPS) for t, frame in enumerate(frames)]


def test_tracker_keeps_the_face_and_smoothing_cuts_jitter(landmarker, face_clips):
    detector = HogDetector()
    tracks = [tracked(Tracker(landmarker, detector, CALIBRATION), frames) for frames, _ in face_clips]
    raw_jitter, smoothed_jitter = [], []
    for results, (frames, gt) in zip(tracks, face_clips):
        assert all(r.found for r in results)
        assert [r.redetected for r in results] == [True] + [False] * (len(frames) - 1)
        raw = np.stack([r.points for r in results])
        assert point_errors(raw, gt, landmarker.scheme).mean() < 0.10
        raw_jitter.append(normalised_mean_jitter(raw, gt, landmarker.scheme))
        smoothed_jitter.append(normalised_mean_jitter(np.stack([r.smoothed for r in results]), gt, landmarker.scheme))
    # one clip's cut ranges from -9% to 39%; pooled over these 8 it is 27% (`facelm stability`: 32% over 330 clips)
    assert np.mean(smoothed_jitter) < 0.85 * np.mean(raw_jitter)
    (frames, _), results = face_clips[0], tracks[0]
    raw, smoothed = np.stack([r.points for r in results]), np.stack([r.smoothed for r in results])
    # the crop follows the raw points, so switching smoothing off changes nothing the model sees ...
    unsmoothed = tracked(Tracker(landmarker, detector, CALIBRATION, smoothing=None), frames)
    np.testing.assert_allclose(np.stack([r.points for r in unsmoothed]), raw, atol=1e-4)
    np.testing.assert_array_equal(np.stack([r.smoothed for r in unsmoothed]), np.stack([r.points for r in unsmoothed]))
    # ... and replaying the recorded raw track gives the tracker's own smoothing (what `facelm stability` tunes on)
    times = np.arange(len(frames)) / FPS
    replayed = smooth_sequence(times, raw.astype(np.float64), np.stack([r.confidence for r in results]),
                               np.array([r.redetected for r in results]), landmarker.scheme, OneEuroParams())
    np.testing.assert_allclose(replayed, smoothed, atol=1e-3)


def test_the_loss_threshold_sits_halfway_between_a_face_and_a_crop_half_off_it():
    on_face = np.linspace(0.40, 0.50, 101)  # 1st percentile 0.401
    assert fitted_loss_confidence(on_face, np.array([0.1, 0.3, 0.9])) == pytest.approx((0.401 + 0.3) / 2)


def test_the_loss_threshold_is_the_one_fitted_for_the_model_else_the_fallback_with_a_note(landmarker, tmp_path,
                                                                                            capsys):
    fitted = write_calibration(tmp_path / "fitted.json", "hog", CALIBRATION, {}, {"track_loss": {
        "loss_confidence": 0.37, "checkpoint_sha256": landmarker.checkpoint_sha256}})
    assert loss_confidence_for(landmarker, fitted) == 0.37
    assert capsys.readouterr().err == ""
    other = write_calibration(tmp_path / "other.json", "hog", CALIBRATION, {}, {"track_loss": {
        "loss_confidence": 0.37, "checkpoint_sha256": "another model"}})
    assert loss_confidence_for(landmarker, other) == LOSS_CONFIDENCE
    assert "no track-loss threshold fitted for" in capsys.readouterr().err


def test_the_released_student_loses_the_track_when_the_face_is_gone(landmarker, face_clips):
    """The committed calibration holds a threshold fitted for the released student; with it the tracker lets go of a
    face replaced by noise (the detector finds no face there either), instead of following noise."""
    assert loss_confidence_for(landmarker) != LOSS_CONFIDENCE
    frames = face_clips[0][0][:5]
    noise = [np.random.default_rng(i).integers(0, 256, frames[0].shape, dtype=np.uint8) for i in range(3)]
    results = tracked(Tracker(landmarker, HogDetector(), CALIBRATION), frames + noise)
    assert all(r.found for r in results[:5])
    assert not any(r.found for r in results[5:])


def test_blazeface_finds_the_face_again_after_it_was_gone(landmarker, face_clips):
    """Re-detection through the default detector with its committed calibration: the track is lost on blank frames
    and BlazeFace picks the face up again on the first frame it is back."""
    calibration = read_calibration(ROOT / "weights" / "detector_calibration.json", "blazeface")
    frames = face_clips[0][0][:4]
    blank = [np.full_like(frames[0], 90)] * 2
    results = tracked(Tracker(landmarker, make_detector("blazeface"), calibration), frames + blank + frames)
    assert [r.found for r in results] == [True] * 4 + [False] * 2 + [True] * 4
    assert [r.redetected for r in results if r.found] == [True, False, False, False] * 2
    gt = face_clips[0][1][:4]
    assert point_errors(np.stack([r.points for r in results[-4:]]), gt, landmarker.scheme).mean() < 0.10


def write_video(path: Path, frames_rgb: list[np.ndarray]) -> Path:
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    h, w = frames_rgb[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, (w, h))
    assert writer.isOpened()
    for frame in frames_rgb:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def track_args(video: Path, out: Path, tmp_path: Path, *extra: str):
    calibration = write_calibration(tmp_path / "calibration.json", "hog", CALIBRATION, {}, {})
    return track_parser().parse_args([str(video), "--out", str(out), "--model", str(ROOT / RELEASED_STUDENT),
                                      "--calibration", str(calibration), "--detector", "hog", *extra])


def frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    return count


def test_track_writes_the_annotated_video_and_the_json_track(face_clips, tmp_path, capsys):
    video = write_video(tmp_path / "clip.avi", face_clips[0][0][:10])
    track(track_args(video, tmp_path / "out", tmp_path))
    assert frame_count(tmp_path / "out" / "clip.tracked.mp4") == 10
    result = json.loads((tmp_path / "out" / "clip.track.json").read_text())
    assert [f["index"] for f in result["frames"]] == list(range(10))
    assert result["fps"] == pytest.approx(FPS) and result["one_euro"]["min_cutoff"] == OneEuroParams().min_cutoff
    faces = [f["faces"] for f in result["frames"]]
    assert all(len(f) == 1 for f in faces)
    assert [f[0]["redetected"] for f in faces] == [True] + [False] * 9
    face = faces[3][0]
    assert np.array(face["points"]).shape == (68, 2) and np.array(face["crop"]).shape == (4, 2)
    assert len(face["confidence"]) == 68 and len(face["box"]) == 4
    assert "10 frames, face in 10 (100%)" in capsys.readouterr().out


def test_an_unreadable_or_missing_video_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n")
    with pytest.raises(UserError, match="cannot open as a video"):
        track(track_args(bad, tmp_path / "out", tmp_path))
    assert cli(["track", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.mp4: no such video file" in err


def test_a_video_without_a_face_gives_an_empty_track(tmp_path):
    blank = [np.full((120, 160, 3), 90, np.uint8) for _ in range(6)]
    video = write_video(tmp_path / "blank.mp4", blank)
    track(track_args(video, tmp_path / "out", tmp_path, "--no-smooth"))
    result = json.loads((tmp_path / "out" / "blank.track.json").read_text())
    assert len(result["frames"]) == 6 and all(f["faces"] == [] for f in result["frames"])
    assert result["one_euro"] is None
    assert frame_count(tmp_path / "out" / "blank.tracked.mp4") == 6


def test_frames_that_follow_another_person_are_counted_and_left_out_of_the_clip_scores():
    rng = np.random.default_rng(0)
    face = rng.uniform(100, 200, (68, 2))
    gt = np.repeat(face[None], 4, axis=0)
    raw = gt + rng.normal(0, 1.0, gt.shape)
    raw[2] += 300  # the tracker jumped to a face beside the annotated one
    raw[3] = np.nan  # no face reported
    clip = ClipTrack(gt, np.arange(4) / FPS, raw, raw.copy(), np.ones((4, 68)), np.zeros(4, bool), np.zeros(4))
    assert clip.found.tolist() == [True, True, True, False]
    assert clip.on_face.tolist() == [True, True, False, False]
    expected = point_errors(raw[:2], gt[:2], SCHEME_68).mean() * 100
    assert scores([clip], [clip.raw], SCHEME_68)["nme"] == pytest.approx(expected)
    counts = tracking_counts([clip])
    assert (counts["other_face_frames"], counts["other_face_clips"]) == (1, 1)
