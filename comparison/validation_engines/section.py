"""Report section: the validation engines compared on raw rows (``OUT/validation_engines.json``,
written by :mod:`comparison.validation_engines.measure`): the detection matrix (engine x corruption x rate),
each engine's time and peak memory, sentences generated from the matrix on what each engine
contributes, and what the pipeline does with the engines."""

from __future__ import annotations

import html
import json
from pathlib import Path

from comparison.plots import png
from comparison.sections import img, num, table
from comparison.validation_engines.measure import ENGINE_NAMES, RESULT

KEY = "validation_engines"
TITLE = "Validation engines on raw rows"


def _pct(rate: float) -> str:
    return f"{rate:.1%}".replace(".0%", "%") if rate < 0.01 else f"{rate:.0%}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _kinds(doc: dict) -> dict[str, list[dict]]:
    """The matrix's rows grouped by corruption kind, in corpus order, rates ascending."""
    out: dict[str, list[dict]] = {}
    for row in doc["matrix"]:
        out.setdefault(row["kind"], []).append(row)
    return {k: sorted(v, key=lambda r: r["rate"]) for k, v in out.items()}


def first_rate(rows: list[dict], engine: str, verdicts=("fail", "warn")) -> float | None:
    """The lowest rate at which ``engine``'s verdict on the kind is one of ``verdicts``."""
    return next((r["rate"] for r in rows if r[engine]["verdict"] in verdicts), None)


def sentences(doc: dict) -> list[str]:
    """What each engine contributes, from the matrix alone (no fixed prose about the results)."""
    engines = [e for e in doc["engines"] if "error" not in doc["figures"].get(e, {})]
    kinds = _kinds(doc)
    out = [f"{doc['rows']:,} real rows of span {doc['span']} of the run's input "
           f"({len(kinds)} corruption kinds at {', '.join(_pct(r) for r in doc['rates'])} of the "
           f"rows; shifted distributions against span {doc['reference_span']}) went to each "
           f"engine before any screening."]
    for e in doc["engines"]:
        if e not in engines:
            out.append(f"{_cap(ENGINE_NAMES.get(e, e))} could not run: {doc['figures'][e]['error']}.")
    caught: dict[str, list[str]] = {}
    for kind, rows in kinds.items():
        title = rows[0]["title"] + (f" ({rows[0]['column']})" if rows[0]["column"] else "")
        parts = []
        for e in engines:
            fail, any_ = first_rate(rows, e, ("fail",)), first_rate(rows, e)
            if any_ is None:
                continue
            caught.setdefault(kind, []).append(e)
            rated = len(rows) > 1
            if fail == any_:
                parts.append(f"{ENGINE_NAMES.get(e, e)} stops the run"
                             + (f" from {_pct(fail)}" if rated else ""))
            else:
                parts.append(f"{ENGINE_NAMES.get(e, e)} warns from {_pct(any_)}"
                             + (f" and stops the run from {_pct(fail)}" if fail is not None else ""))
        out.append(f"{_cap(title)}: " + ("; ".join(parts) if parts else "no engine reports it") + ".")
    by_one = {k: v[0] for k, v in caught.items() if len(v) == 1}
    for e in engines:
        only = [kinds[k][0]["title"] for k, who in by_one.items() if who == e]
        if only:
            out.append(f"Only {ENGINE_NAMES.get(e, e)} catches: {', '.join(only)}.")
    if "rules" in engines:
        beyond = [kinds[k][0]["title"] for k, who in caught.items() if "rules" not in who]
        out.append("Caught by TFDV or GX and missed by the shared gate: "
                   + (", ".join(beyond) if beyond else "nothing in this corpus") + ".")
    missed = [kinds[k][0]["title"] for k in kinds if k not in caught]
    if missed:
        out.append(f"No engine catches: {', '.join(missed)} (below the contract's thresholds, or no rule "
                   "for it).")
    # Where an engine stops the run at a rate the rules only warn at (rows quarantined, run goes on).
    for e in [e for e in engines if e != "rules" and "rules" in engines]:
        stricter = sorted({r["rate"] for r in doc["matrix"] if r[e]["verdict"] == "fail"
                           and r["rules"]["verdict"] == "warn"})
        if stricter:
            out.append(f"{_cap(ENGINE_NAMES.get(e, e))} on raw rows stops the run at "
                       f"{', '.join(_pct(x) for x in stricter)} of bad rows where the shared gate "
                       f"quarantines them and goes on (max_bad_row_rate "
                       f"{_pct(doc['pipeline']['max_bad_row_rate'])}): its check has no tolerated share.")
        def named(r, engine):  # the findings on columns (a span's volume is a consequence)
            return sorted(x for x in r[engine]["findings"] if not x.startswith("volume:"))

        renamed = sorted({(r["title"], ", ".join(named(r, e)), ", ".join(named(r, "rules")))
                          for r in doc["matrix"] if r[e]["verdict"] != "-"
                          and r["rules"]["verdict"] != "-" and named(r, e) != named(r, "rules")})
        for title, f, g in renamed[:2]:
            out.append(f"{_cap(title)}: {ENGINE_NAMES.get(e, e)} reports {f} where the shared gate "
                       f"reports {g}.")
    figs = doc["figures"]
    if engines:
        fastest = min(engines, key=lambda e: figs[e]["per_case_s"])
        slowest = max(engines, key=lambda e: figs[e]["per_case_s"])
        out.append(f"Per corpus file ({doc['rows']:,} rows) {ENGINE_NAMES[fastest]} took "
                   f"{figs[fastest]['per_case_s']:.2f} s and {ENGINE_NAMES[slowest]} "
                   f"{figs[slowest]['per_case_s']:.2f} s; peak memory "
                   + ", ".join(f"{ENGINE_NAMES[e]} {figs[e]['peak_rss_mb']:.0f} MiB" for e in engines)
                   + (" (each in its own process)." if doc.get("isolated") else "."))
    out.append(doc["pipeline"]["text"])
    return out


def collect(runs: list[dict], data: dict) -> dict | None:
    docs = []
    for r in runs:
        path = Path(r["dir"]) / RESULT
        if path.is_file():
            doc = json.loads(path.read_text())
            docs.append({"label": r["label"], **doc, "sentences": sentences(doc)})
    return {"runs": docs} if docs else None


_MARK = {"fail": "stop", "warn": "warn", "-": "", "n/a": "n/a"}


def _heatmap(doc: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import ListedColormap

    kinds = _kinds(doc)
    rates = doc["rates"]
    engines = doc["engines"]
    cols = [(e, r) for e in engines for r in rates]
    level = {"-": 0, "n/a": 0, "warn": 1, "fail": 2}
    grid = np.zeros((len(kinds), len(cols)))
    labels = [["" for _ in cols] for _ in kinds]
    for i, rows in enumerate(kinds.values()):
        by_rate = {r["rate"]: r for r in rows}
        for j, (e, rate) in enumerate(cols):
            row = by_rate.get(rate) or (rows[0] if len(rows) == 1 else None)
            if row is None:
                continue
            grid[i, j] = level[row[e]["verdict"]]
            labels[i][j] = _MARK[row[e]["verdict"]]
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(cols), 0.8 + 0.32 * len(kinds)))
    ax.imshow(grid, cmap=ListedColormap(["#f4f4f4", "#f6c26b", "#d93025"]), vmin=0, vmax=2,
              aspect="auto")
    for i in range(len(kinds)):
        for j in range(len(cols)):
            ax.text(j, i, labels[i][j], ha="center", va="center", fontsize=7)
    ax.set_yticks(range(len(kinds)), [rows[0]["title"] for rows in kinds.values()], fontsize=8)
    ax.set_xticks(range(len(cols)), [_pct(r) for _, r in cols], fontsize=7)
    for k, e in enumerate(engines):
        ax.text(k * len(rates) + (len(rates) - 1) / 2, -0.9, _cap(ENGINE_NAMES.get(e, e)),
                ha="center", fontsize=9)
        if k:
            ax.axvline(k * len(rates) - 0.5, color="black", lw=1)
    ax.set_title("Detection on raw rows (share of rows damaged; stop = fails the run, "
                 "warn = reported, run goes on)", fontsize=9, pad=26)
    return png(fig)


def render(section: dict) -> str:

    parts = []
    for doc in section["runs"]:
        if len(section["runs"]) > 1:
            parts.append(f"<h3>{html.escape(doc['label'])}</h3>")
        parts.append("<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in doc["sentences"])
                     + "</ul>")
        parts.append(img(_heatmap(doc), "validation engines detection matrix"))
        engines = doc["engines"]
        rows = []
        for r in doc["matrix"]:
            rows.append([r["title"], r["column"], _pct(r["rate"]) if r["kind"] != "dropped_column"
                         else "whole table"]
                        + [(_MARK[r[e]["verdict"]] + ": " + ", ".join(r[e]["findings"])).strip(": ")
                           or "—" for e in engines])
        parts.append(table(["corruption", "column", "rows damaged"]
                            + [_cap(ENGINE_NAMES.get(e, e)) for e in engines], rows))
        figs = doc["figures"]
        parts.append(table(
            ["engine", "import s", "set-up s", "check s (all files)", "s per file", "rows/s",
             "RSS after import MiB", "peak RSS MiB", "process wall s"],
            [[_cap(ENGINE_NAMES.get(e, e))] + ([figs[e]["error"]] + [""] * 7 if "error" in figs[e] else
             [num(figs[e]["import_s"], 2), num(figs[e]["setup_s"], 2), num(figs[e]["check_s"], 2),
              num(figs[e]["per_case_s"], 3), num(figs[e]["rows_per_s"], 0),
              num(figs[e]["rss_after_import_mb"], 0), num(figs[e]["peak_rss_mb"], 0),
              num(figs[e]["wall_s"], 1)]) for e in engines]))
        parts.append(f"<p>TFDV: <code>tfdv.generate_statistics_from_dataframe</code> (in memory, no "
                     f"Beam) + <code>validate_statistics</code> against the contract's schema; GX: "
                     f"the contract's suite as one checkpoint, run per file; rules: the pipeline's "
                     f"ingest (screen, quarantine) + the gate's checks on the CSV. TFDV and GX get "
                     f"the file as <code>pandas.read_csv</code> types it (read time not counted; "
                     f"the rules' time includes their own read and the spans they write). "
                     f"{len(doc['matrix']) + 1} files (with the clean one) "
                     f"of {doc['rows']:,} rows; measured {html.escape(str(doc.get('measured_at')))} on "
                     f"{doc.get('cpu_count')} cores in {num(doc.get('wall_s'), 1)} s.</p>")
    return "".join(parts)
