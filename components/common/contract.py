"""The data contract: one YAML file that both stacks derive schema, split and blessing from.

Framework-neutral: no TensorFlow, torch or orchestrator imports here.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path

import yaml

from components.common.alerts import SINKS
from components.common.errors import ContractError

DEFAULT_CONTRACT = "flights.yaml"
_TYPES = ("int", "float", "string")


@dataclass(frozen=True)
class Column:
    """One column of the contract's input table."""

    name: str
    type: str
    feature: bool = False
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    vocabulary: tuple[str, ...] = ()
    max_null_rate: float = 0.0        # nullable columns: the gate's limit on the null share
    drift: float | None = None        # the column's drift threshold (None: the contract default)

    @property
    def numeric(self) -> bool:
        return self.type in ("int", "float")


@dataclass(frozen=True)
class LabelRule:
    name: str
    source: str
    threshold: float
    missing: str  # "exclude": rows without the source value are kept aside, not trained on


@dataclass(frozen=True)
class SplitRule:
    key: tuple[str, ...]
    eval_per_mille: int


@dataclass(frozen=True)
class BlessingRule:
    metric: str
    lower_bound: float
    max_regression: float


CHECKS = ("schema", "extra_columns", "malformed", "not_null", "range", "unseen", "nulls",
          "volume", "drift", "skew")
ROW_RULES = ("malformed", "not_null", "range", "unseen")


@dataclass(frozen=True)
class ValidationRules:
    """The data gate's rules (the contract's ``validation:`` section).

    ``policies`` maps every check in :data:`CHECKS` to ``fail`` (stop the run before training,
    alert) or ``warn`` (alert, go on). Row-level rules (:data:`ROW_RULES`) quarantine the rows
    that break them; a rule fails a span when its share of the span's rows exceeds
    ``max_bad_row_rate``. Drift (vs the previous span) and skew (train vs eval) use the L-infinity
    distance for categorical columns and the Jensen-Shannon divergence for numeric ones.
    """

    policies: dict
    max_bad_row_rate: float = 0.01
    type_error_share: float = 0.5
    drift_linf: float = 0.1
    drift_js: float = 0.05
    skew_linf: float = 0.1
    skew_js: float = 0.05

    def drift_threshold(self, column: Column) -> float:
        if column.drift is not None:
            return column.drift
        return self.drift_linf if column.vocabulary else self.drift_js

    def skew_threshold(self, column: Column) -> float:
        return self.skew_linf if column.vocabulary else self.skew_js


@dataclass(frozen=True)
class Contract:
    """The parsed contract. Build it with :func:`load_contract`."""

    name: str
    version: int
    path: str
    columns: tuple[Column, ...]
    label: LabelRule
    split: SplitRule
    blessing: BlessingRule
    join_keys: tuple[str, ...]
    year_column: str
    month_column: str
    min_rows_per_span: int
    validation: ValidationRules = None  # type: ignore[assignment]
    alerts: tuple = ()                  # ((sink, target), ...) from the contract's alerts: section

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def features(self) -> list[Column]:
        return [c for c in self.columns if c.feature]

    @property
    def numeric_features(self) -> list[Column]:
        return [c for c in self.features if c.numeric]

    @property
    def categorical_features(self) -> list[Column]:
        return [c for c in self.features if c.type == "string"]

    @property
    def span_columns(self) -> list[str]:
        """Columns written to each span: every contract column plus the derived label."""
        return self.column_names + [self.label.name]


def _require(doc: dict, key: str, path: str):
    if key not in doc:
        raise ContractError(f"contract {path}: required key '{key}' is missing.")
    return doc[key]


def load_contract(path: str | Path | None = None) -> Contract:
    """Loads and checks a contract file; the packaged flights contract when ``path`` is None."""
    if path is None:
        ref = importlib.resources.files("components.common") / DEFAULT_CONTRACT
        text, where = ref.read_text(), str(ref)
    else:
        p = Path(path)
        if not p.is_file():
            raise ContractError(f"contract file {p} does not exist.")
        text, where = p.read_text(), str(p)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ContractError(f"contract {where} is not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise ContractError(f"contract {where} must be a YAML mapping at the top level.")

    # nullable columns without their own max_null_rate get the validation section's default
    default_null = float((doc.get("validation") or {}).get("max_null_rate", 0.1))
    columns = []
    for name, spec in _require(doc, "columns", where).items():
        spec = spec or {}
        ctype = spec.get("type")
        if ctype not in _TYPES:
            raise ContractError(
                f"contract {where}: column '{name}' has type {ctype!r}; allowed: {', '.join(_TYPES)}."
            )
        columns.append(
            Column(
                name=name,
                type=ctype,
                feature=bool(spec.get("feature", False)),
                nullable=bool(spec.get("nullable", False)),
                min=spec.get("min"),
                max=spec.get("max"),
                vocabulary=tuple(str(v) for v in spec.get("vocabulary", ())),
                max_null_rate=float(spec.get("max_null_rate",
                                             default_null if spec.get("nullable") else 0.0)),
                drift=float(spec["drift"]) if "drift" in spec else None,
            )
        )
    names = {c.name for c in columns}

    lab = _require(doc, "label", where)
    label = LabelRule(
        name=lab["name"], source=lab["source"], threshold=float(lab["threshold"]),
        missing=lab.get("missing", "exclude"),
    )
    if label.source not in names:
        raise ContractError(f"contract {where}: label source '{label.source}' is not a column.")
    if label.missing != "exclude":
        raise ContractError(f"contract {where}: label.missing must be 'exclude'.")

    sp = _require(doc, "split", where)
    split = SplitRule(key=tuple(sp["key"]), eval_per_mille=int(sp["eval_per_mille"]))
    unknown = [k for k in split.key if k not in names]
    if unknown:
        raise ContractError(f"contract {where}: split key columns {unknown} are not columns.")
    if not 0 < split.eval_per_mille < 1000:
        raise ContractError(f"contract {where}: split.eval_per_mille must be in 1..999.")

    bl = _require(doc, "blessing", where)
    blessing = BlessingRule(
        metric=bl["metric"], lower_bound=float(bl["lower_bound"]),
        max_regression=float(bl["max_regression"]),
    )
    span = _require(doc, "span", where)
    validation = _validation_rules(doc.get("validation") or {}, where)
    alerts = doc.get("alerts") or {}
    unknown_sinks = set(alerts) - set(SINKS)
    if unknown_sinks:
        raise ContractError(f"contract {where}: alerts has unknown sink(s) {sorted(unknown_sinks)}; "
                            f"allowed: {', '.join(SINKS)}.")
    if not any(c.feature for c in columns):
        raise ContractError(f"contract {where}: no column is a model feature; mark at least one "
                            f"column 'feature: true'.")
    return Contract(
        name=doc.get("name", "contract"),
        version=int(doc.get("version", 1)),
        path=where,
        columns=tuple(columns),
        label=label,
        split=split,
        blessing=blessing,
        join_keys=tuple(doc.get("source", {}).get("join_keys", ())),
        year_column=span["year_column"],
        month_column=span["month_column"],
        min_rows_per_span=int(doc.get("min_rows_per_span", 1)),
        validation=validation,
        alerts=tuple(sorted((k, str(v)) for k, v in alerts.items() if v)),
    )


def _validation_rules(v: dict, where: str) -> ValidationRules:
    policies = {c: "fail" for c in CHECKS} | {"extra_columns": "warn", "skew": "warn"}
    given = v.get("policies") or {}
    unknown = set(given) - set(CHECKS)
    if unknown:
        raise ContractError(f"contract {where}: validation.policies has unknown check(s) "
                            f"{sorted(unknown)}; known: {', '.join(CHECKS)}.")
    bad = {k: p for k, p in given.items() if p not in ("fail", "warn")}
    if bad:
        raise ContractError(f"contract {where}: validation.policies {bad}: each must be fail or warn.")
    drift, skew = v.get("drift") or {}, v.get("skew") or {}
    return ValidationRules(
        policies=policies | given,
        max_bad_row_rate=float(v.get("max_bad_row_rate", 0.01)),
        type_error_share=float(v.get("type_error_share", 0.5)),
        drift_linf=float(drift.get("categorical_linf", 0.1)),
        drift_js=float(drift.get("numeric_js", 0.05)),
        skew_linf=float(skew.get("categorical_linf", 0.1)),
        skew_js=float(skew.get("numeric_js", 0.05)),
    )
