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
