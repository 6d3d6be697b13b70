"""Where a split's rows are, and how a stage reads them without holding them all.

A stage that takes rows gets a *source*: one of

* a **rows reference** — a small JSON document (``kind: twinpipe.rows-ref/v1``) that names the
  published spans generation, the span numbers, the split and its Parquet files. The torch stack's
  ingest writes one per split instead of copying the rows (at 30x the flights a copy is gigabytes
  per run); validate, train and evaluate read the spans in place through it. The reference names
  the *resolved* generation (the folder a local ``spans`` symlink points to, or the generation
  ``CURRENT.json`` names on object storage), so a run reads one consistent set of files;
* a spans folder (``span-N/<split>/*.parquet``), a folder of Parquet files, or one Parquet file.

Every form may be local or ``gs://`` (read through :mod:`components.common.storage` and pyarrow's
filesystem for it). Readers go by record batches (:func:`batches`); counting is metadata only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from components.common import storage
from components.common.errors import DataError
from components.common.rowdigest import Digester
from components.common.spans import no_split_rows, open_files, resolve_spans, span_files, still_there, stream

REF_KIND = "twinpipe.rows-ref/v1"
BATCH_ROWS = 65_536  # rows per record batch a stage holds at a time (a few MB for the flights)


def generation(spans_dir: str | os.PathLike) -> str:
    """The published generation ``spans_dir`` stands for now: the folder its symlink points to
    (locally), or the prefix ``CURRENT.json`` names (object storage). Files under it stay put while
    a run reads them: a publish keeps the generation before the new one (see
    :func:`components.common.publish.publish_spans`)."""

    current = resolve_spans(spans_dir)
    return current if storage.is_remote(current) else os.path.realpath(current)


def write_ref(path: str | os.PathLike, spans_dir: str | os.PathLike, split: str,
              spans: list[int] | None = None) -> dict:
    """Writes the reference to ``split`` of ``spans`` (every span when None) of the current
    generation of ``spans_dir`` at ``path``; returns it (``rows`` counted from Parquet metadata)."""

    current = generation(spans_dir)
    files = span_files(current, split, spans)
    if not files:
        raise no_split_rows(spans_dir, split, spans)
    doc = {"kind": REF_KIND, "spans_dir": str(current), "split": split,
           "spans": list(spans) if spans is not None else None, "files": files,
           "rows": open_files(files).count_rows()}
    storage.write_json(path, doc)
    return doc


@contextlib.contextmanager
def split_ref(spans_dir: str | os.PathLike, split: str, spans: list[int] | None = None):
    """A rows reference to ``split`` of ``spans`` (see :func:`write_ref`) in a temporary folder,
    for the length of the ``with`` block: the source a measurement reads a run's rows from."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix=f"{split}-rows-") as tmp:
        ref = os.path.join(tmp, f"{split}.json")
        write_ref(ref, spans_dir, split, spans)
        yield ref


def head(source: str | os.PathLike, split: str, n: int, columns: list[str] | None = None):
    """The first ``n`` rows (file order) as a pandas DataFrame, reading no more batches than that."""
    import pandas as pd

    frames, held = [], 0
    for batch in batches(source, split, columns, batch_rows=min(n, BATCH_ROWS) or 1):
        frames.append(batch.to_pandas())
        held += len(frames[-1])
        if held >= n:
            break
    if not frames:
        empty = dataset(source, split).schema.empty_table()
        return (empty.select(columns) if columns else empty).to_pandas()
    return pd.concat(frames, ignore_index=True).iloc[:n]


def read_ref(source: str | os.PathLike) -> dict | None:
    """The reference at ``source``, or None when ``source`` is not one (rows, a folder)."""
    s = os.fspath(source)
    if s.endswith(".parquet") or storage.isdir(s) or not storage.isfile(s):
        return None
    with storage.open(s, "rb") as f:
        head = f.read(64)
    if not head.lstrip().startswith(b"{"):
        return None
    try:
        doc = storage.read_json(s)
    except ValueError as e:  # json.JSONDecodeError
        raise DataError(f"{s}: not a rows reference nor Parquet rows: invalid JSON at line "
                        f"{e.lineno}, column {e.colno} ({e.msg}) (rule: schema).") from None
    return doc if isinstance(doc, dict) and doc.get("kind") == REF_KIND else None


def files(source: str | os.PathLike, split: str = "train") -> list[str]:
    """The Parquet files holding ``source``'s rows of ``split`` (see the module docstring)."""

    s = os.fspath(source)
    ref = read_ref(s)
    if ref is not None:
        return list(ref["files"])
    if storage.isdir(s):
        spans = span_files(s, split)
        found = spans or sorted(storage.glob(storage.join(s, "*.parquet")))
    else:
        found = [s] if storage.exists(s) else []
    if not found:
        raise DataError(f"{s}: no {split} Parquet rows there (rule: volume).")
    return found


def dataset(source: str | os.PathLike, split: str = "train") -> ds.Dataset:
    """``source``'s rows of ``split`` as a pyarrow dataset (nothing read yet)."""
    return open_files(files(source, split))


def count(source: str | os.PathLike, split: str = "train") -> int:
    """How many rows, from Parquet metadata."""
    ref = read_ref(source)
    return int(ref["rows"]) if ref is not None else dataset(source, split).count_rows()


def batches(source: str | os.PathLike, split: str = "train", columns: list[str] | None = None,
            batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """The rows as record batches of at most ``batch_rows``, in file order, holding one at a time."""
    yield from stream(dataset(source, split), columns, batch_rows)


def read(source: str | os.PathLike, split: str = "train", columns: list[str] | None = None):
    """All the rows as one pandas DataFrame: for small data and tests only; stages stream."""
    return dataset(source, split).to_table(columns=columns).to_pandas()


@dataclass(frozen=True)
class RowGroup:
    """One Parquet row group of a split: the unit a reader fetches."""

    file: str
    index: int  # the row group's number within its file
    rows: int


@dataclass(frozen=True)
class Piece:
    """Rows ``[start, stop)`` of a row group: a reader's share of it."""

    group: RowGroup
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def row_groups(source: str | os.PathLike, split: str = "train") -> list[RowGroup]:
    """The split's row groups in file order, from the Parquet footers (no rows read). Their
    concatenation is the split's *global row order* that :func:`shard` cuts."""
    paths = files(source, split)
    groups = []
    for f, fragment in zip(paths, open_files(paths).get_fragments(), strict=True):
        meta = fragment.metadata
        groups += [RowGroup(f, i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups)]
    return groups


def shard(groups: Sequence[RowGroup], rank: int, world: int, equal: bool = True) -> list[Piece]:
    """Rank ``rank`` of ``world``'s contiguous range of the global row order, as pieces of the
    row groups it overlaps (in order; only those are read).

    ``equal=True`` (training): every rank gets ``n = total // world`` rows, ``[rank*n,
    (rank+1)*n)``, so DDP ranks take the same number of steps; the ``total % world`` (< world)
    rows at the end of the order — the tail of the last file — are dropped. ``equal=False``: the
    ranges ``[rank*total//world, (rank+1)*total//world)`` cover every row once (for statistics
    that must see the whole split, computed a part per rank).
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in [0, {world})")
    total = sum(g.rows for g in groups)
    if equal:
        n = total // world
        lo, hi = rank * n, (rank + 1) * n
    else:
        lo, hi = rank * total // world, (rank + 1) * total // world
    pieces, offset = [], 0
    for g in groups:
        start, stop = max(lo, offset), min(hi, offset + g.rows)
        if start < stop:
            pieces.append(Piece(g, start - offset, stop - offset))
        offset += g.rows
        if offset >= hi:
            break
    return pieces


def read_piece(piece: Piece, columns: list[str] | None = None) -> pa.Table:
    """A piece's rows (its row group read, then sliced), local or gs://."""
    import pyarrow.parquet as pq

    fs, path = storage.pyarrow_fs(piece.group.file)
    with still_there(piece.group.file), fs.open_input_file(path) as f:
        table = pq.ParquetFile(f).read_row_group(piece.group.index, columns=columns)
    return table.slice(piece.start, piece.rows)


@dataclass
class Scored:
    """Rows scored by :func:`score`: labels (int8), each scorer's probabilities, the digest of the
    rows' keys (:mod:`components.common.rowdigest`) and the first batch (for latency probes)."""
    labels: np.ndarray
    probs: dict[str, np.ndarray]
    digest: object
    first: object


def score(source: str | os.PathLike, split: str, label: str, key: list[str],
          scorers: dict) -> Scored:
    """Streams ``source``'s rows by record batch through every ``scorers[name](frame) -> probs``,
    keeping per row only its label, its probabilities and its key's 32-byte hash — never the rows
    (about 45 bytes per row for two scorers, e.g. ~290 MB for 100x the flights' eval split)."""

    labels: list[np.ndarray] = []
    probs: dict[str, list[np.ndarray]] = {name: [] for name in scorers}
    digester, first = Digester(), None
    for batch in batches(source, split):
        frame = batch.to_pandas()
        first = frame if first is None else first
        labels.append(frame[label].to_numpy(dtype=np.int8))
        digester.update_frame(frame, key)
        for name, fn in scorers.items():
            probs[name].append(np.asarray(fn(frame)))
    if not labels:
        raise DataError(f"{describe(source)}: no {split} rows to score (rule: volume).")
    return Scored(np.concatenate(labels), {n: np.concatenate(p) for n, p in probs.items()},
                  digester.result(), first)


def describe(source: str | os.PathLike) -> str:
    """One line for logs: what the source is."""
    ref = read_ref(source)
    if ref is None:
        return os.fspath(source)
    return (f"{ref['split']} of spans {ref['spans'] or 'all'} in {ref['spans_dir']} "
            f"({ref['rows']:,} rows, {len(ref['files'])} files, read in place)")


__all__ = ["REF_KIND", "BATCH_ROWS", "generation", "write_ref", "read_ref", "files", "open_files",
           "dataset", "count", "stream", "batches", "read", "describe", "RowGroup", "Piece",
           "row_groups", "shard", "read_piece", "Scored", "score"]
