"""The report's Timeline section: a replayed schedule (`twinpipe replay`), tick by tick.

Reads ``OUT/timeline.jsonl`` (written by :mod:`pipelines.replay`; no measurement of its own):
for every tick and stack, the delivery, the gate's verdict and top finding, the largest drift,
the alerts delivered, candidate and baseline AUC on the month's eval rows, blessed or not, the
served version and the wall time; and a plot of how each stack's served model held up: its AUC on
each next month's rows (the baseline AUC of the run that month) beside the candidate's.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from comparison.plots import COLORS, png
from comparison.sections import SHORT_NAMES, img, num, table
from components.common.layout import TIMELINE_JSONL

KEY = "timeline"
TITLE = "Timeline (replayed schedule)"


def collect(runs: list[dict], data: dict) -> dict | None:
    found = []
    for r in runs:
        path = Path(r["dir"]) / TIMELINE_JSONL
        if path.is_file():
            ticks = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            found.append({"run": r["label"], "ticks": ticks,
                          "wall_s": round(sum(t.get("wall_s") or 0 for t in ticks), 1)})
    return {"runs": found} if found else None


def _cells(entry: dict | None) -> list[str]:
    if not entry:
        return ["–"] * 6
    drift = entry.get("max_drift")
    auc = (f"{num(entry.get('auc'), 3)} / {num(entry.get('baseline_auc'), 3)}"
           if entry.get("auc") is not None else "–")
    blessed = {True: "yes", False: "no"}.get(entry.get("blessed"), "–")
    return [entry["verdict"] + (f": {entry['finding']}" if entry.get("finding") and
                                entry["verdict"] == "refused" else ""),
            f"{drift['column']} {drift['value']:.3f}" if drift else "–",
            str(entry.get("alerts", 0)), auc, blessed, str(entry.get("served") or "–")]


def _plot(run: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2))
    ticks = run["ticks"]
    for stack, color in COLORS.items():
        points = [(t["delivery"].split(".")[0], t["stacks"].get(stack, {})) for t in ticks]
        served = [(i, e["baseline_auc"]) for i, (_, e) in enumerate(points) if e.get("baseline_auc")]
        cand = [(i, e["auc"]) for i, (_, e) in enumerate(points) if e.get("auc")]
        if served:
            ax.plot(*zip(*served, strict=True), "o-", color=color,
                    label=f"{SHORT_NAMES[stack]}: served model on the month's rows")
        if cand:
            ax.plot(*zip(*cand, strict=True), "x--", color=color, alpha=0.6,
                    label=f"{SHORT_NAMES[stack]}: candidate")
    ax.set_xticks(range(len(ticks)), [t["delivery"].split(".")[0] for t in ticks], rotation=45,
                  fontsize=7)
    ax.set_ylabel("AUC")
    ax.set_title("How each stack's model held up, delivery by delivery", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig)


def render(doc: dict) -> str:
    parts = []
    for run in doc["runs"]:
        stacks = sorted({s for t in run["ticks"] for s in t["stacks"]})
        headers = ["tick", "delivery", "wall s"]
        for s in stacks:
            name = SHORT_NAMES.get(s, s)
            headers += [f"{name} verdict", f"{name} max drift", f"{name} alerts",
                        f"{name} AUC cand. / served", f"{name} blessed", f"{name} served version"]
        rows = [[str(t["tick"]), t["delivery"], num(t.get("wall_s"), 0)]
                + [c for s in stacks for c in _cells(t["stacks"].get(s))] for t in run["ticks"]]
        parts.append(f"<p>{html.escape(run['run'])}: {len(run['ticks'])} deliveries, one scheduled "
                     f"run each, {num(run['wall_s'], 0)} s in all. A refused delivery keeps the "
                     "served model; drift is measured against the newest accepted month.</p>"
                     + table(headers, rows) + img(_plot(run), "AUC by delivery"))
    return "".join(parts)
