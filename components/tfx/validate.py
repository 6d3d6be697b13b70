"""The TFX stack's data gate: ExampleValidator only records anomalies; this stops the run."""


import os

from tfx import v1 as tfx
from tfx.types.standard_artifacts import ExampleAnomalies

from components.common.errors import DataError


def read_anomalies(anomalies_uri: str, split_names: list[str]) -> dict[str, list[str]]:
    """{split: ["feature: description", ...]} from ExampleValidator's SchemaDiff.pb files."""
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
        problems = [
            f"{feature}: {info.short_description} ({info.description})"
            for feature, info in sorted(anomalies.anomaly_info.items())
        ]
        if anomalies.HasField("dataset_anomaly_info"):
            problems.append(f"dataset: {anomalies.dataset_anomaly_info.description}")
        if problems:
            found[split] = problems
    return found


@tfx.dsl.components.component
def ValidateGate(  # noqa: N802 (TFX component naming)
    anomalies: tfx.dsl.components.InputArtifact[ExampleAnomalies],
    span_source: tfx.dsl.components.Parameter[str],
) -> None:
    """Fails the run (so Transform/Trainer never start) when any split has anomalies."""
    import json

    splits = json.loads(anomalies.split_names) if anomalies.split_names else ["train", "eval"]
    found = read_anomalies(anomalies.uri, splits)
    if found:
        lines = "; ".join(f"split {s}: " + "; ".join(p) for s, p in found.items())
        raise DataError(
            f"[tfx][validate] data from {span_source} breaks the contract (TFDV schema): {lines}. "
            f"Anomalies report: {anomalies.uri}"
        )
