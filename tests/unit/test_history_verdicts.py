"""A refused delivery never teaches: the gate's verdict is recorded per span and judge, drift is
measured against the newest span no gate refused (and says so when that is not the month
before), an operator can accept a refused span for the rows it holds, and the duplicates and
volume_change rules stop a month delivered twice or half delivered. One monthly delivery per
ingest into the same spans folder, as a schedule delivers them."""

import textwrap

import pandas as pd
import pytest

from components.common import history
from components.common.contract import load_contract
from components.common.errors import ContractError, GateError
from components.common.gate import check_spans, enforce
from components.common.ingest import ingest
from components.common.sources import load_default_table

FLIGHTS = load_contract()


@pytest.fixture(scope="module")
def months():
    """Months 6-8 of the real flights, 4,000 rows each (a delivery per month)."""
    table, _ = load_default_table(FLIGHTS)
    table = table.drop(columns=["__file", "__row"], errors="ignore")
    return {m: table[table["month"] == m].sample(4000, random_state=m) for m in (6, 7, 8)}


def longer(frame: pd.DataFrame) -> pd.DataFrame:
    """Every flight half as long again: a drift of the distance column."""
    return frame.assign(distance=(frame["distance"] * 1.5).round().astype("int64"))


def deliver(frame: pd.DataFrame, tmp_path, spans, name: str, contract=FLIGHTS, judge="torch"):
    """One delivery: a Parquet file ingested into ``spans``, then the gate (the verdict recorded
    as ``judge``'s). Returns the gate report; raises GateError when the gate refuses."""
    path = tmp_path / f"{name}.parquet"
    frame.to_parquet(path, index=False)
    ingested = ingest(contract, spans, input_path=path)
    report = check_spans(contract, spans, ingested.span_numbers, source=str(path))
    return enforce(report, contract=contract, stack=judge, pipeline="test",
                   report_dir=tmp_path / name, spans_dir=spans)


def test_a_refused_month_is_never_the_drift_reference(months, tmp_path):
    spans = tmp_path / "spans"
    deliver(months[6], tmp_path, spans, "june")
    broken = longer(months[7])
    with pytest.raises(GateError, match=r"drift on column 'distance'"):
        deliver(broken, tmp_path, spans, "july")
    assert history.status(str(spans), 201306)[0] == history.ACCEPTED
    state, reasons = history.status(str(spans), 201307)
    assert state == history.REFUSED and any("distance" in r for r in reasons)
    # August is judged against June, the newest accepted span, and passes; the figures say why
    report = deliver(months[8], tmp_path, spans, "august")
    fig = report.figures["201308"]
    assert fig["previous_span"] == 201306
    assert "201307 refused" in fig["reference_note"] and "2 months back" in fig["reference_note"]
    assert not report.failed


def test_drift_across_a_missing_month_says_so(months, tmp_path):
    spans = tmp_path / "spans"
    deliver(months[6], tmp_path, spans, "june")
    shifted = longer(months[8])
    with pytest.raises(GateError) as e:
        deliver(shifted, tmp_path, spans, "august")
    assert "vs span 201306" in str(e.value) and "1 month(s) missing" in str(e.value)


def test_an_operator_accepts_a_refused_month_for_the_rows_it_holds(months, tmp_path):
    spans = tmp_path / "spans"
    deliver(months[6], tmp_path, spans, "june")
    shifted = longer(months[7])
    with pytest.raises(GateError):
        deliver(shifted, tmp_path, spans, "july")
    history.accept(str(spans), 201307, "new long-haul routes from July on", who="ops")
    assert history.status(str(spans), 201307)[0] == history.ACCEPTED
    # the same rows delivered again: the drift finding goes on as a warning naming the reason
    report = deliver(shifted, tmp_path, spans, "july-again")
    drift = [c for c in report.checks if c.check == "drift" and c.column == "distance"]
    assert drift and drift[0].policy == "warn" and "new long-haul routes" in drift[0].expected
    # ... and July is now the reference: an August shifted the same way passes
    report = deliver(longer(months[8]), tmp_path, spans,
                     "august")
    assert report.figures["201308"]["previous_span"] == 201307 and not report.failed
    # other rows for July: the acceptance lapses
    other = longer(months[7].sample(3500, random_state=1))
    with pytest.raises(GateError, match="drift"):
        deliver(other, tmp_path, spans, "july-other", judge="tfx")


def test_a_month_delivered_twice_fails_the_duplicates_rule(months, tmp_path):
    spans = tmp_path / "spans"
    deliver(months[6], tmp_path, spans, "june")
    twice = pd.concat([months[7], months[7]], ignore_index=True)
    with pytest.raises(GateError, match=r"duplicates") as e:
        deliver(twice, tmp_path, spans, "july-twice")
    assert "4000 of 8000 rows (50.00%)" in str(e.value)
    quarantine = pd.read_parquet(spans / "span-201307" / "quarantine" / "data.parquet")
    assert (quarantine["rule"] == "duplicates").sum() == 4000
    assert quarantine["reason"].str.contains("repeats an earlier row of this delivery").all()
    # the first of each key trained; June's keys are not July's
    assert history.status(str(spans), 201307)[0] == history.REFUSED


ORDERS = textwrap.dedent("""\
    name: orders
    span: {date_column: ordered_at}
    columns:
      order_id:      {type: int, min: 1}
      ordered_at:    {type: string}
      items:         {type: int, min: 1, max: 100, feature: true}
      total_minutes: {type: float, min: 0, max: 1440}
    label: {name: late, source: total_minutes, threshold: 30}
    split: {key: [order_id], eval_per_mille: 200}
    min_rows_per_span: 10
    blessing: {metric: auc, lower_bound: 0.5, max_regression: 0.01}
    validation:
      volume_change: {min_ratio: 0.8, max_ratio: 1.25}
      policies: {volume_change: fail}
    """)


def orders(ids, month: int, seed: int) -> pd.DataFrame:
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(ids)
    return pd.DataFrame({"order_id": list(ids), "ordered_at": f"2024-{month:02d}-15",
                         "items": rng.integers(1, 100, n), "total_minutes": rng.uniform(0, 60, n)})


@pytest.fixture
def orders_contract(tmp_path):
    path = tmp_path / "orders.yaml"
    path.write_text(ORDERS)
    return load_contract(path)


def test_rows_already_ingested_in_another_span_are_duplicates(orders_contract, tmp_path):
    contract, spans = orders_contract, tmp_path / "spans"
    deliver(orders(range(1, 2001), 1, 1), tmp_path, spans, "jan", contract)
    # February re-sends 50 January orders under a February date: already ingested
    feb = orders(list(range(5001, 6951)) + list(range(1, 51)), 2, 2)
    with pytest.raises(GateError, match=r"50 of 2000 rows \(2\.50%\)"):
        deliver(feb, tmp_path, spans, "feb", contract)
    quarantine = pd.read_parquet(spans / "span-202402" / "quarantine" / "data.parquet")
    assert sorted(quarantine["order_id"].astype(int)) == list(range(1, 51))
    assert quarantine["reason"].str.contains("already ingested in span 202401").all()


def test_volume_change_against_the_previous_accepted_span(orders_contract, tmp_path):
    contract, spans = orders_contract, tmp_path / "spans"
    deliver(orders(range(1, 2001), 1, 1), tmp_path, spans, "jan", contract)
    report = deliver(orders(range(2001, 3901), 2, 2), tmp_path, spans, "feb", contract)
    assert report.figures["202402"]["volume_ratio"] == 0.95  # in bounds
    with pytest.raises(GateError, match=r"0\.50x the 1900 of span 202402"):
        deliver(orders(range(5001, 5951), 3, 3), tmp_path, spans, "mar", contract)


@pytest.mark.parametrize("bounds", ["{min_ratio: 1.5, max_ratio: 2}", "{min_ratio: 0.5, max_ratio: 0.9}",
                                    "{min_ratio: -1, max_ratio: 2}"])
def test_volume_change_bounds_are_checked(tmp_path, bounds):
    path = tmp_path / "orders.yaml"
    path.write_text(ORDERS.replace("{min_ratio: 0.8, max_ratio: 1.25}", bounds))
    with pytest.raises(ContractError, match="volume_change"):
        load_contract(path)
