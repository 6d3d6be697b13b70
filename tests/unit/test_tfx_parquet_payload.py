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


def _payload_file(spans, split, path):
    from components.common.spans import read_spans

    pq.write_table(payload_table(read_spans(spans, split)), path, row_group_size=97,
                   use_compliant_nested_type=False)
    return path


def test_trainer_reads_the_payload_as_the_transformed_tf_examples(tmp_path):
    """The Trainer's Parquet input (the payload, the Transform layer applied in tf.data) gives
    the model the same inputs and labels as the materialized Transform output of the same rows:
    every row once per pass, nulls imputed alike, in full batches across row groups."""
    import numpy as np
    import tensorflow_transform as tft

    from components.common.ingest import ingest
    from components.tfx.model import count_records, input_dataset, parquet_dataset
    from tests.tft_data import tfx_transform

    ingested = ingest(CONTRACT, tmp_path / "spans", months=[1], sample=700)
    rows = ingested.spans[0].train_rows
    transform_output, tfrecords = tfx_transform(CONTRACT, tmp_path / "spans", tmp_path)
    tft_output = tft.TFTransformOutput(transform_output)
    payload = str(_payload_file(tmp_path / "spans", "train", tmp_path / "train.parquet"))
    assert count_records([payload], "parquet") == rows
    columns = {*(c.name for c in CONTRACT.features), CONTRACT.label.name}
    got_x, got_y = next(iter(parquet_dataset([payload], tft_output, columns, "label", rows,
                                             shuffle=False)))
    want_x, want_y = next(iter(input_dataset([tfrecords], tft_output.transformed_feature_spec(),
                                             "label", rows, shuffle=False)))
    assert sorted(got_x) == sorted(want_x)
    for name in want_x:
        np.testing.assert_allclose(np.sort(got_x[name].numpy()), np.sort(want_x[name].numpy()),
                                   rtol=1e-5, atol=1e-6, err_msg=name)
    assert got_y.numpy().sum() == want_y.numpy().sum() and len(got_y) == rows
    # shuffled, batches smaller than a row group pass: still every row once per pass
    batch = 50
    shuffled = parquet_dataset([payload], tft_output, columns, "label", batch, shuffle=True, seed=3)
    labels = np.concatenate([y.numpy() for _, y in shuffled.take(rows // batch)])
    assert len(labels) == rows - rows % batch and abs(labels.sum() - want_y.numpy().sum()) <= batch


def test_eval_schema_gives_the_serving_raw_inputs(tmp_path):
    """The Evaluator's schema turns payload batches into one 1-D tensor per column, NaN / b""
    where a row has no value: what the serving_raw signature takes."""
    import numpy as np
    from tfx_bsl.tfxio import tensor_adapter, tensor_representation_util

    from components.tfx.schema import contract_to_eval_schema

    types = {"float": (pa.float64(), 1.5), "string": (pa.string(), "a"), "int": (pa.int64(), 1)}
    table = pa.table({c.name: pa.array([None] * 3 if c.nullable else [types[c.type][1]] * 3,
                                       types[c.type][0])
                      for c in CONTRACT.columns})
    table = table.append_column(CONTRACT.label.name, pa.array([0, 1, 0], pa.int64()))
    payload = payload_table(table)
    schema = contract_to_eval_schema(CONTRACT)
    reps = tensor_representation_util.GetTensorRepresentationsFromSchema(schema)
    adapter = tensor_adapter.TensorAdapter(tensor_adapter.TensorAdapterConfig(
        payload.schema, reps))
    tensors = adapter.ToBatchTensors(payload.to_batches()[0], produce_eager_tensors=False)
    assert set(tensors) == {*(c.name for c in CONTRACT.features), CONTRACT.label.name}
    for c in CONTRACT.features:
        x = tensors[c.name]
        assert x.shape == (3,), c.name
        if c.nullable and c.type == "float":
            assert np.isnan(x).all(), c.name
        elif c.nullable and c.type == "string":
            assert (x == b"").all(), c.name
    assert list(tensors[CONTRACT.label.name]) == [0, 1, 0]
