"""Evaluate on the TFX stack: TFMA config from the contract's blessing rule, and the baseline.

The baseline is the latest model pushed by this stack, found in the push destination
(components.common.registry) rather than by TFX's Resolver, which self-hosted KFP v2 cannot run;
the same lookup works locally, on KFP and on Vertex. With no pushed model yet, the candidate is
its own baseline: the change threshold is then trivially met and only the lower bound applies.
"""


import tensorflow_model_analysis as tfma
from google.protobuf.wrappers_pb2 import BoolValue
from tfx import v1 as tfx
from tfx.types.standard_artifacts import Model

from components.common import registry
from components.common.contract import Contract

BASELINE_SOURCE = "baseline_source"


def eval_config(contract: Contract, signature: str = "serving_default",
                lean: bool = False) -> tfma.EvalConfig:
    """TFMA's config: the blessing rule's metric with its thresholds, on ``signature`` (the
    baseline model is scored through the same one). ``serving_default`` takes serialized
    tf.Examples; on a Parquet payload there are none, and ``serving_raw`` takes the columns
    (:func:`components.tfx.schema.contract_to_eval_schema`).

    ``lean``: only what the blessing and run.json use (the example count and the blessing's
    metric). TFMA computes each metric per example in Python for both models; accuracy and
    log-loss, which the report takes from its own measurement of the pushed model, cost about a
    third of the Evaluator's time (profiled on the full year's eval split)."""
    rule = contract.blessing
    threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": rule.lower_bound}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -rule.max_regression},
        ),
    )
    metric_class = {"auc": "AUC"}[rule.metric]
    # Only the metrics named here, all TFMA-native. TFMA would otherwise add each Keras model's
    # compiled loss and metrics (its "default metrics"), run as TF calls on every batch of every
    # model (candidate and baseline), and a class name TFMA lacks (Keras' "BinaryCrossentropy")
    # goes through the same wrapper: TFMA's own BinaryCrossEntropy gives the same
    # binary_crossentropy.
    return tfma.EvalConfig(
        options=tfma.Options(include_default_metrics=BoolValue(value=False)),
        model_specs=[tfma.ModelSpec(signature_name=signature, label_key=contract.label.name)],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(class_name=metric_class, threshold=threshold),
                    *([] if lean else [tfma.MetricConfig(class_name="BinaryAccuracy"),
                                       tfma.MetricConfig(class_name="BinaryCrossEntropy")]),
                ]
            )
        ],
    )


def custom_extractors(eval_shared_model, eval_config, tensor_adapter_config):
    """The Evaluator's extractors on a Parquet payload (its ``module_path`` names this module):
    TFMA's defaults without the transformed-features extractor. That extractor looks for a
    ``transformed_features`` signature the model does not have and, before finding out, insists
    on the serialized examples a Parquet payload has none of ("Raw examples not found"); the
    predictions extractor, the one that scores, is TFMA's own."""
    return tfma.default_extractors(
        eval_shared_model=eval_shared_model, eval_config=eval_config,
        tensor_adapter_config=tensor_adapter_config,
        custom_predict_extractor=tfma.extractors.PredictionsExtractor(
            eval_config=eval_config, eval_shared_model=eval_shared_model))


@tfx.dsl.components.component
def LatestPushedBaseline(  # noqa: N802 (TFX component naming)
    model: tfx.dsl.components.InputArtifact[Model],
    baseline: tfx.dsl.components.OutputArtifact[Model],
    push_destination: tfx.dsl.components.Parameter[str],
    signature: tfx.dsl.components.Parameter[str] = "",
) -> None:
    """Copies the latest pushed model (or the candidate, when none) as the baseline Model.

    A ``gs://`` registry is read through components.common.storage (the version is downloaded to
    a temporary folder first), not through TF's GCS client. ``signature``: the one the Evaluator
    scores through; a baseline without it is refused in one sentence (TFMA would fail on it
    deep inside Beam)."""
    import tempfile

    from tfx.utils import io_utils, path_utils


    latest = registry.latest(push_destination)
    with tempfile.TemporaryDirectory(prefix="twinpipe-baseline-") as tmp:
        src = str(registry.local_copy(latest, tmp)) if latest else path_utils.serving_model_path(
            model.uri)
        if signature and latest:
            missing = _lacks_signature(src, signature)
            if missing:
                raise ValueError(
                    f"[tfx][evaluate] the pushed baseline {latest} has no '{signature}' "
                    f"signature (it has {missing}), which the Evaluator scores the Parquet "
                    "payload through; run once with --tfx-examples tfrecord to push a model "
                    "that has it.")
        io_utils.copy_dir(src, path_utils.serving_model_dir(baseline.uri))
    baseline.set_string_custom_property(BASELINE_SOURCE, str(latest) if latest else "")


def _lacks_signature(saved_model_dir: str, signature: str) -> list[str]:
    """[] when the SavedModel has ``signature``, else the signatures it has."""
    from tensorflow.python.saved_model import loader_impl

    found = sorted(loader_impl.parse_saved_model(saved_model_dir).meta_graphs[0].signature_def)
    return [] if signature in found else found
