"""The span catalogue: the monthly spans' layout under spans_dir, the Parquet writer (row groups,
--scale), and the readers that select, stream and profile spans."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from components.common import storage
from components.common.contract import Contract
from components.common.errors import DataError

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


def arrow_schema(contract: Contract, with_reason: bool = False) -> pa.Schema:
    types = {"int": pa.int64(), "float": pa.float64(), "string": pa.string()}
    fields = [pa.field(c.name, types[c.type]) for c in contract.columns]
    fields.append(pa.field(contract.label.name, pa.int64()))
    if with_reason:
        fields.append(pa.field("reason", pa.string()))
    return pa.schema(fields)


class RowGroupWriter:
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


def scaled_chunks(n: int, scale: int, seed: int, span: int, split: str):
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
    files = span_files(spans_dir, split, spans)
    if not files:
        raise no_split_rows(spans_dir, split, spans)
    return open_files(files)


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
    data = span_dataset(spans_dir, split, spans)
    if columns is not None:
        columns = [c for c in columns if c in data.schema.names]
    yield from stream(data, columns, batch_rows)


def span_history(spans_dir: str | Path) -> dict[int, str]:
    """The persisted per-span profiles (:mod:`components.common.profile`) by span number: their
    paths (or ``gs://`` URLs)."""

    d = storage.join(spans_dir, HISTORY)
    return {int(n[5:-5]): storage.join(d, n) for n in storage.listdir(d)
            if n.startswith("span-") and n.endswith(".json") and n[5:-5].isdigit()}


def resolve_spans(spans_dir: str | Path) -> str:
    """The folder/prefix that holds the current spans. Locally ``spans_dir`` itself (a symlink to
    the current generation, resolved by the OS); on object storage, which has no symlink, the
    generation named by ``spans_dir/CURRENT.json`` (written last by a publish,
    :mod:`pipelines.objectstore`), or ``spans_dir`` itself when there is no pointer."""

    if not storage.is_remote(spans_dir):
        return str(spans_dir)
    pointer = storage.join(spans_dir, "CURRENT.json")
    if storage.exists(pointer):
        return storage.join(spans_dir, storage.read_json(pointer)["generation"])
    return str(spans_dir)


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


@contextlib.contextmanager
def still_there(what: str):
    """A referenced file that vanished (its generation was replaced twice since ingest, or removed
    by hand) as one DataError naming it, not a pyarrow traceback."""
    try:
        yield
    except FileNotFoundError as e:
        raise DataError(
            f"{e.filename or what}: a file of the rows to read ({what}) no longer exists — the spans "
            "were published again (twice) or removed while this run read them; rerun from ingest "
            "(rule: volume).") from None


def open_files(paths: list[str]) -> ds.Dataset:
    """Parquet files (local or ``gs://``, not mixed) as one pyarrow dataset, nothing read yet."""
    fs, _ = storage.pyarrow_fs(paths[0])
    with still_there(storage.parent(paths[0])):
        return ds.dataset([storage.pyarrow_fs(f)[1] for f in paths], format="parquet",
                          filesystem=fs)


def stream(data: ds.Dataset, columns: list[str] | None = None,
           batch_rows: int = ROW_GROUP_ROWS) -> Iterator[pa.RecordBatch]:
    """``data``'s non-empty record batches, in file order. Read-ahead is bounded too: pyarrow's
    defaults (16 batches, 4 files ahead) would hold far more rows than the one batch in use."""
    with still_there(data.files[0] if data.files else "no files"):
        for batch in data.to_batches(columns=columns, batch_size=batch_rows,
                                     batch_readahead=2, fragment_readahead=2):
            if batch.num_rows:
                yield batch
