import json

import pandas as pd
import pytest

from components.common.contract import load_contract
from components.common.errors import DataError
from components.common.ingest import ingest
from components.common.screen import reason_no_label
from components.common.sources import load_default_table
from components.common.spans import parse_months

CONTRACT = load_contract()


@pytest.fixture(scope="module")
def flights():
    table, _ = load_default_table(CONTRACT)
    return table


def test_default_table_is_flights_joined_with_origin_weather(flights):
    assert len(flights) == 336_776  # the join must not duplicate flights
    assert set(CONTRACT.column_names) <= set(flights.columns)
    assert flights["temp"].notna().mean() > 0.99


def test_parse_months():
    assert parse_months("1-3") == [1, 2, 3]
    assert parse_months("1,4,7") == [1, 4, 7]
    assert parse_months(None) is None  # every month present
    with pytest.raises(DataError, match="1..12"):
        parse_months("0-13")
    with pytest.raises(DataError, match="expected a range"):
        parse_months("jan")


@pytest.fixture()
def small_csv(tmp_path, flights):
    part = flights[flights.month.isin([1, 2])].sample(2000, random_state=0)
    path = tmp_path / "flights.csv"
    part.to_csv(path, index=False)
    return path, part


def test_ingest_writes_one_span_per_month_with_label_rule(tmp_path, small_csv):
    path, part = small_csv
    res = ingest(CONTRACT, tmp_path / "spans", input_path=path)
    assert res.span_numbers == [201301, 201302]
    assert res.rows + res.excluded_rows == len(part)
    assert res.excluded_rows == part.arr_delay.isna().sum()
    for span in (201301, 201302):
        d = tmp_path / "spans" / f"span-{span}"
        train = pd.read_parquet(d / "train" / "data.parquet")
        ev = pd.read_parquet(d / "eval" / "data.parquet")
        excl = pd.read_parquet(d / "excluded" / "data.parquet")
        assert (train.month == span % 100).all()
        assert ((train.arr_delay >= 15).astype(int) == train.delayed).all()
        assert train.arr_delay.notna().all() and ev.arr_delay.notna().all()
        assert excl.arr_delay.isna().all() and (excl.reason == reason_no_label(CONTRACT)).all()
        key = list(CONTRACT.split.key)
        assert not set(map(tuple, train[key].to_numpy())) & set(map(tuple, ev[key].to_numpy()))
    manifest = json.loads((tmp_path / "spans" / "manifest.json").read_text())
    assert manifest["rows"] == res.rows


def test_ingest_months_and_stale_spans(tmp_path, small_csv):
    path, _ = small_csv
    ingest(CONTRACT, tmp_path / "spans", input_path=path)
    res = ingest(CONTRACT, tmp_path / "spans", input_path=path, months=[2])
    assert res.span_numbers == [201302]
    # The spans folder holds exactly this run's window.
    assert sorted(p.name for p in (tmp_path / "spans").glob("span-*")) == ["span-201302"]


def test_missing_column_names_file_and_column(tmp_path, small_csv):
    path, part = small_csv
    bad = tmp_path / "bad.csv"
    part.drop(columns=["distance"]).to_csv(bad, index=False)
    with pytest.raises(DataError, match=r"bad.csv breaks the contract 'flights' — schema on column "
                                        r"'distance': observed column missing"):
        ingest(CONTRACT, tmp_path / "spans", input_path=bad)


def test_text_in_numeric_cell_is_quarantined_with_file_row_and_reason(tmp_path, small_csv):
    path, part = small_csv
    part = part.reset_index(drop=True).astype({"temp": object})
    part.loc[7, "temp"] = "hot"
    bad = tmp_path / "bad.csv"
    part.to_csv(bad, index=False)
    res = ingest(CONTRACT, tmp_path / "spans", input_path=bad)
    assert res.quarantined_rows == 1 and res.rows + res.excluded_rows == len(part) - 1
    span = f"span-{int(part.loc[7, 'year']) * 100 + int(part.loc[7, 'month'])}"
    q = pd.read_parquet(tmp_path / "spans" / span / "quarantine" / "data.parquet")
    assert q["where"].tolist() == [f"file {bad}, line 9"]  # line 9: header + 8th data row
    assert q["reason"].tolist() == ["column 'temp': value 'hot' is not a number (rule: type float)"]
    assert q["temp"].tolist() == ["hot"]  # the raw value is kept


def test_sample_is_deterministic(tmp_path, small_csv):
    path, _ = small_csv
    a = ingest(CONTRACT, tmp_path / "a", input_path=path, sample=500)
    b = ingest(CONTRACT, tmp_path / "b", input_path=path, sample=500)
    assert a.to_dict()["spans"] == b.to_dict()["spans"]
    assert a.rows + a.excluded_rows == 500


def test_scale_multiplies_rows_and_keeps_copies_in_their_split(tmp_path):
    contract = load_contract()
    one = ingest(contract, tmp_path / "x1", months=[1], sample=2000)
    four = ingest(contract, tmp_path / "x4", months=[1], sample=2000, scale=4)
    assert four.rows == pytest.approx(4 * one.rows, rel=0.02)
    keys = ["year", "month", "day", "sched_dep_time", "carrier", "flight", "origin", "dest"]
    tr = pd.read_parquet(tmp_path / "x4" / "span-201301" / "train" / "data.parquet")[keys]
    ev = pd.read_parquet(tmp_path / "x4" / "span-201301" / "eval" / "data.parquet")[keys]
    assert tr.duplicated().any()  # copies exist ...
    assert tr.merge(ev.drop_duplicates()).empty  # ... and never cross the split


def test_scale_writes_k_times_each_split_in_bounded_row_groups_and_profiles_what_it_wrote(
        tmp_path, monkeypatch):
    import numpy as np
    import pyarrow.parquet as pq

    from components.common import spans as spans_module

    # Small row groups, so that 4x of 3,000 rows spans several groups and several chunks.
    monkeypatch.setattr(spans_module, "ROW_GROUP_ROWS", 1000)
    one = ingest(CONTRACT, tmp_path / "x1", months=[1, 2], sample=3000, seed=7)
    four = ingest(CONTRACT, tmp_path / "x4", months=[1, 2], sample=3000, seed=7, scale=4)
    ingest(CONTRACT, tmp_path / "again", months=[1, 2], sample=3000, seed=7, scale=4)
    assert [s.span for s in four.spans] == [201301, 201302]
    keys = list(CONTRACT.split.key)
    for a, k in zip(one.spans, four.spans, strict=True):
        # exactly K times each split (excluded too: the label-missing rate is kept), quarantine 1x
        assert (k.train_rows, k.eval_rows, k.excluded_rows, k.quarantined_rows) == (
            4 * a.train_rows, 4 * a.eval_rows, 4 * a.excluded_rows, a.quarantined_rows)
        folder = tmp_path / "x4" / f"span-{k.span}"
        files = {s: pq.ParquetFile(folder / s / "data.parquet") for s in ("train", "eval", "excluded")}
        assert [files[s].metadata.num_rows for s in files] == [k.train_rows, k.eval_rows,
                                                               k.excluded_rows]
        groups = [files["train"].metadata.row_group(i).num_rows
                  for i in range(files["train"].metadata.num_row_groups)]
        assert len(groups) > 4 and set(groups[:-1]) == {1000} and 0 < groups[-1] <= 1000
        tr, ev = (files[s].read().to_pandas() for s in ("train", "eval"))
        base = pd.read_parquet(tmp_path / "x1" / f"span-{k.span}" / "train" / "data.parquet")
        assert tr.head(len(base)).equals(base)   # the input's own rows first, then the copies
        assert tr[keys].duplicated().any() and ev[keys].duplicated().any()  # copies exist ...
        assert tr[keys].drop_duplicates().merge(ev[keys].drop_duplicates()).empty  # ... in their split
        assert len(tr[keys].drop_duplicates()) == len(base[keys].drop_duplicates())  # of its own keys
        # the history profile describes the rows written, 4x, counted chunk by chunk
        prof = json.loads((tmp_path / "x4" / "history" / f"span-{k.span}.json").read_text())
        rows = pd.concat([tr, ev], ignore_index=True)
        assert prof["rows"] == len(rows) == k.train_rows + k.eval_rows
        for col in CONTRACT.features:
            p, v = prof["columns"][col.name], rows[col.name]
            assert p["null_rate"] == pytest.approx(v.isna().mean())
            if col.vocabulary:
                freq = v.dropna().astype(str).value_counts(normalize=True)
                assert p["freq"] == pytest.approx(freq.to_dict())
            else:
                assert p["counts"] == np.histogram(v.dropna().astype(float), p["edges"])[0].tolist()
        # the same seed writes the same files
        assert pq.read_table(tmp_path / "again" / f"span-{k.span}" / "train" / "data.parquet").equals(
            files["train"].read())


def test_conform_for_scoring_stops_at_the_first_bad_row(tmp_path, small_csv):
    from components.common.screen import conform
    from components.common.sources import load_input_table

    _, part = small_csv
    part = part.reset_index(drop=True).astype({"distance": object}).drop(columns=["arr_delay"])
    good = conform(part, CONTRACT, "rows.csv", features_only=True)  # the label source may be absent
    assert list(good.columns) == [c.name for c in CONTRACT.features] and len(good) == len(part)
    part.loc[4, "distance"] = "far"
    (tmp_path / "rows.csv").write_text(part.to_csv(index=False))
    raw, source = load_input_table(tmp_path / "rows.csv")
    with pytest.raises(DataError, match=r"rows.csv, line 6: column 'distance': value 'far' is not a "
                                        r"number \(rule: type int\)"):
        conform(raw, CONTRACT, source, features_only=True)


def test_conform_names_every_missing_column(small_csv):
    from components.common.screen import conform

    with pytest.raises(DataError, match=r"rows.csv breaks the contract 'flights' — schema on table: "
                                        r"observed \d+ columns missing: sched_dep_time, .*distance"):
        conform(pd.DataFrame({"carrier": ["UA"], "origin": ["EWR"]}), CONTRACT, "rows.csv",
                features_only=True)
