"""A new user's journey with their own table, from the command line: `contract init` from a
sample, `contract check` against the data, then `run --stack both` — both stacks train on a table
with a date column and a yes/no label that flights never had."""

import json

import pytest

from components.common.contract import load_contract
from tests.integration.cli import twinpipe
from tests.own_data import customers

pytestmark = pytest.mark.integration


def test_own_table_from_contract_init_to_both_stacks_trained(tmp_path):
    data = tmp_path / "customers.csv"
    customers(3000, months=3, seed=1).to_csv(data, index=False)
    contract = tmp_path / "customers.yaml"

    made = twinpipe("contract", "init", "--input", str(data), "--label", "churned",
                    "--positive", "yes", "--out", str(contract))
    assert f"wrote {contract}" in made.stdout and "Traceback" not in made.stderr
    c = load_contract(contract)
    assert c.date_column == "signup_date" and c.label.meaning == 'P(churned in {"yes"})'

    checked = twinpipe("contract", "check", str(contract), "--input", str(data),
                       "--out", str(tmp_path / "check"))
    assert f"contract {contract}: valid" in checked.stdout
    assert "passes the gate: 3000 rows in 3 span(s), 0 quarantined" in checked.stdout

    # a broken copy: every problem named at once, exit 1, no traceback
    broken = tmp_path / "broken.yaml"
    broken.write_text(contract.read_text().replace("metric: auc", "metric: accuracy")
                      .replace("eval_per_mille: 200", "eval_per_mille: 0"))
    bad = twinpipe("contract", "check", str(broken), check=False)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert f"contract {broken} has 2 problems:" in bad.stderr
    assert "blessing.metric" in bad.stderr and "split.eval_per_mille" in bad.stderr

    out = tmp_path / "out"
    twinpipe("run", "--stack", "both", "--input", str(data), "--contract", str(contract),
             "--out", str(out), "--epochs", "1", "--workers", "1", "--batch-size", "64",
             "--no-report", "--no-scaling-probe")
    for stack in ("tfx", "torch"):
        run = json.loads((out / stack / "run.json").read_text())
        st = run["stages"]
        assert run["failed_stage"] is None and st["validate"]["passed"] is True, stack
        assert st["ingest"]["rows"] == 3000 and st["ingest"]["quarantined_rows"] == 0, stack
        assert st["train"]["samples"] > 0, (stack, st["train"])
        assert 0.0 <= st["evaluate"]["auc"] <= 1.0 and st["evaluate"]["eval_rows"] > 0, stack
    # the exported models say what their probability means
    meanings = {json.loads(p.read_text())["outputs"]["probability"]["meaning"]
                for p in out.rglob("signature.json")}
    assert meanings == {'P(churned in {"yes"})'}
