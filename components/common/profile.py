"""Per-span column profiles: what drift is measured against, persisted with the spans.

A profile holds, per feature column, what the gate's distances need from a reference span: the
category frequencies (L-infinity distance) or the quantile bin edges and the counts in them
(Jensen-Shannon divergence on the reference's bins), plus the null share and mean for messages.
Ingest writes one profile per span it sees (``spans/history/span-N.json``), including spans of
the input outside the run's window, and carries older ones forward, so the first span of a window
and a single-span scheduled run always have a previous span to compare with.

Framework-neutral: numpy and pandas only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BINS = 20


def numeric_profile(values: pd.Series, bins: int = BINS) -> dict:
    """Quantile edges of ``values`` (outer edges open) and how many values fall in each bin."""
    v = values.dropna().astype(float).to_numpy()
    if len(v) == 0:
        return {"kind": "numeric", "n": 0, "edges": [], "counts": [], "mean": None}
    edges = np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        edges = np.array([v.min() - 0.5, v.max() + 0.5])
    edges[0], edges[-1] = -np.inf, np.inf
    return {"kind": "numeric", "n": int(len(v)), "edges": [float(e) for e in edges],
            "counts": np.histogram(v, edges)[0].tolist(), "mean": float(v.mean())}


def categorical_profile(values: pd.Series) -> dict:
    freq = values.dropna().astype(str).value_counts(normalize=True)
    return {"kind": "categorical", "n": int(values.notna().sum()),
            "freq": {str(k): float(p) for k, p in freq.items()}}


def column_profile(values: pd.Series, categorical: bool) -> dict:
    prof = categorical_profile(values) if categorical else numeric_profile(values)
    prof["null_rate"] = float(values.isna().mean()) if len(values) else 0.0
    return prof


def span_profile(rows: pd.DataFrame, contract) -> dict:
    """The profile of one span's labelled rows (train + eval), every feature column."""
    return {"rows": len(rows), "columns": {
        c.name: column_profile(rows[c.name], bool(c.vocabulary)) for c in contract.features
        if c.name in rows.columns}}


def linf_vs(values: pd.Series, ref: dict) -> float:
    """L-infinity distance between the category frequencies of ``values`` and the reference's."""
    p = values.dropna().astype(str).value_counts(normalize=True)
    q = pd.Series(ref["freq"], dtype=float)
    keys = p.index.union(q.index)
    if len(keys) == 0:
        return 0.0
    return float((p.reindex(keys, fill_value=0) - q.reindex(keys, fill_value=0)).abs().max())


def js_vs(values: pd.Series, ref: dict) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of ``values`` against the reference, on the
    reference's quantile bins."""
    a = values.dropna().astype(float).to_numpy()
    if len(a) == 0 or not ref.get("n"):
        return 0.0
    edges = np.array(ref["edges"], dtype=float)
    p = np.histogram(a, edges)[0] + 1e-9
    q = np.array(ref["counts"], dtype=float) + 1e-9
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    return float(0.5 * np.sum(p * np.log2(p / m)) + 0.5 * np.sum(q * np.log2(q / m)))


def distance(values: pd.Series, ref: dict) -> float:
    return linf_vs(values, ref) if ref["kind"] == "categorical" else js_vs(values, ref)
