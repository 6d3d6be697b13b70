"""Evaluation metrics, computed the same way for any stack's predictions.

Plain NumPy (no scikit-learn import: each KFP task is a fresh process, and importing
sklearn.metrics costs ~1.2 s there); tests check these against scikit-learn.
"""

from __future__ import annotations

import numpy as np


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + 1 + ends) / 2.0)[inverse]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied scores counted half)."""
    labels = np.asarray(labels).astype(bool)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both classes among the labels")
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """The metrics TFMA reports for the TFX stack, by the same names."""
    y = np.asarray(labels).astype(np.float64)
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-7, 1 - 1e-7)
    return {
        "auc": roc_auc(y, p),
        "binary_accuracy": float(np.mean((p >= 0.5) == (y == 1))),
        "binary_crossentropy": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
        "example_count": float(len(y)),
    }


def roc_points(labels: np.ndarray, probabilities: np.ndarray, max_points: int = 200) -> dict:
    """The ROC curve (one point per distinct threshold), thinned to at most ``max_points``."""
    y = np.asarray(labels).astype(bool)
    order = np.argsort(-np.asarray(probabilities, dtype=np.float64), kind="mergesort")
    p, y = np.asarray(probabilities, dtype=np.float64)[order], y[order]
    last_of_threshold = np.r_[np.nonzero(np.diff(p))[0], len(p) - 1]
    tps = np.cumsum(y)[last_of_threshold]
    fps = (last_of_threshold + 1) - tps
    tpr = np.r_[0.0, tps / max(tps[-1], 1)]
    fpr = np.r_[0.0, fps / max(fps[-1], 1)]
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
