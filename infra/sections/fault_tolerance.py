"""Fault tolerance: each stack's training with one worker SIGKILLed after the first checkpoint.

Reads ``<stack>/fault_tolerance.json`` (:mod:`infra.fault_tolerance`) of every run."""

from __future__ import annotations

from infra.sections import stack_files

KEY = "fault_tolerance"
TITLE = "Fault tolerance"
FILE = "fault_tolerance.json"


def collect(runs: list[dict], data: dict) -> dict | None:
    rows = [{"run": r["label"], **doc} for r, _, doc in stack_files(runs, FILE)]
    return {"rows": rows} if rows else None


def _v(x, digits: int = 2, unit: str = "") -> str:
    if x is None:
        return "–"
    return f"{x:.{digits}f}{unit}" if isinstance(x, float) else f"{x}{unit}"


def render(doc: dict) -> str:
    from infra.report import STACK_NAMES, _table

    runs = {row["run"] for row in doc["rows"]}
    table = []
    for row in doc["rows"]:
        name = STACK_NAMES.get(row["stack"], row["stack"])
        if len(runs) > 1:
            name = f"{name} · {row['run']}"
        if row.get("error"):
            table.append([name, f"measurement failed: {row['error']}"] + ["–"] * 8)
            continue
        redone = (f"{_v(row['redone_epochs'])} epochs ({row['redone_samples']:,} samples)"
                  if row.get("redone_epochs") is not None else "–")
        table.append([
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
    return note + _table(headers, table)
