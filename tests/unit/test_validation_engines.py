"""The validation engines on raw rows (infra/validation_engines.py): the detection matrix of a small
corpus of real rows holds what each engine is known to catch, with every expectation derived from
the contract's thresholds and the corrupted rows themselves, not from a recorded result; the
report section renders it; one engine runs in its own process as the measurement runs it."""

import json
import os
import shutil

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from comparison.validation_engines import measure as ve
from components.common.contract import ROW_RULES, load_contract  # noqa: E402
from components.common.corruptions import corpus, corrupt  # noqa: E402

CONTRACT = load_contract()
RULES = CONTRACT.validation
# A share of rows below max_bad_row_rate (the rules quarantine and go on) and half the feed (a
# whole column of nulls would be read as a column of no type: a schema finding, not a null one).
LOW = RULES.max_bad_row_rate / 4
RATES = (LOW, 0.5)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """The corpus of 2,000 real rows of March 2013 (February as the drift reference), every
    engine over it in this process; read-only for the tests."""
    raw = ve.raw_rows(CONTRACT, None, 201303, rows=2000)
    folder = tmp_path_factory.mktemp("corpus")
    ve.write_corpus(folder, CONTRACT, raw, rates=RATES)
    doc = ve.compare(folder, isolate=False)
    return raw, folder, doc, {(r["kind"], r["rate"]): r for r in doc["matrix"]}


def _verdict(row, engine):
    return row[engine]["verdict"], set(row[engine]["findings"])


def test_clean_rows_fail_no_engine(measured):
    _, _, doc, _ = measured
    for engine, found in doc["clean_findings"].items():
        assert [f for f in found if f["policy"] == "fail"] == [], engine


def test_row_rules_every_engine_at_every_rate_the_rules_by_the_contracts_share(measured):
    """A row rule broken by any row: TFDV and GX stop (no tolerated share in a schema or suite);
    the rules quarantine and warn up to max_bad_row_rate, stop above it."""
    _, _, _, m = measured
    for kind, c in corpus(CONTRACT).items():
        (check, column), = c.expect or [(None, None)]
        if check not in ROW_RULES or check == "duplicates":  # only the rules have it (below)
            continue
        for rate in RATES:
            row = m[(kind, rate)]
            for engine in ("tfdv", "gx"):
                assert _verdict(row, engine) == ("fail", {f"{check}:{column}"}), (kind, rate, engine)
            share = row["rows"] and round(rate * row["rows"]) / row["rows"]
            policy = "fail" if share > RULES.max_bad_row_rate else "warn"
            verdict, found = _verdict(row, "rules")
            assert verdict == policy and f"{check}:{column}" in found, (kind, rate, row["rules"])


def test_text_in_a_numeric_column(measured):
    """pandas reads a column with one word among numbers as text: TFDV and GX see a column of the
    wrong type at any share; the rules quarantine the rows (malformed) until the share of
    non-numbers passes type_error_share, then call it the column's type (schema)."""
    _, _, _, m = measured
    column = corpus(CONTRACT)["text_in_numeric"].column
    for rate in RATES:
        row = m[("text_in_numeric", rate)]
        for engine in ("tfdv", "gx"):
            assert _verdict(row, engine) == ("fail", {f"schema:{column}"}), (rate, engine)
        check = "schema" if rate > RULES.type_error_share else "malformed"
        assert f"{check}:{column}" in _verdict(row, "rules")[1], (rate, row["rules"])
    assert m[("dropped_column", 1.0)]["rules"]["findings"] == ["schema:distance"]
    assert all(m[("dropped_column", 1.0)][e]["verdict"] == "fail" for e in ve.ENGINES)


def test_shares_only_the_rules_check_flagged_by_their_thresholds(measured):
    """Null shares, the missing-label share and drift are in the rules alone: flagged exactly when
    the corrupted rows' figure passes the contract's threshold (below it: not flagged); the
    contract's TFDV schema and GX suite have no such check."""
    from components.common.gate import jensen_shannon, linf

    raw, _, _, m = measured
    nullable = CONTRACT.column(corpus(CONTRACT)["nulls_nullable"].column)
    label = CONTRACT.label.source
    for rate in RATES:
        nulls = corrupt(raw["rows"], "nulls_nullable", rate, CONTRACT)
        missing = corrupt(raw["rows"], "label_missing", rate, CONTRACT)
        labelled = nulls[nulls[label].notna()]
        expect = {
            "nulls_nullable": labelled[nullable.name].isna().mean() > nullable.max_null_rate,
            "label_missing": missing[label].isna().mean() > RULES.max_label_missing_rate,
        }
        for kind, col, dist in (("numeric_drift", "distance", jensen_shannon),
                                ("category_drift", "origin", linf)):
            shifted = corrupt(raw["rows"], kind, rate, CONTRACT)
            ref = raw["reference"][raw["reference"][label].notna()][col]
            value = dist(shifted[shifted[label].notna()][col], ref)
            expect[kind] = value > RULES.drift_threshold(CONTRACT.column(col))
        for kind, flagged in expect.items():
            (check, column), = corpus(CONTRACT)[kind].expect
            row = m[(kind, rate)]
            assert (f"{check}:{column}" in row["rules"]["findings"]) == flagged, (kind, rate, row)
            assert row["tfdv"]["verdict"] == row["gx"]["verdict"] == "-" , (kind, rate)
        if rate == LOW:  # the corpus holds shares below the thresholds, and they pass
            assert not expect["nulls_nullable"] and not expect["label_missing"], expect


def test_duplicates_only_the_shared_gate_and_figures_per_engine(measured):
    """Duplicated rows: TFDV's and GX's checks are per column and see nothing; the shared gate's
    duplicates rule quarantines the repeats and fails the span above max_bad_row_rate."""
    _, _, doc, m = measured
    assert all(m[("duplicates", r)][e]["verdict"] == "-" for r in RATES for e in ve.ENGINES
               if e != "rules")
    for r in RATES:
        row = m[("duplicates", r)]
        share = (row["rows"] - doc["rows"]) / row["rows"]  # the repeats among the rows checked
        assert row["rules"]["on_target"], row
        assert row["rules"]["verdict"] == ("fail" if share > RULES.max_bad_row_rate else "warn"), row
    for engine in ve.ENGINES:
        f = doc["figures"][engine]
        assert f["cases"] == len(doc["matrix"]) + 1 and f["check_s"] > 0 and f["peak_rss_mb"] > 50


def test_section_says_what_each_engine_contributes(measured, tmp_path):
    from comparison.validation_engines import section

    _, _, doc, _ = measured
    doc = doc | {"pipeline": ve.pipeline_design(CONTRACT), "measured_at": "now", "cpu_count": 2,
                 "wall_s": 1.0}
    (tmp_path / ve.RESULT).write_text(json.dumps(doc, default=str))
    data = section.collect([{"dir": str(tmp_path), "label": "run"}], {})
    text = data["runs"][0]["sentences"]
    assert any(s.startswith(f"Only {ve.ENGINE_NAMES['rules']} catches: ") and "label source missing" in s
               and "duplicated rows" in s for s in text), text
    missed = [r["title"] for r in doc["matrix"] if all(r[e]["verdict"] == "-" for e in ve.ENGINES)
              and not any(q["kind"] == r["kind"] and q[e]["verdict"] != "-"
                          for q in doc["matrix"] for e in ve.ENGINES)]
    lines = [s for s in text if s.startswith("No engine catches: ")]
    assert "duplicated rows" not in missed and all(t in "".join(lines) for t in missed), (missed, lines)
    assert any("quarantines them and goes on" in s for s in text), text
    page = section.render(data)
    assert page.count("<table>") == 2 and "data:image/png;base64," in page
    assert section.collect([{"dir": str(tmp_path / "none"), "label": "x"}], {}) is None


def test_an_engine_in_its_own_process(measured, tmp_path):
    """The measurement's path: one engine per interpreter, its result file read back."""
    _, folder, _, _ = measured
    doc = json.loads((folder / "corpus.json").read_text())
    small = tmp_path / "corpus"
    small.mkdir()
    for name in [c["file"] for c in doc["cases"][:2]] + ["reference.csv"]:
        shutil.copy(folder / name, small / name)
    (small / "corpus.json").write_text(json.dumps(doc | {"cases": doc["cases"][:2]}))
    out = ve.compare(small, engines=("rules",))
    assert out["isolated"] and out["figures"]["rules"]["cases"] == 2
    assert out["figures"]["rules"]["peak_rss_mb"] > out["figures"]["rules"]["rss_after_import_mb"] / 2
    assert out["matrix"][0]["rules"]["verdict"] == "warn" and out["matrix"][0]["rules"]["on_target"]
