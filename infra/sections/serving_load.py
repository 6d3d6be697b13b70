"""Report section "Serving under load": each stack's pushed model behind KServe's ModelServer
(`twinpipe serve`), loaded by 1, 8 and 32 concurrent loopback clients on the V2 infer endpoint
(``OUT/<stack>/serving_load.json``, written by :func:`infra.load_test.measure_serving_load`)."""

from __future__ import annotations

import html

from infra.sections import stack_files

KEY = "serving_load"
TITLE = "Serving under load"

COLUMNS = ("clients", "requests", "errors", "error_rate", "throughput_rps", "rows_per_s", "p50_ms",
           "p99_ms", "server_validate_ms_p50", "server_score_ms_p50", "server_cpu_cores",
           "server_peak_rss_mb", "stopped_by")


def collect(runs: list[dict], data: dict) -> dict | None:
    found = {(stack if len(runs) == 1 else f"{stack} · {r['label']}"): doc | {"stack": stack}
             for r, stack, doc in stack_files(runs, "serving_load.json")}
    return {"runs": found} if found else None


def rows(doc: dict) -> list[list]:
    out = []
    for label, d in doc["runs"].items():
        if d.get("skipped"):
            out.append([label, f"skipped: {d['skipped']}", *[""] * (len(COLUMNS) - 1)])
            continue
        for lv in d["levels"]:
            out.append([label, *(("" if lv.get(c) is None else lv[c]) for c in COLUMNS)])
    return out


def _plot(doc: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from infra.report import COLORS, _png

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for label, d in doc["runs"].items():
        levels = d.get("levels") or []
        if not levels:
            continue
        x = [lv["clients"] for lv in levels]
        color = COLORS.get(d["stack"])
        a.plot(x, [lv["throughput_rps"] or 0 for lv in levels], "o-", color=color, label=label)
        b.plot(x, [lv["p99_ms"] or 0 for lv in levels], "o-", color=color, label=label)
    clients = sorted({lv["clients"] for d in doc["runs"].values() for lv in d.get("levels") or []})
    for ax, title, unit in ((a, "Throughput", "requests/s"), (b, "p99 latency", "ms")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(clients, [str(c) for c in clients])
        ax.set_ylim(bottom=0)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def render(doc: dict) -> str:
    from infra.report import _img, _table

    first = next((d for d in doc["runs"].values() if d.get("levels")), None)
    intro = ("<p>The pushed model of each stack behind KServe's Python ModelServer "
             "(<code>twinpipe serve</code>: V2 Open Inference Protocol REST; the model runs in the "
             "stack's own runtime process), on loopback.")
    if first:
        intro += (f" One request = {first['rows_per_request']} real eval row(s), cycling through "
                  f"{first['distinct_rows']}; each level stops at {first['bounds']['max_requests']} "
                  f"requests or {first['bounds']['max_seconds']:g} s. Latency is the client's "
                  "(request sent to answer read); server_validate_ms / server_score_ms are the "
                  "runtime's own medians for the contract check of the request's rows (the same "
                  "check as <code>twinpipe predict</code>) and the model call; server CPU (cores "
                  "busy) and peak RSS cover the front and the runtime process.")
    intro += "</p>"
    parts = [intro, _table(("stack", *COLUMNS), rows(doc))]
    if first:
        parts.append(_img(_plot(doc), "throughput and p99 latency vs concurrent clients"))
    errors = [f"{label} at {lv['clients']} clients: {e}" for label, d in doc["runs"].items()
              for lv in d.get("levels") or [] for e in lv.get("first_errors") or []]
    if errors:
        parts.append("<p>First errors: " + "; ".join(html.escape(e) for e in errors[:6]) + "</p>")
    return "\n".join(parts)
