"""Landmark accuracy: inter-ocular NME per image, FR@0.10, AUC@0.10 (CED area), per-region NME."""
from __future__ import annotations

import numpy as np

from facelm.schemes import Scheme

CED_LIMIT = 0.10
SUMMARY_KEYS = ("n", "nme", "fr10", "auc10")  # what tables show of a report


def point_errors(pred: np.ndarray, gt: np.ndarray, scheme: Scheme, other: np.ndarray | None = None) -> np.ndarray:
    """(N, K) point errors divided by each image's outer-eye-corner distance; with `other`, the distances from `pred`
    to those points instead of to the ground truth, in the same units."""
    a, b = scheme.eye_corners
    iod = np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)
    return np.linalg.norm(pred - (gt if other is None else other), axis=-1) / iod[:, None]


def reference_report(pred: np.ndarray, reference: np.ndarray, gt: np.ndarray, scheme: Scheme) -> dict:
    """A model against another model on the same faces (a student against its teacher's targets): the reference's
    NME, the model's mean distance to the reference in NME units (percent), the share of faces (percent) where the
    model is the closer to the ground truth, and the correlation of the two models' per-image NME."""
    own = point_errors(pred, gt, scheme).mean(axis=1)
    theirs = point_errors(reference, gt, scheme).mean(axis=1)
    return {"nme": float(theirs.mean() * 100),
            "distance": float(point_errors(pred, gt, scheme, other=reference).mean() * 100),
            "model_closer_share": float((own < theirs).mean() * 100),
            "nme_correlation": float(np.corrcoef(own, theirs)[0, 1])}


def ced_curve(nme: np.ndarray, limit: float = CED_LIMIT, steps: int = 1001) -> tuple[np.ndarray, np.ndarray]:
    thresholds = np.linspace(0.0, limit, steps)
    return thresholds, (nme[None, :] <= thresholds[:, None]).mean(axis=1)


def auc_at(nme: np.ndarray, limit: float = CED_LIMIT) -> float:
    thresholds, ced = ced_curve(nme, limit)
    return float(np.trapezoid(ced, thresholds) / limit)


def format_rho(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def landmark_report(pred: np.ndarray, gt: np.ndarray, scheme: Scheme, confidence: np.ndarray | None = None) -> dict:
    """The JSON report: n, nme/fr10 in percent, auc10 in [0, 1], per-region NME, per-image NME."""
    errors = point_errors(pred, gt, scheme)
    nme = errors.mean(axis=1)
    report = {
        "n": int(len(nme)),
        "scheme": scheme.name,
        "nme": float(nme.mean() * 100),
        "fr10": float((nme > CED_LIMIT).mean() * 100),
        "auc10": auc_at(nme),
        "regions": {name: float(errors[:, list(idx)].mean() * 100) for name, idx in scheme.regions.items()},
        "per_image_nme": [float(v * 100) for v in nme],
    }
    if confidence is not None:
        from scipy.stats import spearmanr  # only with confidences: the bench on a device needs no scipy

        rho = float(spearmanr(confidence.ravel(), errors.ravel()).statistic) if np.ptp(confidence) > 0 else float("nan")
        report["spearman_conf_error"] = rho if np.isfinite(rho) else None  # undefined for constant confidence
    return report


def parts_report(pred: np.ndarray, gt: np.ndarray, scheme: Scheme, part: np.ndarray, labels: list[str],
                 confidence: np.ndarray | None = None) -> dict[str, dict]:
    """NME, FR@10 and AUC@10 on each part's faces (300-W common: HELEN's and LFPW's); `part` holds each face's index
    into `labels`."""
    parts = {}
    for index, label in enumerate(labels):
        mask = part == index
        if mask.any():
            report = landmark_report(pred[mask], gt[mask], scheme, None if confidence is None else confidence[mask])
            parts[label] = {key: report[key] for key in SUMMARY_KEYS}
    return parts


def normalised_mean_jitter(pred: np.ndarray, gt: np.ndarray, scheme: Scheme, valid: np.ndarray | None = None) -> float:
    """NMJ of one clip, in percent of the inter-ocular distance (like NME).

    With per-frame error vectors e_t = pred_t - gt_t (K x 2) for frames t = 0..T-1,
        NMJ = sqrt( mean over t >= 1 and points k of ||e_t,k - e_t-1,k||^2 ) / d * 100,
    d = the ground truth's outer-eye-corner distance averaged over the frames. A prediction that is wrong by the same
    offset in every frame has NMJ 0: NMJ measures frame-to-frame wobble, not accuracy. `valid` (T,) marks the frames
    with a prediction: only steps between two valid frames count and d is averaged over the valid frames. NaN when
    no two consecutive frames are valid.
    """
    valid = np.ones(len(pred), bool) if valid is None else np.asarray(valid, bool)
    pairs = valid[1:] & valid[:-1]
    if not pairs.any():
        return float("nan")
    errors = np.asarray(pred, np.float64) - gt
    steps = (errors[1:] - errors[:-1])[pairs]
    a, b = scheme.eye_corners
    d = np.linalg.norm(gt[valid][:, a] - gt[valid][:, b], axis=-1).mean()
    return float(np.sqrt((steps**2).sum(axis=-1).mean()) / d * 100)
