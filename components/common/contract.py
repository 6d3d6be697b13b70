"""The data contract: one YAML file that both stacks derive schema, split and blessing from.

Framework-neutral: no TensorFlow, torch or orchestrator imports here.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import jsonschema
import yaml

from components.common import storage
from components.common.alerts import smtp_settings
from components.common.errors import ContractError

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_CONTRACT = "flights.yaml"
# The JSON Schema (draft 2020-12) every contract is checked against; docs/contract.schema.json is
# its copy for editors.
SCHEMA = "contract.schema.json"
ALERT_ON = ("fail", "warn")  # alerts.on


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
    """The binary label: 1 when ``source >= threshold``, or (``positive`` given) when ``source`` is
    one of the ``positive`` values; 0 otherwise. Exactly one of the two is set."""

    name: str
    source: str
    threshold: float | None
    missing: str  # "exclude": rows without the source value are kept aside, not trained on
    positive: tuple = ()  # numbers for a numeric source, texts for a string one

    @property
    def meaning(self) -> str:
        """What the model's probability is, for people: ``P(arr_delay >= 15)``,
        ``P(churned in {"yes"})``."""
        if self.positive:
            shown = ", ".join(json.dumps(v) if isinstance(v, str) else f"{v:g}"
                              for v in self.positive)
            return f"P({self.source} in {{{shown}}})"
        return f"P({self.source} >= {self.threshold:g})"

    def of(self, values: pd.Series) -> pd.Series:
        """The label (int64 0/1) of each value of the source column; a missing value gives 0 (its
        row is excluded by ``missing``)."""
        hit = values.isin(list(self.positive)) if self.positive else values >= self.threshold
        return hit.fillna(False).astype("int64")


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
    alert_on: str = "fail"              # alerts.on: fail (a stopped run) | warn (warnings too)

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


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    """The validator of the packaged schema :data:`SCHEMA`, read once."""
    schema = json.loads((importlib.resources.files("components.common") / SCHEMA).read_text())
    return jsonschema.Draft202012Validator(schema)


def _normalized(doc, parent: str = ""):
    """The YAML document as the schema sees it: mapping keys as text (``on:`` under ``alerts``,
    which YAML 1.1 reads as ``true``, back to ``on``), keys whose value is empty dropped (an empty
    key means its default; an empty column entry stays, as ``{}``)."""
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            key = "on" if (parent == "alerts" and k is True) else str(k)
            if v is None and parent != "columns":
                continue
            out[key] = {} if v is None else _normalized(v, key if parent != "columns" else "column")
        return out
    if isinstance(doc, list):
        return [_normalized(v, parent) for v in doc]
    return doc


def _dotted(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


_KINDS = {"object": "a mapping", "array": "a list", "number": "a number",
          "integer": "a whole number", "boolean": "true or false", "string": "a name"}
_YAML_BOOLS = ("YAML reads an unquoted yes/no/true/false/on/off as true/false: quote the value, "
               'e.g. "yes"')


def _schema_problem(e) -> str:
    """One schema violation as a sentence naming the dotted key."""
    path, v, kind = _dotted(e.absolute_path), e.instance, e.validator
    if kind == "required":
        missing = [k for k in e.validator_value if k not in v]
        return "; ".join(f"required key '{_dotted([*e.absolute_path, k])}' is missing"
                         for k in missing) + "."
    if kind == "additionalProperties":
        known = sorted(e.schema.get("properties", {}))
        extra = sorted(set(v) - set(known))
        hint = f"; known: {', '.join(known)}" if known else ""
        return "; ".join(f"unknown key '{_dotted([*e.absolute_path, k])}'{hint}" for k in extra) + "."
    if kind == "not" and path in ("alerts.webhook", "alerts.slack"):
        sink = path.split(".")[1]
        return (f"key '{path}' holds a URL, which is a secret and must not live in the contract "
                f"(anyone who can read the contract could post to it): set "
                f"TWINPIPE_ALERT_{sink.upper()} or TWINPIPE_ALERT_{sink.upper()}_FILE, or pass "
                f"--alert-{sink}-file PATH, and remove {path} from the contract.")
    if kind == "type":
        want = e.validator_value if isinstance(e.validator_value, list) else [e.validator_value]
        words = " or ".join(dict.fromkeys(_KINDS.get(w, w) for w in want))
        if "number" in want and "string" in want:
            words = "a text or a number"
        got = type(v).__name__ if "object" in want else repr(v)
        tail = f" ({_YAML_BOOLS})" if isinstance(v, bool) and "string" in want else ""
        return f"key '{path}' must be {words}, got {got}{tail}."
    if kind == "enum":
        allowed = ", ".join(map(str, e.validator_value))
        if path == "blessing.metric":
            return (f"blessing.metric is {v!r}; both stacks bless on {allowed} (TFMA in the TFX "
                    "stack and the torch evaluate compute it on the same eval rows): set "
                    "blessing.metric: auc.")
        if len(e.absolute_path) == 3 and e.absolute_path[0] == "columns" and path.endswith(".type"):
            return f"column '{e.absolute_path[1]}' has type {v!r}; allowed: {allowed}."
        return f"key '{path}' is {v!r}; allowed: {allowed}."
    if kind in ("minimum", "maximum"):
        lo, hi = e.schema.get("minimum"), e.schema.get("maximum")
        if lo is not None and hi is not None:
            return f"{path} must lie in [{lo:g}, {hi:g}], got {v:g}."
        return f"{path} must be {'>=' if kind == 'minimum' else '<='} {e.validator_value:g}, got {v:g}."
    if kind == "minProperties":
        return f"key '{path}' lists no column." if path == "columns" else f"key '{path}' is empty."
    if kind == "minItems":
        return f"key '{path}' must list at least one value."
    if kind == "oneOf" and path == "label":
        if "threshold" in v and "positive" in v:
            return ("label has both threshold and positive; give exactly one: label.threshold "
                    "(label = 1 when source >= threshold) or label.positive (label = 1 when "
                    "source is one of the values).")
        return ("label needs label.threshold (label = 1 when source >= threshold, a numeric "
                "source) or label.positive (label = 1 when source is one of the values, e.g. "
                'positive: ["yes"]).')
    return f"key '{path or '(top level)'}': {e.message}."


def _problems(doc: dict) -> list[str]:
    """Every problem of the (normalized) contract document: schema violations, then the rules a
    schema cannot say (columns named by other keys exist, a string feature has a vocabulary, ...)."""
    errors = sorted(_validator().iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    problems = [_schema_problem(e) for e in errors]
    bad = set()
    for e in errors:  # the keys each violation is about
        base = list(e.absolute_path)
        if e.validator == "required":
            bad |= {_dotted([*base, k]) for k in e.validator_value if k not in e.instance}
        elif e.validator == "additionalProperties":
            bad |= {_dotted([*base, k]) for k in e.instance if k not in e.schema.get("properties", {})}
        elif e.validator == "oneOf" and isinstance(e.instance, dict):
            bad |= {_dotted([*base, "threshold"]), _dotted([*base, "positive"])}
        else:
            bad.add(_dotted(base))

    def ok(*keys: str) -> bool:  # none of these keys (or below / above them) broke the schema
        return not any(b == k or b.startswith((k + ".", k + "[")) or k.startswith(b + ".")
                       for b in bad for k in keys if b)

    cols = doc.get("columns") if isinstance(doc.get("columns"), dict) else {}
    names = set(cols)
    types = {n: s.get("type") for n, s in cols.items() if isinstance(s, dict)}
    for n, spec in cols.items():
        if (isinstance(spec, dict) and spec.get("feature") is True
                and spec.get("type") == "string" and not spec.get("vocabulary")
                and ok(f"columns.{n}.type", f"columns.{n}.feature", f"columns.{n}.vocabulary")):
            problems.append(
                f"column '{n}' is a string feature without a vocabulary; both stacks encode a "
                f"category as its index in the list, so give columns.{n}.vocabulary (the values "
                f"it may take; others are quarantined), or set columns.{n}.feature: false.")
    if cols and ok(*(f"columns.{n}.feature" for n in cols)) and not any(
            isinstance(s, dict) and s.get("feature") is True for s in cols.values()):
        problems.append("no column is a model feature; mark at least one column 'feature: true'.")

    lab = doc.get("label") if isinstance(doc.get("label"), dict) else {}
    source = lab.get("source")
    if isinstance(source, (str, int)) and ok("label.source") and cols:
        source = str(source)
        if source not in names:
            problems.append(f"label source '{source}' is not a column (label.source).")
        elif "threshold" in lab and types.get(source) == "string" and ok("label.threshold"):
            problems.append(
                f"label.threshold compares numbers, but label source '{source}' is a string "
                f"column: give label.positive instead, the values that mean 1 (e.g. "
                f'positive: ["yes"]).')
        elif (isinstance(lab.get("positive"), list) and types.get(source) in ("int", "float")
              and ok("label.positive")):
            texts = [p for p in lab["positive"] if isinstance(p, str)]
            if texts:
                problems.append(f"label.positive holds {texts[0]!r}, but label source '{source}' "
                                f"is a {types[source]} column: list numbers, or use "
                                "label.threshold.")
    name = lab.get("name")
    if isinstance(name, (str, int)) and str(name) in names and ok("label.name"):
        problems.append(f"label.name '{name}' is a column of the input; the label ingest writes "
                        "needs a name of its own.")

    sp = doc.get("split") if isinstance(doc.get("split"), dict) else {}
    if isinstance(sp.get("key"), list) and ok("split.key") and cols:
        unknown = [str(k) for k in sp["key"] if str(k) not in names]
        if unknown:
            problems.append(f"split key columns {unknown} are not columns (split.key).")

    span = doc.get("span") if isinstance(doc.get("span"), dict) else {}
    if cols and ok("span"):
        given = (["date_column"] if "date_column" in span else ["year_column", "month_column"])
        for key in given:
            c = span.get(key)
            if c is not None and str(c) not in names:
                problems.append(f"span column '{c}' is not a column (span.{key}).")

    alerts = doc.get("alerts") if isinstance(doc.get("alerts"), dict) else {}
    if isinstance(alerts.get("smtp"), str) and alerts["smtp"] and ok("alerts.smtp"):
        try:
            smtp_settings(alerts["smtp"])
        except ContractError as e:
            problems.append(f"alerts.smtp: {e}")

    return problems


def load_contract(path: str | Path | None = None) -> Contract:
    """Loads and checks a contract file (a local path or a ``gs://`` URI, read through
    :mod:`components.common.storage`); the packaged flights contract when ``path`` is None.

    The whole file is checked at once: against the JSON Schema :data:`SCHEMA` (types, required
    and unknown keys, allowed values, ranges), then the rules between keys (the columns the
    label, split and span name exist, a string feature has a vocabulary, ...).

    Raises:
        ContractError: every problem found, one line each, naming the file and the dotted key.
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
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ContractError(f"contract {where} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ContractError(f"contract {where} must be a YAML mapping at the top level.")
    doc = _normalized(raw)
    problems = _problems(doc)
    if len(problems) == 1:
        raise ContractError(f"contract {where}: {problems[0]}")
    if problems:
        raise ContractError(f"contract {where} has {len(problems)} problems:\n" + "\n".join(
            f"  - contract {where}: {p}" for p in problems))
    return _parse(doc, where)


def _parse(doc: dict, where: str) -> Contract:
    """The Contract of a document :func:`_problems` found nothing wrong with."""
    val = doc.get("validation", {})
    default_null = float(val.get("max_null_rate", 0.1))
    columns = tuple(
        Column(
            name=name,
            type=spec["type"],
            feature=bool(spec.get("feature", False)),
            nullable=bool(spec.get("nullable", False)),
            min=float(spec["min"]) if "min" in spec else None,
            max=float(spec["max"]) if "max" in spec else None,
            vocabulary=tuple(_text(v) for v in spec.get("vocabulary", ())),
            max_null_rate=float(spec.get("max_null_rate",
                                         default_null if spec.get("nullable") else 0.0)),
            drift=float(spec["drift"]) if "drift" in spec else None,
        )
        for name, spec in doc["columns"].items())
    types = {c.name: c.type for c in columns}
    lab = doc["label"]
    source = str(lab["source"])
    positive = tuple(_text(v) if types[source] == "string" else float(v)
                     for v in lab.get("positive", ()))
    label = LabelRule(name=str(lab["name"]), source=source,
                      threshold=float(lab["threshold"]) if "threshold" in lab else None,
                      missing=lab.get("missing", "exclude"), positive=positive)
    sp, bl, span = doc["split"], doc["blessing"], doc["span"]
    date_column = str(span["date_column"]) if "date_column" in span else None
    alerts = dict(doc.get("alerts", {}))
    examples, alert_on = alerts.pop("examples", "full"), alerts.pop("on", "fail")
    return Contract(
        name=str(doc.get("name", "contract")),
        version=int(doc.get("version", 1)),
        path=where,
        columns=columns,
        label=label,
        split=SplitRule(key=tuple(str(k) for k in sp["key"]),
                        eval_per_mille=int(sp["eval_per_mille"])),
        blessing=BlessingRule(metric=bl["metric"], lower_bound=float(bl["lower_bound"]),
                              max_regression=float(bl["max_regression"])),
        join_keys=tuple(str(k) for k in doc.get("source", {}).get("join_keys", ())),
        year_column=None if date_column else str(span["year_column"]),
        month_column=None if date_column else str(span["month_column"]),
        min_rows_per_span=int(doc.get("min_rows_per_span", 1)),
        validation=_validation_rules(val),
        alerts=tuple(sorted((k, str(v)) for k, v in alerts.items() if v)),
        date_column=date_column,
        missing_values=tuple(_text(v) for v in doc.get("missing_values", [""])),
        alert_examples=examples,
        alert_on=alert_on,
    )


def _text(v) -> str:
    """A YAML value as the text a cell holds: 3 for 3 and 3.0, 2.5 for 2.5."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _validation_rules(v: dict) -> ValidationRules:
    policies = {c: "fail" for c in CHECKS} | {"extra_columns": "warn", "skew": "warn",
                                             "volume_change": "warn"}
    drift, skew, change = v.get("drift", {}), v.get("skew", {}), v.get("volume_change", {})
    return ValidationRules(
        policies=policies | v.get("policies", {}),
        max_bad_row_rate=float(v.get("max_bad_row_rate", 0.01)),
        type_error_share=float(v.get("type_error_share", 0.5)),
        max_label_missing_rate=float(v.get("max_label_missing_rate", 0.1)),
        volume_min_ratio=float(change.get("min_ratio", 0.5)),
        volume_max_ratio=float(change.get("max_ratio", 1.5)),
        drift_linf=float(drift.get("categorical_linf", 0.1)),
        drift_js=float(drift.get("numeric_js", 0.05)),
        skew_linf=float(skew.get("categorical_linf", 0.1)),
        skew_js=float(skew.get("numeric_js", 0.05)),
    )
