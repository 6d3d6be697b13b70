"""`contract init` on a table the test generates (not flights): the written contract loads, holds
what the sample says, and passes the data gate on the same data; refusals say what to pass."""

import pyarrow.parquet as pq
import pytest

from components.common.contract import load_contract
from components.common.contract_init import draft
from components.common.errors import ContractError
from components.common.gate import check_spans
from components.common.ingest import ingest
from tests.own_data import customers, with_year_month


@pytest.fixture(scope="module")
def table():
    return customers(2000, months=3)


def _init(tmp_path, df, name="customers.csv", **kw):
    data = tmp_path / name
    df.to_csv(data, index=False)
    out = tmp_path / "contract.yaml"
    out.write_text(draft(data, "churned", out=out, **kw))
    return data, out


def test_init_writes_a_contract_that_loads_and_passes_the_gate(tmp_path, table):
    data, out = _init(tmp_path, table, positive=["yes"])
    text = out.read_text()
    assert text.startswith("# yaml-language-server: $schema=")
    schema = (out.parent / text.splitlines()[0].split("$schema=")[1]).resolve()
    assert schema.name == "contract.schema.json" and schema.is_file()
    c = load_contract(out)
    assert c.date_column == "signup_date" and c.year_column is None
    assert c.label.source == "churned" and c.label.positive == ("yes",)
    assert c.label.meaning == 'P(churned in {"yes"})'
    assert c.split.key == ("customer_id",)
    assert {f.name for f in c.features} == {"plan", "region", "spend", "tenure_months", "logins"}
    assert c.column("plan").vocabulary == ("basic", "free", "pro")
    assert c.column("spend").type == "float" and c.column("tenure_months").type == "int"
    assert c.column("logins").nullable and not c.column("spend").nullable
    assert not c.column("customer_id").feature and not c.column("churned").feature
    lo, hi = table["spend"].min(), table["spend"].max()
    assert c.column("spend").min <= lo and c.column("spend").max > hi  # a margin above
    assert c.blessing.metric == "auc" and 0.5 < c.blessing.lower_bound < 1
    # the gate's limits fit a table of ~650 rows a span: what this sample shows passes
    spans = tmp_path / "spans"
    result = ingest(c, spans, input_path=data)
    assert [s.span for s in result.spans] == [202401, 202402, 202403]
    report = check_spans(c, spans)
    assert report.passed, [x.line() for x in report.failed]
    # the string label became 0/1 by the positive value
    rows = pq.read_table(spans / "span-202401" / "train" / "data.parquet").to_pandas()
    assert (rows["label"] == (rows["churned"] == "yes").astype(int)).all() and rows["label"].any()


def test_init_with_year_and_month_columns(tmp_path, table):
    _, out = _init(tmp_path, with_year_month(table), name="ym.csv")
    c = load_contract(out)  # the two-valued yes/no label: "yes" is guessed as the positive
    assert (c.year_column, c.month_column, c.date_column) == ("year", "month", None)
    assert c.label.positive == ("yes",)
    assert (c.column("month").min, c.column("month").max) == (1, 12)
    assert not c.column("year").feature and not c.column("month").feature


def test_init_with_a_threshold_on_a_numeric_label(tmp_path, table):
    df = table.assign(churned=(table["churned"] == "yes").astype(int) * 10)
    _, out = _init(tmp_path, df, threshold=5)
    c = load_contract(out)
    assert c.label.threshold == 5 and c.label.meaning == "P(churned >= 5)"


def test_init_refusals_say_what_to_pass(tmp_path, table):
    data = tmp_path / "t.csv"
    table.to_csv(data, index=False)
    with pytest.raises(ContractError, match="--label left_at: .* has no column 'left_at'"):
        draft(data, "left_at")
    three = table.assign(churned=table["churned"].where(table.index % 7 != 0, "maybe"))
    three.to_csv(data, index=False)
    with pytest.raises(ContractError, match=r"takes 3 values .*--positive VALUE .*--threshold X"):
        draft(data, "churned")
    assert load_contract_text(tmp_path, draft(data, "churned", positive=["yes", "maybe"]))
    table.drop(columns=["signup_date"]).to_csv(data, index=False)
    with pytest.raises(ContractError, match="no date or timestamp column.*--date-column COL.*"
                                            "--year-column COL --month-column COL"):
        draft(data, "churned", positive=["yes"])
    with pytest.raises(ContractError, match="--threshold compares numbers"):
        _init(tmp_path, table, threshold=1)


def load_contract_text(tmp_path, text):
    p = tmp_path / "x.yaml"
    p.write_text(text)
    return load_contract(p)


def test_the_cli_writes_checks_and_refuses(tmp_path, table, capsys):
    from infra.cli import main

    data, out = tmp_path / "customers.csv", tmp_path / "c.yaml"
    table.to_csv(data, index=False)
    assert main(["contract", "init", "--input", str(data), "--label", "churned",
                 "--out", str(out)]) == 0
    assert f"wrote {out}: 'customers'" in capsys.readouterr().out
    assert main(["contract", "init", "--input", str(data), "--label", "churned",
                 "--out", str(out)]) == 1
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["contract", "check", str(out), "--input", str(data),
                 "--out", str(tmp_path / "check")]) == 0
    said = capsys.readouterr().out
    assert f"contract {out}: valid" in said and "passes the gate: 2000 rows in 3 span(s)" in said
    out.write_text(out.read_text().replace("metric: auc", "metric: f1")
                   .replace("alerts: {on: fail}", "alerts: {on: fail, slack: 'https://x/T0KEN'}"))
    assert main(["contract", "check", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"twinpipe: error: contract {out} has 2 problems:\n")
    assert "blessing.metric" in err and "alerts.slack" in err and "T0KEN" not in err
