"""The ``fault_tolerance`` measurement: each stack's training with one worker SIGKILLed mid-run.

For each stack that trained, on the run's own prepared data (TFX: the run's Transform output;
torch: the run's ingested train rows, as ``probe_training`` reuses them), the stack's training
runs with 2 workers (or the run's count when more) and the run's epochs (at least 2: one to
checkpoint before the kill, one after), and worker/rank 1 is SIGKILLed from outside half an
epoch after the first checkpoint (:class:`components.common.fault.Killer`). The stack recovers
the way it does in production:

* TFX: the Trainer's local launcher stops the other worker, relaunches the job (bounded by
  ``max_restarts``) and Keras ``BackupAndRestore`` restores the last epoch's backup;
* torch: torchrun (``--max_restarts`` in the TorchX job) restarts the ranks and the app resumes
  from its per-epoch checkpoint.

``OUT/<stack>/fault_tolerance.json`` holds the time to detect (kill -> the other workers
stopped), the time to recover (kill -> the first training step after the relaunch), the work
redone, the restarts used, and the recovered model's AUC on the run's eval rows against the
run's own (undisturbed) model's AUC from ``<stack>/measurements.json``. A stack whose
measurement fails gets ``{"error": ...}`` (one line in the log too) and the other still runs.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

from comparison.models import serving_scorer
from comparison.sections import STACK_NAMES, stack_files, table
from components.common import fault, rows, storage
from components.common.layout import FAULT_TOLERANCE_JSON, MEASUREMENTS_JSON
from components.common.metrics import binary_metrics
from components.common.serving_bench import predict
from components.common.threads import gpu_count

log = logging.getLogger("twinpipe.measure")

FILE = FAULT_TOLERANCE_JSON
KILLED_RANK = 1
RECOVERY = {
    "tfx": "local launcher relaunches the job; Keras BackupAndRestore resumes the last epoch",
    "torch": "torchrun --max_restarts restarts the ranks; the app resumes its epoch checkpoint",
}


def measure(out_dir: Path, cfg, contract, ingested, summaries: dict[str, dict]) -> dict:
    """Writes ``<stack>/fault_tolerance.json`` for each stack in ``summaries``."""
    docs = {}
    for stack, summary in summaries.items():
        t0 = time.time()
        try:
            doc = measure_stack(stack, Path(out_dir), cfg.for_stack(stack), contract, ingested,
                                summary)
        except Exception as e:  # noqa: BLE001 — one stack's failure is recorded, not fatal
            doc = {"stack": stack, "error": f"{type(e).__name__}: {e}"}
            log.warning("[%s][fault] the fault tolerance measurement failed: %s", stack, doc["error"])
        doc["measure_wall_s"] = round(time.time() - t0, 1)
        path = Path(out_dir) / stack / FILE
        storage.write_json(path, doc)
        docs[stack] = doc
    return docs


def measure_stack(stack: str, out: Path, cfg, contract, ingested, summary: dict) -> dict:

    gpus = gpu_count()
    if gpus == 1:  # two ranks cannot share one GPU: nothing to kill without a second worker
        raise RuntimeError("one GPU: the measurement needs 2 workers, one per GPU")
    workers = max(2, int(cfg.workers))
    epochs = max(2, int(cfg.epochs))
    train_rows = sum(s.train_rows for s in ingested.spans)
    with tempfile.TemporaryDirectory(prefix=f"{stack}-fault-") as tmp:
        events = Path(tmp) / "events.jsonl"
        previous = os.environ.get(fault.EVENTS_ENV)
        os.environ[fault.EVENTS_ENV] = str(events)  # the workers inherit it
        try:
            killer = fault.Killer(events, os.getpid(), rank=KILLED_RANK)
            killer.start()
            log.info("[%s][fault] training with %d workers, %d epochs; worker %d is SIGKILLed "
                     "after the first checkpoint", stack, workers, epochs, KILLED_RANK)
            try:
                model_dir, max_restarts = _train(stack, tmp, cfg, contract, summary, workers,
                                                 epochs, train_rows)
            except BaseException:
                killer.cancel()
                raise
            kill = killer.result()
        finally:
            if previous is None:
                os.environ.pop(fault.EVENTS_ENV, None)
            else:
                os.environ[fault.EVENTS_ENV] = previous
        result = fault.summarize(fault.read_events(events), kill, epochs, train_rows)
        auc = _eval_auc(stack, model_dir, contract, out, summary)
    reference = json.loads((out / stack / MEASUREMENTS_JSON).read_text())["metrics"]["auc"] \
        if (out / stack / MEASUREMENTS_JSON).exists() else summary["stages"]["evaluate"].get("auc")
    doc = {
        "stack": stack,
        "recovery": RECOVERY[stack],
        "workers": workers,
        "epochs": epochs,
        "run_epochs": cfg.epochs,
        "killed_worker": KILLED_RANK,
        "signal": "SIGKILL",
        "max_restarts": max_restarts,
        **result,
        "auc": round(auc, 6),
        "undisturbed_auc": reference,
        "undisturbed_is": "the run's own model (measurements.json)",
        "auc_delta": round(auc - reference, 6) if reference is not None else None,
    }
    log.info("[%s][fault] detected in %s s, training again %s s after the kill, resumed at epoch "
             "%s, %s epoch(s) redone; AUC %.4f (undisturbed %s)", stack, doc["detect_s"],
             doc["recover_s"], doc["resumed_at_epoch"], doc["redone_epochs"], auc, reference)
    return doc


def _train(stack: str, tmp: str, cfg, contract, summary: dict, workers: int, epochs: int,
           train_rows: int) -> tuple[str, int]:
    """The stack's own training launcher on the run's prepared data; (model folder to score,
    the launcher's max restarts)."""
    tr = summary["stages"]["train"]
    if stack == "tfx":
        from components.tfx.launch import WORKER_MAX_RESTARTS, launch_local_workers
        from pipelines.tfx.local_runner import retrain_spec, train_config

        spec = retrain_spec(summary, tmp, {**train_config(cfg, contract, train_rows),
                                           "workers": workers, "epochs": epochs})
        launch_local_workers(spec, workers)
        return spec["serving_model_dir"], WORKER_MAX_RESTARTS
    from components.torch.job import MAX_RESTARTS
    from components.torch.launch import train_stage

    train_stage(tr["train_path"], f"{tmp}/model", cfg.contract_path or "", workers, epochs,
                cfg.batch_size, cfg.learning_rate,
                hidden_units=",".join(str(u) for u in cfg.hidden_units), record_dir=tmp)
    return f"{tmp}/model/serving", MAX_RESTARTS


def _eval_auc(stack: str, model_dir: str, contract, out: Path, summary: dict) -> float:
    """The model's AUC on the run's eval rows, scored by the stack's runtime as
    ``comparison.measure.measure_model`` scores the run's own model."""

    scorer = serving_scorer(stack, Path(model_dir), contract)
    with rows.split_ref(out / "spans", "eval", summary["spans"]) as ref:
        scored = rows.score(ref, "eval", contract.label.name, list(contract.split.key),
                            {"model": lambda frame: predict(scorer, frame)})
    return binary_metrics(scored.labels, scored.probs["model"])["auc"]


KEY = "fault_tolerance"


TITLE = "Fault tolerance"


FILE = FAULT_TOLERANCE_JSON


def collect(runs: list[dict], data: dict) -> dict | None:
    rows = [{"run": r["label"], **doc} for r, _, doc in stack_files(runs, FILE)]
    return {"rows": rows} if rows else None


def _v(x, digits: int = 2, unit: str = "") -> str:
    if x is None:
        return "–"
    return f"{x:.{digits}f}{unit}" if isinstance(x, float) else f"{x}{unit}"


def render(doc: dict) -> str:

    runs = {row["run"] for row in doc["rows"]}
    cells = []
    for row in doc["rows"]:
        name = STACK_NAMES.get(row["stack"], row["stack"])
        if len(runs) > 1:
            name = f"{name} · {row['run']}"
        if row.get("error"):
            cells.append([name, f"measurement failed: {row['error']}"] + ["–"] * 8)
            continue
        redone = (f"{_v(row['redone_epochs'])} epochs ({row['redone_samples']:,} samples)"
                  if row.get("redone_epochs") is not None else "–")
        cells.append([
            name, row["recovery"], f"{row['workers']} × {row['epochs']}",
            _v(row["detect_s"], 2, " s"), _v(row["recover_s"], 1, " s"),
            f"{row['resumed_at_epoch']} (checkpointed {row['epochs_checkpointed_before_kill']})",
            redone, f"{row['restarts']} of {row['max_restarts']}",
            _v(row["auc"], 4), f"{_v(row['undisturbed_auc'], 4)} (Δ {row['auc_delta']:+.4f})"
            if row.get("auc_delta") is not None else _v(row.get("undisturbed_auc"), 4),
        ])
    headers = ["stack", "recovery", "workers × epochs", "time to detect", "time to recover",
               "resumed at epoch", "work redone", "restarts used", "AUC after the kill",
               "undisturbed AUC"]
    note = ("<p>Each stack trains again on the run's prepared data with worker/rank 1 killed "
            "by SIGKILL from outside its process, half an epoch after the first checkpoint "
            "(Keras <code>BackupAndRestore</code> backup for TFX, the app's epoch checkpoint "
            "for torch). <b>Time to detect</b>: kill → the launcher (TFX local launcher, "
            "torchrun) has stopped the surviving worker. <b>Time to recover</b>: kill → the "
            "first training step of the relaunched workers (process start-up, framework import, "
            "collective set-up and restore included). <b>Work redone</b>: epochs trained after "
            "the checkpoint and lost with the kill, from the event timestamps. The undisturbed "
            "AUC is the run's own model; epochs are the run's (at least 2).</p>")
    return note + table(headers, cells)
