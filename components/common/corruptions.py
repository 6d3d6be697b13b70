"""A corruption corpus of real rows: what a user's feed gets wrong, each kind at a share of rows.

One place for the corruptions both the engine-agreement test (tests/unit/test_engines_agree.py)
and the validation-engines measurement (infra/validation_engines.py) apply, so the test and the
report's detection matrix speak of the same damage. Each kind names the column it damages (a
flights column, checked against the contract when the corpus is built), derives its bad value
from the contract (the range's bounds, the vocabulary), and says which of the contract's checks
should name it (``expect``: (check, column) pairs, the rules' vocabulary).

``corrupt(frame, kind, rate)`` damages ``round(rate * rows)`` rows (at least one) picked at
random with a fixed seed; a kind that is not about rows (a dropped column) ignores the rate.
Pure pandas/numpy: no engine imported here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from components.common.contract import Contract

# The shares of rows damaged in the measurement: below and at the contract's max_bad_row_rate
# (1 %: at it, rows are quarantined and the run goes on), 10 % (the default max_null_rate and
# max_label_missing_rate) and the whole feed (a shifted distribution: the README's x1.5 example).
RATES = (0.001, 0.01, 0.1, 1.0)


@dataclass(frozen=True)
class Corruption:
    kind: str
    title: str                      # a few words for the report
    column: str
    expect: frozenset               # {(check, column)} the contract's checks name it by
    rated: bool                     # False: a table-level change, the rate does not apply
    damage: Callable                # (frame, row positions, contract) -> damaged frame


def _set(frame: pd.DataFrame, column: str, rows: np.ndarray, value) -> pd.DataFrame:
    out = frame.copy()
    if isinstance(value, str) and out[column].dtype != object:
        out[column] = out[column].astype(object)  # text in a number column, as a CSV would hold
    elif value is None and pd.api.types.is_integer_dtype(out[column]):
        out[column] = out[column].astype("Int64")
    out.iloc[rows, out.columns.get_loc(column)] = value
    return out


def _scaled(column: str, factor: float):
    """A shifted distribution that stays inside the range: values times ``factor``, capped at the
    contract's max (so only the distribution moves, no row breaks a row rule)."""
    def damage(frame, rows, contract):
        col = contract.column(column)
        out = frame.copy()
        moved = out[column].iloc[rows] * factor
        if col.max is not None:
            moved = moved.clip(upper=col.max)
        out.iloc[rows, out.columns.get_loc(column)] = moved.round().astype(out[column].dtype) \
            if col.type == "int" else moved
        return out
    return damage


def _duplicated(frame, rows, contract):
    return pd.concat([frame, frame.iloc[rows]], ignore_index=True)


def corpus(contract: Contract) -> dict[str, Corruption]:
    """The corruptions, by kind, with their bad values taken from ``contract``."""
    def col(name: str):
        return contract.column(name)  # a KeyError-like DataError when the contract lacks it

    above, below = col("distance"), col("humid")
    unseen = "ZZ"
    assert unseen not in col("carrier").vocabulary
    top_origin = col("origin").vocabulary[0]
    label = contract.label.source
    kinds = [
        Corruption("null_required", "null in a non-nullable column", "origin",
                   frozenset({("not_null", "origin")}), True,
                   lambda f, r, c: _set(f, "origin", r, None)),
        Corruption("above_range", "value above the range", above.name,
                   frozenset({("range", above.name)}), True,
                   lambda f, r, c: _set(f, above.name, r, int(above.max + (above.max - above.min)))),
        Corruption("below_range", "value below the range", below.name,
                   frozenset({("range", below.name)}), True,
                   lambda f, r, c: _set(f, below.name, r, float(below.min - 5))),
        Corruption("unseen_category", "category outside the vocabulary", "carrier",
                   frozenset({("unseen", "carrier")}), True,
                   lambda f, r, c: _set(f, "carrier", r, unseen)),
        Corruption("text_in_numeric", "text in a numeric column", "temp",
                   frozenset({("schema", "temp")}), True,
                   lambda f, r, c: _set(f, "temp", r, "warm")),
        Corruption("dropped_column", "a contract column dropped", "distance",
                   frozenset({("schema", "distance")}), False,
                   lambda f, r, c: f.drop(columns=["distance"])),
        Corruption("nulls_nullable", "nulls in a nullable column", "temp",
                   frozenset({("nulls", "temp")}), True,
                   lambda f, r, c: _set(f, "temp", r, np.nan)),
        Corruption("label_missing", "label source missing", label,
                   frozenset({("label_missing", label)}), True,
                   lambda f, r, c: _set(f, label, r, np.nan)),
        Corruption("numeric_drift", "numeric distribution shifted (x1.5)", "distance",
                   frozenset({("drift", "distance")}), True, _scaled("distance", 1.5)),
        Corruption("category_drift", f"categories shifted (to '{top_origin}')", "origin",
                   frozenset({("drift", "origin")}), True,
                   lambda f, r, c: _set(f, "origin", r, top_origin)),
        Corruption("duplicates", "duplicated rows", "",
                   frozenset({("duplicates", ", ".join(contract.split.key))}), True, _duplicated),
    ]
    return {k.kind: k for k in kinds}


def damaged_rows(n: int, rate: float, seed: int = 0) -> np.ndarray:
    """Positions of ``round(rate * n)`` rows (at least one, at most ``n``), fixed by ``seed``."""
    k = min(n, max(1, round(rate * n)))
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def corrupt(frame: pd.DataFrame, kind: str, rate: float, contract: Contract,
            seed: int = 0) -> pd.DataFrame:
    """``frame`` (real rows) with ``kind`` applied to a ``rate`` share of its rows (all of the
    table for a kind that is not rated); the input is not modified."""
    c = corpus(contract)[kind]
    rows = damaged_rows(len(frame), rate if c.rated else 1.0, seed)
    return c.damage(frame, rows, contract)


def cases(contract: Contract, rates=RATES) -> list[tuple[str, float]]:
    """(kind, rate) for every kind at every rate; a kind that is not rated once, at rate 1."""
    return [(k, r) for k, c in corpus(contract).items() for r in (rates if c.rated else (1.0,))]
