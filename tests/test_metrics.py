"""Inter-ocular NME, FR@10, AUC@10, per-region NME and the confidence/error rank correlation, on known answers."""
from __future__ import annotations

import numpy as np
import pytest

from facelm.metrics import auc_at, landmark_report, point_errors, reference_report
from facelm.schemes import SCHEME_68, SCHEMES, Scheme


def faces(n: int, scheme: Scheme = SCHEME_68, iod: float = 10.0, seed: int = 0) -> np.ndarray:
    """(n, K, 2) random ground truth whose outer eye corners are exactly `iod` pixels apart."""
    gt = np.random.default_rng(seed).uniform(20, 80, (n, scheme.n_points, 2))
    a, b = scheme.eye_corners
    gt[:, a] = (40.0, 50.0)
    gt[:, b] = (40.0 + iod, 50.0)
    return gt


def shifted(gt: np.ndarray, pixels) -> np.ndarray:
    """Every point of image i moved by pixels[i] along x (so its NME is pixels[i] / iod)."""
    return gt + np.asarray(pixels, dtype=float).reshape(-1, 1, 1) * np.array([1.0, 0.0])


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_one_pixel_everywhere_at_iod_10_is_ten_percent(name):
    scheme = SCHEMES[name]
    gt = faces(3, scheme)
    report = landmark_report(shifted(gt, [1.0, 1.0, 1.0]), gt, scheme)
    assert report["nme"] == pytest.approx(10.0)
    assert report["per_image_nme"] == pytest.approx([10.0] * 3)
    assert report["n"] == 3 and report["scheme"] == name


def test_point_errors_normalise_each_image_by_its_own_iod():
    gt = np.concatenate([faces(1, iod=10.0), faces(1, iod=20.0), faces(1, iod=40.0)])
    errors = point_errors(shifted(gt, [2.0, 2.0, 2.0]), gt, SCHEME_68)
    assert errors.shape == (3, 68)
    np.testing.assert_allclose(errors, np.array([[0.2], [0.1], [0.05]]).repeat(68, 1))


def test_point_errors_are_euclidean():
    gt = faces(1)
    pred = gt + np.array([3.0, 4.0])
    np.testing.assert_allclose(point_errors(pred, gt, SCHEME_68), 0.5)


def test_failure_rate_counts_images_above_ten_percent():
    gt = faces(5)
    report = landmark_report(shifted(gt, [0.0, 0.5, 0.9, 1.5, 3.0]), gt, SCHEME_68)
    assert report["fr10"] == pytest.approx(40.0)
    assert report["nme"] == pytest.approx(np.mean([0, 5, 9, 15, 30]))


def test_auc_extremes():
    gt = faces(4)
    assert landmark_report(gt.copy(), gt, SCHEME_68)["auc10"] == pytest.approx(1.0, abs=1e-6)
    assert landmark_report(shifted(gt, [1.1, 2, 5, 30]), gt, SCHEME_68)["auc10"] == 0.0


def test_auc_of_a_known_mixture():
    nme = np.array([0.0, 0.02, 0.05, 0.2])
    expected = np.mean(np.clip(0.1 - nme, 0, None)) / 0.1  # area under the CED up to 0.10, over 0.10
    assert expected == pytest.approx(0.575)
    assert auc_at(nme) == pytest.approx(expected, abs=1e-3)
    gt = faces(4)
    assert landmark_report(shifted(gt, nme * 10), gt, SCHEME_68)["auc10"] == pytest.approx(expected, abs=1e-3)


def test_region_nme_isolates_the_region_with_the_error():
    gt = faces(2)
    pred = gt.copy()
    mouth = list(SCHEME_68.regions["mouth"])
    pred[:, mouth, 1] += np.linspace(0.0, 2.0, len(mouth))  # 0 to 2 px, mean 1 px: 10% of the iod
    report = landmark_report(pred, gt, SCHEME_68)
    assert set(report["regions"]) == set(SCHEME_68.regions)
    assert report["regions"]["mouth"] == pytest.approx(10.0)
    assert all(value == 0.0 for name, value in report["regions"].items() if name != "mouth")
    assert report["nme"] == pytest.approx(10.0 * len(mouth) / 68)


def test_spearman_sign_follows_confidence_error_relation():
    gt = faces(4)
    pred = gt + np.random.default_rng(1).normal(0, 1.0, gt.shape)
    errors = point_errors(pred, gt, SCHEME_68)
    good = landmark_report(pred, gt, SCHEME_68, confidence=np.exp(-errors))
    bad = landmark_report(pred, gt, SCHEME_68, confidence=errors)
    assert good["spearman_conf_error"] == pytest.approx(-1.0)
    assert bad["spearman_conf_error"] == pytest.approx(1.0)
    noisy = np.exp(-errors) + np.random.default_rng(2).normal(0, 0.05, errors.shape)
    assert -1.0 < landmark_report(pred, gt, SCHEME_68, confidence=noisy)["spearman_conf_error"] < 0.0


def test_report_keys_and_units():
    gt = faces(3)
    report = landmark_report(shifted(gt, [0.5, 1.0, 2.0]), gt, SCHEME_68)
    assert {"n", "nme", "fr10", "auc10", "regions", "per_image_nme"} <= set(report)
    assert "spearman_conf_error" not in report
    assert len(report["per_image_nme"]) == report["n"] == 3
    assert report["per_image_nme"] == pytest.approx([5.0, 10.0, 20.0])
    assert 0.0 <= report["auc10"] <= 1.0
    assert all(isinstance(v, float) for v in [report["nme"], report["fr10"], report["auc10"]])


def test_reference_report_measures_the_distance_between_two_models_in_nme_units():
    """A model 1 px right of the truth and a reference 3 px left (iod 10): the reference's NME is 30%, the two are
    40% apart, and the model is closer to the truth on every face. Then per-face errors of 1-4 px against 3, 3, 3 and
    1 px: the model is closer on two faces of four (a tie is not closer), and the errors correlate at -3 / sqrt(15)."""
    gt = faces(4)
    report = reference_report(shifted(gt, [1, 1, 1, 1]), shifted(gt, [-3, -3, -3, -3]), gt, SCHEME_68)
    assert report["nme"] == pytest.approx(30.0)
    assert report["distance"] == pytest.approx(40.0)
    assert report["model_closer_share"] == pytest.approx(100.0)
    report = reference_report(shifted(gt, [1, 2, 3, 4]), shifted(gt, [-3, -3, -3, -1]), gt, SCHEME_68)
    assert report["model_closer_share"] == pytest.approx(50.0)
    assert report["nme_correlation"] == pytest.approx(-3 / 15 ** 0.5)
