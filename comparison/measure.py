"""What the report needs beyond each stack's run.json, measured right after a run:

* ``OUT/<stack>/scaling.json`` — training throughput at 1 and N workers at fixed threads per
  worker, weak and strong, with each step's compute/all-reduce split (:mod:`comparison.scaling`);
* ``OUT/<stack>/measurements.json`` — the stack's model scored on the run's eval rows (the spans'
  eval split; ``eval_rows_sha256`` is their key digest, :mod:`components.common.rowdigest`, which
  the report checks against the rows each stack's evaluate stage scored) with one metrics
  implementation, ROC and calibration points, artifact sizes, and serving latency/throughput at
  batch 1 and 256 through its runtime;
* ``OUT/environment.json`` — versions, cores, memory, GPU.

The report builder only reads these files, so ``twinpipe report`` can rebuild and combine runs
made on other machines (a CPU run next to a GPU run).
"""

from __future__ import annotations

import logging
import os
import platform
import time
from importlib import metadata
from pathlib import Path

from comparison import exports, fault_tolerance, serving_load
from comparison.models import measure_model
from comparison.scaling import scaling as scaling_probe
from comparison.validation_engines import measure as validation_engines
from components.common import storage
from components.common.contract import Contract
from components.common.layout import ENVIRONMENT_JSON
from components.common.threads import query_gpus

log = logging.getLogger("twinpipe.measure")

PACKAGES = ("tfx", "tensorflow", "apache-beam", "tensorflow-data-validation",
            "tensorflow-transform", "tensorflow-model-analysis", "ml-metadata", "torch", "torchx",
            "kfp", "great-expectations", "onnx", "onnxruntime", "onnxscript", "scikit-learn",
            "pyarrow", "pandas")


def _gpus() -> list[str]:
    """The name and memory of each GPU on this machine (none without)."""

    return query_gpus("name,memory.total")


def environment() -> dict:
    import psutil

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpus": _gpus(),
        "versions": versions,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# --- scaling: comparison.scaling (the fixed-threads probe) ---------------------------------------------

def scaling(stack: str, cfg, contract: Contract, ingested, summary: dict, out_dir: Path) -> dict:
    """Writes ``<stack>/scaling.json``: :func:`comparison.scaling.scaling`."""
    return scaling_probe(stack, cfg, contract, ingested, summary, out_dir)


# --- models -------------------------------------------------------------------------------------


# The measurements beyond the core ones, by the name `twinpipe run --measure` selects them by:
# name -> function, called as f(out_dir, cfg, contract, ingested, summaries) after the core
# measurements, in this order; each writes the JSON its report section (same module) reads.
EXTRA_MEASUREMENTS = {
    "validation_engines": validation_engines.measure,
    "exports": exports.measure_exports,
    "fault_tolerance": fault_tolerance.measure,
    "serving_load": serving_load.measure_serving_load,
}


def measure_run(out_dir: str | Path, cfg, contract: Contract, ingested, summaries: dict[str, dict],
                scaling_probe: bool = True, extras: tuple[str, ...] | None = None) -> None:
    """Everything the report reads besides run.json, for each stack that trained; ``extras``: the
    names in :data:`EXTRA_MEASUREMENTS` to run as well (None: all of them)."""
    out = Path(out_dir).resolve()
    storage.write_json(out / ENVIRONMENT_JSON, environment())
    trained = {s: v for s, v in summaries.items()
               if v["stages"]["train"].get("samples_per_s") is not None}
    for stack, summary in trained.items():
        if scaling_probe:  # at the stack's own settings (per-stack tuning, comparison/tuning)
            scaling(stack, cfg.for_stack(stack), contract, ingested, summary, out)
        measure_model(stack, summary, contract, out)
    for name, measure in EXTRA_MEASUREMENTS.items():
        if extras is not None and name not in extras:
            continue
        log.info("[measure] %s", name)
        try:
            measure(out, cfg, contract, ingested, trained)
        except Exception as e:  # noqa: BLE001 — the run is done: its report must not be lost
            log.warning("[measure] %s failed, its report section is left out: %s: %s", name,
                        type(e).__name__, e)
