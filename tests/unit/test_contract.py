import pytest

from components.common.contract import load_contract
from components.common.errors import ContractError


def test_packaged_contract_describes_flights():
    c = load_contract()
    assert c.name == "flights"
    assert c.label.name == "delayed" and c.label.source == "arr_delay" and c.label.threshold == 15
    names = {f.name for f in c.features}
    # Leaky post-departure columns are not model inputs.
    assert not names & {"dep_time", "dep_delay", "arr_time", "air_time", "arr_delay"}
    assert {"carrier", "origin", "dest", "temp", "distance"} <= names
    assert c.column("origin").vocabulary == ("EWR", "JFK", "LGA")
    assert len(c.column("carrier").vocabulary) == 16
    assert c.blessing.metric == "auc" and 0 < c.blessing.lower_bound < 1
    assert c.split.key[0] == "year" and 0 < c.split.eval_per_mille < 1000


def _write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_contract_rejects_unknown_type(tmp_path):
    p = _write(tmp_path, """
columns: {a: {type: decimal}}
label: {name: y, source: a, threshold: 1}
split: {key: [a], eval_per_mille: 100}
blessing: {metric: auc, lower_bound: 0.5, max_regression: 0.0}
span: {year_column: a, month_column: a}
""")
    with pytest.raises(ContractError, match="column 'a' has type 'decimal'"):
        load_contract(p)


def test_contract_rejects_split_key_not_a_column(tmp_path):
    p = _write(tmp_path, """
columns: {a: {type: int}}
label: {name: y, source: a, threshold: 1}
split: {key: [a, b], eval_per_mille: 100}
blessing: {metric: auc, lower_bound: 0.5, max_regression: 0.0}
span: {year_column: a, month_column: a}
""")
    with pytest.raises(ContractError, match=r"split key columns \['b'\]"):
        load_contract(p)


def test_contract_missing_file_is_clear(tmp_path):
    with pytest.raises(ContractError, match="does not exist"):
        load_contract(tmp_path / "nope.yaml")


def test_contract_without_any_feature_is_rejected(tmp_path):
    p = _write(tmp_path, """
columns: {a: {type: int}, b: {type: string, feature: false}}
label: {name: y, source: a, threshold: 1}
split: {key: [a], eval_per_mille: 100}
blessing: {metric: auc, lower_bound: 0.5, max_regression: 0.0}
span: {year_column: a, month_column: a}
""")
    with pytest.raises(ContractError, match=f"contract {p}: no column is a model feature"):
        load_contract(p)
    p.write_text(p.read_text().replace("{type: int}", "{type: int, feature: true}"))
    assert [c.name for c in load_contract(p).features] == ["a"]


BASE = """
columns:
  plan: {type: string, feature: true}
  spend: {type: float, feature: true}
  churned: {type: int}
  year: {type: int}
  month: {type: int}
label: {name: y, source: churned, threshold: 1}
split: {key: [spend], eval_per_mille: 100}
blessing: {metric: auc, lower_bound: 0.5, max_regression: 0.0}
span: {year_column: year, month_column: month}
"""


def test_a_string_feature_needs_a_vocabulary(tmp_path):
    with pytest.raises(ContractError, match=r"column 'plan' is a string feature without a "
                                            r"vocabulary.*columns\.plan\.vocabulary"):
        load_contract(_write(tmp_path, BASE))
    fixed = BASE.replace("plan: {type: string, feature: true}",
                         "plan: {type: string, feature: true, vocabulary: [free, pro]}")
    assert load_contract(_write(tmp_path, fixed)).column("plan").vocabulary == ("free", "pro")


def test_the_blessing_metric_is_one_both_stacks_compute(tmp_path):
    text = BASE.replace("feature: true}", "feature: true, vocabulary: [free, pro]}", 1)
    with pytest.raises(ContractError, match="blessing.metric is 'accuracy'.*auc"):
        load_contract(_write(tmp_path, text.replace("metric: auc", "metric: accuracy")))
