"""The TFX stack's pipeline: one factory, wiring only (stage logic lives in components/).

land     LandingIngest: new deliveries taken from the landing folder and ingested into the spans
         (the shared ingest, exactly once per delivery); the nodes below run only when it says
         so (a ``tfx.dsl.Cond`` on its artifact: no new delivery, no training)
ingest   FileBasedExampleGen over the run's monthly Parquet spans (pre-split by the contract),
         written as a Parquet payload (``examples_format`` parquet, the default) or as gzip
         TFRecords of tf.Examples (tfrecord)
validate StatisticsGen -> ImportSchemaGen(contract) -> ExampleValidator -> ValidateGate
train    Transform (analyzers on train only) -> Trainer (tf.distribute). On Parquet the
         Transform materializes nothing and computes no statistics: the Trainer reads the
         payload and applies the Transform layer in its input pipeline
evaluate LatestPushedBaseline -> Evaluator (TFMA, blessing rule from the contract; on Parquet
         through the ``serving_raw`` signature and an eval schema of dense columns)
push     AtomicPusher (only when blessed)
"""

from __future__ import annotations

import tensorflow_data_validation as tfdv
from tfx import v1 as tfx
from tfx.components import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2, transform_pb2

from components.common import storage
from components.common.contract import Contract
from components.tfx.evaluate import LatestPushedBaseline, eval_config
from components.tfx.ingest import PROCEED, LandingIngest, ParquetSpansExecutor
from components.tfx.model import PARQUET, TFRECORD
from components.tfx.push import AtomicPusher
from components.tfx.transform_executor import BatchedTransformExecutor
from components.tfx.validate import ValidateGate

# Rows TFDV merges before running its statistics generators (its default: 1,000): each merge runs
# every generator's Python over the batch once, so larger batches mean less per-batch overhead;
# its 20 MiB byte cap still bounds a batch of wide rows.
STATS_BATCH_SIZE = 8192

# Component ids double as stage names in MLMD, logs and run.json.
STAGE_OF_NODE = {
    "land": "ingest",
    "ingest": "ingest",
    "statistics": "validate",
    "schema": "validate",
    "anomalies": "validate",
    "validate_gate": "validate",
    "transform": "train",
    "train": "train",
    "baseline": "evaluate",
    "eval_schema": "evaluate",
    "evaluate": "evaluate",
    "push": "push",
}


def create_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    spans_dir: str,
    schema_path: str,
    push_destination: str,
    contract: Contract,
    train_config: dict,
    train_steps: int,
    beam_pipeline_args: list[str],
    metadata_connection_config=None,
    signature_json: str,
    run_label: str = "",
    data_source: str = "",
    latest_span: bool = False,
    report_dir: str = "",
    contract_path: str = "",
    landing_uri: str = "",
    retrain: bool = False,
    examples_format: str = PARQUET,
    eval_schema_path: str = "",
) -> tfx.dsl.Pipeline:
    """Builds the TFX pipeline. Every value gets in through these typed parameters.

    ``latest_span``: ExampleGen reads only the newest span (TFX resolves ``span-{SPAN}``), what a
    scheduled run wants; otherwise the whole window (``span-*``). ``report_dir``: where the data
    gate writes gate.json and alerts.jsonl (default ``<pipeline_root>/validation``).
    ``landing_uri``: where deliveries land; the first node takes the new ones into ``spans_dir``
    ('' = none: the spans are published already); ``retrain``: train again on the current spans
    when nothing new landed. ``examples_format``: ``parquet`` (Arrow end to end; needs
    ``eval_schema_path``, :func:`components.tfx.schema.write_schema` with ``eval_schema``) or
    ``tfrecord`` (tf.Examples, the Transform's output materialized).
    """
    if examples_format not in (PARQUET, TFRECORD):
        raise ValueError(f"examples_format {examples_format!r}: parquet or tfrecord")
    if examples_format == PARQUET and not eval_schema_path:
        raise ValueError("examples_format parquet needs eval_schema_path (the Evaluator's schema)")
    land = LandingIngest(
        landing_uri=landing_uri, data_root=storage.parent(spans_dir),
        report_dir=report_dir or f"{pipeline_root}/validation", contract_path=contract_path,
        retrain=int(retrain), run_label=run_label,
    ).with_id("land")
    with tfx.dsl.Cond(land.outputs["landed"].future()[0].custom_property(PROCEED) == 1):
        nodes = _nodes(land, spans_dir=spans_dir, pipeline_root=pipeline_root,
                       schema_path=schema_path, push_destination=push_destination,
                       contract=contract, train_config=train_config, train_steps=train_steps,
                       signature_json=signature_json, run_label=run_label,
                       data_source=data_source, latest_span=latest_span, report_dir=report_dir,
                       contract_path=contract_path, examples_format=examples_format,
                       eval_schema_path=eval_schema_path)
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[land, *nodes],
        enable_cache=False,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args,
    )


def _nodes(land, *, spans_dir, pipeline_root, schema_path, push_destination, contract,
           train_config, train_steps, signature_json, run_label, data_source, latest_span,
           report_dir, contract_path, examples_format, eval_schema_path) -> list:
    """The nodes after the landing ingest: ExampleGen over the spans it published, then validate,
    train, evaluate and push."""
    span_glob = "span-{SPAN}" if latest_span else "span-*"
    parquet = examples_format == PARQUET
    output = ({"output_data_format": example_gen_pb2.FORMAT_PARQUET,
               "output_file_format": example_gen_pb2.FILE_FORMAT_PARQUET} if parquet else {})
    ingest = FileBasedExampleGen(
        input_base=spans_dir,
        input_config=example_gen_pb2.Input(
            splits=[
                example_gen_pb2.Input.Split(name="train", pattern=f"{span_glob}/train/*.parquet"),
                example_gen_pb2.Input.Split(name="eval", pattern=f"{span_glob}/eval/*.parquet"),
            ]
        ),
        custom_executor_spec=executor_spec.BeamExecutorSpec(ParquetSpansExecutor),
        **output,
    ).with_id("ingest")
    ingest.add_upstream_node(land)

    statistics = tfx.components.StatisticsGen(
        examples=ingest.outputs["examples"],
        stats_options=tfdv.StatsOptions(desired_batch_size=STATS_BATCH_SIZE),
    ).with_id("statistics")
    schema = tfx.components.ImportSchemaGen(schema_file=schema_path).with_id("schema")
    anomalies = tfx.components.ExampleValidator(
        statistics=statistics.outputs["statistics"], schema=schema.outputs["schema"]
    ).with_id("anomalies")
    gate = ValidateGate(
        anomalies=anomalies.outputs["anomalies"],
        statistics=statistics.outputs["statistics"],
        spans_dir=spans_dir,
        span_source=data_source or spans_dir,
        report_dir=report_dir or f"{pipeline_root}/validation",
        contract_path=contract_path,
        latest_span=int(latest_span),
    ).with_id("validate_gate")

    transform = tfx.components.Transform(
        examples=ingest.outputs["examples"],
        schema=schema.outputs["schema"],
        preprocessing_fn="components.tfx.transform.preprocessing_fn",
        splits_config=transform_pb2.SplitsConfig(analyze=["train"], transform=["train", "eval"]),
        custom_config={
            "numeric": [c.name for c in contract.numeric_features],
            "categorical": [c.name for c in contract.categorical_features],
            "label": contract.label.name,
        },
        # On Parquet: the Trainer applies the Transform layer itself, and nothing reads the
        # pre-/post-transform statistics (the validate stage has its own), so the Transform
        # runs its analyzers over the train split and writes the graph, nothing more.
        materialize=not parquet,
        disable_statistics=parquet,
    ).with_id("transform")
    # TFX's Transform takes no custom_executor_spec argument; its executor spec is swapped as
    # TFX's own docs show for BaseComponent executors.
    transform.executor_spec = executor_spec.BeamExecutorSpec(BatchedTransformExecutor)
    transform.add_upstream_node(gate)  # bad data never reaches training

    train = tfx.components.Trainer(
        run_fn="components.tfx.trainer.run_fn",
        examples=(ingest if parquet else transform).outputs[
            "examples" if parquet else "transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema.outputs["schema"],
        train_args=tfx.proto.TrainArgs(num_steps=train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=1),
        custom_config=train_config,
    ).with_id("train")

    signature = "serving_raw" if parquet else "serving_default"
    baseline = LatestPushedBaseline(
        model=train.outputs["model"], push_destination=push_destination,
        signature=signature if parquet else "",
    ).with_id("baseline")
    eval_schema = (tfx.components.ImportSchemaGen(schema_file=eval_schema_path)
                   .with_id("eval_schema") if parquet else None)
    evaluate = tfx.components.Evaluator(
        examples=ingest.outputs["examples"],
        model=train.outputs["model"],
        baseline_model=baseline.outputs["baseline"],
        eval_config=eval_config(contract, signature, lean=parquet),
        example_splits=["eval"],
        schema=eval_schema.outputs["schema"] if parquet else None,
        module_path="components.tfx.evaluate" if parquet else None,
    ).with_id("evaluate")

    push = AtomicPusher(
        model=train.outputs["model"],
        model_blessing=evaluate.outputs["blessing"],
        push_destination=push_destination,
        signature_json=signature_json,
        run_label=run_label,
    ).with_id("push")

    nodes = [ingest, statistics, schema, anomalies, gate, transform, train, baseline, evaluate,
             push]
    return nodes + ([eval_schema] if parquet else [])
