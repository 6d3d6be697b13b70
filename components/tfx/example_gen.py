"""ExampleGen executor for the contract's Parquet spans.

TFX's stock parquet executor converts rows with ``example_gen.utils.dict_to_example``, which
treats every falsy value as missing (``if not pyval``): 0, 0.0 and "" would silently become nulls
(precip = 0, delayed = 0, ...). This executor keeps zeros and drops only true nulls.
"""

from __future__ import annotations

import math
import os
from typing import Any

import apache_beam as beam
import numpy as np
import tensorflow as tf
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.types import standard_component_specs


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


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _ParquetSpansToExample(  # noqa: N802 (Beam PTransform naming)
    pipeline: beam.Pipeline, exec_properties: dict[str, Any], split_pattern: str
) -> beam.PCollection:
    pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
    return (
        pipeline
        | "ReadSpans" >> beam.io.ReadFromParquet(pattern)
        | "ToExample" >> beam.Map(row_to_example)
    )


class ParquetSpansExecutor(BaseExampleGenExecutor):
    """FileBasedExampleGen executor over ``span-*/{split}/*.parquet``."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # noqa: N802 (TFX API)
        return _ParquetSpansToExample
