"""The TFX stack's Parquet payload: a span table rewritten as the list columns TFX's readers
(ParquetTFXIO, TFDV, TFT's TensorAdapter) declare from the schema, vectorised."""

import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
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


def _statistics(source, path):
    """StatisticsGen's engine (TFDV GenerateStatistics on Beam, no schema, as the pipeline runs
    it) over a TFXIO source."""
    import apache_beam as beam
    import tensorflow_data_validation as tfdv

    with beam.Pipeline() as p:
        _ = (p | source.BeamSource()
             | tfdv.GenerateStatistics(tfdv.StatsOptions(desired_batch_size=8192))
             | tfdv.WriteStatisticsToBinaryFile(str(path)))
    return tfdv.load_stats_binary(str(path)).datasets[0]


def _both_statistics(frame, tmp_path):
    """(tf.Example path, Parquet path) statistics of the same rows, each read through the TFXIO
    source StatisticsGen picks for its artifact."""
    import tensorflow as tf
    from tfx_bsl.tfxio.parquet_tfxio import ParquetTFXIO
    from tfx_bsl.tfxio.tf_example_record import TFExampleRecord

    from components.tfx.ingest import table_to_examples

    table = pa.Table.from_pandas(frame, preserve_index=False)
    tfrecord = str(tmp_path / "examples.tfrecord.gz")
    with tf.io.TFRecordWriter(tfrecord, options="GZIP") as w:
        for e in table_to_examples(table):
            w.write(e)
    parquet = tmp_path / "payload.parquet"
    pq.write_table(payload_table(table), parquet, row_group_size=1000,
                   use_compliant_nested_type=False)
    a = _statistics(TFExampleRecord(tfrecord, telemetry_descriptors=["test"]), tmp_path / "a")
    b = _statistics(ParquetTFXIO(str(parquet), column_names=table.schema.names,
                                 telemetry_descriptors=["test"]), tmp_path / "b")
    return a, b


def _by_feature(stats):
    return {f.path.step[0]: f for f in stats.features}


def _as_list(dataset):
    from tensorflow_metadata.proto.v0 import statistics_pb2

    out = statistics_pb2.DatasetFeatureStatisticsList()
    out.datasets.add().CopyFrom(dataset)
    return out


@pytest.fixture(scope="module")
def span_frame(tmp_path_factory):
    from components.common.ingest import ingest

    out = tmp_path_factory.mktemp("spans")
    ingest(CONTRACT, out, months=[3], sample=3000)
    return pq.read_table(out / "span-201303" / "train" / "data.parquet").to_pandas()


# The corruptions that can reach a span (screening keeps the span's types): each must get the
# same TFDV verdict from both paths' statistics; "clean" is the span itself.
STATS_CASES = {"clean": 0, "above_range": 0.04, "below_range": 0.04, "unseen_category": 0.04,
               "null_required": 0.04}


@pytest.mark.parametrize("case", sorted(STATS_CASES))
def test_tfdv_statistics_and_verdict_equal_on_both_paths(span_frame, case, tmp_path):
    """StatisticsGen over the Parquet payload and over the tf.Examples of the same rows: counts,
    ranges, means and vocabularies equal, quantiles within TFDV's sketch error, and the same
    anomalies against the contract's schema (the gate's TFDV verdict)."""
    import numpy as np
    import tensorflow_data_validation as tfdv

    from components.common.corruptions import corrupt
    from components.tfx.validate import anomalies_to_checks

    frame = span_frame if case == "clean" else corrupt(span_frame, case, STATS_CASES[case],
                                                        CONTRACT)
    ex, pa_ = _both_statistics(frame, tmp_path)
    assert ex.num_examples == pa_.num_examples == len(frame)
    a, b = _by_feature(ex), _by_feature(pa_)
    assert set(a) <= set(b)  # a column null in every row is absent from tf.Examples only
    for name, fa in a.items():
        fb = b[name]
        if fa.HasField("num_stats"):
            x, y = fa.num_stats, fb.num_stats
            assert (x.common_stats.num_non_missing, x.common_stats.num_missing) == \
                   (y.common_stats.num_non_missing, y.common_stats.num_missing), name
            assert (x.min, x.max, x.num_zeros) == (y.min, y.max, y.num_zeros), name
            np.testing.assert_allclose([x.mean, x.std_dev], [y.mean, y.std_dev], rtol=1e-6)
            qa = [bk.high_value for h in x.histograms if h.type == h.QUANTILES for bk in h.buckets]
            qb = [bk.high_value for h in y.histograms if h.type == h.QUANTILES for bk in h.buckets]
            eps = 0.01 * max(x.max - x.min, 1e-9)  # TFDV's quantiles sketch: eps 0.01 of rank
            assert len(qa) == len(qb) and np.allclose(qa, qb, atol=eps), name
        else:
            x, y = fa.string_stats, fb.string_stats
            assert (x.common_stats.num_non_missing, x.common_stats.num_missing) == \
                   (y.common_stats.num_non_missing, y.common_stats.num_missing), name
            assert x.unique == y.unique, name
            assert [(t.value, t.frequency) for t in x.top_values] == \
                   [(t.value, t.frequency) for t in y.top_values], name
    schema = contract_to_schema(CONTRACT)
    verdict = [{(c.check, c.column) for c in anomalies_to_checks(
        tfdv.validate_statistics(s, schema, environment="TRAINING"), CONTRACT.validation.policies)}
        for s in (_as_list(ex), _as_list(pa_))]
    assert verdict[0] == verdict[1], verdict
    if case == "clean":
        assert verdict[0] == set()
