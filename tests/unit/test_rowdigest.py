"""The eval-rows digest both stacks record (components/common/rowdigest.py) and the TFX stack's
reader of the rows its Evaluator scored (components/tfx/eval_rows.py)."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from components.common.contract import load_contract
from components.common.errors import DataError
from components.common.rowdigest import frame_digest, rows_digest

KEY = list(load_contract().split.key)


def _rows(n=500, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "year": 2013, "month": rng.integers(1, 13, n), "day": rng.integers(1, 29, n),
        "sched_dep_time": rng.integers(500, 2359, n), "carrier": rng.choice(["UA", "AA", "B6"], n),
        "flight": rng.integers(1, 5000, n), "origin": rng.choice(["EWR", "JFK"], n),
        "dest": rng.choice(["IAH", "ORD"], n), "distance": rng.integers(100, 3000, n),
    }).drop_duplicates(KEY).reset_index(drop=True)


def test_is_the_documented_rule_over_the_split_rules_key_text():
    row_hash = hashlib.sha256(b"2013|1|1|515|UA|1545|EWR|IAH").digest()
    other = hashlib.sha256(b"2013|1|2|600|AA|11|JFK|ORD").digest()
    expected = hashlib.sha256(b"".join(sorted([row_hash, other]))).hexdigest()
    got = rows_digest([(2013, 1, 2, 600, "AA", 11, "JFK", "ORD"),
                       (2013, 1.0, 1, 515, b"UA", 1545, "EWR", "IAH")])
    assert got.sha256 == expected and got.rows == 2


def test_row_order_does_not_matter():
    df = _rows()
    shuffled = df.sample(frac=1, random_state=3)
    assert frame_digest(shuffled, KEY) == frame_digest(df, KEY)
    assert frame_digest(df, KEY).rows == len(df)


@pytest.mark.parametrize("column", KEY)
def test_one_changed_key_cell_changes_it(column):
    df = _rows()
    changed = df.copy()
    changed.loc[17, column] = "XX" if changed[column].dtype == object else changed.loc[17, column] + 1
    assert frame_digest(changed, KEY) != frame_digest(df, KEY)


def test_a_dropped_or_duplicated_row_changes_it_other_columns_do_not():
    df = _rows()
    base = frame_digest(df, KEY)
    assert frame_digest(df.drop(index=250), KEY) != base
    assert frame_digest(pd.concat([df, df.iloc[[3]]]), KEY) != base
    other = df.copy()
    other["distance"] += 1  # not a key column
    assert frame_digest(other, KEY) == base


def test_values_render_as_a_tf_example_holds_them():
    df = _rows(50)
    as_read = df.astype({"month": float, "flight": float})  # ints read back as floats
    as_read["carrier"] = as_read["carrier"].str.encode("utf-8")  # bytes_list
    assert frame_digest(as_read, KEY) == frame_digest(df, KEY)
    nulls = pd.DataFrame({"k": [1.0, np.nan, None], "s": ["a", None, pd.NA]}, dtype=object)
    assert frame_digest(nulls, ["k", "s"]) == rows_digest([(1, "a"), (None, None), (None, None)])


def test_missing_key_column_is_an_error():
    with pytest.raises(KeyError, match="dest"):
        frame_digest(_rows().drop(columns=["dest"]), KEY)


def _write_examples(path, df):
    import pyarrow as pa
    import tensorflow as tf

    from components.tfx.ingest import table_to_examples

    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path), options="GZIP") as w:
        for ex in table_to_examples(pa.Table.from_pandas(df, preserve_index=False)):
            w.write(ex)


def test_tfx_reader_digests_the_examples_as_the_frame(tmp_path):
    """ExampleGen's encoding (ints, floats at float32, bytes, nulls as empty features) read back
    from gzipped TFRecords over several files and decoder batches gives the Parquet rows' digest."""
    from components.tfx.eval_rows import eval_rows_digest

    df = _rows(300)
    df["dep_hour"] = df["sched_dep_time"] / 100  # a non-integral float key
    df["carrier"] = df["carrier"].astype(object)
    df.loc[5, "carrier"] = None
    df.loc[6, "dep_hour"] = np.nan
    key = [*KEY, "dep_hour"]
    uri = tmp_path / "examples"
    _write_examples(uri / "Split-eval" / "data_tfrecord-00000-of-00002.gz", df.iloc[:120])
    _write_examples(uri / "Split-eval" / "data_tfrecord-00001-of-00002.gz", df.iloc[120:])
    _write_examples(uri / "Split-train" / "data_tfrecord-00000-of-00001.gz", _rows(40, seed=1))
    got = eval_rows_digest(str(uri), key, batch=64)
    assert got == frame_digest(df, key) and got.rows == 300
    # the reader reads the split it is asked for, and a changed row is another digest
    assert eval_rows_digest(str(uri), KEY, split="train") == frame_digest(_rows(40, seed=1), KEY)
    df.loc[7, "flight"] += 1
    assert got != frame_digest(df, key)
    with pytest.raises(DataError, match="no_such_column"):
        eval_rows_digest(str(uri), [*KEY, "no_such_column"])
    with pytest.raises(DataError, match="no Split-test files"):
        eval_rows_digest(str(uri), key, split="test")


def test_fed_in_batches_it_is_the_same_digest_as_all_at_once(tmp_path):
    """The evaluate stage digests the eval rows record batch by record batch (Digester): the value
    the report compares across stacks must be the one of the whole frame, for any batch size."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from components.common import rows
    from components.common.rowdigest import Digester

    df = _rows(3000, seed=7)
    df.loc[::7, "flight"] = None  # missing key values render as None in both paths
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pandas(df), path, row_group_size=500)
    whole = frame_digest(df, KEY)
    for batch_rows in (1, 333, 1024, 10_000):
        d = Digester()
        for batch in rows.batches(str(path), batch_rows=batch_rows):
            d.update_frame(batch.to_pandas(), KEY)
        assert d.result() == whole, batch_rows
    assert Digester().result() == rows_digest([])
