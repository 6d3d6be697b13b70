"""Compiled specs for both stacks and both targets: they parse as PipelineSpec protos and carry the
expected tasks, GPU resources (one --gpu spec, translated per target), retries, caching options and
the newest-span ingestion of scheduled runs."""

import json

import pytest

from infra.compile import load_compiled, load_pipeline_spec
from tests.integration.cli import twinpipe

STAGES = {"ingest", "validate", "train", "evaluate", "push"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled")
    for target in ("kfp", "vertex"):
        twinpipe("compile", "--stack", "both", "--target", target, "--out", str(out),
                 "--gpu", "nvidia-l4", "--gpu-count", "2", "--image", "REG/twinpipe:1")
    return out


@pytest.mark.parametrize("target", ["kfp", "vertex"])
def test_torch_spec(compiled, target):
    path = compiled / f"torch-{target}.yaml"
    spec = load_pipeline_spec(path)
    assert set(spec.root.dag.tasks) == STAGES
    params = spec.root.input_definitions.parameters
    assert params["span"].default_value.string_value == "latest"
    train = spec.root.dag.tasks["train"]
    assert train.retry_policy.max_retry_count == 2
    assert all(not spec.root.dag.tasks[t].caching_options.enable_cache for t in STAGES - {"push"})
    docs = load_compiled(path)
    executors = docs[0]["deploymentSpec"]["executors"]
    res = executors["exec-train"]["container"]["resources"]
    acc = res["accelerator"]
    assert acc.get("resourceCount", acc.get("count")) in ("2", 2)
    want = "nvidia.com/gpu" if target == "kfp" else "NVIDIA_L4"
    assert want in (acc.get("resourceType"), acc.get("type"))
    assert {e["container"]["image"] for e in executors.values()} == {"REG/twinpipe:1"}
    if target == "kfp":
        k8s = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
        assert k8s["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
        assert k8s["tolerations"][0]["key"] == "nvidia.com/gpu"
    else:
        assert len(docs) == 1  # no GKE node labels on Vertex


@pytest.mark.parametrize("target", ["kfp", "vertex"])
def test_tfx_spec_ingests_the_newest_span(compiled, target):
    path = compiled / f"tfx-{target}.json"
    spec = load_pipeline_spec(path)
    assert {"ingest", "statistics", "schema", "anomalies", "validate_gate", "transform", "train",
            "baseline", "evaluate", "push"} <= set(spec.root.dag.tasks)
    assert "span-{SPAN}/train/*.parquet" in json.dumps(load_compiled(path)[0])
