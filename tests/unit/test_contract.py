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


# --- the whole contract at once, against its JSON Schema ---------------------------------------

def test_every_problem_is_reported_at_once_one_line_each(tmp_path):
    p = _write(tmp_path, """
columns:
  plan: {type: string, feature: true}
  spend: {type: float, feature: true, min: low}
  churned: {type: string}
  day: {type: string}
label: {name: y, source: churned, positive: ["yes"], treshold: 1}
split: {key: [customer], eval_per_mille: 100}
blessing: {metric: auc, lower_bound: 0.5, max_regression: 0.0}
span: {date_column: day}
""")
    with pytest.raises(ContractError) as e:
        load_contract(p)
    lines = str(e.value).splitlines()
    assert lines[0] == f"contract {p} has 4 problems:"
    problems = lines[1:]
    assert len(problems) == 4 and all(line.startswith(f"  - contract {p}: ") for line in problems)
    for key in ("label.treshold", "columns.spend.min", "columns.plan.vocabulary", "split.key"):
        assert sum(key in line for line in problems) == 1, (key, problems)
    assert "unknown key 'label.treshold'" in str(e.value)
    assert "key 'columns.spend.min' must be a number, got 'low'" in str(e.value)


def test_the_schema_has_one_copy_for_editors_and_it_is_identical():
    import importlib.resources
    import json
    from pathlib import Path

    import jsonschema

    packaged = (importlib.resources.files("components.common") / "contract.schema.json").read_text()
    docs = Path(__file__).parents[2] / "docs" / "contract.schema.json"
    assert docs.read_text() == packaged
    schema = json.loads(packaged)
    jsonschema.Draft202012Validator.check_schema(schema)
    # the packaged contract, as YAML reads it, is valid against it
    import yaml

    flights = yaml.safe_load((importlib.resources.files("components.common") / "flights.yaml")
                             .read_text())
    flights["alerts"] = flights["alerts"] or {}
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(flights)) == []


LABELLED = """
columns:
  plan: {type: string, feature: true, vocabulary: [free, pro]}
  spend: {type: float, feature: true}
  churned: {type: string, vocabulary: ["no", "yes"]}
  day: {type: string}
label: {name: y, source: churned, positive: ["yes"]}
split: {key: [spend], eval_per_mille: 100}
blessing: {metric: auc, lower_bound: 0.5, max_regression: 0.0}
span: {date_column: day}
"""


def test_a_label_by_positive_values():
    import pandas as pd

    from components.common.contract import LabelRule

    rule = LabelRule(name="y", source="churned", threshold=None, missing="exclude",
                     positive=("yes",))
    assert rule.meaning == 'P(churned in {"yes"})'
    values = pd.Series(["yes", "no", None, "yes"], dtype="string")
    assert rule.of(values).tolist() == [1, 0, 0, 1]
    by_threshold = LabelRule(name="y", source="arr_delay", threshold=15, missing="exclude")
    assert by_threshold.meaning == "P(arr_delay >= 15)"
    assert by_threshold.of(pd.Series([14.0, 15.0, None])).tolist() == [0, 1, 0]
    assert load_contract().label.meaning == "P(arr_delay >= 15)"


def test_the_label_rule_is_checked(tmp_path):
    c = load_contract(_write(tmp_path, LABELLED))
    assert c.label.positive == ("yes",) and c.label.threshold is None
    # unquoted yes: YAML 1.1 reads it as true, which matches no cell
    p = _write(tmp_path, LABELLED.replace('positive: ["yes"]', "positive: [yes]"))
    with pytest.raises(ContractError, match=r"label\.positive\[0\].*quote the value"):
        load_contract(p)
    p = _write(tmp_path, LABELLED.replace('positive: ["yes"]', 'positive: ["yes"], threshold: 1'))
    with pytest.raises(ContractError, match="label has both threshold and positive"):
        load_contract(p)
    p = _write(tmp_path, LABELLED.replace(', positive: ["yes"]', ""))
    with pytest.raises(ContractError, match="label needs label.threshold .* or label.positive"):
        load_contract(p)
    p = _write(tmp_path, LABELLED.replace('positive: ["yes"]', "threshold: 1"))
    with pytest.raises(ContractError, match="label.threshold compares numbers, but label source "
                                            "'churned' is a string column"):
        load_contract(p)
    p = _write(tmp_path, LABELLED.replace("spend: {type: float, feature: true}",
                                          "spend: {type: float, feature: true}\n  y: {type: int}"))
    with pytest.raises(ContractError, match="label.name 'y' is a column"):
        load_contract(p)


def test_alerts_on_is_parsed_and_urls_are_refused(tmp_path):
    assert load_contract().alert_on == "fail"
    # `on` unquoted: YAML 1.1 reads the key as true; it is still alerts.on
    c = load_contract(_write(tmp_path, LABELLED + "alerts: {on: warn, examples: redacted}\n"))
    assert c.alert_on == "warn" and c.alert_examples == "redacted" and c.alerts == ()
    with pytest.raises(ContractError, match="key 'alerts.on' is 'always'; allowed: fail, warn"):
        load_contract(_write(tmp_path, LABELLED + "alerts: {on: always}\n"))
    url = "https://hooks.slack.example/services/T0KEN-77"
    p = _write(tmp_path, LABELLED + f"alerts: {{webhook: '{url}', slack: '{url}'}}\n")
    with pytest.raises(ContractError) as e:
        load_contract(p)
    msg = str(e.value)
    assert "T0KEN" not in msg and msg.count(f"contract {p}:") == 2
    for sink in ("webhook", "slack"):
        assert f"key 'alerts.{sink}' holds a URL, which is a secret" in msg
        assert f"TWINPIPE_ALERT_{sink.upper()}_FILE" in msg and f"--alert-{sink}-file" in msg
