"""Same data in -> same verdict: TFDV (the TFX stack's engine, against the contract's schema), the
Great Expectations checkpoint (the PyTorch stack's engine, the contract's suite) and the contract's
own row rules (ingest's screening) find the same (check, column) on each corrupted copy of real rows
(the corruptions: components/common/corruptions.py, shared with the report's validation-engines
matrix, which measures the same engines at several shares of damaged rows)."""

import os

import pandas as pd
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from components.common.contract import load_contract  # noqa: E402
from components.common.corruptions import corpus, corrupt  # noqa: E402
from components.common.ingest import ingest
from components.common.screen import screen

CONTRACT = load_contract()


@pytest.fixture(scope="module")
def span_rows(tmp_path_factory):
    """Real labelled rows of one span, as ingest wrote them (contract dtypes + label)."""
    out = tmp_path_factory.mktemp("spans")
    ingest(CONTRACT, out, months=[3], sample=3000)
    return pd.read_parquet(out / "span-201303" / "train" / "data.parquet")


def _tfdv(frame: pd.DataFrame) -> set:
    from comparison.validation_engines.measure import tfdv_findings

    return {(c.check, c.column) for c in tfdv_findings(frame, CONTRACT, with_label=True)}


def _gx(frame: pd.DataFrame) -> set:
    from comparison.validation_engines.measure import gx_findings

    return {(c.check, c.column) for c in gx_findings(frame, CONTRACT, with_label=True)}


def _rules(frame: pd.DataFrame) -> set:
    s = screen(frame.drop(columns=[CONTRACT.label.name]), CONTRACT, "copy")
    found = {(c.check, c.column) for c in s.checks}
    found |= {tuple(k.split("|", 1)) for k in s.rule_rows.columns if "|" in k and s.rule_rows[k].any()}
    return found


# The shared corpus's corruptions (components/common/corruptions.py, which the report's
# validation-engines matrix also applies) that every engine reports by the same (check, column),
# each at the share of rows where they agree: any share for a row rule, the whole column for text
# in a numeric column (below type_error_share the rules quarantine rows as malformed instead).
CASES = {"dropped_column": 1.0, "text_in_numeric": 1.0, "above_range": 0.04, "below_range": 0.04,
         "unseen_category": 0.04, "null_required": 0.04}


def _case(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    return corrupt(frame, kind, CASES[kind], CONTRACT)


def test_clean_rows_pass_all_three(span_rows):
    assert _tfdv(span_rows) == set() and _gx(span_rows) == set() and _rules(span_rows) == set()


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_verdict_from_tfdv_gx_and_the_rules(span_rows, case):
    expected = set(corpus(CONTRACT)[case].expect)
    frame = _case(span_rows, case)
    verdicts = {"tfdv": _tfdv(frame), "gx": _gx(frame), "rules": _rules(frame)}
    assert verdicts == {k: expected for k in verdicts}, verdicts


@pytest.mark.parametrize("case", sorted(CASES))
def test_gx_in_batches_finds_what_gx_on_the_whole_frame_finds(span_rows, case, tmp_path,
                                                              monkeypatch):
    """The validate stage runs the checkpoint batch by batch over the rows read in place: the same
    failed expectations, with unexpected counts summed over the batches, as one run on the whole
    frame (which the cases above hold to TFDV's and the rules' verdict)."""
    from components.torch import validate

    frame = _case(span_rows, case)
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
