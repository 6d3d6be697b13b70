"""The TFX stack's Parquet payload: a span table rewritten as the list columns TFX's readers
(ParquetTFXIO, TFDV, TFT's TensorAdapter) declare from the schema, vectorised."""

import math

import pyarrow as pa
import pyarrow.parquet as pq
from tfx_bsl.coders import csv_decoder

from components.common.contract import load_contract
from components.common.spans import arrow_schema
from components.tfx.ingest import payload_schema, payload_table
from components.tfx.schema import contract_to_schema

CONTRACT = load_contract()


def test_payload_schema_is_what_parquet_tfxio_declares():
    schema = contract_to_schema(CONTRACT)
    declared = csv_decoder.GetArrowSchema([f.name for f in schema.feature], schema)
    assert payload_schema(arrow_schema(CONTRACT)).equals(declared)


def test_payload_rows_mean_what_tf_examples_mean(tmp_path):
    table = pa.table({"i": pa.array([1, None, 3], pa.int64()),
                      "f": pa.array([1.5, float("nan"), None], pa.float64()),
                      "s": pa.array(["a", None, "c"], pa.string())})
    payload = payload_table(table)
    assert payload.column("i").to_pylist() == [[1], None, [3]]
    assert payload.column("f").to_pylist() == [[1.5], None, None]  # NaN is absent, as in tf.Example
    assert payload.column("s").to_pylist() == [[b"a"], None, [b"c"]]
    path = tmp_path / "p.parquet"
    # the child field must stay "item": use_compliant_nested_type=True names it "element", and
    # TFT's TensorAdapter then refuses the batches (schema.equals)
    pq.write_table(payload, path, use_compliant_nested_type=False)
    back = pq.read_table(path)
    assert back.schema.equals(payload.schema)
    assert not any(isinstance(v, float) and math.isnan(v) for v in back.column("f").to_pylist())
