"""The framework-neutral gate checks on real flights rows, corrupted on purpose (WIP issue 5)."""

import numpy as np
import pandas as pd
import pytest

from components.common.contract import load_contract
from components.common.gate import GateRules, evaluate_gate, jensen_shannon, linf
from components.common.ingest import ingest


@pytest.fixture(scope="module")
def spans(tmp_path_factory):
    out = tmp_path_factory.mktemp("spans")
    ingest(load_contract(), out, months=[1, 2], sample=6000)
    read = lambda s, split: pd.read_parquet(out / f"span-{s}" / split / "data.parquet")  # noqa: E731
    return {s: {"train": read(s, "train"), "eval": read(s, "eval")} for s in (201301, 201302)}


def _checks(found):
    return {(f.check, f.column) for f in found}


def test_real_consecutive_months_pass(spans):
    found = evaluate_gate(load_contract(), spans[201302], previous=spans[201301]["train"])
    assert [f for f in found if f.policy == "fail"] == []


def test_each_rule_fires_on_its_corruption(spans):
    c = load_contract()
    good = spans[201302]
    bad = {k: v.copy() for k, v in good.items()}
    bad["train"].loc[bad["train"].index[:50], "distance"] = np.nan          # nulls (non-nullable)
    bad["train"].loc[bad["train"].index[:20], "carrier"] = "ZZ"             # unseen category
    bad["eval"]["origin"] = "JFK"                                           # train/eval skew
    bad["train"]["temp"] = bad["train"]["temp"] + 60                        # drift vs January
    found = _checks(evaluate_gate(c, bad, previous=spans[201301]["train"]))
    assert {("nulls", "distance"), ("unseen", "carrier"), ("skew", "origin"),
            ("drift", "temp")} <= found
    tiny = {"train": good["train"].head(10), "eval": good["eval"].head(5)}
    assert ("volume", None) in _checks(evaluate_gate(c, tiny))


def test_policies_and_distances():
    a = pd.Series(["x"] * 90 + ["y"] * 10)
    b = pd.Series(["x"] * 50 + ["y"] * 50)
    assert linf(a, b) == pytest.approx(0.4)
    rng = np.random.default_rng(0)
    same = jensen_shannon(pd.Series(rng.normal(size=5000)), pd.Series(rng.normal(size=5000)))
    moved = jensen_shannon(pd.Series(rng.normal(3, 1, 5000)), pd.Series(rng.normal(size=5000)))
    assert same < 0.01 < 0.5 < moved <= 1.0
    assert GateRules().policies["drift"] == "warn" and GateRules().policies["nulls"] == "fail"
