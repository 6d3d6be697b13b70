"""Report section **Tuning** (``report.json`` key ``tuning``): each stack's sweep on the run's
machine (every measured point: configuration -> steady-state samples/s and AUC on the slice), the
configuration chosen and why, the Beam mode's timings, and what each stack actually ran with
(``run.json`` ``settings``). Reads ``OUT/tuning.json`` (written by ``twinpipe tune`` or
``twinpipe run --tuning``; see :mod:`comparison.tuning.sweep`).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from comparison.sections import SHORT_NAMES, table
from comparison.tuning.choice import admissible, estimated_train_s
from components.common.layout import TUNING_JSON

KEY = "tuning"
TITLE = "Tuning: each stack's best configuration on this machine"


def config_text(run: dict) -> str:
    """One run's training configuration in words, from run.json (older runs: workers only)."""
    s = run.get("settings")
    if not s:
        return f"{run.get('workers', '?')} worker(s)"
    text = (f"{s['workers']} worker{'s' if s['workers'] != 1 else ''} x "
            f"{s['threads_per_worker']} thread{'s' if s['threads_per_worker'] != 1 else ''}, "
            f"batch {s['batch_size']}")
    if s.get("steps_per_execution"):
        text += f", {s['steps_per_execution']} steps/execution"
    if s.get("beam_mode"):
        text += f", Beam {s['beam_mode'].replace('_', '-')}"
    if s.get("examples"):
        text += f", examples {s['examples']}"
    return text


def compared_configs(stacks: dict) -> str:
    """The headline's note on how the configurations were chosen."""
    sources = [s["run"].get("settings", {}).get("source", "") for s in stacks.values()]
    if sources and all(src.startswith("tuning") for src in sources):
        return ("; each ran the configuration its tuning sweep measured best on this machine "
                "(see Tuning), best against best")
    return "; both ran the same flags, not each stack's tuned best (see --tuning)"


def collect(runs: list[dict], data: dict) -> dict | None:
    docs = []
    for r in runs:
        path = Path(r["dir"]) / TUNING_JSON
        if not path.is_file():
            continue
        doc = json.loads(path.read_text())
        ran = {stack: s["run"].get("settings") for stack, s in r["stacks"].items()}
        docs.append({"run": r["label"], "cores": doc["cores"], "rows": doc["rows"],
                     "measured_at": doc.get("measured_at"), "wall_s": doc.get("wall_s"),
                     "rule": doc["rule"], "slice": doc["slice"], "stacks": doc["stacks"],
                     "run_samples": doc.get("run_samples"),
                     "ran_with": ran})
    return {"runs": docs} if docs else None


def _cfg(c: dict) -> str:
    parts = [f"{c['workers']}w x {c['threads']}t", f"batch {c['batch_size']}",
             f"lr {c['learning_rate']:.3g}"]
    if "steps_per_execution" in c:
        parts.append(f"spe {c['steps_per_execution']}")
    return ", ".join(parts)


def render(doc: dict) -> str:

    parts = []
    for d in doc["runs"]:
        parts.append(
            f"<p>{html.escape(d['run'])}: swept on {d['cores']} cores in {d['wall_s']} s "
            f"({html.escape(str(d['measured_at']))}); each training point trains "
            f"{d['slice'].get('train', '?'):,} sampled train rows for {d['slice']['epochs']} "
            f"epochs and is scored on {d['slice'].get('eval', '?'):,} eval rows. Rule: "
            f"{html.escape(d['rule']['text'])}</p>")
        for stack, e in d["stacks"].items():
            rows = []
            ok = admissible(e["points"], d["rule"]["auc_tolerance"])
            for i, p in enumerate(e["points"]):
                mark = ", ".join(m for m, on in (("reference", i == 0),
                                                 ("chosen", i == e["chosen_index"])) if on)
                est = estimated_train_s(p, d.get("run_samples"))
                rows.append([_cfg(p["config"]), f"{p['samples_per_s']:,.0f}", f"{p['auc']:.4f}",
                             "–" if est is None else f"{est:.1f}"
                             + (f" (+{p['fixed_s']:.1f} start-up)" if p.get("fixed_s") else ""),
                             "yes" if i in ok else "no (AUC)", mark])
            parts.append(f"<h3>{SHORT_NAMES.get(stack, stack)}</h3>")
            parts.append(table(["configuration", "train samples/s", "AUC (slice)",
                                 "est. train stage s (run's samples)", "admissible", ""], rows))
            if e.get("beam"):
                b = e["beam"]
                parts.append(table(["Beam mode", f"seconds ({b['stage']}, {b['rows']:,} rows)",
                                     ""],
                                    [[m, f"{s:.1f}", "chosen" if m == b["chosen"] else ""]
                                     for m, s in b["seconds"].items()]))
            if e.get("examples"):
                x = e["examples"]
                parts.append(table(["examples", f"seconds ({x['stage']})", ""],
                                   [[f, f"{s:.1f}", "chosen" if f == x["chosen"] else ""]
                                    for f, s in x["seconds"].items()]))
            ran = d["ran_with"].get(stack)
            parts.append(f"<p>Chosen: {html.escape(_cfg(e['chosen']))}"
                         + (f", Beam {html.escape(e['chosen']['beam_mode'])}"
                            if e["chosen"].get("beam_mode") else "")
                         + (f", examples {html.escape(e['chosen']['tfx_examples'])}"
                            if e["chosen"].get("tfx_examples") else "")
                         + f" — {html.escape(e['why'])}."
                         + (f" The run used: {html.escape(config_text({'settings': ran}))} "
                            f"({html.escape(ran['source'])})." if ran else "") + "</p>")
    return "".join(parts)
