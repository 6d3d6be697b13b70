"""What the report needs beyond each stack's run.json, measured right after a run:

* ``OUT/<stack>/scaling.json`` — training throughput at 1 and N workers at fixed threads per
  worker, weak and strong, with each step's compute/all-reduce split (:mod:`infra.scaling`);
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

import json
import logging
import os
import platform
import time
from importlib import metadata
from pathlib import Path

from components.common import rows, storage
from components.common.contract import Contract

log = logging.getLogger("twinpipe.measure")

PACKAGES = ("tfx", "tensorflow", "apache-beam", "tensorflow-data-validation",
            "tensorflow-transform", "tensorflow-model-analysis", "ml-metadata", "torch", "torchx",
            "kfp", "great-expectations", "onnx", "onnxruntime", "onnxscript", "scikit-learn",
            "pyarrow", "pandas")
LATENCY_BATCHES = (1, 256)


def _gpus() -> list[str]:
    """The name and memory of each GPU on this machine (none without)."""
    from components.common.threads import query_gpus

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


# --- scaling: infra.scaling (the fixed-threads probe) ---------------------------------------------

def scaling(stack: str, cfg, contract: Contract, ingested, summary: dict, out_dir: Path) -> dict:
    """Writes ``<stack>/scaling.json``: :func:`infra.scaling.scaling`."""
    from infra.scaling import scaling as probe

    return probe(stack, cfg, contract, ingested, summary, out_dir)


# --- models -------------------------------------------------------------------------------------

MEASURED_COPY = ".measured-model"  # where a gs:// push is downloaded to be measured


def model_under_test(stack: str, summary: dict) -> tuple[Path | str, str]:
    """The pushed model when the run pushed one (a ``gs://`` URL when pushed to object storage),
    else the run's candidate."""
    push = summary["stages"]["push"]
    if push.get("pushed_path"):
        pushed = push["pushed_path"]
        return (pushed if storage.is_remote(pushed) else Path(pushed)), "pushed"
    tr = summary["stages"]["train"]
    if stack == "tfx":
        return Path(tr["model_uri"]) / "Format-Serving", "candidate (not pushed)"
    return Path(tr["model_dir"]), "candidate (not pushed)"


SERVED = {"tfx": "saved_model", "torch": "onnx"}  # the export each stack's server runs


def _scorer(stack: str, model_dir: Path, contract: Contract):
    """The scorer of the model the stack serves (:data:`SERVED`), in its own runtime."""
    from infra.exports import scorer_for

    return scorer_for(stack, SERVED[stack], model_dir, contract)


def _sizes(stack: str, model_dir: Path) -> dict:
    if stack == "tfx":  # the SavedModel alone: push puts model.tflite beside it
        from components.tfx.export import saved_model_bytes

        return {"SavedModel": saved_model_bytes(model_dir)}
    files = json.loads((model_dir / "signature.json").read_text())["files"]
    names = {"torchscript": "TorchScript", "onnx": "ONNX"}  # a failed export has no file
    return {names[k]: (model_dir / f).stat().st_size for k, f in files.items() if k in names}


def measure_model(stack: str, summary: dict, contract: Contract, out_dir: Path) -> dict:
    """Scores the stack's model on the run's eval rows and times its serving runtime."""
    from components.common import registry
    from components.common.metrics import binary_metrics, calibration, roc_points
    from components.common.serving_bench import latency, predict

    model_ref, which = model_under_test(stack, summary)
    # A push on object storage is measured from a local download (the runtimes read local files).
    model_dir = registry.local_copy(model_ref, out_dir / stack / MEASURED_COPY)
    # The run's eval rows, in span order (what both stacks evaluate on), streamed by record
    # batch: only labels, probabilities and row hashes are kept; the first batch also serves the
    # latency benchmark (it uses the first rows of the table given).
    with rows.split_ref(out_dir / "spans", "eval", summary["spans"]) as ref:
        scorer = _scorer(stack, model_dir, contract)
        score_s = 0.0

        def timed(frame):
            nonlocal score_s
            t0 = time.perf_counter()
            out = predict(scorer, frame)
            score_s += time.perf_counter() - t0
            return out

        scored = rows.score(ref, "eval", contract.label.name, list(contract.split.key),
                            {"model": timed})
    labels, probs, first = scored.labels, scored.probs["model"], scored.first
    metrics = binary_metrics(labels, probs)
    measured = scored.digest
    doc = {
        "stack": stack,
        "runtime": scorer.runtime,
        "model": str(model_ref),
        "model_is": which,
        "eval_rows": len(labels),
        "eval_rows_sha256": measured.sha256,
        "metrics": {k: round(v, 6) for k, v in metrics.items()},
        "pipeline_auc": summary["stages"]["evaluate"].get("auc"),
        "score_all_s": round(score_s, 3),
        "roc": roc_points(labels, probs),
        "calibration": calibration(labels, probs),
        "sizes_bytes": _sizes(stack, model_dir),
        "latency": latency(scorer, first, LATENCY_BATCHES),
        "threads": "runtime defaults",
    }
    storage.write_json(out_dir / stack / "measurements.json", doc)
    log.info("[%s][measure] auc %.4f on %d eval rows; batch-1 p50 %.3f ms", stack,
             metrics["auc"], len(labels), doc["latency"]["1"]["p50_ms"])
    return doc


# The measurements beyond the core ones, by the name `twinpipe run --measure` selects them by:
# name -> "module:function", called as f(out_dir, cfg, contract, ingested, summaries) after the
# core measurements, in this order; each writes the JSON its report section (infra/sections/) reads.
EXTRA_MEASUREMENTS: dict[str, str] = {
    "validation_engines": "infra.validation_engines:measure",
    "exports": "infra.exports:measure_exports",
    "fault_tolerance": "infra.fault_tolerance:measure",
    "serving_load": "infra.load_test:measure_serving_load",
}


def measure_run(out_dir: str | Path, cfg, contract: Contract, ingested, summaries: dict[str, dict],
                scaling_probe: bool = True, extras: tuple[str, ...] | None = None) -> None:
    """Everything the report reads besides run.json, for each stack that trained; ``extras``: the
    names in :data:`EXTRA_MEASUREMENTS` to run as well (None: all of them)."""
    import importlib

    out = Path(out_dir).resolve()
    storage.write_json(out / "environment.json", environment())
    trained = {s: v for s, v in summaries.items()
               if v["stages"]["train"].get("samples_per_s") is not None}
    for stack, summary in trained.items():
        if scaling_probe:  # at the stack's own settings (per-stack tuning, infra/tuning.py)
            scaling(stack, cfg.for_stack(stack), contract, ingested, summary, out)
        measure_model(stack, summary, contract, out)
    for name, target in EXTRA_MEASUREMENTS.items():
        if extras is not None and name not in extras:
            continue
        module, func = target.split(":")
        log.info("[measure] %s", name)
        try:
            getattr(importlib.import_module(module), func)(out, cfg, contract, ingested, trained)
        except Exception as e:  # noqa: BLE001 — the run is done: its report must not be lost
            log.warning("[measure] %s failed, its report section is left out: %s: %s", name,
                        type(e).__name__, e)
