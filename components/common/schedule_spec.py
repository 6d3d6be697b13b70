"""Translations the deploy commands need, kept pure so they are unit-tested offline.

* cron: users write the usual 5-field form (``0 3 * * *``). KFP's recurring runs use a 6-field
  form with seconds first (robfig/cron); Vertex PipelineJobSchedule takes the 5-field form with an
  optional ``TZ=Area/City`` prefix.
* GPU: one spec (GKE accelerator name + count) maps to ``nvidia.com/gpu`` + a GKE accelerator
  node selector + a toleration for KFP, and to the ``NVIDIA_*`` accelerator enum for Vertex.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from components.common.errors import ContractError

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
           ("day of week", 0, 7))
_NAMES = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
          "sun", "mon", "tue", "wed", "thu", "fri", "sat"}


def _check_field(text: str, name: str, lo: int, hi: int, expr: str) -> None:
    for part in text.split(","):
        base, _, step = part.partition("/")
        if step and not (step.isdigit() and int(step) > 0):
            raise ContractError(f"--cron {expr!r}: {name} step {step!r} is not a positive number.")
        if base == "*":
            continue
        for bound in base.split("-"):
            if bound.lower() in _NAMES:
                continue
            if not bound.isdigit() or not lo <= int(bound) <= hi:
                raise ContractError(f"--cron {expr!r}: {name} value {bound!r} is outside {lo}-{hi}.")


def parse_cron(expr: str) -> tuple[str | None, str]:
    """(timezone or None, the validated 5-field expression)."""
    expr = expr.strip()
    tz = None
    m = re.match(r"^(?:CRON_TZ|TZ)=(\S+)\s+(.*)$", expr)
    if m:
        tz, expr = m.group(1), m.group(2)
    fields = expr.split()
    if len(fields) != 5:
        raise ContractError(f"--cron {expr!r}: expected 5 fields (minute hour day-of-month month "
                            f"day-of-week), got {len(fields)}.")
    for text, (name, lo, hi) in zip(fields, _FIELDS, strict=True):
        _check_field(text, name, lo, hi, expr)
    return tz, " ".join(fields)


def kfp_cron(expr: str) -> str:
    """KFP's 6-field form (seconds first). KFP has no per-schedule time zone: reject one."""
    tz, five = parse_cron(expr)
    if tz:
        raise ContractError(f"--cron: KFP recurring runs use the cluster's time zone; drop "
                            f"'TZ={tz}' or use --target vertex.")
    return f"0 {five}"


def vertex_cron(expr: str) -> str:
    """Vertex's form: 5 fields with an optional ``TZ=...`` prefix."""
    tz, five = parse_cron(expr)
    return f"TZ={tz} {five}" if tz else five


VERTEX_ACCELERATORS = {
    "nvidia-tesla-t4": "NVIDIA_TESLA_T4",
    "nvidia-tesla-v100": "NVIDIA_TESLA_V100",
    "nvidia-tesla-p100": "NVIDIA_TESLA_P100",
    "nvidia-l4": "NVIDIA_L4",
    "nvidia-tesla-a100": "NVIDIA_TESLA_A100",
    "nvidia-a100-80gb": "NVIDIA_A100_80GB",
    "nvidia-h100-80gb": "NVIDIA_H100_80GB",
}


@dataclass(frozen=True)
class GpuSpec:
    """One GPU request: a GKE accelerator name and how many per worker."""

    type: str
    count: int = 1

    def __post_init__(self):
        if self.type not in VERTEX_ACCELERATORS:
            raise ContractError(f"--gpu {self.type!r}: unknown accelerator; one of "
                                f"{', '.join(sorted(VERTEX_ACCELERATORS))}.")
        if self.count < 1:
            raise ContractError(f"--gpu-count {self.count}: must be at least 1.")

    def kfp(self) -> dict:
        """What the KFP task carries on GKE."""
        return {
            "accelerator_type": "nvidia.com/gpu",
            "accelerator_limit": self.count,
            "node_selector": {"cloud.google.com/gke-accelerator": self.type},
            "toleration": {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        }

    def vertex(self) -> dict:
        """What a Vertex AI job's machine spec carries."""
        return {"accelerator_type": VERTEX_ACCELERATORS[self.type], "accelerator_count": self.count}

    def training_pods(self, target: str) -> dict:
        """The GPU keys of both stacks' training-job configs: ``gpu`` per pod, ``gpu_type`` (the
        GKE accelerator; on Vertex its enum), and on GKE the node selector and toleration of the
        tainted GPU pool (Vertex has no node labels)."""
        if target == "vertex":
            return {"gpu": self.count, "gpu_type": self.vertex()["accelerator_type"],
                    "node_selector": {}, "tolerations": []}
        k = self.kfp()
        return {"gpu": self.count, "gpu_type": self.type,
                "node_selector": dict(k["node_selector"]), "tolerations": [dict(k["toleration"])]}


#: Vertex machine types per GKE accelerator name and GPUs per machine (Vertex fixes the pairing).
_VERTEX_MACHINES = {
    "nvidia-l4": {1: "g2-standard-8", 2: "g2-standard-24", 4: "g2-standard-48", 8: "g2-standard-96"},
    "nvidia-tesla-a100": {1: "a2-highgpu-1g", 2: "a2-highgpu-2g", 4: "a2-highgpu-4g",
                          8: "a2-highgpu-8g"},
    "nvidia-a100-80gb": {1: "a2-ultragpu-1g", 2: "a2-ultragpu-2g", 4: "a2-ultragpu-4g",
                         8: "a2-ultragpu-8g"},
    "nvidia-h100-80gb": {8: "a3-highgpu-8g"},
}


def vertex_machine_type(job: dict) -> str:
    """The machine type for ``job``'s GPUs (or CPUs): Vertex accepts only certain pairings."""
    gpu = int(job["gpu"])
    if gpu == 0:
        return f"n1-standard-{max(4, 2 ** math.ceil(math.log2(max(1, int(job['cpu'])))))}"
    gke = {v: k for k, v in VERTEX_ACCELERATORS.items()}.get(job["gpu_type"], job["gpu_type"])
    if gke in _VERTEX_MACHINES:
        if gpu not in _VERTEX_MACHINES[gke]:
            raise ContractError(f"--gpu {gke} --gpu-count {gpu}: Vertex offers "
                                f"{', '.join(map(str, sorted(_VERTEX_MACHINES[gke])))} per machine.")
        return _VERTEX_MACHINES[gke][gpu]
    return "n1-standard-8"  # T4, V100, P100 attach to N1 machines
