"""The contract as a TFDV schema (imported into the TFX pipeline by ImportSchemaGen)."""

from __future__ import annotations

from pathlib import Path

from tensorflow_metadata.proto.v0 import schema_pb2

from components.common.contract import Contract

TRAINING, SERVING = "TRAINING", "SERVING"


def contract_to_schema(contract: Contract, with_label: bool = True) -> schema_pb2.Schema:
    """Features, types, ranges, vocabularies and presence from the contract.

    Non-nullable columns are dense (shape [1]); nullable ones are optional (VarLen). Only the
    model's feature columns exist in the SERVING environment. ``with_label=False``: the schema of
    the raw input, before ingest derives the label (infra/validation_engines.py).
    """
    schema = schema_pb2.Schema()
    schema.default_environment.extend([TRAINING, SERVING])
    for col in contract.columns:
        f = schema.feature.add(name=col.name)
        if col.type == "int":
            f.type = schema_pb2.INT
            if col.min is not None:
                f.int_domain.min = int(col.min)
            if col.max is not None:
                f.int_domain.max = int(col.max)
        elif col.type == "float":
            f.type = schema_pb2.FLOAT
            if col.min is not None:
                f.float_domain.min = float(col.min)
            if col.max is not None:
                f.float_domain.max = float(col.max)
        else:
            f.type = schema_pb2.BYTES
            if col.vocabulary:
                f.string_domain.name = col.name
                f.string_domain.value.extend(col.vocabulary)
        if col.nullable or col.name == contract.label.source:
            f.value_count.min = 1
            f.value_count.max = 1
        else:
            f.presence.min_fraction = 1.0
            f.shape.dim.add(size=1)
        if not col.feature:
            f.not_in_environment.append(SERVING)
    if not with_label:
        return schema
    label = schema.feature.add(name=contract.label.name, type=schema_pb2.INT)
    label.int_domain.min, label.int_domain.max = 0, 1
    label.int_domain.is_categorical = True
    label.presence.min_fraction = 1.0
    label.shape.dim.add(size=1)
    label.not_in_environment.append(SERVING)
    return schema


def contract_to_eval_schema(contract: Contract) -> schema_pb2.Schema:
    """The schema the Evaluator reads a Parquet payload with: :func:`contract_to_schema` plus one
    dense, shape-less tensor representation per column, so that TFMA hands the model one 1-D
    tensor per column with NaN / "" where a row has no value: the ``serving_raw`` signature's
    inputs. (A Parquet payload has no serialized examples for ``serving_default``.)

    Only the model's features and the label: the Evaluator reads just these columns, and TFMA
    unbatches every column it reads into every example, in Python. Only for the Evaluator: the
    Transform must keep the inferred representations (a nullable column as a SparseTensor,
    imputed by the train mean), so this is a schema of its own.

    Raises ValueError for a nullable int feature: ``serving_raw`` takes it as float64 with NaN,
    which Arrow's int64 column cannot be turned into here (use the tf.Example path)."""
    schema = contract_to_schema(contract)
    keep = {c.name for c in contract.features} | {contract.label.name}
    kept = [f for f in schema.feature if f.name in keep]
    del schema.feature[:]
    schema.feature.extend(kept)
    group = schema.tensor_representation_group[""]
    for f in schema.feature:
        rep = group.tensor_representation[f.name]
        rep.dense_tensor.column_name = f.name
        if f.shape.dim:  # required: always present, no default needed
            continue
        if f.type == schema_pb2.FLOAT:
            rep.dense_tensor.default_value.float_value = float("nan")
        elif f.type == schema_pb2.BYTES:
            rep.dense_tensor.default_value.bytes_value = b""
        else:
            raise ValueError(
                f"nullable int column '{f.name}': the Evaluator cannot read it from a Parquet "
                "payload (serving_raw takes it as float64 with NaN); run with "
                "--tfx-examples tfrecord")
    return schema


def write_schema(contract: Contract, path: str | Path, *, eval_schema: bool = False) -> Path:
    """Writes the schema as text proto to ``path`` (a file; ImportSchemaGen reads it);
    ``eval_schema``: :func:`contract_to_eval_schema` instead."""
    from google.protobuf import text_format

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    doc = contract_to_eval_schema(contract) if eval_schema else contract_to_schema(contract)
    p.write_text(text_format.MessageToString(doc))
    return p
