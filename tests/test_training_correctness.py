"""Defects that silently changed what a training run means: photometric strength, the integral head's reach,
mixed precision, the teacher-target cache key, and where the photos' first crops come from."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facelm.augment import photometric_pipeline
from facelm.detect import BoxCalibration
from facelm.errors import UserError
from facelm.models import create_model
from facelm.precision import autocast, head_output, resolve_precision, step_timer
from facelm.student.pseudo import UnlabelledFolder, cache_key, starting_boxes


def _crops(n: int = 32) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(40, 215, (64, 64, 3), dtype=np.uint8) for _ in range(n)]


def _mean_change(strength: float) -> float:
    pipeline = photometric_pipeline(strength)
    if pipeline is None:
        return 0.0
    pipeline.set_random_seed(0)
    return float(np.mean([np.abs(pipeline(image=c)["image"].astype(float) - c).mean() for c in _crops()]))


def test_photometric_strength_zero_changes_nothing_and_strength_scales_every_transform():
    assert photometric_pipeline(0) is None
    weak, full = _mean_change(0.25), _mean_change(1.0)
    assert 0 < weak < 0.5 * full
    # every transform's magnitude follows the strength, not brightness and contrast alone
    hue = next(t for t in photometric_pipeline(0.5).transforms if type(t).__name__ == "HueSaturationValue")
    assert max(abs(v) for v in hue.hue_shift_limit) == pytest.approx(5)
    with pytest.raises(UserError):
        photometric_pipeline(-1)


def test_the_integral_head_reaches_past_every_edge_of_the_crop():
    model = create_model("mobilenetv2_035", heads={"300w": 68}, input_size=112, head="integral")
    grid = model.heads["300w"].grid
    assert grid.min() < 0 and grid.max() > 1


def test_heads_run_in_fp32_inside_a_bf16_autocast():
    model = create_model("mobilenetv2_035", heads={"300w": 68}, input_size=64, head="integral").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = model(x)["300w"]
        with autocast("bf16", "cpu"):
            features = model.forward_features(x)
            out = head_output(model, features, "300w")
    assert out.dtype == torch.float32
    # bf16 trunk features move points a little, but never by the ~1/256 steps of a bf16 read-out
    assert (out[..., :2] - reference[..., :2]).abs().max() < 0.02


def test_auto_precision_picks_bf16_only_where_the_cpu_has_it(monkeypatch):
    import facelm.precision as precision

    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ["avx512_bf16"])
    assert resolve_precision("auto", "cpu")[0] == "bf16"
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: [])
    assert resolve_precision("auto", "cpu")[0] == "fp32"
    assert resolve_precision("bf16", "cpu")[0] == "bf16"
    with pytest.raises(UserError):
        resolve_precision("fp16", "cpu")


def test_auto_precision_keeps_fp32_where_bf16_is_slower_for_this_model(monkeypatch):
    """On a CPU with native bf16, `auto` times a training step of the run's own model in both precisions and keeps
    the faster: how much bf16 gains depends on the model and the batch (a depthwise student at batch 128 ran slower)."""
    import facelm.precision as precision

    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ["avx512_bf16"])
    slower_in_bf16 = {"fp32": 1.0, "bf16": 1.1}
    chosen, why = resolve_precision("auto", "cpu", slower_in_bf16.get)
    assert chosen == "fp32" and "1.100 s in bf16 and 1.000 s in fp32" in why
    assert resolve_precision("auto", "cpu", {"fp32": 1.0, "bf16": 0.5}.get)[0] == "bf16"
    assert resolve_precision("fp32", "cpu", {"fp32": 9.0, "bf16": 0.5}.get)[0] == "fp32"  # as requested, untimed


def test_the_step_timer_leaves_the_model_untouched():
    model = create_model("mobilenetv2_025", heads={"300w": 68}, input_size=64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seconds = step_timer(model, 4, 64, "cpu")
    assert seconds("fp32") > 0 and seconds("bf16") > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _image(path: Path, value: int) -> Path:
    import cv2

    cv2.imwrite(str(path), np.full((16, 16, 3), value, np.uint8))
    return path


def test_the_target_cache_key_follows_everything_the_targets_depend_on(tmp_path):
    images = [_image(tmp_path / "a.png", 10), _image(tmp_path / "b.png", 20)]
    boxes = [np.array([1, 2, 10, 12], np.float32), np.array([0, 0, 8, 8], np.float32)]
    settings = {"size": 112, "passes": 3, "prior": None, "calibration": {"dx": 0, "dy": 0.1, "scale": 1.0}}
    key = cache_key("sha-300w-flip", images, boxes, settings)
    assert cache_key("sha-300w-flip", images, boxes, dict(settings)) == key
    assert cache_key("sha-wflw-flip", images, boxes, settings) != key  # another teacher head
    assert cache_key("sha-300w-flip", images, [boxes[0] + 1, boxes[1]], settings) != key  # another boxes.csv
    assert cache_key("sha-300w-flip", images, boxes, settings | {"passes": 2}) != key
    assert cache_key("sha-300w-flip", images, boxes, settings | {"calibration": {"dx": 0, "dy": 0, "scale": 1}}) != key
    assert cache_key("sha-300w-flip", images, boxes, settings | {"prior": [0.5, 0.5, 0.4]}) != key
    size = images[0].stat().st_size
    _image(images[0], 11)  # same name, same file size, other pixels
    assert images[0].stat().st_size == size
    assert cache_key("sha-300w-flip", images, boxes, settings) != key


def test_photo_starting_boxes_map_the_detector_box_through_the_calibration(tmp_path):
    box = np.array([10, 20, 50, 60], np.float32)
    folder = UnlabelledFolder(tmp_path, [tmp_path / "a.png"], box[None])
    calibration = BoxCalibration(dx=0.0, dy=0.1, scale=1.2)
    (start,) = starting_boxes(folder, [np.zeros((80, 80, 3), np.uint8)], None, calibration)
    np.testing.assert_allclose(start, calibration.landmark_box(box))
    assert start[:, 1].mean() == pytest.approx(40 + 0.1 * 40)


@pytest.mark.parametrize("module", ["facelm.video.stability", "facelm.reports.figures"])
def test_reports_never_default_into_committed_folders(module):
    import importlib

    args = importlib.import_module(module).get_args_parser().parse_args([])
    for name in ("json", "out"):
        value = getattr(args, name, None)
        assert value is None or not str(value).startswith(("docs", "weights")), (name, value)
