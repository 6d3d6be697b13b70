"""The Beam options a compiled TFX spec carries: where its Beam stages (ExampleGen, StatisticsGen,
Transform, Evaluator) run. ``direct``: inside each component's pod (DirectRunner, in-memory, the
local defaults). ``dataflow``: as Dataflow jobs that scale out over workers, set up by Terraform
(``terraform/modules``: the Dataflow API, the worker service account, the subnet's firewall rule).

Defaults are derived from the names Terraform gives its resources for ``name`` (its ``name``
variable: ``twinpipe-dev`` / ``twinpipe-prod`` in ``terraform/envs``), and Terraform's
``compile_flags`` output gives every value as the flag `twinpipe compile` takes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from components.common.config import default_beam_args, override_beam_args
from components.common.errors import ContractError

RUNNERS = ("dataflow", "direct")
DEFAULT_REGION = "us-central1"
DEFAULT_NAME = "twinpipe"  # Terraform's modules/twinpipe default name
DEFAULT_MACHINE_TYPE = "n2-standard-4"  # 16 GiB: Transform's analyzers and TFMA hold batches
DEFAULT_MAX_WORKERS = 10
# Runner v2 runs the SDK in the custom container (--sdk_container_image); Beam's Python SDK uses
# it on Dataflow by default since 2.45, named here so the spec does not depend on that default.
DATAFLOW_EXPERIMENTS = ("use_runner_v2",)


# Names Terraform creates for a given `name` (modules/iam, modules/network, modules/platform);
# tests/deploy/test_dataflow.py checks them against the .tf files.
def service_account_email(name: str, project: str) -> str:
    return f"{name}-dataflow@{project}.iam.gserviceaccount.com"


def network_name(name: str) -> str:
    return f"{name}-vpc"


def subnetwork_path(name: str, region: str) -> str:
    return f"regions/{region}/subnetworks/{name}-nodes"


def artifact_bucket(name: str, project: str) -> str:
    return f"{project}-{name}-artifacts"


@dataclass(frozen=True)
class DataflowSettings:
    project: str
    region: str
    data_root: str                  # gs://BUCKET/...; temp and staging go under gs://BUCKET/dataflow/
    image: str                      # the TFX image, also the workers' SDK container
    name: str = DEFAULT_NAME
    service_account: str | None = None
    network: str | None = None
    subnetwork: str | None = None   # regions/REGION/subnetworks/NAME (or a full URL)
    machine_type: str = DEFAULT_MACHINE_TYPE
    max_workers: int = DEFAULT_MAX_WORKERS


def dataflow_beam_args(s: DataflowSettings) -> list[str]:
    """DataflowRunner options for the TFX Beam stages: workers on private IPs in Terraform's subnet,
    running as the Dataflow worker service account, the TFX image as their SDK container."""
    m = re.fullmatch(r"gs://([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])(/.*)?", s.data_root)
    if not m:
        raise ContractError(f"--beam-runner dataflow: --data-root {s.data_root!r} must be "
                            "gs://BUCKET/...; Dataflow's temp and staging files go under "
                            "gs://BUCKET/dataflow/.")
    bucket = m.group(1)
    subnetwork = s.subnetwork or subnetwork_path(s.name, s.region)
    sub = re.fullmatch(r"(?:https://www\.googleapis\.com/compute/v1/projects/[^/]+/)?"
                       r"regions/([^/]+)/subnetworks/[^/]+", subnetwork)
    if not sub or sub.group(1) != s.region:
        raise ContractError(f"--dataflow-subnetwork {subnetwork!r} must be regions/{s.region}/"
                            "subnetworks/NAME (or its full URL): a subnetwork of the jobs' "
                            f"--region {s.region}.")
    return [
        "--runner=DataflowRunner",
        f"--project={s.project}",
        f"--region={s.region}",
        f"--temp_location=gs://{bucket}/dataflow/temp",
        f"--staging_location=gs://{bucket}/dataflow/staging",
        f"--service_account_email={s.service_account or service_account_email(s.name, s.project)}",
        f"--network={s.network or network_name(s.name)}",
        f"--subnetwork={subnetwork}",
        "--no_use_public_ips",
        f"--worker_machine_type={s.machine_type}",
        f"--max_num_workers={s.max_workers}",
        f"--sdk_container_image={s.image}",
        "--sdk_location=container",  # the image's Beam SDK; nothing staged from PyPI
        *(f"--experiments={e}" for e in DATAFLOW_EXPERIMENTS),
    ]


def beam_args(runner: str, overrides: list[str] | tuple[str, ...] = (),
              dataflow: DataflowSettings | None = None) -> list[str]:
    """The compiled spec's Beam options for ``runner``, then ``--beam-arg`` overrides by option
    name (as `twinpipe run` applies them)."""
    if runner == "dataflow":
        if dataflow is None:
            raise ValueError("runner 'dataflow' needs DataflowSettings")
        base = dataflow_beam_args(dataflow)
    elif runner == "direct":
        base = default_beam_args()
    else:
        raise ValueError(f"unknown Beam runner {runner!r}; expected one of {RUNNERS}")
    return override_beam_args(base, overrides)
