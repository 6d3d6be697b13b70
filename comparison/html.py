"""The report's HTML page: every section's body laid out in one self-contained page."""

from __future__ import annotations

import html

from comparison.plots import curves, grouped_bars, loglog, series
from comparison.scaling import render as scaling_html
from comparison.sections import STACK_NAMES, anchor, img, num, table, yes
from components.common.config import STAGES


def data_scaling_rows(ds: dict) -> list[list]:
    """The fitted table's rows: stack, stage, fixed s, µs/row, script µs/row, × script, peak MiB
    at each scale."""
    curve = ds["cost_curve"]
    rows = []
    for stack, c in curve["stacks"].items():
        for stage, s in [*c["stages"].items(), ("total", c["total"])]:
            fit = s["fit"] or {}
            rows.append([stack, stage, num(fit.get("fixed_s"), 2), num(fit.get("marginal_us_per_row"), 3),
                         num((s["script_fit"] or {}).get("marginal_us_per_row"), 3), num(s["ratio"], 2),
                         ", ".join(f"{k}x {p:,.0f}" for k, p in
                                   zip(c["scales"], s["peak_rss_mb"], strict=True) if p is not None)])
    scan = curve["scan"]["fit"] or {}
    rows.append(["pyarrow scan", "read + statistics", num(scan.get("fixed_s"), 2),
                 num(scan.get("marginal_us_per_row"), 3), "", "", ""])
    return rows


def data_scaling_html(ds: dict) -> str:
    parts = [f"<h2 id='data-scaling'>Data scaling</h2><p>From <code>make bench</code> (measured "
             f"{html.escape(str(ds.get('measured_at')))}, months {html.escape(str(ds.get('months')))}, "
             f"{ds.get('workers')} workers, {ds.get('epochs')} epochs; rows multiplied by "
             "<code>--scale</code>). Fitted per stage by least squares over the scales run: wall = "
             "fixed s + µs/row × rows ingested; the script is the hand-written single process on "
             "the same spans.</p><ul>"
             + "".join(f"<li>{html.escape(s)}</li>" for s in ds["sentences"]) + "</ul>",
             table(["stack", "stage", "fixed s", "µs/row", "script µs/row", "× script",
                     "peak MiB per scale"], data_scaling_rows(ds))]
    if any(p["rows"] for p in ds["points"].values()):
        parts.append("<div class='row'>"
                     + img(loglog(ds["points"], "wall_s", "Wall time per stage vs rows", "s"),
                            "wall time vs rows")
                     + img(loglog(ds["points"], "peak_rss_mb", "Peak memory per stage vs rows "
                                    "(process tree RSS)", "MiB"), "peak memory vs rows") + "</div>")
    return "".join(parts)


def stage_value(field):
    return lambda r, stack, stage: r["stacks"][stack]["run"]["stages"].get(stage, {}).get(field)


def render_html(data: dict, sections: tuple = ()) -> str:
    """The page of ``data`` (:func:`comparison.report.build_report_data`), with ``sections``
    (:data:`comparison.report.SECTIONS`) after the core ones."""
    runs = data["runs"]
    parts: list[str] = []
    add = parts.append
    add("<h2 id='summary'>Summary</h2><ul>" + "".join(f"<li>{html.escape(s)}</li>"
                                                     for s in data["summary"]) + "</ul>")
    rows = []
    for r in runs:
        for stack, s in r["stacks"].items():
            run = s["run"]
            rows.append([r["label"], STACK_NAMES[stack], run["orchestrator"],
                         ", ".join(map(str, run["spans"])), run["stages"]["ingest"].get("rows"),
                         run["workers"], num(run["total_wall_s"]), run["failed_stage"] or "none"])
    add("<h2 id='runs'>Runs</h2>" + table(
        ["run", "stack", "orchestrator", "spans", "rows", "workers", "total wall s", "failed stage"], rows))
    for d, c in data["checks"].items():
        add(f"<p class='check'>{html.escape(d)}: same spans <b>{c['same_spans']}</b>, "
            f"both evaluate stages scored identical eval rows (SHA-256 of the rows' split keys) "
            f"<b>{yes(c['same_eval_rows'])}</b>, the measurements below were made on those rows "
            f"<b>{yes(c['measured_rows_are_scored_rows'])}</b></p>")

    # stages
    add("<h2 id='stages'>Stages</h2>")
    for r in runs:
        trs = [[row["stage"], STACK_NAMES[row["stack"]], num(row["wall_s"]), num(row["cpu_s"]),
                num(row["peak_rss_mb"], 0), num(row["rows_per_s"], 0)] for row in stage_rows(r)]
        add(f"<h3>{html.escape(r['label'])}</h3>"
            + table(["stage", "stack", "wall s", "CPU s", "peak memory MiB", "rows/s"], trs))
    add(img(grouped_bars(runs, list(STAGES), stage_value("wall_s"), "Wall time per stage", "s"),
             "wall time per stage"))
    add(img(grouped_bars(runs, list(STAGES), stage_value("cpu_s"), "CPU time per stage "
                           "(process tree)", "CPU s"), "CPU time per stage"))
    add(img(grouped_bars(runs, list(STAGES), stage_value("peak_rss_mb"), "Peak memory per stage "
                           "(sum of RSS over the process tree)", "MiB", fmt="%.0f"),
             "peak memory per stage"))

    # scaling: comparison.scaling
    add("<h2 id='scaling'>Training scaling</h2>" + scaling_html(runs))

    if data.get("data_scaling"):
        add(data_scaling_html(data["data_scaling"]))

    # quality
    add("<h2 id='quality'>Model quality on the identical eval rows</h2>")
    rows = []
    for label, r, stack in series(runs):
        m = r["stacks"][stack].get("measurements")
        ev = r["stacks"][stack]["run"]["stages"]["evaluate"]
        push = r["stacks"][stack]["run"]["stages"]["push"]
        if not m:
            continue
        rows.append([label, m["model_is"], m["eval_rows"], f"{m['metrics']['auc']:.4f}",
                     f"{m['metrics']['binary_accuracy']:.4f}",
                     f"{m['metrics']['binary_crossentropy']:.4f}",
                     num(ev.get("auc"), 4), "yes" if ev.get("blessed") else "no",
                     num(ev.get("baseline_auc"), 4) if ev.get("baseline") else "none",
                     "yes" if push.get("pushed") else "no"])
    add(table(["stack", "model", "eval rows", "AUC", "accuracy", "log-loss",
                "AUC in the pipeline (TFMA / onnxruntime)", "blessed", "baseline AUC", "pushed"], rows))
    add("<div class='row'>" + img(curves(runs, "roc"), "ROC") + img(curves(runs, "cal"),
                                                                        "calibration") + "</div>")

    # artifacts
    add("<h2 id='artifacts'>Artifacts</h2>")
    rows, kinds = [], []
    for label, r, stack in series(runs):
        m = r["stacks"][stack].get("measurements")
        if m:
            for kind, b in m["sizes_bytes"].items():
                rows.append([label, kind, num(b / 1024, 1)])
                kinds.append(kind)
    add(table(["stack", "artifact", "KiB"], rows))

    # serving
    add("<h2 id='serving'>Serving latency and throughput</h2>"
        "<p>Timed around the serving runtime's call on an already-built request (TF: "
        "<code>serving_default</code> on serialized tf.Examples; PyTorch: onnxruntime on the "
        "encoded arrays), after 5 warm-up calls, runtime thread defaults.</p>")
    rows = []
    for label, r, stack in series(runs):
        m = r["stacks"][stack].get("measurements")
        if not m:
            continue
        for b, lat in m["latency"].items():
            rows.append([label, m["runtime"], b, f"{lat['p50_ms']:.3f}", f"{lat['p95_ms']:.3f}",
                         num(lat["rows_per_s"], 0), lat["calls"], f"{lat['encode_ms']:.2f}"])
    add(table(["stack", "runtime", "batch", "p50 ms", "p95 ms", "rows/s", "calls",
                "request build ms"], rows))

    def lat_value(r, stack, key):
        m = r["stacks"][stack].get("measurements")
        b, q = key.split(" ")
        return m["latency"][b.split("=")[1]][q] if m else None

    add(img(grouped_bars(runs, ["batch=1 p50_ms", "batch=1 p95_ms", "batch=256 p50_ms",
                                  "batch=256 p95_ms"], lat_value, "Serving latency", "ms", log=True),
             "latency"))

    extra = [(m, data[m.KEY]) for m in sections if data.get(m.KEY)]
    for m, doc in extra:
        add(f"<h2 id='{anchor(m.KEY)}'>{html.escape(m.TITLE)}</h2>" + m.render(doc))

    # code
    loc = data["lines_of_code"]
    add("<h2 id='code'>Lines of code per stage</h2><p>Non-blank lines that are not comments or "
        "docstrings. Shared code is framework-neutral and used by both stacks.</p>")
    rows = [[stage, v["shared"], v["tfx"], v["torch"]] for stage, v in loc.items()]
    rows.append(["total", *(sum(v[k] for v in loc.values()) for k in ("shared", "tfx", "torch"))])
    add(table(["stage", "shared", "TFX", "PyTorch"], rows))

    # notes
    add("<h2 id='notes'>Notes: scaling out on a cluster</h2><p>The runs above are local (Beam's "
        "DirectRunner in the process). Compiled for the cloud (<code>twinpipe compile --target "
        "vertex</code>, or <code>--beam-runner dataflow</code>), the TFX stack's Beam stages run "
        "as Dataflow jobs that scale out over workers; with <code>--beam-runner direct</code> "
        "(the default for <code>--target kfp</code>) they run inside their pods.</p>")
    notes = data.get("notes", {}).get("scale_out", SCALE_OUT)
    add("<div class='notes'>" + table(["stage", "TFX on a cluster", "PyTorch stack's equivalent"],
                                       [[n["stage"], n["tfx"], n["torch"]] for n in notes]) + "</div>")

    # environment
    add("<h2 id='environment'>Environment</h2>")
    for r in runs:
        env = r["environment"]
        rows = [["host", env.get("host")], ["platform", env.get("platform")],
                ["python", env.get("python")], ["CPU", f"{env.get('cpu_count')} x {env.get('cpu_model')}"],
                ["memory GiB", env.get("memory_gib")], ["GPU", ", ".join(env.get("gpus") or []) or "none"],
                ["measured at", env.get("measured_at")]]
        rows += [[k, v or "not installed"] for k, v in (env.get("versions") or {}).items()]
        add(f"<h3>{html.escape(r['label'])}</h3>" + table(["", ""], rows))

    nav = " · ".join(f"<a href='#{a}'>{a}</a>" for a in
                     ("summary", "runs", "stages", "scaling",
                      *(("data-scaling",) if data.get("data_scaling") else ()), "quality",
                      "artifacts", "serving", *(anchor(m.KEY) for m, _ in extra), "code", "notes",
                      "environment"))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>twinpipe report: TFX vs PyTorch</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #202124; }}
table {{ border-collapse: collapse; margin: .5em 0 1em; font-size: 13px; }}
th, td {{ border: 1px solid #dadce0; padding: 3px 8px; text-align: right; }}
th {{ background: #f1f3f4; }} td:first-child, td:nth-child(2) {{ text-align: left; }}
img {{ max-width: 100%; margin: .5em 0; }} .row {{ display: flex; gap: 1em; flex-wrap: wrap; }}
.check {{ font-size: 13px; }} .notes td {{ text-align: left; }}
h2 {{ border-bottom: 1px solid #dadce0; padding-top: .5em; }}
</style></head>
<body data-images-ok="pending">
<h1>twinpipe: the same job on TFX and on PyTorch</h1>
<p>ingest → validate → train → evaluate → push, both stacks on the same spans. Generated
{html.escape(data['generated_at'])} from {len(runs)} run(s). {nav}</p>
{''.join(parts)}
<script>
window.addEventListener("load", () => {{
  const imgs = Array.from(document.images);
  const ok = imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
  document.body.dataset.imagesOk = String(ok);
}});
</script>
</body></html>
"""


# Where each stage's work runs on a cluster and how it scales out, per stack (the report's notes).
# TFX: `twinpipe compile --beam-runner dataflow` (default for --target vertex) runs the Beam stages
# as Dataflow jobs; with `direct` (default for kfp, and `twinpipe run`) they run in the pod/process.
SCALE_OUT = [
    {"stage": "ingest",
     "tfx": "ExampleGen (Beam): a Dataflow job, Parquet spans to tf.Examples across workers",
     "torch": "none: a pyarrow scan inside the ingest pod (scales up with the pod, not out)"},
    {"stage": "validate",
     "tfx": "StatisticsGen (Beam): a Dataflow job over every row; ImportSchemaGen, "
            "ExampleValidator and the gate run in their pods on the statistics",
     "torch": "none: the Great Expectations checkpoint runs on pandas inside the validate pod"},
    {"stage": "train",
     "tfx": "Transform (Beam): a Dataflow job (full-pass analyzers, then every row transformed); "
            "the Trainer runs in its pod (tf.distribute workers), not on Dataflow",
     "torch": "training scales out with TorchX dist.ddp on Volcano (GPU nodes) — the Trainer's "
              "equivalent; none for Transform: preprocessing statistics are computed in one process"},
    {"stage": "evaluate",
     "tfx": "Evaluator (TFMA, Beam): a Dataflow job scoring the eval rows across workers",
     "torch": "none: candidate and baseline are scored by onnxruntime inside the evaluate pod"},
    {"stage": "push",
     "tfx": "in its pod (a rename in the bucket; nothing to scale)",
     "torch": "in its pod (a rename in the bucket; nothing to scale)"},
]


def stage_rows(run: dict) -> list[dict]:
    out = []
    for stage in STAGES:
        for stack, s in run["stacks"].items():
            st = s["run"]["stages"].get(stage, {})
            out.append({"stage": stage, "stack": stack, "wall_s": st.get("wall_s"),
                        "cpu_s": st.get("cpu_s"), "peak_rss_mb": st.get("peak_rss_mb"),
                        "rows_per_s": st.get("rows_per_s")})
    return out
