import math

from tensorflow_metadata.proto.v0 import schema_pb2

from components.common.contract import load_contract
from components.tfx.ingest import row_to_example
from components.tfx.schema import SERVING, contract_to_schema

CONTRACT = load_contract()


def test_row_to_example_keeps_zeros_and_drops_nulls():
    # TFX's stock dict_to_example turns falsy values into missing features.
    ex = row_to_example({"precip": 0.0, "delayed": 0, "carrier": "UA", "wind_gust": None,
                         "pressure": math.nan})
    f = ex.features.feature
    assert list(f["precip"].float_list.value) == [0.0]
    assert list(f["delayed"].int64_list.value) == [0]
    assert list(f["carrier"].bytes_list.value) == [b"UA"]
    assert "wind_gust" not in f and "pressure" not in f


def test_schema_from_contract():
    schema = contract_to_schema(CONTRACT)
    feats = {f.name: f for f in schema.feature}
    assert set(feats) == set(CONTRACT.column_names) | {"delayed"}
    assert feats["distance"].type == schema_pb2.INT and feats["distance"].int_domain.max == 6000
    assert feats["temp"].type == schema_pb2.FLOAT and not feats["temp"].HasField("shape")
    assert list(feats["origin"].string_domain.value) == ["EWR", "JFK", "LGA"]
    assert feats["distance"].presence.min_fraction == 1.0
    # Only model features exist at serving time.
    assert SERVING in feats["delayed"].not_in_environment
    assert SERVING in feats["arr_delay"].not_in_environment
    assert SERVING not in feats["carrier"].not_in_environment


def test_batched_encoding_means_what_row_to_example_means():
    import pyarrow as pa
    import tensorflow as tf
    from tfx_bsl.coders.example_coder import ExamplesToRecordBatchDecoder

    from components.tfx.ingest import table_to_examples

    table = pa.table({
        "precip": pa.array([0.0, float("nan"), None, 1.5]),
        "delayed": pa.array([0, 1, None, 0], pa.int64()),
        "carrier": pa.array(["", "UA", None, "AA"]),
    })
    encoded = table_to_examples(table)
    rows = table.to_pylist()
    assert len(encoded) == 4
    spec = {"precip": tf.io.VarLenFeature(tf.float32), "delayed": tf.io.VarLenFeature(tf.int64),
            "carrier": tf.io.VarLenFeature(tf.string)}
    ours = tf.io.parse_example(encoded, spec)
    ref = tf.io.parse_example([row_to_example(r).SerializeToString() for r in rows], spec)
    for k in spec:
        assert ours[k].indices.numpy().tolist() == ref[k].indices.numpy().tolist(), k
        assert ours[k].values.numpy().tolist() == ref[k].values.numpy().tolist(), k
    # what TFDV/Transform decode: zeros and "" kept, NaN/None missing
    decoded = ExamplesToRecordBatchDecoder().DecodeBatch(encoded)
    col = decoded.column(decoded.schema.get_field_index("precip")).to_pylist()
    assert col == [[0.0], None, None, [1.5]]
    assert table_to_examples(table.slice(0, 0)) == []
