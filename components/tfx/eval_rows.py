"""Which rows the TFX Evaluator scored: the key-column digest of ExampleGen's eval split.

The Evaluator (TFMA) reads the ``Split-eval`` files of the Examples artifact it is given (gzip
TFRecords or the Parquet payload); this reads the same files back (TFRecords: tf.data, decoded to
Arrow by tfx_bsl without a schema; Parquet: pyarrow, the key columns only) and
fingerprints their key columns with the shared :mod:`components.common.rowdigest`, so run.json's
evaluate stage can say which rows were scored in the same terms as the PyTorch stack's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from components.common.errors import DataError
from components.common.rowdigest import RowsDigest, rows_digest


def split_files(examples_uri: str, split: str = "eval") -> list[str]:
    """The TFRecord files of one split of an Examples artifact (any filesystem TF reads)."""
    import tensorflow as tf

    return sorted(tf.io.gfile.glob(f"{examples_uri.rstrip('/')}/Split-{split}/*"))


def _scalar(values, column: str):
    """A key feature's value list as one value: [] or None (absent) -> None."""
    if not values:
        return None
    if len(values) > 1:
        raise DataError(f"key feature '{column}' holds {len(values)} values in one example; "
                        "a row key is one value per column.")
    return values[0]


def _key_rows(files: list[str], key: Sequence[str], batch: int) -> Iterator[tuple]:
    import tensorflow as tf
    from tfx_bsl.coders.example_coder import ExamplesToRecordBatchDecoder

    compression = "GZIP" if all(f.endswith(".gz") for f in files) else ""
    decoder = ExamplesToRecordBatchDecoder()
    seen: set[str] = set()
    total = 0
    for chunk in tf.data.TFRecordDataset(files, compression_type=compression).batch(batch) \
            .as_numpy_iterator():
        rb = decoder.DecodeBatch(list(chunk))
        total += rb.num_rows
        cols = []
        for k in key:
            i = rb.schema.get_field_index(k)
            if i < 0:
                cols.append([None] * rb.num_rows)
                continue
            seen.add(k)
            cols.append([_scalar(v, k) for v in rb.column(i).to_pylist()])
        yield from zip(*cols, strict=True)
    if total and set(key) - seen:
        raise DataError(f"key column(s) {sorted(set(key) - seen)} are in none of the "
                        f"{total} examples of {files[0].rsplit('/', 2)[0]}.")


def _parquet_key_rows(files: list[str], key: Sequence[str]) -> Iterator[tuple]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from components.common import storage

    for f in files:
        with storage.open(f, "rb") as fh:
            pf = pq.ParquetFile(fh)
            missing = sorted(set(key) - set(pf.schema_arrow.names))
            if missing:
                raise DataError(f"key column(s) {missing} are not in {f}.")
            for rb in pf.iter_batches(batch_size=65536, columns=list(key)):
                cols = []
                for k in key:
                    lists = rb.column(rb.schema.get_field_index(k))
                    if pc.max(pc.list_value_length(lists)).as_py() not in (None, 0, 1):
                        raise DataError(f"key feature '{k}' holds several values in one row of "
                                        f"{f}; a row key is one value per column.")
                    cols.append(pc.list_element(lists, 0).to_pylist())
                yield from zip(*cols, strict=True)


def eval_rows_digest(examples_uri: str, key: Sequence[str], split: str = "eval",
                     batch: int = 8192) -> RowsDigest:
    """The digest of ``key`` over the examples of ``split`` in the Examples artifact."""
    files = split_files(examples_uri, split)
    if not files:
        raise DataError(f"{examples_uri}: no Split-{split} files to read the scored rows from.")
    if all(f.endswith(".parquet") for f in files):
        return rows_digest(_parquet_key_rows(files, key))
    return rows_digest(_key_rows(files, key, batch))
