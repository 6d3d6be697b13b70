"""The TFX stack on Dataflow, offline: `twinpipe compile`'s Beam options (flags, defaults,
--beam-arg overrides, usage errors), and that they name what Terraform creates — the worker service
account, network, subnetwork and bucket — with its compile_flags output giving exactly the flags
compile takes, and the TFX image carrying the Beam boot launcher of the locked Beam version.
(The compiled specs themselves: test_compiled.py.)"""

import re
from pathlib import Path

import pytest

from components.common import beam_options as bo
from components.common.beam_options import default_beam_args, override_beam_args
from infra.cli import build_parser
from pipelines.compile import tfx_beam_args
from tests.integration.cli import twinpipe

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "terraform" / "modules"


def _compile_args(*argv: str):
    return build_parser().parse_args(["compile", *argv])


def _opts(args: list[str]) -> dict[str, str]:
    return dict(a.lstrip("-").partition("=")[::2] for a in args)


def test_runner_defaults_per_target():
    assert tfx_beam_args(_compile_args("--target", "kfp"), "gs://b-data/data", "img") \
        == default_beam_args()
    vertex = tfx_beam_args(_compile_args("--target", "vertex", "--project", "p-1"), "gs://b-data/d", "img")
    assert vertex[0] == "--runner=DataflowRunner"
    kfp_on_dataflow = tfx_beam_args(_compile_args("--target", "kfp", "--beam-runner", "dataflow",
                                                  "--project", "p-1"), "gs://b-data/d", "img")
    assert kfp_on_dataflow == vertex
    assert tfx_beam_args(_compile_args("--target", "vertex", "--beam-runner", "direct"), "x", "img") \
        == default_beam_args()


def test_dataflow_flags_and_overrides():
    args = _compile_args(
        "--target", "vertex", "--project", "acme-ml", "--region", "europe-west4",
        "--infra-name", "twinpipe-prod", "--dataflow-machine-type", "n2-highmem-8",
        "--dataflow-max-workers", "40", "--beam-arg=--max_num_workers=50",
        "--beam-arg=--use_public_ips", "--beam-arg=--experiments=use_runner_v2",
        "--beam-arg=--experiments=no_use_multiple_sdk_containers", "--beam-arg=--job_name=nightly")
    got = tfx_beam_args(args, "gs://acme-ml-twinpipe-prod-artifacts/data", "R/twinpipe-tfx:v2")
    o = _opts(got)
    assert o["temp_location"] == "gs://acme-ml-twinpipe-prod-artifacts/dataflow/temp"
    assert o["staging_location"] == "gs://acme-ml-twinpipe-prod-artifacts/dataflow/staging"
    assert o["service_account_email"] == "twinpipe-prod-dataflow@acme-ml.iam.gserviceaccount.com"
    assert o["subnetwork"] == "regions/europe-west4/subnetworks/twinpipe-prod-nodes"
    assert o["network"] == "twinpipe-prod-vpc" and o["region"] == "europe-west4"
    assert o["worker_machine_type"] == "n2-highmem-8" and o["sdk_container_image"] == "R/twinpipe-tfx:v2"
    # overrides replace the option of the same name (a negated boolean included), in their order
    assert o["max_num_workers"] == "50" and "--max_num_workers=40" not in got
    assert "--no_use_public_ips" not in got and "--use_public_ips" in got
    assert [a for a in got if a.startswith("--experiments=")] == [
        "--experiments=use_runner_v2", "--experiments=no_use_multiple_sdk_containers"]
    assert got[-1] == "--job_name=nightly"
    explicit = tfx_beam_args(_compile_args(
        "--target", "vertex", "--project", "p-1",
        "--dataflow-service-account", "w@p-1.iam.gserviceaccount.com",
        "--dataflow-network", "shared", "--dataflow-subnetwork",
        "https://www.googleapis.com/compute/v1/projects/host/regions/us-central1/subnetworks/s"),
        "gs://b-data/d", "img")
    assert {"--service_account_email=w@p-1.iam.gserviceaccount.com", "--network=shared",
            "--subnetwork=https://www.googleapis.com/compute/v1/projects/host/regions/us-central1/"
            "subnetworks/s"} <= set(explicit)


def test_override_helper_is_the_one_run_uses():
    assert override_beam_args(default_beam_args(), ["--runner=FlinkRunner"]) == [
        "--direct_running_mode=in_memory", "--direct_num_workers=1",
        "--default_sdk_harness_log_level=WARNING", "--runner=FlinkRunner"]
    assert override_beam_args(["--a=1", "--no_b"], []) == ["--a=1", "--no_b"]


@pytest.mark.parametrize("argv, message", [
    (["--stack", "tfx", "--target", "vertex"],
     "--beam-runner dataflow (the default for --target vertex) needs --project PROJECT_ID"),
    (["--stack", "both", "--target", "kfp", "--beam-runner", "dataflow"],
     "--beam-runner dataflow needs --project PROJECT_ID"),
    (["--stack", "tfx", "--target", "vertex", "--project", "p-1", "--data-root", "/tmp/data"],
     "--data-root '/tmp/data' must be gs://BUCKET/"),
    (["--stack", "tfx", "--target", "vertex", "--project", "p-1", "--dataflow-subnetwork",
      "regions/us-east1/subnetworks/x"], "must be regions/us-central1/subnetworks/NAME"),
])
def test_usage_errors_are_one_line(tmp_path, argv, message):
    proc = twinpipe("compile", *argv, "--out", str(tmp_path), check=False, timeout=600)
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("twinpipe:")]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not list(tmp_path.iterdir())  # refused before compiling anything


def test_help_states_the_default_runner():
    text = " ".join(build_parser()._subparsers._group_actions[0].choices["compile"]
                    .format_help().split())
    assert "default for --target vertex" in text and "default for --target kfp" in text


# --- Terraform gives what compile takes ----------------------------------------------------------

def _tf(path: str) -> str:
    return (TF / path).read_text()


def _render(template: str, name="twinpipe-dev", project="acme-ml", region="us-central1") -> str:
    return (template.replace("${var.name}", name).replace("${var.project_id}", project)
            .replace("${var.region}", region))


def _attr(text: str, resource: str, attr: str) -> str:
    block = text[text.index(f'resource {resource} {{'):]
    return re.search(rf'^\s*{attr}\s*=\s*"([^"]+)"', block, re.M).group(1)


def test_compile_defaults_are_the_names_terraform_creates():
    iam, net, plat = _tf("iam/main.tf"), _tf("network/main.tf"), _tf("platform/main.tf")
    sa = _render(_attr(iam, '"google_service_account" "dataflow"', "account_id"))
    assert bo.service_account_email("twinpipe-dev", "acme-ml") == f"{sa}@acme-ml.iam.gserviceaccount.com"
    assert bo.network_name("twinpipe-dev") == _render(_attr(net, '"google_compute_network" "vpc"', "name"))
    subnet = _render(_attr(net, '"google_compute_subnetwork" "nodes"', "name"))
    assert bo.subnetwork_path("twinpipe-dev", "us-central1") == f"regions/us-central1/subnetworks/{subnet}"
    assert bo.artifact_bucket("twinpipe-dev", "acme-ml") == _render(
        _attr(plat, '"google_storage_bucket" "artifacts"', "name"))
    out = _tf("network/outputs.tf")
    assert 'value = "regions/${var.region}/subnetworks/${google_compute_subnetwork.nodes.name}"' in out
    assert bo.DEFAULT_NAME == re.search(r'variable "name" \{[^}]*default\s*=\s*"([^"]+)"',
                                        _tf("twinpipe/variables.tf")).group(1)


def test_terraform_compile_flags_are_compile_flags():
    out = _tf("twinpipe/outputs.tf")
    block = out[out.index('output "compile_flags"'):]
    flags = re.findall(r'"(--[a-z-]+) ', block)
    assert flags == ["--project", "--region", "--infra-name", "--pipeline-root", "--data-root",
                     "--dataflow-service-account", "--dataflow-network", "--dataflow-subnetwork",
                     "--tfx-image", "--torch-image"]
    parsed = _compile_args(*[x for f in flags for x in (f, "v")])
    assert all(getattr(parsed, f[2:].replace("-", "_")) == "v" for f in flags)
    for env in ("dev", "prod"):
        assert "value = module.twinpipe.compile_flags" in (ROOT / f"terraform/envs/{env}/main.tf").read_text()


def test_terraform_prepares_dataflow():
    iam, net, plat = _tf("iam/main.tf"), _tf("network/main.tf"), _tf("platform/main.tf")
    assert '"dataflow.googleapis.com"' in plat
    assert 'role    = "roles/dataflow.worker"' in iam
    assert 'role               = "roles/iam.serviceAccountUser"' in iam
    assert "service_account_id = google_service_account.dataflow.name" in iam  # on that SA only
    fw = net[net.index('"google_compute_firewall" "dataflow_workers"'):]
    fw = fw[:fw.index("\n}\n")]
    assert 'ports    = ["12345-12346"]' in fw and 'direction = "INGRESS"' in fw
    assert 'source_tags = ["dataflow"]' in fw and 'target_tags = ["dataflow"]' in fw
    assert "source_ranges" not in fw
    for grant in ('"google_storage_bucket_iam_member" "dataflow"',
                  '"google_artifact_registry_repository_iam_member" "dataflow_pull"'):
        assert grant in plat


def test_tfx_image_is_a_dataflow_sdk_container_of_the_locked_beam():
    text = (ROOT / "infra/docker/Dockerfile.tfx").read_text()
    beam = re.search(r"^apache-beam==([\d.]+)", (ROOT / "requirements/lock.txt").read_text(), re.M)
    python = re.search(r"^ARG BASE_IMAGE=\S*/python:(\d+\.\d+)\.", text, re.M).group(1)
    assert f"FROM docker.io/apache/beam_python{python}_sdk:{beam.group(1)} AS beam-sdk" in text
    assert "ARG BEAM_BOOT=sdk" in text  # the launcher by default; none only where it cannot be pulled
    assert "FROM beam-${BEAM_BOOT} AS beam" in text
    final = text.split("\nFROM ")[-1]
    assert "COPY --from=beam /opt/apache/beam /opt/apache/beam" in final
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in final
    assert "RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1" in final
    assert "io.twinpipe.beam-boot=${BEAM_BOOT}" in final
