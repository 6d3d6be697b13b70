import json
import math

import pytest

from components.common import registry
from components.common.blessing import decide
from components.common.contract import BlessingRule

RULE = BlessingRule(metric="auc", lower_bound=0.6, max_regression=0.01)


def test_no_baseline_only_lower_bound_applies():
    assert decide(RULE, 0.61, None).blessed
    d = decide(RULE, 0.59, None)
    assert not d.blessed and "lower bound" in d.reasons[0]


def test_regression_vs_baseline():
    assert decide(RULE, 0.70, 0.705).blessed          # within the allowed regression
    d = decide(RULE, 0.68, 0.70)
    assert not d.blessed and "regresses" in d.reasons[0]
    assert decide(RULE, 0.75, 0.70).blessed


def test_nan_metric_is_never_blessed():
    assert not decide(RULE, math.nan, None).blessed


def test_push_is_versioned_and_atomic(tmp_path):
    dest = tmp_path / "pushed"
    assert registry.latest(dest) is None
    v1 = registry.push_atomic(dest, lambda d: (d / "model.bin").write_text("1"), {"auc": 0.7})
    v2 = registry.push_atomic(dest, lambda d: (d / "model.bin").write_text("2"), {"auc": 0.8})
    assert int(v2.name) > int(v1.name)
    assert registry.latest(dest) == v2 and registry.versions(dest) == [v1, v2]
    assert (v2 / "model.bin").read_text() == "2" and (v2 / registry.PUSH_RECORD).exists()

    def broken(d):
        (d / "model.bin").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        registry.push_atomic(dest, broken, {})
    # A failed push leaves neither a version nor a temp folder behind.
    assert registry.latest(dest) == v2
    assert sorted(p.name for p in dest.iterdir()) == sorted([v1.name, v2.name, registry.CURRENT])
    assert json.loads((dest / registry.CURRENT).read_text()) == {"version": int(v2.name),
                                                                  "uri": str(v2)}
