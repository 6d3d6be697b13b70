"""Same data in -> same verdict: TFDV (the TFX stack's engine, against the contract's schema), the
Great Expectations checkpoint (the PyTorch stack's engine, the contract's suite) and the contract's
own row rules (ingest's screening) find the same (check, column) on each corrupted copy of real rows."""

import os

import pandas as pd
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from components.common.contract import load_contract  # noqa: E402
from components.common.ingest import ingest, screen  # noqa: E402

CONTRACT = load_contract()


@pytest.fixture(scope="module")
def span_rows(tmp_path_factory):
    """Real labelled rows of one span, as ingest wrote them (contract dtypes + label)."""
    out = tmp_path_factory.mktemp("spans")
    ingest(CONTRACT, out, months=[3], sample=3000)
    return pd.read_parquet(out / "span-201303" / "train" / "data.parquet")


def _tfdv(frame: pd.DataFrame) -> set:
    import tensorflow_data_validation as tfdv

    from components.tfx.schema import contract_to_schema
    from components.tfx.validate import anomalies_to_checks

    stats = tfdv.generate_statistics_from_dataframe(frame)
    anomalies = tfdv.validate_statistics(stats, contract_to_schema(CONTRACT), environment="TRAINING")
    return {(c.check, c.column) for c in anomalies_to_checks(anomalies, CONTRACT.validation.policies)}


def _gx(frame: pd.DataFrame) -> set:
    from components.torch.validate import gx_checks, run_checkpoint

    return {(c.check, c.column) for c in gx_checks(run_checkpoint(CONTRACT, {"rows": frame}), CONTRACT)}


def _rules(frame: pd.DataFrame) -> set:
    s = screen(frame.drop(columns=[CONTRACT.label.name]), CONTRACT, "copy")
    found = {(c.check, c.column) for c in s.checks}
    found |= {tuple(k.split("|", 1)) for k in s.rule_rows.columns if "|" in k and s.rule_rows[k].any()}
    return found


def _every(frame, column, value, step=25):
    bad = frame.copy()
    if value is not None and isinstance(value, str) and bad[column].dtype != object:
        bad[column] = bad[column].astype(object)
    bad.loc[bad.index[::step], column] = value
    return bad


CASES = {
    "dropped column": (lambda f: f.drop(columns=["distance"]), {("schema", "distance")}),
    "text column": (lambda f: f.assign(temp="warm"), {("schema", "temp")}),
    "out of range": (lambda f: _every(f, "distance", 99_999), {("range", "distance")}),
    "below range": (lambda f: _every(f, "humid", -5.0), {("range", "humid")}),
    "unseen category": (lambda f: _every(f, "carrier", "ZZ"), {("unseen", "carrier")}),
    "null in non-nullable": (lambda f: _every(f, "origin", None), {("not_null", "origin")}),
}


def test_clean_rows_pass_all_three(span_rows):
    assert _tfdv(span_rows) == set() and _gx(span_rows) == set() and _rules(span_rows) == set()


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_verdict_from_tfdv_gx_and_the_rules(span_rows, case):
    corrupt, expected = CASES[case]
    frame = corrupt(span_rows)
    verdicts = {"tfdv": _tfdv(frame), "gx": _gx(frame), "rules": _rules(frame)}
    assert verdicts == {k: expected for k in verdicts}, verdicts


@pytest.mark.parametrize("case", sorted(CASES))
def test_gx_in_batches_finds_what_gx_on_the_whole_frame_finds(span_rows, case, tmp_path,
                                                              monkeypatch):
    """The validate stage runs the checkpoint batch by batch over the rows read in place: the same
    failed expectations, with unexpected counts summed over the batches, as one run on the whole
    frame (which the cases above hold to TFDV's and the rules' verdict)."""
    from components.torch import validate

    frame = CASES[case][0](span_rows)
    path = tmp_path / "rows.parquet"
    frame.to_parquet(path, row_group_size=300)
    whole = validate.run_checkpoint(CONTRACT, {"rows": frame})
    monkeypatch.setattr(validate, "GX_BATCH_ROWS", 700)  # 3000 rows: 4 runs of 3 row groups or fewer
    batched = validate.run_checkpoint(CONTRACT, {"rows": (str(path), "train")})
    counts = lambda r: [(f["expectation"], f["column"], f["unexpected_count"])  # noqa: E731
                        for f in r.failures]
    assert not whole.passed and not batched.passed
    assert counts(batched) == counts(whole) and batched.evaluated == whole.evaluated
    assert [len(f["examples"]) for f in batched.failures] == [len(f["examples"]) for f in whole.failures]
