"""Claims checked: what is usually said when choosing between TensorFlow and PyTorch, and what
this run measured for or against each.

Nothing here is prose about the frameworks: each claim is a list of *evidence* functions, each
reading one measured figure from the report data and returning a sentence with the numbers, the
section they come from, and which way the figure leans. A claim's verdict is derived from those
leanings only; a claim no evidence function could read anything for says "not measured here".
"""

from __future__ import annotations

import html

from comparison.sections import SHORT_NAMES
from comparison.validation_engines.section import _kinds, first_rate

KEY = "claims"
TITLE = "Claims checked"

# "Closely matched": within this factor of each other (stated in every speed sentence).
MATCHED_WITHIN = 1.5


def _stack_docs(data: dict, key: str) -> dict[str, dict]:
    """The first run's per-stack ``key`` documents (``scaling``, ``measurements``, ``run``)."""
    if not data.get("runs"):
        return {}
    return {s: v[key] for s, v in data["runs"][0]["stacks"].items() if v.get(key)}


def _lean(values: dict[str, float], higher_is_better: bool,
          within: float = MATCHED_WITHIN) -> tuple[str, float]:
    """(which way one figure measured on both stacks leans, how many times better the better one).

    The lean is "matched" when the two are within ``within`` of each other, else the better stack.
    A figure that is not positive: where higher is better, the other stack leans (it did what this
    one did not, e.g. served no request), else "neither" (nothing to compare)."""
    a, b = values["tfx"], values["torch"]
    if higher_is_better:
        if (a > 0) != (b > 0):
            return ("tfx" if a > 0 else "torch"), float("inf")
        a, b = b, a  # compare as "lower is better"
    if a <= 0 or b <= 0:
        return "neither", 1.0
    x = max(a, b) / min(a, b)
    return ("matched" if x <= within else "tfx" if a < b else "torch"), x


def _ev(text: str, section: str, lean: str, **numbers) -> dict:
    return {"text": text, "section": section, "lean": lean, "numbers": numbers}


# --- evidence: each returns one finding or None (not measured in this report) ------------------

def ev_end_to_end(data):
    runs = _stack_docs(data, "run")
    if len(runs) < 2:
        return None
    t = {s: r["total_wall_s"] for s, r in runs.items()}
    lean, x = _lean(t, higher_is_better=False)
    return _ev(f"End to end on the same rows: TFX {t['tfx']:.1f} s, PyTorch {t['torch']:.1f} s "
               f"({x:.1f}x; matched means within {MATCHED_WITHIN}x).", "stages", lean,
               tfx_s=t["tfx"], torch_s=t["torch"], ratio=round(x, 2))


def ev_train_speed(data):
    runs = _stack_docs(data, "run")
    if len(runs) < 2:
        return None
    sps = {s: r["stages"]["train"].get("samples_per_s") for s, r in runs.items()}
    if None in sps.values():
        return None
    lean, x = _lean(sps, higher_is_better=True)
    workers = {s: r["stages"]["train"].get("workers") for s, r in runs.items()}
    return _ev(f"Steady-state training: TFX {sps['tfx']:,.0f} samples/s ({workers['tfx']} "
               f"worker(s)), PyTorch {sps['torch']:,.0f} samples/s ({workers['torch']} worker(s)); "
               f"{x:.1f}x.", "stages", lean, tfx=sps["tfx"], torch=sps["torch"], ratio=round(x, 2))


def ev_serving_latency(data):
    ms = _stack_docs(data, "measurements")
    if len(ms) < 2:
        return None
    p50 = {s: m["latency"]["1"]["p50_ms"] for s, m in ms.items()}
    lean, x = _lean(p50, higher_is_better=False)
    return _ev(f"In-process serving call, batch 1 p50: TFX {p50['tfx']:.3f} ms "
               f"({ms['tfx']['runtime']}), PyTorch {p50['torch']:.3f} ms ({ms['torch']['runtime']}); "
               f"{x:.1f}x.", "serving", lean, tfx_ms=p50["tfx"], torch_ms=p50["torch"],
               ratio=round(x, 2))


def ev_marginal_cost(data):
    ds = data.get("data_scaling")
    if not ds:
        return None
    us = {}
    for stack, c in ds["cost_curve"]["stacks"].items():
        fit = (c["total"].get("fit") or {}).get("marginal_us_per_row")
        if fit is not None and stack in ("tfx", "torch"):  # not bench's tfx-tfrecord variant
            us[stack] = fit
    if len(us) < 2:
        return None
    lean, x = _lean(us, higher_is_better=False)
    return _ev(f"Cost of each extra row as the data grows (make bench, {ds.get('months')}): TFX "
               f"{us['tfx']:,.1f} µs/row, PyTorch {us['torch']:,.1f} µs/row ({x:.1f}x).",
               "data-scaling", lean,
               tfx_us_per_row=us["tfx"], torch_us_per_row=us["torch"], ratio=round(x, 2))


def ev_scaling_efficiency(data):
    sc = _stack_docs(data, "scaling")
    if len(sc) < 2:
        return None
    eff = {s: d["efficiency"] for s, d in sc.items()}
    lean, _ = _lean(eff, higher_is_better=True, within=1.1)
    n = {s: d["points"][-1]["workers"] for s, d in sc.items()}
    return _ev(f"Multi-worker training efficiency: TFX {eff['tfx']:.0%} at {n['tfx']} workers, "
               f"PyTorch {eff['torch']:.0%} at {n['torch']} workers.", "scaling",
               lean, tfx=eff["tfx"], torch=eff["torch"])


def ev_peak_memory(data):
    runs = _stack_docs(data, "run")
    if len(runs) < 2:
        return None
    mem = {s: max((st.get("peak_rss_mb") or 0) for st in r["stages"].values())
           for s, r in runs.items()}
    lean, x = _lean(mem, higher_is_better=False, within=1.1)
    return _ev(f"Peak memory of a stage's process tree: TFX {mem['tfx']:,.0f} MiB, PyTorch "
               f"{mem['torch']:,.0f} MiB ({x:.1f}x).", "stages",
               lean, tfx_mib=mem["tfx"], torch_mib=mem["torch"])


def ev_lines_of_code(data):
    loc = data.get("lines_of_code")
    if not loc:
        return None
    own = {s: sum(v[s] for v in loc.values()) for s in ("tfx", "torch")}
    lean, x = _lean(own, higher_is_better=False, within=1.1)
    return _ev(f"Stack-specific code for the same five stages: TFX {own['tfx']} lines, PyTorch "
               f"{own['torch']} lines ({x:.2f}x; lines are a proxy for development effort, not a "
               "measure of learning curve).", "code", lean,
               tfx_lines=own["tfx"], torch_lines=own["torch"])


def ev_artifact_size(data):
    ms = _stack_docs(data, "measurements")
    if len(ms) < 2:
        return None
    size = {"tfx": ms["tfx"]["sizes_bytes"].get("SavedModel"),
            "torch": ms["torch"]["sizes_bytes"].get("ONNX")}
    if None in size.values():
        return None
    lean, x = _lean(size, higher_is_better=False, within=1.0)
    return _ev(f"Serving artifact: SavedModel {size['tfx'] / 1024:,.0f} KiB vs ONNX "
               f"{size['torch'] / 1024:,.0f} KiB ({x:.0f}x).", "artifacts", lean,
               tfx_bytes=size["tfx"], torch_bytes=size["torch"])


def _section_stacks(data: dict, key: str) -> dict[str, dict]:
    """A per-stack section's documents of the first run (``{"stacks": [{"stack": ..}, ..]}``)."""
    sec = data.get(key) or {}
    first = data["runs"][0].get("label") if data.get("runs") else None
    return {d["stack"]: d for d in sec.get("stacks", []) if d.get("run", first) == first}


def ev_exports(data):
    ex = _section_stacks(data, "exports")
    if len(ex) < 2:
        return None
    ok, total = {}, {}
    for stack, d in ex.items():
        rows = [r for r in d["exports"] if not r.get("reference")]
        total[stack] = len(rows)
        ok[stack] = sum(1 for r in rows if r.get("within_tolerance"))
    frac = {s: ok[s] / total[s] if total[s] else 0.0 for s in ex}
    lean = "matched" if frac["tfx"] == frac["torch"] else max(frac, key=frac.get)
    names = {s: ", ".join(r["export"] for r in ex[s]["exports"]
                          if r.get("within_tolerance") and not r.get("reference")) for s in ex}
    return _ev(f"Exports produced by push that load in their own runtime and match the reference "
               f"model on the eval rows: TFX {ok['tfx']}/{total['tfx']} ({names['tfx']}), PyTorch "
               f"{ok['torch']}/{total['torch']} ({names['torch']}).", "exports", lean,
               tfx_ok=ok["tfx"], tfx_total=total["tfx"], torch_ok=ok["torch"],
               torch_total=total["torch"])


def ev_mobile(data):
    ex = _section_stacks(data, "exports")
    tfx = next((r for r in (ex.get("tfx") or {}).get("exports", []) if r["export"] == "tflite"),
               None)
    if tfx is None:
        return None
    good = bool(tfx.get("within_tolerance"))
    select = " with TF Select ops (" + ", ".join(tfx.get("flex_ops") or ["?"]) + \
        ", which need the larger Flex runtime on device)" if tfx.get("select_tf_ops") else ""
    size = tfx.get("size_bytes")
    state = "converted and matched the reference" if good else "did not convert or match"
    kib = f", {size / 1024:,.0f} KiB" if size else ""
    return _ev(f"Mobile/edge: the TFLite model {state}{select}{kib}; the PyTorch stack's "
               "on-device counterpart (an ExecuTorch program) is not produced here, its .pt2 is "
               "the input to it.", "exports", "tfx" if good else "torch",
               tflite_ok=good, tflite_bytes=size)


def ev_fault_tolerance(data):
    sec = data.get("fault_tolerance") or {}
    first = data["runs"][0].get("label") if data.get("runs") else None
    rows = {r["stack"]: r for r in sec.get("rows", [])
            if r.get("run", first) == first and not r.get("error")}
    if len(rows) < 2:
        return None
    ok = {s: bool(r.get("finished")) and (r.get("resumed_at_epoch") or 0) > 0
          for s, r in rows.items()}
    rec = {s: r.get("recover_s") or 0.0 for s, r in rows.items()}
    if ok["tfx"] != ok["torch"]:
        lean = "tfx" if ok["tfx"] else "torch"
    else:
        lean, _ = _lean(rec, higher_is_better=False)
        if not ok["tfx"]:  # neither resumed: nothing to compare
            lean = "matched"

    def said(s):
        r = rows[s]
        if not ok[s]:
            return f"{SHORT_NAMES[s]} did not resume"
        return (f"{SHORT_NAMES[s]} resumed at epoch {r['resumed_at_epoch']} and was training again "
                f"{r['recover_s']:.1f} s after the kill (AUC {r['auc']:.4f})")

    return _ev(f"A training worker SIGKILLed after the first checkpoint: {said('tfx')}; "
               f"{said('torch')}.", "fault-tolerance", lean,
               tfx_recover_s=rec["tfx"], torch_recover_s=rec["torch"])


def ev_serving_load(data):
    sec = (data.get("serving_load") or {}).get("runs") or {}
    docs = {d["stack"]: d for label, d in sec.items() if label == d["stack"] and d.get("levels")}
    if len(docs) < 2:
        return None
    top = {s: max(d["levels"], key=lambda lv: lv["clients"]) for s, d in docs.items()}
    rps = {s: lv["throughput_rps"] or 0.0 for s, lv in top.items()}
    errors = {s: lv.get("error_rate") or 0.0 for s, lv in top.items()}
    lean, x = _lean(rps, higher_is_better=True)
    n = top["tfx"]["clients"]

    def said(s):
        lv = top[s]
        return (f"{SHORT_NAMES[s]} {rps[s]:,.0f} requests/s, p99 {lv['p99_ms']:,.0f} ms, "
                f"{errors[s]:.1%} errors, server peak {lv.get('server_peak_rss_mb') or 0:,.0f} MB")

    return _ev(f"Behind the same KServe ModelServer at {n} concurrent clients: {said('tfx')}; "
               f"{said('torch')} ({x:.1f}x).", "serving-load", lean,
               tfx_rps=rps["tfx"], torch_rps=rps["torch"], ratio=round(x, 2))


def ev_validation_engines(data):

    docs = (data.get("validation_engines") or {}).get("runs") or []
    doc = docs[0] if docs else None
    if not doc or any("error" in doc["figures"].get(e, {}) for e in ("tfdv", "gx")):
        return None
    kinds = _kinds(doc)
    caught = {e: sum(1 for rows in kinds.values() if first_rate(rows, e) is not None)
              for e in ("tfdv", "gx")}
    check = {e: doc["figures"][e].get("check_s") or 0.0 for e in ("tfdv", "gx")}
    peak = {e: doc["figures"][e].get("peak_rss_mb") or 0.0 for e in ("tfdv", "gx")}
    lean = ("matched" if caught["tfdv"] == caught["gx"]
            else "tfx" if caught["tfdv"] > caught["gx"] else "torch")
    return _ev(f"Data validation on raw corrupted rows: TFDV caught {caught['tfdv']} of "
               f"{len(kinds)} corruption kinds, Great Expectations {caught['gx']} (checks "
               f"{check['tfdv']:.1f} s vs {check['gx']:.1f} s, peak {peak['tfdv']:,.0f} vs "
               f"{peak['gx']:,.0f} MiB).", "validation-engines", lean,
               tfdv_kinds=caught["tfdv"], gx_kinds=caught["gx"], kinds=len(kinds))


def ev_tuning(data):
    docs = (data.get("tuning") or {}).get("runs") or []
    stacks = docs[0]["stacks"] if docs else None
    if not stacks or not {"tfx", "torch"} <= set(stacks):
        return None
    gain = {}
    for s in ("tfx", "torch"):
        pts = stacks[s]["points"]
        gain[s] = pts[stacks[s]["chosen_index"]]["samples_per_s"] / pts[0]["samples_per_s"]
    return _ev(f"Tuned on this machine, each stack's best training point ran at "
               f"{gain['tfx']:.2f}x (TFX) and {gain['torch']:.2f}x (PyTorch) its reference "
               "configuration's samples/s; the headline compares those configurations.", "tuning",
               "neither", tfx_gain=round(gain["tfx"], 3), torch_gain=round(gain["torch"], 3))


# --- the claims ----------------------------------------------------------------------------------

# (key, the claim as usually made, which stack it favours or "matched", evidence functions,
#  what of the claim this report cannot measure)
CLAIMS = [
    ("deployment_maturity", "TensorFlow is the more production-ready, deployment-mature ecosystem.",
     "tfx", [ev_exports, ev_serving_load, ev_fault_tolerance, ev_validation_engines,
             ev_serving_latency, ev_artifact_size],
     "ecosystem maturity itself (support, ops tooling) is not measured here"),
    ("speed", "The two are closely matched in speed.", "matched",
     [ev_end_to_end, ev_train_speed, ev_tuning, ev_serving_load, ev_serving_latency,
      ev_marginal_cost],
     ""),
    ("scaling_tools", "TensorFlow has better tools for scaling large projects.", "tfx",
     [ev_scaling_efficiency, ev_fault_tolerance, ev_marginal_cost, ev_peak_memory], ""),
    ("development", "PyTorch gives faster development and an easier learning curve.", "torch",
     [ev_lines_of_code], "the learning curve of people is not measured here"),
    ("serving_mobile_web", "TensorFlow's serving, mobile and web deployment is more mature.", "tfx",
     [ev_mobile, ev_exports, ev_serving_load, ev_serving_latency],
     "web deployment (TensorFlow.js) is not measured here"),
]


def verdict(favours: str, leans: list[str]) -> str:
    """supported / contradicted / mixed from the evidence's leanings; "not measured here" with none.

    A claim favouring a stack is supported by evidence leaning to it, contradicted by evidence
    leaning to the other, and "not supported" when its evidence only shows the stacks matched. A
    "matched" claim is supported by matched evidence and contradicted by evidence that leans either
    way."""
    if not leans:
        return "not measured here"
    pro = sum(1 for x in leans if x == favours)
    con = sum(1 for x in leans if x != favours and x != "neither")
    if pro and not con:
        return "supported"
    if con and not pro:
        only_matched = favours != "matched" and all(x in ("matched", "neither") for x in leans)
        return "not supported (matched)" if only_matched else "contradicted"
    return "mixed" if pro and con else "inconclusive"


def collect(runs: list[dict], data: dict) -> dict | None:
    out = []
    for key, claim, favours, evidence, unmeasured in CLAIMS:
        found = [e for f in evidence if (e := f(data)) is not None]
        out.append({"key": key, "claim": claim, "favours": favours,
                    "verdict": verdict(favours, [e["lean"] for e in found]),
                    "evidence": found, "not_measured": unmeasured})
    return {"claims": out, "matched_within": MATCHED_WITHIN}


def render(doc: dict) -> str:
    rows = []
    for c in doc["claims"]:
        ev = "".join(
            f"<li>{html.escape(e['text'])} <a href='#{e['section']}'>→ {e['section']}</a> "
            f"<i>(leans: {SHORT_NAMES.get(e['lean'], e['lean'])})</i></li>" for e in c["evidence"])
        ev = f"<ul>{ev}</ul>" if ev else "<p>not measured here</p>"
        if c["not_measured"]:
            ev += f"<p><i>Not measured: {html.escape(c['not_measured'])}.</i></p>"
        rows.append(f"<tr><td>{html.escape(c['claim'])}</td><td><b>{c['verdict']}</b></td>"
                    f"<td style='text-align:left'>{ev}</td></tr>")
    return ("<p>Each verdict is derived from the measurements listed beside it (generated, not "
            f"written): speed figures count as matched within {doc['matched_within']}x. A claim "
            "no measurement here speaks to says so.</p><table><tr><th>claim</th><th>verdict</th>"
            "<th>what this run measured</th></tr>" + "".join(rows) + "</table>")
