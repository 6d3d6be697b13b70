"""The Beam options of the TFX stack's Beam stages (ExampleGen, StatisticsGen, Transform,
Evaluator): where they run. ``direct``: on this machine or inside each component's pod, Beam's
FnApiRunner (the engine of the DirectRunner's batch path), in-memory for small data and
multi-processing with one SDK worker per core for large data (:func:`direct_beam_args`, chosen by
rows as TFX's own examples run large data: ``--direct_running_mode=multi_processing``).
``dataflow``: as Dataflow jobs that scale out over workers, set up by Terraform
(``terraform/modules``: the Dataflow API, the worker service account, the subnet's firewall rule).

Defaults are derived from the names Terraform gives its resources for ``name`` (its ``name``
variable: ``twinpipe-dev`` / ``twinpipe-prod`` in ``terraform/envs``), and Terraform's
``compile_flags`` output gives every value as the flag `twinpipe compile` takes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

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


# Rows (train + eval) from which the local Beam stages run multi-processing. Below it, in-memory:
# multi-processing starts fresh SDK worker processes (each importing TF) for every Beam job, a
# fixed ~8-20 s per component on 2 cores, which the full year (337k rows) does not win back
# (README, Performance: the pipeline 190 s in-memory vs 195 s multi-processing, months 1-3 97 s
# vs 170 s). Above it the per-row work dominates, and in-memory runs every stage in the one
# process on one core; multi-processing spreads it over every core (the Evaluator alone: 51 s vs
# 75-80 s on the full year's 65k eval rows). At 3x (982k rows, 2 cores, together with the larger
# Beam batches and the Evaluator's native metrics) the TFX nodes took ExampleGen 54 -> 60 s,
# StatisticsGen 39 -> 29 s, Transform 111 -> 93 s, Evaluator 176 -> 84 s, the pipeline 433 ->
# 321 s, for 2-2.5x the peak memory (ExampleGen 2.4 -> 5.4 GB: an SDK worker per core, each with TF).
MULTI_PROCESSING_MIN_ROWS = 500_000


@dataclass(frozen=True)
class DirectMode:
    """How the local Beam stages run: Beam's running mode and its SDK worker count."""

    running_mode: str   # in_memory | multi_processing
    workers: int
    rows: int | None    # the data size it was chosen for (None: unknown, e.g. a compiled spec)

    def args(self) -> list[str]:
        """The Beam options. The runner is pinned to FnApiRunner: ``--runner=DirectRunner`` is
        Beam's SwitchingDirectRunner, which since Beam 2.68 first tries Prism (a Go binary it
        downloads from GitHub; a failed download falls back, a working one changes the engine
        under the pipeline), then the same FnApiRunner named here."""
        return [
            "--runner=FnApiRunner",
            f"--direct_running_mode={self.running_mode}",
            f"--direct_num_workers={self.workers}",
            "--default_sdk_harness_log_level=WARNING",
        ]

    def record(self) -> dict:
        """What run.json states about the configuration."""
        return {"runner": "FnApiRunner", "running_mode": self.running_mode,
                "workers": self.workers, "rows": self.rows,
                "multi_processing_min_rows": MULTI_PROCESSING_MIN_ROWS}


def cores() -> int:
    """CPUs this process may run on (its affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def direct_mode(rows: int | None, n_cores: int | None = None) -> DirectMode:
    """In-memory below :data:`MULTI_PROCESSING_MIN_ROWS` rows (or when rows are unknown, as in a
    compiled spec's pods), multi-processing with one worker per core from it on."""
    n = n_cores or cores()
    if rows is None or rows < MULTI_PROCESSING_MIN_ROWS or n < 2:
        return DirectMode("in_memory", 1, rows)
    return DirectMode("multi_processing", n, rows)


def tuned_mode(running_mode: str, rows: int | None, n_cores: int | None = None) -> DirectMode:
    """A running mode chosen by measurement (``twinpipe tune``) rather than by rows:
    multi-processing with one SDK worker per core, in-memory with one."""
    if running_mode not in ("in_memory", "multi_processing"):
        raise ValueError(f"unknown Beam running mode {running_mode!r}")
    n = n_cores or cores()
    return DirectMode(running_mode, n if running_mode == "multi_processing" else 1, rows)


def direct_beam_args(rows: int | None, overrides: list[str] | tuple[str, ...] = (),
                     n_cores: int | None = None) -> list[str]:
    """The local Beam options for ``rows`` of data, then ``--beam-arg`` overrides by name."""
    return override_beam_args(direct_mode(rows, n_cores).args(), overrides)


def beam_args(runner: str, overrides: list[str] | tuple[str, ...] = (),
              dataflow: DataflowSettings | None = None) -> list[str]:
    """The compiled spec's Beam options for ``runner``, then ``--beam-arg`` overrides by option
    name (as `twinpipe run` applies them)."""
    if runner == "dataflow":
        if dataflow is None:
            raise ValueError("runner 'dataflow' needs DataflowSettings")
        base = dataflow_beam_args(dataflow)
    elif runner == "direct":
        base = default_beam_args()  # the pods' data size is not known when compiling
    else:
        raise ValueError(f"unknown Beam runner {runner!r}; expected one of {RUNNERS}")
    return override_beam_args(base, overrides)


def default_beam_args() -> list[str]:
    """The local Beam options when the data size is not known (a compiled spec's pods, a bare
    RunConfig): FnApiRunner in-memory, pinned. `twinpipe run` sizes them by the ingested rows
    instead (``components.common.beam_options.direct_mode``: multi-processing over every core for large data).
    """
    return direct_beam_args(None)


def _option_key(arg: str) -> str:
    """A Beam option's name: ``--max_num_workers=4`` -> ``max_num_workers``; a boolean's negation
    names the same option (``--no_use_public_ips`` and ``--use_public_ips``)."""
    name = arg.split("=", 1)[0].lstrip("-")
    return name[3:] if name.startswith("no_") else name


def override_beam_args(base: list[str] | tuple[str, ...], overrides: list[str] | tuple[str, ...]
                       ) -> list[str]:
    """``base`` with every option named in ``overrides`` replaced by the overrides (by option name,
    all of its occurrences: one ``--experiments=...`` replaces every default experiment), the
    overrides appended in their order."""
    keys = {_option_key(a) for a in overrides}
    return [a for a in base if _option_key(a) not in keys] + list(overrides)
