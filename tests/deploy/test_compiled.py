"""Compiled specs for both stacks and both targets: they parse as PipelineSpec protos and carry the
expected tasks, GPU resources (one --gpu spec, translated per target), retries, caching options,
the newest-span ingestion of scheduled runs, and the TFX stack's Beam options per target (Vertex:
Dataflow, validated as Dataflow options offline; KFP: the local DirectRunner)."""

import json
import socket

import pytest

from pipelines.compile import load_compiled, load_pipeline_spec
from tests.integration.cli import twinpipe_here

STAGES = {"ingest", "validate", "train", "evaluate", "push"}
# What `twinpipe compile --target vertex --project my-proj --tfx-image REG/twinpipe-tfx:1` must give
# the TFX executors: written out here, not computed by the code under test.
VERTEX_BEAM_ARGS = [
    "--runner=DataflowRunner",
    "--project=my-proj",
    "--region=us-central1",
    "--temp_location=gs://my-proj-twinpipe-artifacts/dataflow/temp",
    "--staging_location=gs://my-proj-twinpipe-artifacts/dataflow/staging",
    "--service_account_email=twinpipe-dataflow@my-proj.iam.gserviceaccount.com",
    "--network=twinpipe-vpc",
    "--subnetwork=regions/us-central1/subnetworks/twinpipe-nodes",
    "--no_use_public_ips",
    "--worker_machine_type=n2-standard-4",
    "--max_num_workers=10",
    "--sdk_container_image=REG/twinpipe-tfx:1",
    "--sdk_location=container",
    "--experiments=use_runner_v2",
]
KFP_BEAM_ARGS = ["--runner=FnApiRunner", "--direct_running_mode=in_memory",
                 "--direct_num_workers=1", "--default_sdk_harness_log_level=WARNING"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled")
    for target in ("kfp", "vertex"):
        twinpipe_here("compile", "--stack", "both", "--target", target, "--out", str(out),
                      "--gpu", "nvidia-l4", "--gpu-count", "2", "--tfx-image", "REG/twinpipe-tfx:1",
                      "--torch-image", "REG/twinpipe-torch:1",
                      "--project", "my-proj")
    return out


def tfx_beam_args(path) -> dict[str, list[str]]:
    """Each TFX executor's Beam options: what follows its invocation args in the container args."""
    out = {}
    for name, ex in load_compiled(path)[0]["deploymentSpec"]["executors"].items():
        args = ex["container"]["args"]
        out[name] = args[args.index("--json_serialized_invocation_args") + 2:]
    return out


@pytest.mark.parametrize("target", ["kfp", "vertex"])
def test_torch_spec(compiled, target):
    path = compiled / f"torch-{target}.yaml"
    spec = load_pipeline_spec(path)
    tasks = spec.root.dag.tasks
    assert STAGES <= set(tasks)
    importers = {name: t for name, t in tasks.items() if name not in STAGES | {"land"}}
    assert len(importers) == 2  # the spans and the model registry, imported from their URIs
    params = spec.root.input_definitions.parameters
    assert params["landing_uri"].default_value.string_value == \
        "gs://my-proj-twinpipe-artifacts/data/landing"
    assert not tasks["land"].caching_options.enable_cache
    assert params["span"].default_value.string_value == "latest"
    data = "gs://my-proj-twinpipe-artifacts/data"
    assert params["spans_uri"].default_value.string_value == f"{data}/spans"
    assert params["push_destination"].default_value.string_value == f"{data}/torch/pushed"
    train = tasks["train"]
    assert train.retry_policy.max_retry_count == 2
    assert all(not tasks[t].caching_options.enable_cache for t in STAGES - {"push"})
    docs = load_compiled(path)
    executors = docs[0]["deploymentSpec"]["executors"]
    # The train task only submits the training job and waits: small, and no GPU on it ...
    res = executors["exec-train"]["container"]["resources"]
    assert "accelerator" not in res
    assert res["resourceCpuLimit"] == "1" and res["resourceMemoryLimit"] == "2G"
    images = {e["container"]["image"] for e in executors.values() if "container" in e}
    assert images == {"REG/twinpipe-torch:1"}
    # ... the GPU request travels to the training pods in the train_job parameter.
    job = json.loads(params["train_job"].default_value.string_value)
    assert job["gpu"] == 2 and job["image"] == "REG/twinpipe-torch:1"
    if target == "kfp":
        assert job["launcher"] == "torchx" and job["gpu_type"] == "nvidia-l4"
        assert job["node_selector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
        assert job["tolerations"][0]["key"] == "nvidia.com/gpu"
    else:
        assert job["launcher"] == "vertex" and job["gpu_type"] == "NVIDIA_L4"
        assert (job["project"], job["region"]) == ("my-proj", "us-central1")
        assert job["node_selector"] == {} and job["tolerations"] == []  # no GKE labels on Vertex
    if target == "vertex":
        assert len(docs) == 1  # no Kubernetes there: no platform spec at all
        return
    # KFP: the only platform setting is the alerts Secret, mounted (optionally) where the gates
    # raise alerts (the landing ingest, validate); no node selector or toleration on any KFP task.
    k8s = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(k8s) == {"exec-validate", "exec-land"}
    for name in k8s:
        (volume,) = k8s[name]["secretAsVolume"]
        assert volume["secretName"] == "twinpipe-alerts" and volume["optional"] is True
        env = executors[name]["container"]["env"]
        assert {"name": "TWINPIPE_ALERT_SECRET_DIR", "value": volume["mountPath"]} in env


@pytest.mark.parametrize("target", ["kfp", "vertex"])
def test_tfx_spec_ingests_the_newest_span(compiled, target):
    path = compiled / f"tfx-{target}.json"
    spec = load_pipeline_spec(path)
    assert {"ingest", "statistics", "schema", "anomalies", "validate_gate", "transform", "train",
            "baseline", "evaluate", "push"} <= set(spec.root.dag.tasks)
    assert "span-{SPAN}/train/*.parquet" in json.dumps(load_compiled(path)[0])


@pytest.mark.parametrize("target", ["kfp", "vertex"])
def test_tfx_spec_begins_with_the_landing_ingest(compiled, target):
    """The first node takes the new deliveries from DATA_ROOT/landing into the spans; every other
    node runs only when it says so (no new delivery: nothing trained)."""
    spec = load_compiled(compiled / f"tfx-{target}.json")[0]
    spec = spec.get("pipelineSpec", spec)
    tasks = spec["root"]["dag"]["tasks"]
    land = tasks["land"]
    assert not land.get("dependentTasks")
    params = land["inputs"]["parameters"]
    assert params["landing_uri"]["runtimeValue"]["constantValue"]["stringValue"] == \
        "gs://my-proj-twinpipe-artifacts/data/landing"
    assert params["data_root"]["runtimeValue"]["constantValue"]["stringValue"] == \
        "gs://my-proj-twinpipe-artifacts/data"
    assert "land" in tasks["ingest"]["dependentTasks"]
    for name, task in tasks.items():
        if name != "land":
            assert "_land.landed" in task["triggerPolicy"]["condition"], name
            assert "['proceed'] == 1" in task["triggerPolicy"]["condition"], name


@pytest.mark.parametrize("target", ["kfp", "vertex"])
def test_tfx_spec_carries_exactly_the_beam_options_of_its_target(compiled, target):
    per_executor = tfx_beam_args(compiled / f"tfx-{target}.json")
    assert {"ingest_executor", "statistics_executor", "transform_executor",
            "evaluate_executor"} <= set(per_executor)
    want = VERTEX_BEAM_ARGS if target == "vertex" else KFP_BEAM_ARGS
    assert all(args == want for args in per_executor.values()), per_executor


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*_a, **_k):
        raise OSError("tests/deploy: no network (the Dataflow options are checked offline)")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_vertex_beam_options_validate_as_dataflow_options_offline(compiled, no_network):
    from apache_beam.options.pipeline_options import (
        DebugOptions,
        GoogleCloudOptions,
        PipelineOptions,
        SetupOptions,
        StandardOptions,
        WorkerOptions,
    )
    from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator
    from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner

    args = tfx_beam_args(compiled / "tfx-vertex.json")["transform_executor"]
    options = PipelineOptions(args)
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    gcp = options.view_as(GoogleCloudOptions)
    assert (gcp.project, gcp.region) == ("my-proj", "us-central1")
    assert gcp.temp_location.startswith("gs://my-proj-twinpipe-artifacts/")
    assert gcp.staging_location.startswith("gs://my-proj-twinpipe-artifacts/")
    assert gcp.service_account_email == "twinpipe-dataflow@my-proj.iam.gserviceaccount.com"
    worker = options.view_as(WorkerOptions)
    assert worker.use_public_ips is False
    assert (worker.network, worker.subnetwork) == ("twinpipe-vpc",
                                                   "regions/us-central1/subnetworks/twinpipe-nodes")
    assert (worker.machine_type, worker.max_num_workers) == ("n2-standard-4", 10)
    assert worker.sdk_container_image == "REG/twinpipe-tfx:1"
    assert options.view_as(SetupOptions).sdk_location == "container"
    assert "use_runner_v2" in options.view_as(DebugOptions).experiments
    known = options.get_all_options(drop_default=True)
    assert options.get_all_options(drop_default=True, retain_unknown_options=True) == known
    assert len(known) == len(VERTEX_BEAM_ARGS)  # each option is one Beam knows, none a no-op
    # Beam's own checks for a Dataflow job (project id, gs:// paths, workers, image options);
    # --dry_run keeps its soft-delete probe of the bucket from calling GCS.
    checked = PipelineOptions([*args, "--dry_run=True"])
    assert PipelineOptionsValidator(checked, DataflowRunner()).validate() == []


def test_the_beam_stages_are_the_ones_the_report_says_scale_out(compiled):
    """Only Beam executors run on Dataflow: exactly ExampleGen, StatisticsGen, Transform and the
    Evaluator, as the README and the report's notes (comparison.report.SCALE_OUT) state."""
    import importlib

    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor

    from comparison.html import SCALE_OUT

    beam = set()
    for name, ex in load_compiled(compiled / "tfx-vertex.json")[0]["deploymentSpec"]["executors"].items():
        args = ex["container"]["args"]
        module, _, cls = args[args.index("--executor_class_path") + 1].rpartition(".")
        if issubclass(getattr(importlib.import_module(module), cls), BaseBeamExecutor):
            beam.add(name.removesuffix("_executor"))
    assert beam == {"ingest", "statistics", "transform", "evaluate"}
    notes = " ".join(n["tfx"] for n in SCALE_OUT)
    for component in ("ExampleGen (Beam)", "StatisticsGen (Beam)", "Transform (Beam)",
                      "Evaluator (TFMA, Beam)"):
        assert component in notes
    assert notes.count("Beam") == 4 and notes.count("Dataflow") == 5  # 4 jobs + "not on Dataflow"
