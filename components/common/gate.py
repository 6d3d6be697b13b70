"""The data gate's statistics checks, framework-neutral (WIP for issue 5).

Both stacks' validate stages are to call :func:`evaluate_gate` on the same rows, next to their own
engine (TFDV anomalies / the GX checkpoint), so the same data gets the same verdict. Checks:

* volume: fewer rows than the contract's ``min_rows_per_span``;
* null rate per column above its allowed rate (0 for non-nullable columns);
* unseen categories: the share of values outside the vocabulary above a rate;
* drift against the previous span: L-infinity distance of categorical distributions,
  Jensen-Shannon divergence of numeric histograms (bins from the previous span);
* train/eval skew: the same distances between the two splits of one span.

Each check carries a policy: ``fail`` stops the run, ``warn`` only alerts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from components.common.alerts import FailedCheck
from components.common.contract import Contract


@dataclass(frozen=True)
class GateRules:
    # Nullable columns (wind_gust is ~70 % null in 2013); to move per column into the contract.
    max_null_rate: float = 0.95
    max_unseen_rate: float = 0.0
    drift_linf: float = 0.25            # categorical, vs the previous span
    drift_js: float = 0.2               # numeric, vs the previous span
    skew_linf: float = 0.2              # train vs eval of the same span
    policies: dict = field(default_factory=lambda: {
        "volume": "fail", "nulls": "fail", "unseen": "fail", "drift": "warn", "skew": "warn"})


def linf(a: pd.Series, b: pd.Series) -> float:
    pa_, pb = a.astype(str).value_counts(normalize=True), b.astype(str).value_counts(normalize=True)
    keys = pa_.index.union(pb.index)
    return float((pa_.reindex(keys, fill_value=0) - pb.reindex(keys, fill_value=0)).abs().max())


def jensen_shannon(a: pd.Series, b: pd.Series, bins: int = 20) -> float:
    a, b = a.dropna().astype(float).to_numpy(), b.dropna().astype(float).to_numpy()
    if len(a) == 0 or len(b) == 0:
        return 0.0
    edges = np.unique(np.quantile(b, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        edges = np.array([b.min() - 0.5, b.max() + 0.5])
    edges[0], edges[-1] = -np.inf, np.inf
    p = np.histogram(a, edges)[0] + 1e-9
    q = np.histogram(b, edges)[0] + 1e-9
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    return float(0.5 * np.sum(p * np.log2(p / m)) + 0.5 * np.sum(q * np.log2(q / m)))


def evaluate_gate(contract: Contract, splits: dict[str, pd.DataFrame],
                  previous: pd.DataFrame | None = None, rules: GateRules | None = None
                  ) -> list[FailedCheck]:
    """Every failed check (fail and warn policies) for one span's splits."""
    rules = rules or GateRules()
    out: list[FailedCheck] = []
    rows = sum(len(f) for f in splits.values())
    if rows < contract.min_rows_per_span:
        out.append(FailedCheck("volume", None, rows, f">= {contract.min_rows_per_span} rows",
                               rules.policies["volume"]))
    allx = pd.concat(list(splits.values()), ignore_index=True) if splits else pd.DataFrame()
    for c in contract.features:
        if c.name not in allx.columns or len(allx) == 0:
            continue
        col = allx[c.name]
        rate = float(col.isna().mean())
        allowed = rules.max_null_rate if c.nullable else 0.0
        if rate > allowed:
            out.append(FailedCheck("nulls", c.name, round(rate, 4), f"<= {allowed}",
                                   rules.policies["nulls"],
                                   allx[col.isna()].head(3).to_dict("records")))
        if c.vocabulary:
            unseen = ~col.dropna().astype(str).isin(c.vocabulary)
            share = float(unseen.mean()) if len(unseen) else 0.0
            if share > rules.max_unseen_rate:
                out.append(FailedCheck("unseen", c.name, round(share, 4), f"<= {rules.max_unseen_rate}",
                                       rules.policies["unseen"],
                                       sorted(col.dropna().astype(str)[unseen].unique())[:3]))
        if previous is not None and c.name in previous.columns:
            if c.vocabulary:
                d, limit, name = linf(col, previous[c.name]), rules.drift_linf, "L-inf"
            else:
                d, limit, name = jensen_shannon(col, previous[c.name]), rules.drift_js, "JS"
            if d > limit:
                out.append(FailedCheck("drift", c.name, f"{name} {d:.3f}", f"<= {limit}",
                                       rules.policies["drift"]))
        if {"train", "eval"} <= set(splits) and c.vocabulary:
            s = linf(splits["train"][c.name], splits["eval"][c.name])
            if s > rules.skew_linf:
                out.append(FailedCheck("skew", c.name, f"L-inf {s:.3f}", f"<= {rules.skew_linf}",
                                       rules.policies["skew"]))
    return out
