"""The blessing rule: may a candidate model replace the baseline? Framework-neutral."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from components.common.contract import BlessingRule


@dataclass(frozen=True)
class BlessingDecision:
    blessed: bool
    metric: str
    candidate: float
    baseline: float | None
    lower_bound: float
    max_regression: float
    reasons: tuple[str, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def decide(rule: BlessingRule, candidate: float, baseline: float | None) -> BlessingDecision:
    """Applies the contract's rule to the candidate's and (optionally) the baseline's metric.

    Both values must be measured on the same eval rows. Without a baseline only the lower
    bound applies.
    """
    reasons = []
    if not candidate >= rule.lower_bound:  # also rejects NaN
        reasons.append(f"{rule.metric} {candidate:.4f} < lower bound {rule.lower_bound:.4f}")
    if baseline is not None and not candidate >= baseline - rule.max_regression:
        reasons.append(
            f"{rule.metric} {candidate:.4f} regresses more than {rule.max_regression:.4f} "
            f"from baseline {baseline:.4f}"
        )
    return BlessingDecision(
        blessed=not reasons, metric=rule.metric, candidate=float(candidate),
        baseline=None if baseline is None else float(baseline),
        lower_bound=rule.lower_bound, max_regression=rule.max_regression, reasons=tuple(reasons),
    )


def explain(evaluate: dict) -> str:
    """One line on an evaluate stage's record (run.json): blessed or not, and why. Records without
    ``reasons`` (TFMA's) get them again from the recorded rule, AUC and baseline."""

    if evaluate.get("blessed") is None:
        return "not evaluated"
    base = evaluate.get("baseline_auc")
    if evaluate["blessed"]:
        return (f"blessed (baseline AUC {base:.4f})" if base is not None
                else "blessed (first push: no baseline, the lower bound applies)")
    reasons = evaluate.get("reasons")
    if not reasons and evaluate.get("rule") and evaluate.get("auc") is not None:
        reasons = decide(BlessingRule(**evaluate["rule"]), evaluate["auc"], base).reasons
    return f"NOT blessed ({'; '.join(reasons) if reasons else 'no reason recorded'})"
