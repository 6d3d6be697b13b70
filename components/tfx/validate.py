"""The TFX stack's data gate.

ExampleValidator only records anomalies (TFDV against the contract's schema); ValidateGate reads
them, maps them onto the contract's checks, adds the contract's rule set over the same spans
(:mod:`components.common.gate`: quarantine rates, volume, nulls, drift vs the previous span,
train/eval skew) and TFDV's own skew comparator on the StatisticsGen output, then alerts and stops
the run (Transform and Trainer never start) when a ``fail`` check failed.
"""


import os

from tfx import v1 as tfx
from tfx.types.standard_artifacts import ExampleAnomalies, ExampleStatistics

from components.common.alerts import FailedCheck
from components.common.contract import load_contract
from components.common.gate import check_spans, enforce, merge_engine
from components.common.spans import select_spans
from components.tfx.schema import contract_to_schema

# TFDV anomaly types -> the contract's check names (anything else: schema).
_RANGE = ("BIG_INT", "SMALL_INT", "BIG_FLOAT", "SMALL_FLOAT", "HAS_NAN", "HAS_INF")
# A fixed-shape ([1]) feature with a missing value also reports INVALID_FEATURE_SHAPE.
_NOT_NULL = ("FEATURE_TYPE_LOW_FRACTION_PRESENT", "FEATURE_TYPE_LOW_NUMBER_PRESENT",
             "FEATURE_TYPE_LOW_NUMBER_VALUES", "FEATURE_TYPE_NO_VALUES", "INVALID_FEATURE_SHAPE")


def check_of(anomaly_type: str) -> str:
    """The contract check a TFDV anomaly type belongs to."""
    if anomaly_type == "ENUM_TYPE_UNEXPECTED_STRING_VALUES":
        return "unseen"
    if anomaly_type in _NOT_NULL:
        return "not_null"
    if anomaly_type == "SCHEMA_NEW_COLUMN":
        return "extra_columns"
    if anomaly_type.startswith("DATASET_LOW_NUM_EXAMPLES"):
        return "volume"
    if anomaly_type.startswith("COMPARATOR_"):
        return "skew"
    if any(anomaly_type.endswith(k) for k in _RANGE):
        return "range"
    return "schema"


def anomalies_to_checks(anomalies, policies: dict, split: str = "") -> list[FailedCheck]:
    """A TFDV Anomalies proto as the contract's checks (one per feature and check).

    A feature that is missing or of the wrong type reports only that (schema), as GX does."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    names = anomalies_pb2.AnomalyInfo.Type.Name
    out: dict = {}
    for feature, info in sorted(anomalies.anomaly_info.items()):
        checks = {}
        for reason in info.reason:
            checks.setdefault(check_of(names(reason.type)), []).append(reason.description)
        if "schema" in checks:
            checks = {"schema": checks["schema"]}
        for check, descriptions in checks.items():
            out[(check, feature)] = FailedCheck(
                check, feature, "; ".join(descriptions) + (f" (split {split})" if split else ""),
                "the contract's TFDV schema", policies.get(check, "fail"))
    if anomalies.HasField("dataset_anomaly_info"):
        out[("volume", None)] = FailedCheck("volume", None, anomalies.dataset_anomaly_info.description,
                                            "the contract's TFDV schema", policies["volume"])
    return list(out.values())


def read_anomalies(anomalies_uri: str, split_names: list[str]) -> dict:
    """{split: Anomalies proto} from ExampleValidator's SchemaDiff.pb files."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2
    from tfx.dsl.io import fileio

    found = {}
    for split in split_names:
        path = os.path.join(anomalies_uri, f"Split-{split}", "SchemaDiff.pb")
        if not fileio.exists(path):
            continue
        anomalies = anomalies_pb2.Anomalies()
        with fileio.open(path, "rb") as f:
            anomalies.ParseFromString(f.read())
        found[split] = anomalies
    return found


def tfdv_skew(statistics_uri: str, schema_pb, contract) -> dict:
    """TFDV's skew comparator (L-inf / JS thresholds from the contract) on the StatisticsGen train
    vs eval statistics: {feature: {"type", "value", "threshold"}}, recorded next to the rules'."""
    import tensorflow_data_validation as tfdv
    from tfx.utils import io_utils

    def load(split):
        return tfdv.load_stats_binary(io_utils.get_only_uri_in_dir(
            os.path.join(statistics_uri, f"Split-{split}")))

    schema = type(schema_pb)()
    schema.CopyFrom(schema_pb)
    rules = contract.validation
    for col in contract.features:
        f = tfdv.get_feature(schema, col.name)
        if col.vocabulary:
            f.skew_comparator.infinity_norm.threshold = rules.skew_threshold(col)
        else:
            f.skew_comparator.jensen_shannon_divergence.threshold = rules.skew_threshold(col)
    result = tfdv.validate_statistics(load("train"), schema, serving_statistics=load("eval"))
    out = {}
    for info in result.drift_skew_info:
        for m in info.skew_measurements:
            out[info.path.step[0]] = {"type": type(m).Type.Name(m.type), "value": round(m.value, 5),
                                      "threshold": m.threshold}
    return out


@tfx.dsl.components.component
def ValidateGate(  # noqa: N802 (TFX component naming)
    anomalies: tfx.dsl.components.InputArtifact[ExampleAnomalies],
    statistics: tfx.dsl.components.InputArtifact[ExampleStatistics],
    spans_dir: tfx.dsl.components.Parameter[str],
    span_source: tfx.dsl.components.Parameter[str],
    report_dir: tfx.dsl.components.Parameter[str],
    contract_path: tfx.dsl.components.Parameter[str] = "",
    latest_span: tfx.dsl.components.Parameter[int] = 0,
) -> None:
    """Fails the run (so Transform/Trainer never start) when the data breaks the contract."""
    import json


    contract = load_contract(contract_path or None)
    spans = select_spans(spans_dir, "latest" if latest_span else "all")
    report = check_spans(contract, spans_dir, spans, source=span_source)
    splits = json.loads(anomalies.split_names) if anomalies.split_names else ["train", "eval"]
    found = read_anomalies(anomalies.uri, splits)
    per_split = {s: anomalies_to_checks(a, contract.validation.policies, s) for s, a in found.items()}
    engine_checks = [c for checks in per_split.values() for c in checks]
    engine = {"engine": "tfdv", "anomalies_uri": anomalies.uri,
              "anomalies": {s: [c.observed for c in checks] for s, checks in per_split.items()}}
    try:
        engine["tfdv_skew"] = tfdv_skew(statistics.uri, contract_to_schema(contract), contract)
    except Exception as e:  # noqa: BLE001 — informational; the rules' skew check still runs
        engine["tfdv_skew_error"] = f"{type(e).__name__}: {e}"
    merge_engine(report, engine_checks, engine)
    enforce(report, contract=contract, stack="tfx", pipeline="twinpipe-tfx", report_dir=report_dir,
            spans_dir=spans_dir)
