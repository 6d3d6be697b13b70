"""Evaluation metrics, computed the same way for any stack's predictions."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """The metrics TFMA reports for the TFX stack, by the same names."""
    p = np.clip(probabilities.astype(np.float64), 1e-7, 1 - 1e-7)
    return {
        "auc": float(roc_auc_score(labels, p)),
        "binary_accuracy": float(accuracy_score(labels, p >= 0.5)),
        "binary_crossentropy": float(log_loss(labels, p, labels=[0, 1])),
        "example_count": float(len(labels)),
    }


def roc_points(labels: np.ndarray, probabilities: np.ndarray, max_points: int = 200) -> dict:
    """The ROC curve, thinned to at most ``max_points`` points (for plots)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, probabilities)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(max_points, len(fpr))).round().astype(int))
    return {"fpr": [round(float(x), 5) for x in fpr[keep]],
            "tpr": [round(float(x), 5) for x in tpr[keep]]}


def calibration(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> dict:
    """Mean predicted probability vs observed positive rate in equal-width probability bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    out = {"predicted": [], "observed": [], "count": []}
    for b in range(bins):
        mask = idx == b
        if mask.any():
            out["predicted"].append(round(float(probabilities[mask].mean()), 5))
            out["observed"].append(round(float(labels[mask].mean()), 5))
            out["count"].append(int(mask.sum()))
    return out
