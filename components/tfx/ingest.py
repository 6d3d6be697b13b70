"""The TFX stack's ingest: the landing ingest component (new deliveries taken and ingested into
the shared spans, :func:`components.common.landing.land`), and the ExampleGen executor for the
contract's Parquet spans.

TFX's stock parquet executor converts rows with ``example_gen.utils.dict_to_example``, which
treats every falsy value as missing (``if not pyval``): 0, 0.0 and "" would silently become nulls
(precip = 0, delayed = 0, ...). This executor keeps zeros and drops only true nulls.

Spans are read as Arrow batches and encoded to serialized tf.Examples in C++ (tfx_bsl's
RecordBatchToExamplesEncoder), not row by row in Python: the same bytes' meaning as
:func:`row_to_example` (a null or NaN becomes a feature with no value, which every TFX reader
decodes as missing, exactly like an absent feature), ~10x less time on the ingest stage.
"""


import math
import os
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
from tfx import v1 as tfx
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.types import standard_component_specs
from tfx.types.artifact import Artifact

from components.common import storage
from components.common.contract import load_contract
from components.common.landing import land, run_id

CONSUMER = "tfx"  # this pipeline's ledger (each compiled stack takes every delivery once)
PROCEED = "proceed"  # the Landing artifact's custom property the later nodes' condition reads


class Landing(Artifact):
    """What the landing ingest did (``landing.json``: status, deliveries taken and seen before,
    spans); custom property ``proceed`` 1 when the later nodes run."""

    TYPE_NAME = "twinpipe.Landing"


@tfx.dsl.components.component
def LandingIngest(  # noqa: N802 (TFX component naming)
    landed: tfx.dsl.components.OutputArtifact[Landing],
    landing_uri: tfx.dsl.components.Parameter[str],
    data_root: tfx.dsl.components.Parameter[str],
    report_dir: tfx.dsl.components.Parameter[str],
    contract_path: tfx.dsl.components.Parameter[str] = "",
    retrain: tfx.dsl.components.Parameter[int] = 0,
    run_label: tfx.dsl.components.Parameter[str] = "",
) -> None:
    """The pipeline's first node: the new deliveries under ``landing_uri`` taken and ingested into
    ``data_root/spans``; ``landing_uri`` '': none (the spans were published before: the later
    nodes run on them)."""
    done = land(landing_uri, data_root, load_contract(contract_path or None), run_id(run_label),
                consumer=CONSUMER, retrain=bool(retrain), pipeline="twinpipe-tfx",
                report_dir=report_dir)
    storage.write_json(storage.join(landed.uri, "landing.json"), done.to_dict())
    landed.set_int_custom_property(PROCEED, int(done.proceed))
    landed.set_string_custom_property("status", done.status)


def row_to_example(row: dict[str, Any]) -> tf.train.Example:
    """One Parquet row (a dict of Python scalars) as a tf.Example; None/NaN become absent."""
    feature = {}
    for key, value in row.items():
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, bool | int):
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
        elif isinstance(value, float):
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        elif isinstance(value, str | bytes):
            b = value.encode("utf-8") if isinstance(value, str) else value
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b]))
        else:
            raise TypeError(f"column {key}: unsupported value type {type(value).__name__}")
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _as_value_lists(col: pa.Array) -> pa.ListArray:
    """One column as the list-of-values arrays tf.Example features are; null/NaN -> null list."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    valid = pc.is_valid(col)
    if pa.types.is_floating(col.type):
        valid = pc.and_(valid, pc.invert(pc.is_nan(col)))
        col = col.cast(pa.float32())
    elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        col = col.cast(pa.binary())
    elif pa.types.is_boolean(col.type) or pa.types.is_integer(col.type):
        col = col.cast(pa.int64())
    else:
        raise TypeError(f"unsupported Arrow type {col.type}")
    mask = np.asarray(valid.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    offsets = pa.array(np.concatenate([[0], np.cumsum(mask)]).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, col.filter(pa.array(mask)), mask=pa.array(~mask))


_PAYLOAD_TYPES = {"int": pa.large_list(pa.int64()), "float": pa.large_list(pa.float32()),
                  "bytes": pa.large_list(pa.large_binary())}


def _payload_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_floating(t):
        return _PAYLOAD_TYPES["float"]
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t):
        return _PAYLOAD_TYPES["bytes"]
    if pa.types.is_boolean(t) or pa.types.is_integer(t):
        return _PAYLOAD_TYPES["int"]
    raise TypeError(f"unsupported Arrow type {t}")


def payload_schema(span_schema: pa.Schema) -> pa.Schema:
    """The Arrow schema of the Parquet payload TFX's readers take for a span file's schema: each
    column a ``large_list`` of int64, float32 or large_binary values (what a decoded tf.Example
    is, and what ParquetTFXIO declares from the TFMD schema), in the same order."""
    return pa.schema([pa.field(f.name, _payload_type(f.type)) for f in span_schema])


def payload_table(table: pa.Table) -> pa.Table:
    """A span table as the Parquet payload: every column as lists of values (null/NaN -> null
    list, the same meaning as :func:`row_to_example`), vectorised, no per-row Python."""
    schema = payload_schema(table.schema)
    cols = [_as_value_lists(c).cast(f.type) for c, f in zip(table.columns, schema, strict=True)]
    return pa.Table.from_arrays(cols, schema=schema)


def table_to_examples(table: pa.Table) -> list[bytes]:
    """Serialized tf.Examples of an Arrow table's rows (same meaning as :func:`row_to_example`)."""
    from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder

    if table.num_rows == 0:
        return []
    lists = pa.RecordBatch.from_arrays([_as_value_lists(c) for c in table.columns],
                                       names=table.schema.names)
    return RecordBatchToExamplesEncoder().encode(lists)


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def _ParquetSpansToExample(  # noqa: N802 (Beam PTransform naming)
    pipeline: beam.Pipeline, exec_properties: dict[str, Any], split_pattern: str
) -> beam.PCollection:
    pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
    return (
        pipeline
        | "ReadSpans" >> beam.io.ReadFromParquetBatched(pattern)
        | "ToExamples" >> beam.FlatMap(table_to_examples)
    )


PAYLOAD_FILE = "data_parquet"  # Split-<name>/data_parquet-SSSSS-of-NNNNN.parquet, as TFX names them


class ParquetSpansExecutor(BaseExampleGenExecutor):
    """FileBasedExampleGen executor over ``span-*/{split}/*.parquet``.

    ``output_data_format`` FORMAT_TF_EXAMPLE (the default): gzip TFRecords of tf.Examples, TFX's
    own writer. FORMAT_PARQUET: the spans rewritten as the Parquet payload ParquetTFXIO reads
    (:func:`payload_table`, batch by batch in Arrow), and the artifact marked as such, so that
    StatisticsGen, Transform and the Evaluator read Arrow through TFXIO with no tf.Example at all.
    TFX's own Parquet writer goes through one Python dict per row, hence this ``Do``."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # noqa: N802 (TFX API)
        return _ParquetSpansToExample

    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802 (TFX API)
        from tfx.components.util import examples_utils
        from tfx.proto import example_gen_pb2
        from tfx.types import artifact_utils
        from tfx.utils import proto_utils

        fmt = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
        if fmt != example_gen_pb2.FORMAT_PARQUET:
            return super().Do(input_dict, output_dict, exec_properties)
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                                  input_config)
        examples = output_dict[standard_component_specs.EXAMPLES_KEY]
        base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        splits = [(s.name, s.pattern) for s in input_config.splits]
        for artifact in examples:
            artifact.split_names = artifact_utils.encode_split_names([n for n, _ in splits])
        with self._make_beam_pipeline() as pipeline:
            for name, pattern in splits:
                out = os.path.join(artifact_utils.get_split_uri(examples, name), PAYLOAD_FILE)
                (pipeline
                 | f"Read[{name}]" >> beam.io.ReadFromParquetBatched(os.path.join(base, pattern))
                 | f"Payload[{name}]" >> beam.Map(payload_table)
                 | f"Write[{name}]" >> beam.io.WriteToParquetBatched(
                     out, schema=payload_schema(_span_schema(base, pattern)),
                     file_name_suffix=".parquet", codec="snappy",
                     use_compliant_nested_type=False))
        for artifact in examples:
            examples_utils.set_payload_format(artifact, example_gen_pb2.FORMAT_PARQUET)
            examples_utils.set_file_format(artifact, "FILE_FORMAT_PARQUET")


def _span_schema(base: str, pattern: str) -> pa.Schema:
    """The Arrow schema of the first span file a split pattern matches (all spans share it: the
    shared ingest writes them from the contract)."""
    import pyarrow.parquet as pq

    first = sorted(storage.glob(os.path.join(base, pattern)))[0]
    with storage.open(first, "rb") as f:
        return pq.read_schema(f)
