"""A starting contract from a sample of the user's table (`twinpipe contract init`).

:func:`draft` reads the sample with the project's readers, infers each column (type, range with a
margin, vocabulary of a low-cardinality text column, nulls), the span (a date/timestamp column, or
year and month columns), a split key (a unique id-like column, or the smallest unique combination)
and the label rule, then calibrates the data gate's limits on the sample itself: it ingests the
sample under the draft into a scratch folder, runs the gate, and sets the drift, skew, volume,
null and label-missing limits above what this sample shows (small files carry sampling noise the
default limits refuse). The written contract carries a comment for each choice and the
yaml-language-server schema line, loads with :func:`load_contract` and passes the gate on the same
data.

Framework-neutral: pandas only, no TensorFlow or torch.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from components.common.contract import SCHEMA, load_contract
from components.common.errors import ContractError, GateError

# Texts that mean "no value" when they sit among numbers (besides the empty cell).
NULL_MARKERS = ("NA", "N/A", "NaN", "nan", "null", "NULL", "None")
MAX_VOCABULARY = 50        # a text column with more distinct values is not a feature
POSITIVE_WORDS = ("yes", "y", "true", "t", "1", "positive", "pos")
DATE_HINTS = ("date", "time", "day", "_at", "timestamp")


@dataclass
class _Col:
    name: str
    type: str
    nulls: int
    lines: list[str] = field(default_factory=list)  # comment lines above the entry
    spec: dict = field(default_factory=dict)


def schema_path() -> Path:
    """The packaged JSON Schema of contracts (what the written file's schema line points at)."""
    import importlib.resources

    return Path(str(importlib.resources.files("components.common") / SCHEMA))


def _schema_ref(out: Path | None) -> str:
    target = schema_path()
    if out is None:
        return str(target)
    try:
        return os.path.relpath(target, Path(out).absolute().parent)
    except ValueError:  # another drive
        return str(target)


def _read(path: str | Path) -> pd.DataFrame:
    from components.common.sources import load_input_table

    try:
        df, _ = load_input_table(path)
    except GateError as e:
        raise ContractError(f"contract init: cannot read the sample: {e}") from None
    df = df.drop(columns=[c for c in ("__row", "__file") if c in df.columns])
    if df.empty:
        raise ContractError(f"contract init: {path} holds no row; a sample needs rows to infer "
                            "types, ranges and vocabularies from.")
    return df


def _texts(s: pd.Series) -> pd.Series:
    """A column as text cells ("" for a missing one), whatever the reader gave."""
    if s.dtype == object or pd.api.types.is_string_dtype(s):
        return s.map(lambda v: "" if v is None or (isinstance(v, float) and v != v) else str(v))
    return s.astype(object).map(lambda v: "" if pd.isna(v) else str(v))


def _numbers(t: pd.Series, markers: set[str]) -> pd.Series | None:
    """The column's values as numbers when every non-missing cell is one, else None."""
    present = t[~t.isin(markers)]
    if present.empty:
        return None
    num = pd.to_numeric(present.str.strip(), errors="coerce")
    if num.isna().any() or present.str.lower().isin(["nan", "inf", "-inf", "infinity"]).any():
        return None
    return num


def _round(x: float, up: bool) -> float:
    """x rounded outwards to 3 significant digits."""
    if x == 0 or not math.isfinite(x):
        return 0.0 if x == 0 else x
    step = 10 ** (math.floor(math.log10(abs(x))) - 2)
    v = (math.ceil(x / step) if up else math.floor(x / step)) * step
    return float(f"{v:.12g}")


def _limit(observed: float, default: float, factor: float = 2.0) -> float:
    """A gate limit: the default, or ``factor`` times what the sample shows when that is larger
    (rounded up to 2 decimals)."""
    return max(default, math.ceil(observed * factor * 100) / 100)


def _parse_dates(t: pd.Series) -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pd.to_datetime(t.astype(object), errors="coerce", utc=True)


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_YAML_WORDS = {"yes", "no", "y", "n", "true", "false", "on", "off", "null"}


def _fmt(v) -> str:
    if isinstance(v, str):  # plain when YAML reads it back as this text, else double-quoted
        plain = _PLAIN.fullmatch(v) and v.lower() not in _YAML_WORDS
        return v if plain else json.dumps(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return f"{v:g}" if isinstance(v, float) else str(v)


def _flow(spec: dict) -> str:
    return "{" + ", ".join(f"{k}: " + ("[" + ", ".join(_fmt(x) for x in v) + "]"
                                       if isinstance(v, (list, tuple)) else _fmt(v))
                           for k, v in spec.items()) + "}"


def draft(input_path: str | Path, label: str, *, positive: list[str] | None = None,
          threshold: float | None = None, name: str | None = None,
          date_column: str | None = None, year_column: str | None = None,
          month_column: str | None = None, out: str | Path | None = None) -> str:
    """The text of a starting contract for the table at ``input_path`` (a CSV/Parquet file or
    folder) whose binary label comes from column ``label``.

    Raises:
        ContractError: the label column is missing; a label of more than two values without
            ``positive`` or ``threshold``; no span column found (pass ``date_column`` or
            ``year_column`` + ``month_column``); a named column that is not in the sample.
    """
    if positive and threshold is not None:
        raise ContractError("contract init: give --positive or --threshold, not both.")
    if (year_column is None) != (month_column is None):
        raise ContractError("contract init: --year-column and --month-column go together.")
    if date_column and year_column:
        raise ContractError("contract init: give --date-column, or --year-column with "
                            "--month-column, not both.")
    df = _read(input_path)
    where = str(input_path)
    columns = [str(c) for c in df.columns]
    for flag, col in (("--label", label), ("--date-column", date_column),
                      ("--year-column", year_column), ("--month-column", month_column)):
        if col is not None and col not in columns:
            raise ContractError(f"contract init: {flag} {col}: {where} has no column {col!r}; "
                                f"its columns: {', '.join(columns)}.")
    texts = {c: _texts(df[c]) for c in columns}
    # which null markers the data uses: among numbers they can only mean "no value"
    markers = [""]
    for m in NULL_MARKERS:
        if any(t.eq(m).any() and _numbers(t, {"", m}) is not None for t in texts.values()):
            markers.append(m)
    missing = set(markers)
    n = len(df)

    # --- types -----------------------------------------------------------------------------
    cols: dict[str, _Col] = {}
    numbers: dict[str, pd.Series] = {}
    for c in columns:
        t = texts[c]
        nulls = int(t.isin(missing).sum())
        num = _numbers(t, missing) if pd.api.types.is_bool_dtype(df[c]) is False else None
        if num is not None:
            written = t[~t.isin(missing)]  # "5.0" is a float column's value, as pandas writes it
            whole = (num == num.round()).all() and num.abs().max() < 2 ** 53
            kind = "int" if whole and not written.str.contains(r"[.eE]", regex=True).any() else "float"
            numbers[c] = num
        else:
            kind = "string"
        cols[c] = _Col(c, kind, nulls)

    # --- label -----------------------------------------------------------------------------
    src = texts[label][~texts[label].isin(missing)]
    values = sorted(src.unique())
    if src.empty:
        raise ContractError(f"contract init: label column {label!r} holds no value in {where}.")
    label_rule: dict
    if threshold is not None:
        if label not in numbers:
            raise ContractError(f"contract init: --threshold compares numbers, but label column "
                                f"{label!r} holds text (e.g. {values[0]!r}); name the values "
                                f"that mean 1 with --positive VALUE.")
        label_rule = {"threshold": threshold}
        share = float((numbers[label] >= threshold).mean())
        rule_text = f"{label} >= {threshold:g}"
    else:
        if not positive:
            if len(values) > 2:
                shown = ", ".join(map(repr, values[:8])) + (" ..." if len(values) > 8 else "")
                raise ContractError(
                    f"contract init: label column {label!r} takes {len(values)} values "
                    f"({shown}); the label is binary: say which values mean 1 with --positive "
                    f"VALUE (repeatable), or give --threshold X for label = {label} >= X.")
            if len(values) < 2:
                raise ContractError(f"contract init: label column {label!r} holds one value only "
                                    f"({values[0]!r}) in {where}: a model needs both classes.")
            guess = [v for v in values if v.lower() in POSITIVE_WORDS]
            if len(guess) != 1:
                raise ContractError(
                    f"contract init: label column {label!r} takes the values {values[0]!r} and "
                    f"{values[1]!r}; say which one means 1 with --positive VALUE.")
            positive = guess
        unknown = [p for p in positive if p not in set(values)]
        if unknown:
            raise ContractError(f"contract init: --positive {unknown[0]!r} does not occur in label "
                                f"column {label!r}; its values: "
                                f"{', '.join(map(repr, values[:20]))}.")
        pos = [float(p) if label in numbers else p for p in positive]
        label_rule = {"positive": pos}
        share = float(src.isin(positive).mean())
        rule_text = f"{label} in {{{', '.join(_fmt(p) for p in pos)}}}"
    label_name = next(x for x in ("label", f"{label}_label", f"{label}_positive")
                      if x not in cols)

    # --- span ------------------------------------------------------------------------------
    span_note: list[str]
    if date_column is None and year_column is None:
        found = _find_span(cols, texts, numbers, missing)
        if found is None:
            raise ContractError(
                f"contract init: no date or timestamp column, and no year and month columns, in "
                f"{where} (columns: {', '.join(columns)}); spans are calendar months: name the "
                f"date column with --date-column COL, or the year and month columns with "
                f"--year-column COL --month-column COL.")
        date_column, year_column, month_column = found
    if date_column is not None:
        dates = _parse_dates(texts[date_column][~texts[date_column].isin(missing)])
        bad = int(dates.isna().sum())
        if bad:
            example = texts[date_column][~texts[date_column].isin(missing)][dates.isna()].iloc[0]
            raise ContractError(f"contract init: --date-column {date_column}: {bad} value(s) are "
                                f"not dates (e.g. {example!r}).")
        cols[date_column].type = "string"
        span_doc = {"date_column": date_column}
        span_note = [f"One span per calendar month of {date_column} "
                     f"({dates.min():%Y-%m} ... {dates.max():%Y-%m} in the sample)."]
    else:
        for c in (year_column, month_column):
            if c not in numbers:
                raise ContractError(f"contract init: span column {c!r} holds text; year and "
                                    "month columns hold whole numbers.")
        span_doc = {"year_column": year_column, "month_column": month_column}
        span_note = [f"One span per (year, month): {year_column} * 100 + {month_column}."]
    span_cols = {c for c in (date_column, year_column, month_column) if c}

    # --- columns ---------------------------------------------------------------------------
    idlike = {c for c in columns
              if cols[c].nulls == 0 and texts[c].nunique() == n and cols[c].type != "float"}
    for c in columns:
        col, t = cols[c], texts[c]
        present = t[~t.isin(missing)]
        spec: dict = {"type": col.type}
        if c in numbers:
            num = numbers[c]
            lo, hi = float(num.min()), float(num.max())
            margin = (hi - lo) * 0.1 or max(abs(lo), 1.0) * 0.1
            lo2, hi2 = lo - margin, hi + margin
            if lo >= 0:
                lo2 = max(0.0, lo2)
            if col.type == "int":
                lo2, hi2 = math.floor(lo2), math.ceil(hi2)
            else:
                lo2, hi2 = _round(lo2, up=False), _round(hi2, up=True)
            if c in (year_column, month_column):  # calendar bounds, not the sample's
                spec |= {"min": 1900, "max": 2100} if c == year_column else {"min": 1, "max": 12}
            else:
                spec |= {"min": lo2, "max": hi2}
                col.lines.append(f"observed {_fmt(lo)} .. {_fmt(hi)}; the range adds 10 % of it "
                                 "each side")
        distinct = present.nunique()
        if col.type == "string" and c not in span_cols:
            if distinct <= MAX_VOCABULARY and distinct < max(2, len(present) // 2):
                spec["vocabulary"] = sorted(present.unique())
                col.lines.append(f"{distinct} distinct values: the vocabulary (others are "
                                 "quarantined as unseen)")
            elif c not in idlike:
                col.lines.append(f"{distinct} distinct values in {len(present)} rows: an id or "
                                 f"free text, not a feature (a text feature needs a vocabulary "
                                 f"of at most {MAX_VOCABULARY})")
        if c == label:
            col.lines.append(f"label source: {label_name} = 1 when {rule_text} "
                             f"({share:.1%} of the sample)")
        elif c in span_cols:
            col.lines.append("span column, not a feature")
        elif c in idlike and (col.type == "int" or "vocabulary" not in spec):
            col.lines.append("unique per row: an id, not a feature")
        elif col.type != "string" or "vocabulary" in spec:
            spec["feature"] = True
        if col.nulls:
            spec["nullable"] = True
            col.lines.append(f"{col.nulls} missing of {n} ({col.nulls / n:.1%})")
        col.spec = spec

    # --- split key -------------------------------------------------------------------------
    key, key_note = _split_key(columns, texts, cols, label, span_cols, idlike, n)

    # --- the draft, then the gate's limits calibrated on the sample ------------------------
    doc = {
        "name": name or Path(str(input_path).rstrip("/")).stem or "contract",
        "span": span_doc, "missing_values": markers,
        "label": {"name": label_name, "source": label, **label_rule},
        "split": {"key": key, "eval_per_mille": 200},
        "blessing": {"metric": "auc", "lower_bound": 0.55, "max_regression": 0.02},
    }
    calib = _calibrate(doc, cols, input_path)
    return _render(doc, cols, calib, span_note, key_note, n, where, out)


def _find_span(cols, texts, numbers, missing) -> tuple | None:
    """(date column, None, None) or (None, year column, month column) found in the sample."""
    lower = {c.lower(): c for c in cols}
    year, month = lower.get("year"), lower.get("month")
    dated = []
    for c, col in cols.items():
        if col.type != "string":
            continue
        t = texts[c][~texts[c].isin(missing)]
        if t.empty or not t.str.contains(r"\d", regex=True).all():
            continue
        d = _parse_dates(t.head(2000))
        if d.notna().all() and _parse_dates(t).notna().all():
            dated.append(c)
    if dated:
        hinted = [c for c in dated if any(h in c.lower() for h in DATE_HINTS)]
        return (hinted or dated)[0], None, None
    if year in numbers and month in numbers and numbers[month].between(1, 12).all():
        return None, year, month
    return None


def _split_key(columns, texts, cols, label, span_cols, idlike, n) -> tuple[list[str], str]:
    """The split key: a unique id-like column, else the smallest unique combination of the
    sample's non-float columns (a span column first), else every column."""
    if idlike - {label}:
        hinted = sorted(c for c in idlike - {label} if "id" in c.lower() or "key" in c.lower())
        c = (hinted or sorted(idlike - {label}, key=columns.index))[0]
        return [c], f"{c} is unique per row: rows keep their side of the split run after run"
    pool = [c for c in columns if c != label and cols[c].type != "float"]
    pool = sorted(pool, key=lambda c: (c not in span_cols, -texts[c].nunique()))[:12]
    for size in (2, 3):
        for combo in itertools.combinations(pool, size):
            if not pd.DataFrame({c: texts[c] for c in combo}).duplicated().any():
                return list(combo), (f"no single column is unique per row; ({', '.join(combo)}) "
                                     "is: rows keep their side of the split run after run")
    rest = [c for c in columns if c != label]
    return rest, ("no small combination of columns is unique per row: the key is every column "
                  "but the label (rows repeated whole are quarantined as duplicates)")


@dataclass
class _Calibration:
    rows: dict                       # span -> labelled rows
    drift: dict                      # column -> max drift seen between consecutive spans
    skew: dict                       # column -> max train/eval skew seen
    nulls: dict                      # feature -> max null share of a span
    ratios: list                     # consecutive spans' volume ratios
    label_missing: float             # max share of a span's rows without a label


def _calibrate(doc: dict, cols: dict, input_path) -> _Calibration:
    """The gate's figures on the sample under the draft with the limits open (what drift, skew,
    nulls, volumes and missing labels this sample shows)."""
    from components.common.gate import check_spans
    from components.common.ingest import ingest

    open_doc = json.loads(json.dumps(doc)) | {
        "columns": {c: col.spec | ({"max_null_rate": 1} if col.spec.get("nullable") else {})
                    for c, col in cols.items()},
        "validation": {"max_label_missing_rate": 1, "max_bad_row_rate": 1,
                       "volume_change": {"min_ratio": 0, "max_ratio": 1e9},
                       "drift": {"categorical_linf": 1, "numeric_js": 1},
                       "skew": {"categorical_linf": 1, "numeric_js": 1}},
    }
    with tempfile.TemporaryDirectory(prefix="twinpipe-contract-init-") as tmp:
        path = Path(tmp) / "draft.yaml"
        path.write_text(json.dumps(open_doc))  # JSON is YAML
        try:
            contract = load_contract(path)
        except ContractError as e:  # a bug here, not the user's: say what was drafted
            raise ContractError(f"contract init drafted a contract that does not load ({e}); "
                                f"draft: {json.dumps(open_doc)}") from None
        quiet = logging.getLogger("twinpipe.ingest")  # a scratch ingest, not the user's
        level = quiet.level
        quiet.setLevel(logging.WARNING)
        try:
            ingest(contract, Path(tmp) / "spans", input_path=input_path)
        except GateError as e:
            raise ContractError(f"contract init: the sample breaks the drafted contract as a "
                                f"whole: {e}") from None
        finally:
            quiet.setLevel(level)
        report = check_spans(contract, Path(tmp) / "spans")
    cal = _Calibration({}, {}, {}, {}, [], 0.0)
    for span, fig in sorted(report.figures.items()):
        cal.rows[span] = fig.get("rows", 0)
        for col, v in fig.get("drift", {}).items():
            cal.drift[col] = max(cal.drift.get(col, 0.0), v)
        for col, v in fig.get("skew", {}).items():
            cal.skew[col] = max(cal.skew.get(col, 0.0), v)
        for col, v in fig.get("null_rate", {}).items():
            cal.nulls[col] = max(cal.nulls.get(col, 0.0), v)
        if "volume_ratio" in fig:
            cal.ratios.append(fig["volume_ratio"])
        cal.label_missing = max(cal.label_missing, fig.get("label_missing_rate", 0.0))
    return cal


def _render(doc, cols, cal: _Calibration, span_note, key_note, n, where, out) -> str:
    rows = sorted(cal.rows.values()) or [n]
    smallest, spans = rows[0], len(rows)
    numeric = [c for c, col in cols.items() if col.spec.get("feature") and col.type != "string"]
    categorical = [c for c, col in cols.items()
                   if col.spec.get("feature") and col.type == "string"]
    js = _limit(max((cal.drift.get(c, 0) for c in numeric), default=0), 0.05)
    linf = _limit(max((cal.drift.get(c, 0) for c in categorical), default=0), 0.1)
    skew_js = _limit(max((cal.skew.get(c, 0) for c in numeric), default=0), 0.05)
    skew_linf = _limit(max((cal.skew.get(c, 0) for c in categorical), default=0), 0.1)
    lo = min(0.5, math.floor(min(cal.ratios, default=1) / 1.5 * 100) / 100)
    hi = max(1.5, math.ceil(max(cal.ratios, default=1) * 1.5 * 100) / 100)
    min_rows = max(1, smallest // 2)
    label_missing = min(1.0, _limit(cal.label_missing, 0.1, 1.5))
    for c, rate in cal.nulls.items():
        if cols[c].spec.get("nullable"):
            cols[c].spec["max_null_rate"] = min(1.0, _limit(rate, 0.1, 1.5))
    small = smallest < 5000

    L = [f"# yaml-language-server: $schema={_schema_ref(out)}",
         f"# A starting contract written by `twinpipe contract init` from {where}",
         f"# ({n} rows, {spans} span(s), the smallest with {smallest} labelled rows). Read it, then",
         "# check it against your data with `twinpipe contract check`. Every key: docs/contract.md.",
         f"name: {_fmt(doc['name'])}",
         "version: 1",
         "",
         *(f"# {s}" for s in span_note),
         f"span: {_flow(doc['span'])}",
         "",
         "# The only cell texts that mean \"no value\" (found in this sample).",
         f"missing_values: [{', '.join(_fmt(m) for m in doc['missing_values'])}]",
         "",
         "columns:"]
    for c, col in cols.items():
        L += [f"  # {line}" for line in col.lines]
        L.append(f"  {_fmt(c) if not c.isidentifier() else c}: {_flow(col.spec)}")
    lab = doc["label"]
    L += ["",
          "label:",
          _note(f"  name: {_fmt(lab['name'])}", "written by ingest as int 0/1"),
          f"  source: {_fmt(lab['source'])}"]
    if "threshold" in lab:
        L.append(_note(f"  threshold: {_fmt(lab['threshold'])}", "1 when source >= threshold"))
    else:
        L.append(_note(f"  positive: [{', '.join(_fmt(p) for p in lab['positive'])}]",
                       "1 when the source is one of these"))
    L += [_note("  missing: exclude", "rows without a source value are kept aside, not trained on"),
          "",
          f"# {key_note}.",
          "split:",
          f"  key: [{', '.join(_fmt(k) for k in doc['split']['key'])}]",
          _note("  eval_per_mille: 200", "20 % of the rows evaluate"),
          "",
          f"# Half the smallest span of the sample ({smallest} labelled rows): a delivery much "
          "smaller fails volume.",
          f"min_rows_per_span: {min_rows}",
          "",
          "validation:",
          "  policies: {extra_columns: warn, skew: warn, volume_change: warn}",
          "  max_bad_row_rate: 0.01",
          "  # Rows without a label: the sample's worst span "
          f"{cal.label_missing:.1%}; the limit sits above it.",
          f"  max_label_missing_rate: {_fmt(label_missing)}"]
    if small:
        L += ["  # Limits for a small table: a span of a few hundred or thousand rows differs from",
              "  # the next by sampling noise alone (20 quantile bins of 300 rows hold ~15 rows",
              "  # each), which the defaults (JS 0.05, L-inf 0.1) would refuse as drift. Each limit",
              "  # below is the default or twice the largest distance measured on this sample,",
              "  # whichever is larger; lower them as your spans grow (noise falls as 1/rows)."]
    else:
        L += ["  # Each limit: the default or twice the largest distance measured on this sample."]
    L += [f"  # measured: drift JS up to {_mx(cal.drift, numeric)}, L-inf up to "
          f"{_mx(cal.drift, categorical)};",
          f"  #           skew JS up to {_mx(cal.skew, numeric)}, L-inf up to "
          f"{_mx(cal.skew, categorical)} (train vs eval of one span)",
          f"  drift: {{categorical_linf: {_fmt(linf)}, numeric_js: {_fmt(js)}}}",
          f"  skew: {{categorical_linf: {_fmt(skew_linf)}, numeric_js: {_fmt(skew_js)}}}",
          "  # A span's labelled rows against the previous span's: the sample's ratios were "
          f"{', '.join(f'{r:g}' for r in cal.ratios) or 'none (one span)'}.",
          f"  volume_change: {{min_ratio: {_fmt(lo)}, max_ratio: {_fmt(hi)}}}",
          "",
          "# Data-validation alerts go to the run's alerts.jsonl; on: fail alerts when the gate",
          "# stops a run, warn on warnings too. Webhook/Slack URLs are secrets: never here, set",
          "# TWINPIPE_ALERT_WEBHOOK_FILE / TWINPIPE_ALERT_SLACK_FILE or --alert-webhook-file.",
          "alerts: {on: fail}",
          "",
          f"# The label is 1 for {_share_text(cols, lab)} of the sample. A candidate model is "
          "blessed when its eval",
          "# AUC >= lower_bound (0.5 is a coin toss) and >= the pushed model's AUC - "
          "max_regression.",
          "blessing:",
          "  metric: auc",
          f"  lower_bound: {_fmt(doc['blessing']['lower_bound'])}",
          f"  max_regression: {_fmt(doc['blessing']['max_regression'])}",
          ""]
    return "\n".join(L)


def _note(line: str, comment: str) -> str:
    return f"{line:<26}# {comment}"


def _mx(values: dict, names: list[str]) -> str:
    seen = [values[c] for c in names if c in values]
    return f"{max(seen):.3f}" if seen else "n/a"


def _share_text(cols, lab) -> str:
    line = next((x for x in cols[lab["source"]].lines if x.startswith("label source")), "")
    return line.rsplit("(", 1)[-1].split(" ")[0] if "(" in line else "a share"
