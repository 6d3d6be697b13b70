"""Coercion and row screening: the input table brought to the contract's columns and types (conform),
and every row checked against the contract's row rules (screen), each refused row kept with its
reason."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from components.common.alerts import FailedCheck
from components.common.contract import ROW_RULES, Contract
from components.common.errors import DataError
from components.common.gate import render
from components.common.rowdigest import key_hashes


def reason_no_label(contract: Contract) -> str:
    """Why a row without its label's source value is kept aside (label.missing: exclude)."""
    return f"no {contract.label.source}: no label (label.missing=exclude)"


def where_of(df: pd.DataFrame, index, source: str) -> pd.Series:
    """'file F, line L' for rows of a CSV file (the header being line 1), 'file F, row R' for
    rows of a Parquet file (from 1)."""
    if "__file" in df.columns and "__row" in df.columns:
        files = df.loc[index, "__file"].astype("string")
        unit = files.str.lower().str.endswith(".parquet").map({True: ", row ", False: ", line "})
        return "file " + files + unit.astype("string") + df.loc[index, "__row"].astype("string")
    if str(source).lower().endswith(".parquet"):
        return pd.Series([f"{source}, row {int(i) + 1}" for i in index], index=index, dtype="string")
    return pd.Series([f"{source}, line {int(i) + 2}" for i in index], index=index, dtype="string")


def conform(
    df: pd.DataFrame, contract: Contract, source: str, features_only: bool = False
) -> pd.DataFrame:
    """The table with contract dtypes, or a DataError on the first violation — for scoring input,
    where a row cannot be set aside (``features_only``: only the model's columns are required).

    Raises:
        DataError: naming file, column, row and rule for the first violation found.
    """
    if features_only and 0 < len(df) <= SMALL_ROWS:
        clean = _clean_small(df, contract)
        if clean is not None:
            return clean
    s = screen(df, contract, source, features_only=features_only)
    if s.checks:
        raise DataError(render(s.checks, source, contract))
    if len(s.quarantine):
        row = s.quarantine.iloc[0]
        raise DataError(f"input {row['where']}: {row['reason']}.")
    return s.table.drop(columns=["__file", "__row"], errors="ignore")


SMALL_ROWS = 64  # inputs this small (a serving request) try the per-cell path first


def _is_missing(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and v != v)


def _clean_small(df: pd.DataFrame, contract: Contract) -> pd.DataFrame | None:
    """:func:`conform`'s answer for a small input whose every feature cell is plainly clean,
    checked cell by cell in Python (a one-row request through :func:`screen`'s per-column pandas
    work costs ~16 ms; this, well under one). None as soon as anything is not plainly clean —
    a number given as text, a bool, an infinity, a missing column, the date column, any rule
    broken — and :func:`screen` then decides and words the error. It only ever accepts inputs
    :func:`screen` accepts, with the same values and dtypes (tests/unit/test_conform_small.py)."""
    if not df.columns.is_unique:
        return None
    markers = set(contract.missing_values)
    out: dict[str, pd.Series] = {}
    for col in contract.features:
        if col.name not in df.columns or col.name == contract.date_column:
            return None
        cells = df[col.name].tolist()
        values: list = []
        for v in cells:
            if isinstance(v, str) and v.strip() in markers:
                v = None
            if _is_missing(v):
                if not col.nullable:
                    return None
                values.append(None)
                continue
            if col.numeric:
                # Python ints and floats (np.float64 is one) and NumPy ints only (timedelta64 is
                # one to NumPy): a float32 or anything else would convert differently from the
                # screen's text round trip
                if (isinstance(v, (bool, np.bool_, np.timedelta64))
                        or not isinstance(v, (int, float, np.integer))):
                    return None
                if isinstance(v, (int, np.integer)) and abs(int(v)) > 2**53:
                    return None  # not exact as a float; the screen may keep it exact as text
                try:
                    x = float(v)
                except (OverflowError, ValueError, TypeError):
                    return None
                if not np.isfinite(x) or (col.type == "int" and not x.is_integer()):
                    return None
                if (col.min is not None and x < col.min) or (col.max is not None and x > col.max):
                    return None
                values.append(x)
            else:
                if not isinstance(v, str) or (col.vocabulary and v not in col.vocabulary):
                    return None
                values.append(v)
        if col.numeric:
            num = pd.Series([np.nan if v is None else v for v in values], index=df.index,
                            dtype="float64")
            if col.type == "int":
                num = num.astype("Int64") if num.isna().any() else num.astype("int64")
            out[col.name] = num
        else:
            out[col.name] = pd.Series(values, index=df.index, dtype="string")
    return pd.DataFrame(out, index=df.index)


@dataclass
class Screened:
    """The input split by the contract's row-level rules (see :func:`screen`)."""

    table: pd.DataFrame        # rows that pass, contract dtypes (plus __file/__row)
    quarantine: pd.DataFrame   # rows that do not: raw text of every column + rule, column,
                               # reason, where (file and line)
    rule_rows: pd.DataFrame    # bool per row: one column per row rule, one per "rule|column"
    checks: list               # table-level findings (FailedCheck): schema, extra columns


def _fmt(v) -> str:
    return repr(v if not isinstance(v, float) or not v.is_integer() else int(v))


def screen(df: pd.DataFrame, contract: Contract, source: str,
           features_only: bool = False) -> Screened:
    """Applies the contract to the input table, cell by cell, without stopping at the first error.

    Table level (``checks``; the caller stops on a ``fail`` policy): a contract column missing (a
    renamed one shows as missing + extra), a numeric column where most values are not numbers
    (wrong type), columns the contract does not know. Row level (rows quarantined with their
    reason): malformed lines and cells, nulls in non-nullable columns, values out of range,
    categories outside the vocabulary.
    """

    rules = contract.validation
    pol = rules.policies
    meta = [c for c in ("__file", "__row") if c in df.columns]
    checks: list = []
    columns = contract.features if features_only else list(contract.columns)
    names = [c.name for c in columns]
    missing = [n for n in names if n not in df.columns]
    extra = [c for c in df.columns if c not in names and c not in meta]
    hint = f" (columns not in the contract: {', '.join(extra)} — renamed?)" if extra and missing else ""
    if len(missing) == 1:
        checks.append(FailedCheck("schema", missing[0], "column missing", "column present" + hint,
                                  pol["schema"]))
    elif missing:  # one finding naming them all, not one clause per column
        checks.append(FailedCheck("schema", None, f"{len(missing)} columns missing: "
                                  f"{', '.join(missing)}", "every contract column present" + hint,
                                  pol["schema"]))
    if extra and not features_only:  # scoring input may carry anything else
        checks.append(FailedCheck("extra_columns", ", ".join(extra), f"{len(extra)} column(s) not in "
                                  "the contract", "only contract columns (extra ones are dropped)",
                                  pol["extra_columns"]))
    present = [c for c in columns if c.name in df.columns]
    out: dict = {}
    bad: dict[str, pd.Series] = {r: pd.Series(False, index=df.index) for r in ROW_RULES}
    reason = pd.Series("", index=df.index, dtype=object)
    first_rule = pd.Series("", index=df.index, dtype=object)
    first_col = pd.Series("", index=df.index, dtype=object)

    by_col: dict[str, pd.Series] = {}

    def flag(mask: pd.Series, rule: str, col: str, text) -> None:
        if not mask.any():
            return
        bad[rule] |= mask
        by_col[f"{rule}|{col}"] = by_col.get(f"{rule}|{col}", False) | mask
        new = mask & (first_rule == "")
        first_rule[new], first_col[new] = rule, col
        msgs = text(mask) if callable(text) else text
        reason[mask] = reason[mask].where(reason[mask] == "", reason[mask] + "; ") + msgs

    markers = list(contract.missing_values)

    def text_of(s: pd.Series) -> pd.Series:
        """Cells as text; the contract's missing markers (compared stripped) become NA."""
        t = s.astype("string")
        return t.mask(t.str.strip().isin(markers))

    for col in present:
        s = df[col.name]
        if not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
            s = text_of(s)
        if col.numeric and pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            text = None
            num = s.astype("float64")
            not_num = pd.Series(False, index=df.index)
        elif col.numeric:
            text = s.astype("string").str.strip()
            num = pd.to_numeric(text, errors="coerce")
            not_num = num.isna() & text.notna() & (text != "")
        if col.numeric:
            given = int(s.notna().sum())
            if given and not_num.sum() > rules.type_error_share * given:
                ex = s[not_num].head(3).tolist()
                checks.append(FailedCheck(
                    "schema", col.name, f"{int(not_num.sum())} of {given} values are not numbers, "
                    f"e.g. {ex}", f"type {col.type}", pol["schema"],
                    where_of(df, s[not_num].head(3).index, source).tolist()))
                continue
            flag(not_num, "malformed", col.name,
                 lambda m, s=s, col=col: "column '" + col.name + "': value " + s[m].map(_fmt)
                 + f" is not a number (rule: type {col.type})")
            if col.type == "int":
                frac = num.notna() & (num != np.floor(num.fillna(0)))
                flag(frac, "malformed", col.name,
                     lambda m, s=s, col=col: "column '" + col.name + "': value " + s[m].map(_fmt)
                     + " is not an integer (rule: type int)")
                num = num.where(~frac)
            lo = num < col.min if col.min is not None else pd.Series(False, index=df.index)
            hi = num > col.max if col.max is not None else pd.Series(False, index=df.index)
            flag(lo | hi, "range", col.name,
                 lambda m, num=num, col=col: "column '" + col.name + "': value "
                 + num[m].map(_fmt) + f" outside [{_fmt(col.min)}, {_fmt(col.max)}] (rule: range)")
            value = num
        else:
            value = s.astype("string")
            if col.name == contract.date_column:
                undated = value.notna() & contract.span_of(pd.DataFrame({col.name: value})).isna()
                flag(undated, "malformed", col.name,
                     lambda m, value=value, col=col: "column '" + col.name + "': value "
                     + value[m].map(repr) + " is not a date (rule: span date)")
            if col.vocabulary:
                unseen = value.notna() & ~value.isin(col.vocabulary)
                flag(unseen, "unseen", col.name,
                     lambda m, value=value, col=col: "column '" + col.name + "': category "
                     + value[m].map(repr) + " is not in the vocabulary (rule: unseen)")
        if not col.nullable and col.name != contract.label.source:
            flag(value.isna() & ~bad["malformed"], "not_null", col.name,
                 f"column '{col.name}': value is missing (rule: not nullable)")
        out[col.name] = value
    if pol["schema"] == "warn":  # the contract lets a run go on without them: all null
        kinds = {"int": "Int64", "float": "float64", "string": "string"}
        for n in missing:
            out[n] = pd.Series(None, index=df.index, dtype=kinds[contract.column(n).type])
    rows_bad = pd.concat(list(bad.values()), axis=1).any(axis=1)
    table = pd.DataFrame(out, index=df.index)[~rows_bad]
    for col in present:
        if col.name not in table.columns:
            continue
        if col.type == "int":
            table[col.name] = (table[col.name].astype("Int64") if table[col.name].isna().any()
                               else table[col.name].astype("int64"))
        elif col.type == "float":
            table[col.name] = table[col.name].astype("float64")
    for m in meta:
        table[m] = df.loc[~rows_bad, m]
    quarantine = df[rows_bad].astype("string").assign(
        rule=first_rule[rows_bad], column=first_col[rows_bad], reason=reason[rows_bad],
        where=where_of(df, df.index[rows_bad], source))
    rule_rows = pd.concat([pd.DataFrame(bad), pd.DataFrame(by_col, index=df.index)], axis=1)
    return Screened(table=table, quarantine=quarantine, rule_rows=rule_rows, checks=checks)


def screen_duplicates(screened: Screened, contract: Contract, source: str,
                      ingested: dict[int, np.ndarray]) -> Screened:
    """The duplicates rule over the rows that passed the other rules: a row whose split key
    repeats an earlier row of this delivery, or the key of a row already ingested in another span
    (``ingested``: key hashes by span, :func:`components.common.history.ingested_keys`), is
    quarantined with its reason, as the other row rules' rows are; the gate then rates the rule per
    span like them. The first row of a key repeated within the delivery is kept."""
    key = list(contract.split.key)
    table = screened.table
    if table.empty or not all(k in table.columns for k in key):
        return screened
    hashes = key_hashes(table, key)
    within = pd.Series(pd.Index(hashes).duplicated(keep="first"), index=table.index)
    before = pd.Series("", index=table.index, dtype=object)
    for span, known in sorted(ingested.items()):
        hit = np.isin(hashes, known) & (before == "").to_numpy()
        before[hit] = str(span)
    dup = within | (before != "")
    if not dup.any():
        return screened
    label = ", ".join(key)
    rows = table[dup]
    shown = rows[key].astype("string").fillna("<missing>").agg("|".join, axis=1)
    reason = ("split key (" + label + ") = " + shown + np.where(
        before[dup] != "", " was already ingested in span " + before[dup].astype(str),
        " repeats an earlier row of this delivery") + " (rule: duplicates)")
    meta = [m for m in ("__file", "__row") if m in rows.columns]
    quarantined = rows[[c for c in rows.columns if c not in meta] + meta].astype("string").assign(
        rule="duplicates", column=label, reason=reason.astype("string"),
        where=where_of(table, rows.index, source))
    rule_rows = screened.rule_rows.copy()
    rule_rows.loc[rows.index, "duplicates"] = True
    rule_rows[f"duplicates|{label}"] = False
    rule_rows.loc[rows.index, f"duplicates|{label}"] = True
    return Screened(table=table[~dup], quarantine=pd.concat([screened.quarantine, quarantined]),
                    rule_rows=rule_rows, checks=screened.checks)
