"""Per-span column profiles: what drift is measured against, persisted with the spans.

A profile holds, per feature column, what the gate's distances need from a reference span: the
category frequencies (L-infinity distance) or the quantile bin edges and the counts in them
(Jensen-Shannon divergence on the reference's bins), plus the null share and mean for messages.
Ingest writes one profile per span it sees (``spans/history/span-N.json``), including spans of
the input outside the run's window, and carries older ones forward, so the first span of a window
and a single-span scheduled run always have a previous span to compare with.

Profiles are built by :class:`ProfileAccumulator` from counts added batch by batch on fixed bins,
so a span of any size is profiled (at ingest) and compared (by the gate) without holding its rows;
the distances are computed from those counts (:func:`js_counts`, :func:`linf_freq`), and the
Series forms below are the same functions on one batch.

Framework-neutral: numpy and pandas only.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

BINS = 20


def numeric_edges(values: pd.Series, bins: int = BINS) -> list[float]:
    """Quantile bin edges of ``values`` with the outer edges open (-inf, inf); [] without values."""
    v = values.dropna().astype(float).to_numpy()
    if len(v) == 0:
        return []
    edges = np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        edges = np.array([v.min() - 0.5, v.max() + 0.5])
    edges[0], edges[-1] = -np.inf, np.inf
    return [float(e) for e in edges]


def _numbers(values: pd.Series) -> np.ndarray:
    return values.dropna().astype(float).to_numpy()


def _categories(values: pd.Series) -> pd.Series:
    return values.dropna().astype(str)


def bins_of(profile: dict) -> dict[str, list[float] | None]:
    """A profile's bins per column: its numeric edges, None for a categorical column."""
    return {k: p.get("edges", []) if p["kind"] == "numeric" else None
            for k, p in profile.get("columns", {}).items()}


class ProfileAccumulator:
    """Counts towards a profile, added batch by batch (:meth:`add`) and mergeable (:meth:`merge`):
    per column the rows, nulls, and either category counts or a histogram on fixed ``edges`` (plus
    the sum, for the mean). ``columns`` maps a column name to its bin edges, or to None for a
    categorical column. Columns absent from every batch are left out of :meth:`profile`."""

    def __init__(self, columns: dict[str, list[float] | None]):
        self.rows = 0
        self.edges = {k: (None if e is None else [float(x) for x in e]) for k, e in columns.items()}
        self.seen: set[str] = set()
        self.nulls = dict.fromkeys(columns, 0)
        self.n = dict.fromkeys(columns, 0)
        self.sums = dict.fromkeys(columns, 0.0)
        self.counts = {k: Counter() if e is None else np.zeros(max(len(e) - 1, 0), dtype=np.int64)
                       for k, e in columns.items()}

    @classmethod
    def binned_like(cls, profile: dict) -> ProfileAccumulator:
        """An accumulator on a profile's own bins (and kinds), to compare rows against it."""
        return cls(bins_of(profile))

    def add(self, rows: pd.DataFrame, times: np.ndarray | None = None) -> None:
        """Counts ``rows`` in; ``times[i]`` (whole numbers) counts row i that many times: rows
        resampled with replacement are counted through their originals, without copying them."""
        if times is None:
            self.rows += len(rows)
        else:
            times = np.asarray(times, dtype=np.int64)
            self.rows += int(times.sum())
        for name, edges in self.edges.items():
            if name not in rows.columns:
                continue
            self.seen.add(name)
            values = rows[name]
            null = values.isna().to_numpy()
            w = None if times is None else times[~null]
            self.nulls[name] += int(null.sum() if times is None else times[null].sum())
            if edges is None:
                cats = _categories(values)
                if w is None:
                    self.n[name] += len(cats)
                    self.counts[name].update(cats.value_counts().to_dict())
                else:
                    self.n[name] += int(w.sum())
                    per = pd.Series(w, index=cats.index).groupby(cats.to_numpy()).sum()
                    self.counts[name].update({k: int(c) for k, c in per.items() if c})
            else:
                v = _numbers(values)
                self.n[name] += len(v) if w is None else int(w.sum())
                self.sums[name] += float(v.sum() if w is None else (v * w).sum())
                if len(edges) >= 2 and len(v):
                    self.counts[name] += np.histogram(v, edges, weights=w)[0].astype(np.int64)

    def merge(self, other: ProfileAccumulator) -> ProfileAccumulator:
        """Adds ``other``'s counts (same columns and bins) into this one; returns it."""
        self.rows += other.rows
        self.seen |= other.seen
        for name in self.edges:
            self.nulls[name] += other.nulls[name]
            self.n[name] += other.n[name]
            self.sums[name] += other.sums[name]
            self.counts[name] += other.counts[name]
        return self

    def freq(self, name: str) -> dict[str, float]:
        """Category shares of a categorical column, largest first."""
        c, n = self.counts[name], self.n[name]
        return {str(k): v / n for k, v in c.most_common()} if n else {}

    def column(self, name: str) -> dict:
        """The column's profile, in :func:`column_profile`'s shape."""
        n, edges = self.n[name], self.edges[name]
        if edges is None:
            prof = {"kind": "categorical", "n": n, "freq": self.freq(name)}
        elif n == 0:
            prof = {"kind": "numeric", "n": 0, "edges": [], "counts": [], "mean": None}
        else:
            prof = {"kind": "numeric", "n": n, "edges": edges,
                    "counts": self.counts[name].tolist(), "mean": self.sums[name] / n}
        prof["null_rate"] = self.nulls[name] / self.rows if self.rows else 0.0
        return prof

    def profile(self) -> dict:
        """The span profile (:func:`span_profile`'s shape) of every row added."""
        return {"rows": self.rows,
                "columns": {k: self.column(k) for k in self.edges if k in self.seen}}

    def distance(self, name: str, ref: dict) -> float:
        """The gate's distance of the rows added against a reference column profile, whose bins
        this accumulator was built on (:meth:`binned_like`)."""
        if ref["kind"] == "categorical":
            return linf_freq(self.freq(name), ref["freq"])
        if not self.n[name] or not ref.get("n"):
            return 0.0
        return js_counts(self.counts[name], ref["counts"])


def accumulator_for(rows: pd.DataFrame, contract) -> ProfileAccumulator:
    """An empty accumulator for the contract's feature columns with bins from ``rows``: quantile
    edges for numbers, categories for the rest (the bins a span's profile is kept on)."""
    return ProfileAccumulator({c.name: None if c.vocabulary else numeric_edges(rows[c.name])
                               for c in contract.features if c.name in rows.columns})


def numeric_profile(values: pd.Series, bins: int = BINS) -> dict:
    """Quantile edges of ``values`` (outer edges open) and how many values fall in each bin."""
    acc = ProfileAccumulator({"v": numeric_edges(values, bins)})
    acc.add(pd.DataFrame({"v": values}))
    return {k: v for k, v in acc.column("v").items() if k != "null_rate"}


def categorical_profile(values: pd.Series) -> dict:
    acc = ProfileAccumulator({"v": None})
    acc.add(pd.DataFrame({"v": values}))
    return {k: v for k, v in acc.column("v").items() if k != "null_rate"}


def column_profile(values: pd.Series, categorical: bool) -> dict:
    prof = categorical_profile(values) if categorical else numeric_profile(values)
    prof["null_rate"] = float(values.isna().mean()) if len(values) else 0.0
    return prof


def span_profile(rows: pd.DataFrame, contract) -> dict:
    """The profile of one span's labelled rows (train + eval), every feature column."""
    acc = accumulator_for(rows, contract)
    acc.add(rows)
    return acc.profile()


def linf_freq(p: dict[str, float], q: dict[str, float]) -> float:
    """L-infinity distance between two category-share maps (a missing category: share 0)."""
    keys = set(p) | set(q)
    return float(max((abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in keys), default=0.0))


def js_counts(p, q) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) between two histograms on the same bins."""
    p = np.asarray(p, dtype=float) + 1e-9
    q = np.asarray(q, dtype=float) + 1e-9
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    return float(0.5 * np.sum(p * np.log2(p / m)) + 0.5 * np.sum(q * np.log2(q / m)))


def distance(values: pd.Series, ref: dict) -> float:
    """The gate's distance of ``values`` against a reference column profile: L-infinity between
    category frequencies, Jensen-Shannon on the reference's quantile bins for numbers."""
    acc = ProfileAccumulator({"v": None if ref["kind"] == "categorical" else ref.get("edges", [])})
    acc.add(pd.DataFrame({"v": values}))
    return acc.distance("v", ref)


def linf_vs(values: pd.Series, ref: dict) -> float:
    """L-infinity distance between the category frequencies of ``values`` and the reference's."""
    return distance(values, {**ref, "kind": "categorical"})


def js_vs(values: pd.Series, ref: dict) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of ``values`` against the reference, on the
    reference's quantile bins."""
    return distance(values, {**ref, "kind": "numeric"})
