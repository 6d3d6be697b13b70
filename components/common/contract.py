"""The data contract: one YAML file that both stacks derive schema, split and blessing from.

Framework-neutral: no TensorFlow, torch or orchestrator imports here.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from components.common import storage
from components.common.alerts import EXAMPLES, SINKS, smtp_settings
from components.common.errors import ContractError

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_CONTRACT = "flights.yaml"
_TYPES = ("int", "float", "string")


# The metrics both stacks' evaluate stages compute and can bless a model on.
BLESSING_METRICS = ("auc",)


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


CHECKS = ("schema", "extra_columns", "readable", "malformed", "not_null", "range", "unseen",
          "duplicates", "nulls", "label_missing", "volume", "volume_change", "drift", "skew")
ROW_RULES = ("malformed", "not_null", "range", "unseen", "duplicates")


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
    max_label_missing_rate: float = 0.1
    # volume_change: a span's labelled rows against the previous accepted span's, within
    # [min_ratio, max_ratio] times them
    volume_min_ratio: float = 0.5
    volume_max_ratio: float = 1.5

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
    year_column: str | None
    month_column: str | None
    min_rows_per_span: int
    validation: ValidationRules = None  # type: ignore[assignment]
    alerts: tuple = ()                  # ((sink, target), ...) from the contract's alerts: section
    date_column: str | None = None      # span from a date/timestamp column instead of year + month
    missing_values: tuple[str, ...] = ("",)  # the only text cells that mean "no value"
    alert_examples: str = "full"        # alerts.examples: full | redacted | none
    alert_on: str = "fail"              # alerts.on: fail | warn (warn-only gates alert too)

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

    def span_of(self, df: pd.DataFrame) -> pd.Series:
        """Each row's span number (year * 100 + month) as nullable Int64: from the year and month
        columns, or from ``span.date_column``; NA where they are missing or unusable."""
        import pandas as pd

        if self.date_column is not None:
            if self.date_column not in df.columns:
                return pd.Series(pd.NA, index=df.index, dtype="Int64")
            d = pd.to_datetime(df[self.date_column].astype(object), errors="coerce", utc=True)
            return (d.dt.year * 100 + d.dt.month).astype("Int64")
        if self.year_column not in df.columns or self.month_column not in df.columns:
            return pd.Series(pd.NA, index=df.index, dtype="Int64")
        y = pd.to_numeric(df[self.year_column], errors="coerce")
        m = pd.to_numeric(df[self.month_column], errors="coerce")
        ok = y.notna() & m.notna() & (m >= 1) & (m <= 12) & (y == y.round()) & (m == m.round())
        return (y * 100 + m).where(ok).astype("Int64")

    @property
    def span_columns(self) -> list[str]:
        """Columns written to each span: every contract column plus the derived label."""
        return self.column_names + [self.label.name]


class _Section:
    """One mapping of the contract with its dotted path, so every error names file and key."""

    def __init__(self, doc, key: str, where: str):
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise ContractError(f"contract {where}: key '{key}' must be a mapping, "
                                f"got {type(doc).__name__}.")
        self.doc, self.key, self.where = doc, key, where

    def name(self, key: str) -> str:
        return f"{self.key}.{key}" if self.key else key

    def req(self, key: str):
        if key not in self.doc or self.doc[key] is None:
            raise ContractError(f"contract {self.where}: required key '{self.name(key)}' is missing.")
        return self.doc[key]

    def get(self, key: str, default=None):
        v = self.doc.get(key, default)
        return default if v is None else v

    def section(self, key: str, required: bool = False) -> _Section:
        return _Section(self.req(key) if required else self.doc.get(key), self.name(key), self.where)

    def num(self, key: str, default=None, kind=float):
        v = self.req(key) if default is None else self.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise ContractError(f"contract {self.where}: key '{self.name(key)}' must be a number, "
                                f"got {v!r}.")
        try:
            return kind(v)
        except ValueError:
            raise ContractError(f"contract {self.where}: key '{self.name(key)}' must be a "
                                f"{'whole ' if kind is int else ''}number, got {v!r}.") from None

    def text(self, key: str, default=None) -> str:
        v = self.req(key) if default is None else self.get(key, default)
        if not isinstance(v, (str, int)) or isinstance(v, bool):
            raise ContractError(f"contract {self.where}: key '{self.name(key)}' must be a name, "
                                f"got {v!r}.")
        return str(v)

    def names(self, key: str, default=None) -> tuple[str, ...]:
        v = self.req(key) if default is None else self.get(key, default)
        if isinstance(v, str) or not isinstance(v, (list, tuple)):
            raise ContractError(f"contract {self.where}: key '{self.name(key)}' must be a list, "
                                f"got {v!r}.")
        return tuple(str(x) for x in v)


def load_contract(path: str | Path | None = None) -> Contract:
    """Loads and checks a contract file (a local path or a ``gs://`` URI, read through
    :mod:`components.common.storage`); the packaged flights contract when ``path`` is None.

    Raises:
        ContractError: one line naming the file and the (dotted) key that is missing or wrong.
    """
    if path is None:
        ref = importlib.resources.files("components.common") / DEFAULT_CONTRACT
        text, where = ref.read_text(), str(ref)
    elif storage.is_remote(path):  # a contract `twinpipe compile` published under the data root
        where = str(path)
        try:
            text = storage.read_text(where)
        except FileNotFoundError:
            raise ContractError(f"contract {where} does not exist (was it published? `twinpipe "
                                "compile --contract` stores it under the data root).") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ContractError(f"contract {where} cannot be read: {e}.") from None
    else:
        p = Path(path)
        if not p.is_file():
            raise ContractError(f"contract file {p} does not exist.")
        try:
            text, where = p.read_text(encoding="utf-8"), str(p)
        except (OSError, UnicodeDecodeError) as e:
            raise ContractError(f"contract file {p} cannot be read: {e}.") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ContractError(f"contract {where} is not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise ContractError(f"contract {where} must be a YAML mapping at the top level.")
    top = _Section(doc, "", where)

    # nullable columns without their own max_null_rate get the validation section's default
    default_null = top.section("validation").num("max_null_rate", 0.1)
    columns = []
    cols = top.section("columns", required=True)
    if not cols.doc:
        raise ContractError(f"contract {where}: key 'columns' lists no column.")
    for name in cols.doc:
        spec = cols.section(str(name))
        ctype = spec.get("type")
        if ctype not in _TYPES:
            raise ContractError(
                f"contract {where}: column '{name}' has type {ctype!r}; allowed: {', '.join(_TYPES)}."
            )
        columns.append(
            Column(
                name=str(name),
                type=ctype,
                feature=bool(spec.get("feature", False)),
                nullable=bool(spec.get("nullable", False)),
                min=spec.num("min", float("nan")) if "min" in spec.doc else None,
                max=spec.num("max", float("nan")) if "max" in spec.doc else None,
                vocabulary=spec.names("vocabulary", ()),
                max_null_rate=spec.num("max_null_rate",
                                       default_null if spec.get("nullable") else 0.0),
                drift=spec.num("drift") if "drift" in spec.doc else None,
            )
        )
    names = {c.name for c in columns}
    for c in columns:
        if c.feature and not c.numeric and not c.vocabulary:
            raise ContractError(
                f"contract {where}: column '{c.name}' is a {c.type} feature without a vocabulary; "
                f"both stacks encode a category as its index in the list, so give "
                f"columns.{c.name}.vocabulary (the values it may take; others are quarantined), "
                f"or set columns.{c.name}.feature: false.")

    lab = top.section("label", required=True)
    label = LabelRule(
        name=lab.text("name"), source=lab.text("source"), threshold=lab.num("threshold"),
        missing=lab.text("missing", "exclude"),
    )
    if label.source not in names:
        raise ContractError(f"contract {where}: label source '{label.source}' is not a column.")
    if label.missing != "exclude":
        raise ContractError(f"contract {where}: label.missing must be 'exclude'.")

    sp = top.section("split", required=True)
    split = SplitRule(key=sp.names("key"), eval_per_mille=sp.num("eval_per_mille", kind=int))
    unknown = [k for k in split.key if k not in names]
    if unknown:
        raise ContractError(f"contract {where}: split key columns {unknown} are not columns.")
    if not 0 < split.eval_per_mille < 1000:
        raise ContractError(f"contract {where}: split.eval_per_mille must be in 1..999.")

    bl = top.section("blessing", required=True)
    blessing = BlessingRule(
        metric=bl.text("metric"), lower_bound=bl.num("lower_bound"),
        max_regression=bl.num("max_regression"),
    )
    if blessing.metric not in BLESSING_METRICS:
        raise ContractError(
            f"contract {where}: blessing.metric is {blessing.metric!r}; both stacks bless on "
            f"{', '.join(BLESSING_METRICS)} (TFMA in the TFX stack and the torch evaluate compute "
            "it on the same eval rows): set blessing.metric: auc.")
    span = top.section("span", required=True)
    date_column = span.text("date_column") if "date_column" in span.doc else None
    if date_column is None:
        year_column, month_column = span.text("year_column"), span.text("month_column")
        span_cols = [year_column, month_column]
    else:
        year_column = month_column = None
        span_cols = [date_column]
    for c in span_cols:
        if c not in names:
            raise ContractError(f"contract {where}: span column '{c}' is not a column.")
    missing_values = top.names("missing_values", ("",))
    validation = _validation_rules(top.section("validation"), where)
    if not isinstance(doc.get("alerts") or {}, dict):
        raise ContractError(f"contract {where}: alerts must be a mapping (sink: target).")
    alerts = dict(doc.get("alerts") or {})
    examples = alerts.pop("examples", "full")  # a setting, not a sink
    if examples not in EXAMPLES:
        raise ContractError(f"contract {where}: alerts.examples is {examples!r}; "
                            f"allowed: {', '.join(EXAMPLES)}.")
    unknown_sinks = set(alerts) - set(SINKS)
    if unknown_sinks:
        raise ContractError(f"contract {where}: alerts has unknown sink(s) {sorted(unknown_sinks)}; "
                            f"allowed: {', '.join(SINKS)} (and examples).")
    if alerts.get("smtp"):
        try:
            smtp_settings(str(alerts["smtp"]))
        except ContractError as e:
            raise ContractError(f"contract {where}: alerts.smtp: {e}") from None
    if not any(c.feature for c in columns):
        raise ContractError(f"contract {where}: no column is a model feature; mark at least one "
                            f"column 'feature: true'.")
    return Contract(
        name=top.text("name", "contract"),
        version=top.num("version", 1, kind=int),
        path=where,
        columns=tuple(columns),
        label=label,
        split=split,
        blessing=blessing,
        join_keys=top.section("source").names("join_keys", ()),
        year_column=year_column,
        month_column=month_column,
        min_rows_per_span=top.num("min_rows_per_span", 1, kind=int),
        validation=validation,
        alerts=tuple(sorted((k, str(v)) for k, v in alerts.items() if v)),
        date_column=date_column,
        missing_values=missing_values,
        alert_examples=examples,
    )


def _validation_rules(v: _Section, where: str) -> ValidationRules:
    policies = {c: "fail" for c in CHECKS} | {"extra_columns": "warn", "skew": "warn",
                                             "volume_change": "warn"}
    given = v.section("policies").doc
    unknown = set(given) - set(CHECKS)
    if unknown:
        raise ContractError(f"contract {where}: validation.policies has unknown check(s) "
                            f"{sorted(unknown)}; known: {', '.join(CHECKS)}.")
    bad = {k: p for k, p in given.items() if p not in ("fail", "warn")}
    if bad:
        raise ContractError(f"contract {where}: validation.policies {bad}: each must be fail or warn.")
    drift, skew = v.section("drift"), v.section("skew")
    rates = {"max_bad_row_rate": v.num("max_bad_row_rate", 0.01),
             "type_error_share": v.num("type_error_share", 0.5),
             "max_label_missing_rate": v.num("max_label_missing_rate", 0.1)}
    for key, value in rates.items():
        if not 0 <= value <= 1:
            raise ContractError(f"contract {where}: validation.{key} must lie in [0, 1], got {value}.")
    change = v.section("volume_change")
    lo, hi = change.num("min_ratio", 0.5), change.num("max_ratio", 1.5)
    if not 0 <= lo <= 1 <= hi:
        raise ContractError(f"contract {where}: validation.volume_change needs 0 <= min_ratio <= 1 "
                            f"<= max_ratio, got min_ratio {lo}, max_ratio {hi}.")
    return ValidationRules(
        policies=policies | given,
        volume_min_ratio=lo,
        volume_max_ratio=hi,
        drift_linf=drift.num("categorical_linf", 0.1),
        drift_js=drift.num("numeric_js", 0.05),
        skew_linf=skew.num("categorical_linf", 0.1),
        skew_js=skew.num("numeric_js", 0.05),
        **rates,
    )
