"""The side-by-side report: ``RUN_DIR/report/index.html`` (self-contained, plots as embedded PNG)
and ``report.json``, built only from what runs wrote (run.json, scaling.json, measurements.json,
environment.json), so several runs (e.g. a CPU run and a GPU run) can be laid side by side.
"""

from __future__ import annotations

import ast
import base64
import html
import io
import json
import os
import time
from pathlib import Path

from components.common.config import STAGES
from components.common.errors import DataError
from infra.scaling import render as scaling_html
from infra.scaling import sentence as scaling_sentence
from infra.sections import anchor, sections

STACKS = ("tfx", "torch")
STACK_NAMES = {"tfx": "TFX (TensorFlow)", "torch": "PyTorch (KFP + TorchX)"}
COLORS = {"tfx": "#e8710a", "torch": "#1a73e8"}
ROOT = Path(__file__).resolve().parents[1]

# Where each stage's code lives: files or ``file::top-level name``. "shared" is framework-neutral
# code both stacks call; each stack's own code is what it needs on top.
STAGE_CODE = {
    "ingest": {
        "shared": ["components/common/ingest.py", "components/common/split.py"],
        "tfx": ["components/tfx/example_gen.py"],
        "torch": ["components/torch/stages.py::ingest_stage", "components/torch/kfp_components.py::ingest"],
    },
    "validate": {
        "shared": ["components/common/contract.py", "components/common/gate.py",
                   "components/common/alerts.py"],
        "tfx": ["components/tfx/schema.py", "components/tfx/validate.py"],
        "torch": ["components/torch/validate.py", "components/torch/stages.py::validate_stage",
                  "components/torch/kfp_components.py::validate"],
    },
    "train": {
        "shared": [],
        "tfx": ["components/tfx/transform.py", "components/tfx/trainer.py"],
        "torch": ["components/torch/model.py", "components/torch/train_app.py",
                  "components/torch/launch.py", "components/torch/export.py",
                  "components/torch/stages.py::train_stage", "components/torch/kfp_components.py::train"],
    },
    "evaluate": {
        "shared": ["components/common/metrics.py", "components/common/blessing.py",
                   "components/common/rowdigest.py"],
        "tfx": ["components/tfx/evaluate.py", "components/tfx/eval_rows.py"],
        "torch": ["components/torch/stages.py::evaluate_stage",
                  "components/torch/kfp_components.py::evaluate"],
    },
    "push": {
        "shared": ["components/common/registry.py"],
        "tfx": ["components/tfx/push.py", "components/tfx/serving.py"],
        "torch": ["components/torch/stages.py::push_stage", "components/torch/kfp_components.py::push"],
    },
    "pipeline wiring": {
        "shared": ["components/common/config.py", "components/common/runinfo.py"],
        "tfx": ["pipelines/tfx/pipeline.py", "pipelines/tfx/local_runner.py"],
        "torch": ["pipelines/torch/pipeline.py", "pipelines/torch/local_runner.py"],
    },
}

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


# --- lines of code ------------------------------------------------------------------------------

def _code_lines(source: str, first: int = 1, last: int | None = None) -> int:
    """Non-blank lines that are neither comments nor docstrings, within [first, last]."""
    tree = ast.parse(source)
    doc_lines: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            doc_lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    lines = source.splitlines()
    last = last or len(lines)
    return sum(1 for i in range(first, last + 1)
               if i not in doc_lines and lines[i - 1].strip() and not lines[i - 1].strip().startswith("#"))


def count_lines(spec: str) -> int:
    """Lines of code of a file or of one top-level def/class (``path::name``, decorators included)."""
    path, _, name = spec.partition("::")
    source = (ROOT / path).read_text()
    if not name:
        return _code_lines(source)
    for node in ast.parse(source).body:
        if getattr(node, "name", None) == name:
            first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
            return _code_lines(source, first, node.end_lineno)
    raise KeyError(f"{name} not found in {path}")


def lines_of_code() -> dict:
    return {stage: {who: sum(count_lines(s) for s in specs) for who, specs in parts.items()}
            for stage, parts in STAGE_CODE.items()}


# --- loading ------------------------------------------------------------------------------------

def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def load_run(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir).resolve()
    stacks = {}
    for stack in STACKS:
        run = _read(run_dir / stack / "run.json")
        if run is None:
            continue
        stacks[stack] = {"run": run, "scaling": _read(run_dir / stack / "scaling.json"),
                         "measurements": _read(run_dir / stack / "measurements.json")}
    if not stacks:
        raise DataError(f"{run_dir}: no tfx/run.json or torch/run.json; expected the --out folder "
                        "of a `twinpipe run`.")
    env = _read(run_dir / "environment.json") or {}
    first = next(iter(stacks.values()))["run"]
    gpu = ", ".join(env.get("gpus") or []) or f"CPU x{env.get('cpu_count', '?')}"
    return {
        "dir": str(run_dir),
        "label": f"{run_dir.name} ({gpu}, {first['workers']} workers)",
        "months": first["months"],
        "spans": first["spans"],
        "workers": first["workers"],
        "environment": env,
        "stacks": stacks,
    }


# --- numbers ------------------------------------------------------------------------------------

def _f(x, digits=1, unit=""):
    if x is None:
        return "–"
    if isinstance(x, float) and digits is not None:
        return f"{x:,.{digits}f}{unit}"
    return f"{x:,}{unit}" if isinstance(x, int) else f"{x}{unit}"


def _yes(flag: bool | None) -> str:
    return "not recorded" if flag is None else str(flag)


def _ratio(a, b):
    return a / b if a and b else None


def stage_rows(run: dict) -> list[dict]:
    out = []
    for stage in STAGES:
        for stack, s in run["stacks"].items():
            st = s["run"]["stages"].get(stage, {})
            out.append({"stage": stage, "stack": stack, "wall_s": st.get("wall_s"),
                        "cpu_s": st.get("cpu_s"), "peak_rss_mb": st.get("peak_rss_mb"),
                        "rows_per_s": st.get("rows_per_s")})
    return out


def summary_lines(runs: list[dict], loc: dict) -> list[str]:
    """A short written summary of what differed and why, generated from the numbers."""
    lines: list[str] = []
    run = runs[0]
    st = run["stacks"]
    both = "tfx" in st and "torch" in st
    cores = run["environment"].get("cpu_count")
    if both:
        from infra.sections.tuning import compared_configs, config_text

        t = {k: st[k]["run"]["total_wall_s"] for k in STACKS}
        fast, slow = sorted(STACKS, key=lambda k: t[k])
        lines.append(
            f"On the same {st['tfx']['run']['stages']['ingest'].get('rows', 0):,} rows (spans "
            f"{', '.join(map(str, run['spans']))}), the {STACK_NAMES[fast]} pipeline took "
            f"{t[fast]:.1f} s end to end ({config_text(st[fast]['run'])}) and "
            f"{STACK_NAMES[slow]} {t[slow]:.1f} s ({config_text(st[slow]['run'])}) "
            f"({t[slow] / t[fast]:.1f}x){compared_configs(st)}.")
        gaps = []
        for stage in STAGES:
            w = {k: st[k]["run"]["stages"][stage].get("wall_s") or 0.0 for k in STACKS}
            gaps.append((abs(w["tfx"] - w["torch"]), stage, w))
        gap, stage, w = max(gaps)
        slower = max(STACKS, key=lambda k: w[k])
        sst = st[slower]["run"]["stages"][stage]
        busy = (sst.get("cpu_s") or 0) / sst["wall_s"] if sst.get("wall_s") else None
        why = ""
        if busy is not None and cores:
            if busy < 0.6:
                why = (f"; its processes were busy only {busy:.2f} CPU-seconds per second of wall time, "
                       "so most of it is start-up and waiting (process launch, graph tracing, "
                       "pipeline set-up), not work on rows")
            else:
                why = (f"; it kept {busy:.1f} of {cores} cores busy, so the time is spent computing "
                       "(framework start-up and tracing included), not waiting")
        lines.append(f"The largest stage gap is {stage}: {w[slower]:.1f} s for {slower} vs "
                     f"{w[min(STACKS, key=lambda k: w[k])]:.1f} s{why}.")
        mem = {k: max((s.get("peak_rss_mb") or 0) for s in st[k]["run"]["stages"].values())
               for k in STACKS}
        lines.append(f"Peak memory (process tree, any stage): TFX {mem['tfx']:,.0f} MiB, "
                     f"PyTorch {mem['torch']:,.0f} MiB.")
    for stack, s in st.items():
        if s.get("scaling") and (line := scaling_sentence(STACK_NAMES[stack], s["scaling"])):
            lines.append(line)
    ms = {k: s["measurements"] for k, s in st.items() if s.get("measurements")}
    if len(ms) == 2:
        a = {k: m["metrics"]["auc"] for k, m in ms.items()}
        better = max(a, key=a.get)
        same = {True: "identical", False: "DIFFERENT", None: "unverified"}[
            run_checks(run)["same_eval_rows"]]
        lines.append(
            f"On the {same} {ms['tfx']['eval_rows']:,} eval rows, "
            f"AUC is TFX {a['tfx']:.4f} vs PyTorch {a['torch']:.4f}; {STACK_NAMES[better]} is ahead "
            f"by {abs(a['tfx'] - a['torch']):.4f}. Log-loss {ms['tfx']['metrics']['binary_crossentropy']:.4f}"
            f" vs {ms['torch']['metrics']['binary_crossentropy']:.4f}.")
        size_tf = ms["tfx"]["sizes_bytes"]["SavedModel"]
        size_onnx = ms["torch"]["sizes_bytes"]["ONNX"]
        lines.append(f"The SavedModel folder is {size_tf / 1024:,.0f} KiB (graph, TF Transform "
                     f"assets and variables) against {size_onnx / 1024:,.0f} KiB for the ONNX file "
                     f"({size_tf / size_onnx:.0f}x).")
        l1 = {k: m["latency"]["1"]["p50_ms"] for k, m in ms.items()}
        t256 = {k: m["latency"]["256"]["rows_per_s"] for k, m in ms.items()}
        lines.append(
            f"Serving one row takes {l1['tfx']:.3f} ms (p50) through the TF signature (parses "
            f"tf.Example and applies the Transform graph in-model) and {l1['torch']:.3f} ms through "
            f"onnxruntime ({l1['tfx'] / l1['torch']:.1f}x); at batch 256 they serve "
            f"{t256['tfx']:,.0f} vs {t256['torch']:,.0f} rows/s.")
    for stack, s in st.items():
        ev, push = s["run"]["stages"]["evaluate"], s["run"]["stages"]["push"]
        if ev.get("blessed") is None:
            continue
        base = (f"baseline AUC {ev['baseline_auc']:.4f}" if ev.get("baseline_auc") is not None
                else "no baseline (first push)")
        lines.append(f"{STACK_NAMES[stack]}: {'blessed' if ev['blessed'] else 'NOT blessed'} "
                     f"({base}); {'pushed' if push.get('pushed') else 'not pushed'}.")
    total = {k: sum(v[k] for v in loc.values()) for k in ("shared", "tfx", "torch")}
    lines.append(f"Code: {total['shared']} shared lines (contract, split, metrics, blessing, "
                 f"registry) + {total['tfx']} TFX-specific vs {total['torch']} PyTorch-specific.")
    if len(runs) > 1:
        for stack in STACKS:
            walls = [(r["label"], r["stacks"][stack]["run"]["total_wall_s"])
                     for r in runs if stack in r["stacks"]]
            if len(walls) > 1:
                lines.append(f"{STACK_NAMES[stack]} across runs: "
                             + ", ".join(f"{lbl} {w:.1f} s" for lbl, w in walls) + ".")
    return lines


def _same(values: list) -> bool | None:
    """Whether all values are equal; None when any is missing (not recorded)."""
    return None if any(v is None for v in values) else len(set(values)) == 1


def run_checks(run: dict) -> dict:
    """The cross-stack checks of one run with both stacks:

    * ``same_eval_rows``: both evaluate stages scored the same rows — the key digests each stack
      recorded of the rows it actually scored (torch: its eval Parquet; TFX: the eval examples
      the Evaluator read), :mod:`components.common.rowdigest`;
    * ``measured_rows_are_scored_rows``: the report's own model measurements (measurements.json)
      were made on those rows, for each stack;
    * ``same_spans``.

    None where a figure is not recorded (a failed stage, a run made before it was recorded).
    """
    st = run["stacks"]
    scored = {k: st[k]["run"]["stages"]["evaluate"].get("eval_rows_sha256") for k in STACKS}
    ms = [st[k].get("measurements") for k in STACKS]
    measured = None if None in scored.values() or None in ms else all(
        m.get("eval_rows_sha256") == scored[k] for k, m in zip(STACKS, ms, strict=True))
    return {
        "same_eval_rows": _same(list(scored.values())),
        "measured_rows_are_scored_rows": measured,
        "same_spans": st["tfx"]["run"]["spans"] == st["torch"]["run"]["spans"],
    }


def data_scaling(bench: dict) -> dict:
    """The Data scaling section from a ``make bench`` result (its bench.json): per stack and
    stage the points (rows, wall s, peak MiB), the fitted cost curve (benchmarks/bench.py's
    ``cost_curve``, stored in bench.json) and one generated sentence per stack on where its
    marginal cost goes."""
    curve = bench["cost_curve"]
    points = {}
    for stack, by_scale in bench["runs"].items():
        done = sorted((e for e in by_scale.values() if not e.get("failed")), key=lambda e: e["scale"])
        points[stack] = {"scale": [e["scale"] for e in done], "rows": [e["rows"] for e in done],
                         **{stage: {"wall_s": [e["stages"][stage]["wall_s"] for e in done],
                                    "peak_rss_mb": [e["stages"][stage]["peak_rss_mb"] for e in done]}
                            for stage in STAGES}}
    return {"measured_at": bench.get("measured_at"), "months": bench.get("months"),
            "workers": bench.get("workers"), "epochs": bench.get("epochs"),
            "points": points, "cost_curve": curve, "sentences": marginal_sentences(curve)}


def marginal_sentences(curve: dict) -> list[str]:
    """Per stack: its marginal µs/row, the stage with the largest share of it, that stage's
    ratio to the hand-written script's same stage, and the whole run's ratio to the script."""
    out = []
    for stack, c in curve["stacks"].items():
        us = {s: (v["fit"] or {}).get("marginal_us_per_row") for s, v in c["stages"].items()}
        if any(v is None for v in us.values()):
            out.append(f"{STACK_NAMES.get(stack, stack)}: measured at one scale only "
                       f"({', '.join(f'{k}x' for k in c['scales']) or 'none completed'}); a marginal "
                       "cost needs two.")
            continue
        positive = sum(max(v, 0.0) for v in us.values())
        top = max(us, key=us.get)
        st = c["stages"][top]
        total = c["total"]
        script_total = (total["script_fit"] or {}).get("marginal_us_per_row")
        out.append(
            f"{STACK_NAMES.get(stack, stack)} costs {sum(us.values()):,.2f} µs per extra row over "
            f"{', '.join(f'{k}x' for k in c['scales'])} "
            f"({_f(total['ratio'], 2)}x the hand-written script's {_f(script_total, 2)} µs/row); "
            f"{top} takes the largest share, {us[top]:,.2f} µs/row "
            f"({f'{us[top] / positive:.0%}' if positive > 0 else 'n/a'} of the stages' growth), "
            f"{_f(st['ratio'], 1)}x the "
            f"script's {top}.")
    scan = (curve.get("scan") or {}).get("fit")
    if scan:
        out.append(f"A pyarrow scan of the same spans (read + column statistics) costs "
                   f"{scan['marginal_us_per_row']:,.3f} µs/row: the bound for ingest + validate.")
    return out


def build_report_data(run_dirs: list[str | Path], bench: str | Path | None = None) -> dict:
    """``bench``: a ``make bench`` bench.json for the Data scaling section (default: a bench.json
    two folders above the first run, where ``make bench`` puts it: OUT/bench/STACK/scale-K)."""
    runs = [load_run(d) for d in run_dirs]
    loc = lines_of_code()
    checks = {r["dir"]: run_checks(r) for r in runs if set(r["stacks"]) == set(STACKS)}
    if bench is None:  # only a make bench layout's own bench.json, and only one with a curve
        first = Path(runs[0]["dir"])
        guess = _read(first.parents[1] / "bench.json") if first.name.startswith("scale-") else None
        bench_doc = guess if guess and "cost_curve" in guess else None
    else:
        bench_doc = _read(Path(bench))
    if bench and (bench_doc is None or "cost_curve" not in bench_doc):
        raise DataError(f"{bench}: not a bench.json with a cost curve; expected the OUT/bench/"
                        "bench.json that `make bench` (python -m benchmarks.bench) writes.")
    data = {
        "generated_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "runs": runs,
        "lines_of_code": loc,
        "checks": checks,
        "summary": summary_lines(runs, loc),
        "notes": {"scale_out": SCALE_OUT},
        "data_scaling": data_scaling(bench_doc) if bench_doc else None,
    }
    for section in sections():  # each sees the core keys and the sections before it
        data[section.KEY] = section.collect(runs, data)
    return data


# --- plots --------------------------------------------------------------------------------------

def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _series(runs):
    """(label, run, stack) for each stack of each run."""
    for r in runs:
        for stack in r["stacks"]:
            label = STACK_NAMES[stack] if len(runs) == 1 else f"{stack} · {r['label']}"
            yield label, r, stack


def _grouped_bars(runs, categories, value, title, unit, log=False, fmt="%.3g"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    series = list(_series(runs))
    fig, ax = plt.subplots(figsize=(8, 3.2))
    width = 0.8 / max(1, len(series))
    x = np.arange(len(categories))
    for i, (label, r, stack) in enumerate(series):
        vals = [value(r, stack, c) or 0.0 for c in categories]
        bars = ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=label,
                      color=COLORS[stack], alpha=1.0 - 0.35 * (i // 2))
        ax.bar_label(bars, fmt=fmt, fontsize=7)
    ax.set_xticks(x, categories)
    ax.set_ylabel(unit)
    ax.set_title(title, fontsize=10)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _curves(runs, kind):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 4))
    for label, r, stack in _series(runs):
        m = r["stacks"][stack].get("measurements")
        if not m:
            continue
        if kind == "roc":
            ax.plot(m["roc"]["fpr"], m["roc"]["tpr"], color=COLORS[stack],
                    label=f"{label} (AUC {m['metrics']['auc']:.3f})")
        else:
            ax.plot(m["calibration"]["predicted"], m["calibration"]["observed"], "o-",
                    color=COLORS[stack], label=label)
    ax.plot([0, 1], [0, 1], "--", color="#888", lw=1)
    ax.set_xlabel("false positive rate" if kind == "roc" else "mean predicted probability")
    ax.set_ylabel("true positive rate" if kind == "roc" else "observed delayed fraction")
    ax.set_title("ROC on the identical eval rows" if kind == "roc" else "Calibration (10 bins)",
                 fontsize=10)
    ax.legend(fontsize=7, loc="lower right" if kind == "roc" else "upper left")
    ax.grid(alpha=0.3)
    return _png(fig)


# --- HTML ---------------------------------------------------------------------------------------

def _loglog(points: dict, field: str, title: str, unit: str) -> str:
    """``field`` per stage and stack against rows, log-log; one colour per stack, one marker
    per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = dict(zip(STAGES, "osD^v", strict=False))
    fig, ax = plt.subplots(figsize=(7, 4))
    for stack, p in points.items():
        for stage in STAGES:
            ys = p[stage][field]
            xy = [(x, y) for x, y in zip(p["rows"], ys, strict=True) if y and y > 0]
            if xy:
                ax.plot(*zip(*xy, strict=True), marker=markers.get(stage, "o"),
                        color=COLORS.get(stack, "#555"), label=f"{stack} {stage}", alpha=0.85)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows ingested")
    ax.set_ylabel(unit)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3, which="both")
    return _png(fig)


def data_scaling_rows(ds: dict) -> list[list]:
    """The fitted table's rows: stack, stage, fixed s, µs/row, script µs/row, × script, peak MiB
    at each scale."""
    curve = ds["cost_curve"]
    rows = []
    for stack, c in curve["stacks"].items():
        for stage, s in [*c["stages"].items(), ("total", c["total"])]:
            fit = s["fit"] or {}
            rows.append([stack, stage, _f(fit.get("fixed_s"), 2), _f(fit.get("marginal_us_per_row"), 3),
                         _f((s["script_fit"] or {}).get("marginal_us_per_row"), 3), _f(s["ratio"], 2),
                         ", ".join(f"{k}x {p:,.0f}" for k, p in
                                   zip(c["scales"], s["peak_rss_mb"], strict=True) if p is not None)])
    scan = curve["scan"]["fit"] or {}
    rows.append(["pyarrow scan", "read + statistics", _f(scan.get("fixed_s"), 2),
                 _f(scan.get("marginal_us_per_row"), 3), "", "", ""])
    return rows


def _data_scaling_html(ds: dict) -> str:
    parts = [f"<h2 id='data-scaling'>Data scaling</h2><p>From <code>make bench</code> (measured "
             f"{html.escape(str(ds.get('measured_at')))}, months {html.escape(str(ds.get('months')))}, "
             f"{ds.get('workers')} workers, {ds.get('epochs')} epochs; rows multiplied by "
             "<code>--scale</code>). Fitted per stage by least squares over the scales run: wall = "
             "fixed s + µs/row × rows ingested; the script is the hand-written single process on "
             "the same spans.</p><ul>"
             + "".join(f"<li>{html.escape(s)}</li>" for s in ds["sentences"]) + "</ul>",
             _table(["stack", "stage", "fixed s", "µs/row", "script µs/row", "× script",
                     "peak MiB per scale"], data_scaling_rows(ds))]
    if any(p["rows"] for p in ds["points"].values()):
        parts.append("<div class='row'>"
                     + _img(_loglog(ds["points"], "wall_s", "Wall time per stage vs rows", "s"),
                            "wall time vs rows")
                     + _img(_loglog(ds["points"], "peak_rss_mb", "Peak memory per stage vs rows "
                                    "(process tree RSS)", "MiB"), "peak memory vs rows") + "</div>")
    return "".join(parts)


def _table(headers, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _stage_value(field):
    return lambda r, stack, stage: r["stacks"][stack]["run"]["stages"].get(stage, {}).get(field)


def render_html(data: dict) -> str:
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
                         run["workers"], _f(run["total_wall_s"]), run["failed_stage"] or "none"])
    add("<h2 id='runs'>Runs</h2>" + _table(
        ["run", "stack", "orchestrator", "spans", "rows", "workers", "total wall s", "failed stage"], rows))
    for d, c in data["checks"].items():
        add(f"<p class='check'>{html.escape(d)}: same spans <b>{c['same_spans']}</b>, "
            f"both evaluate stages scored identical eval rows (SHA-256 of the rows' split keys) "
            f"<b>{_yes(c['same_eval_rows'])}</b>, the measurements below were made on those rows "
            f"<b>{_yes(c['measured_rows_are_scored_rows'])}</b></p>")

    # stages
    add("<h2 id='stages'>Stages</h2>")
    for r in runs:
        trs = [[row["stage"], STACK_NAMES[row["stack"]], _f(row["wall_s"]), _f(row["cpu_s"]),
                _f(row["peak_rss_mb"], 0), _f(row["rows_per_s"], 0)] for row in stage_rows(r)]
        add(f"<h3>{html.escape(r['label'])}</h3>"
            + _table(["stage", "stack", "wall s", "CPU s", "peak memory MiB", "rows/s"], trs))
    add(_img(_grouped_bars(runs, list(STAGES), _stage_value("wall_s"), "Wall time per stage", "s"),
             "wall time per stage"))
    add(_img(_grouped_bars(runs, list(STAGES), _stage_value("cpu_s"), "CPU time per stage "
                           "(process tree)", "CPU s"), "CPU time per stage"))
    add(_img(_grouped_bars(runs, list(STAGES), _stage_value("peak_rss_mb"), "Peak memory per stage "
                           "(sum of RSS over the process tree)", "MiB", fmt="%.0f"),
             "peak memory per stage"))

    # scaling: infra.scaling
    add("<h2 id='scaling'>Training scaling</h2>" + scaling_html(runs))

    if data.get("data_scaling"):
        add(_data_scaling_html(data["data_scaling"]))

    # quality
    add("<h2 id='quality'>Model quality on the identical eval rows</h2>")
    rows = []
    for label, r, stack in _series(runs):
        m = r["stacks"][stack].get("measurements")
        ev = r["stacks"][stack]["run"]["stages"]["evaluate"]
        push = r["stacks"][stack]["run"]["stages"]["push"]
        if not m:
            continue
        rows.append([label, m["model_is"], m["eval_rows"], f"{m['metrics']['auc']:.4f}",
                     f"{m['metrics']['binary_accuracy']:.4f}",
                     f"{m['metrics']['binary_crossentropy']:.4f}",
                     _f(ev.get("auc"), 4), "yes" if ev.get("blessed") else "no",
                     _f(ev.get("baseline_auc"), 4) if ev.get("baseline") else "none",
                     "yes" if push.get("pushed") else "no"])
    add(_table(["stack", "model", "eval rows", "AUC", "accuracy", "log-loss",
                "AUC in the pipeline (TFMA / onnxruntime)", "blessed", "baseline AUC", "pushed"], rows))
    add("<div class='row'>" + _img(_curves(runs, "roc"), "ROC") + _img(_curves(runs, "cal"),
                                                                        "calibration") + "</div>")

    # artifacts
    add("<h2 id='artifacts'>Artifacts</h2>")
    rows, kinds = [], []
    for label, r, stack in _series(runs):
        m = r["stacks"][stack].get("measurements")
        if m:
            for kind, b in m["sizes_bytes"].items():
                rows.append([label, kind, _f(b / 1024, 1)])
                kinds.append(kind)
    add(_table(["stack", "artifact", "KiB"], rows))

    # serving
    add("<h2 id='serving'>Serving latency and throughput</h2>"
        "<p>Timed around the serving runtime's call on an already-built request (TF: "
        "<code>serving_default</code> on serialized tf.Examples; PyTorch: onnxruntime on the "
        "encoded arrays), after 5 warm-up calls, runtime thread defaults.</p>")
    rows = []
    for label, r, stack in _series(runs):
        m = r["stacks"][stack].get("measurements")
        if not m:
            continue
        for b, lat in m["latency"].items():
            rows.append([label, m["runtime"], b, f"{lat['p50_ms']:.3f}", f"{lat['p95_ms']:.3f}",
                         _f(lat["rows_per_s"], 0), lat["calls"], f"{lat['encode_ms']:.2f}"])
    add(_table(["stack", "runtime", "batch", "p50 ms", "p95 ms", "rows/s", "calls",
                "request build ms"], rows))

    def lat_value(r, stack, key):
        m = r["stacks"][stack].get("measurements")
        b, q = key.split(" ")
        return m["latency"][b.split("=")[1]][q] if m else None

    add(_img(_grouped_bars(runs, ["batch=1 p50_ms", "batch=1 p95_ms", "batch=256 p50_ms",
                                  "batch=256 p95_ms"], lat_value, "Serving latency", "ms", log=True),
             "latency"))

    extra = [(m, data[m.KEY]) for m in sections() if data.get(m.KEY)]
    for m, doc in extra:
        add(f"<h2 id='{anchor(m.KEY)}'>{html.escape(m.TITLE)}</h2>" + m.render(doc))

    # code
    loc = data["lines_of_code"]
    add("<h2 id='code'>Lines of code per stage</h2><p>Non-blank lines that are not comments or "
        "docstrings. Shared code is framework-neutral and used by both stacks.</p>")
    rows = [[stage, v["shared"], v["tfx"], v["torch"]] for stage, v in loc.items()]
    rows.append(["total", *(sum(v[k] for v in loc.values()) for k in ("shared", "tfx", "torch"))])
    add(_table(["stage", "shared", "TFX", "PyTorch"], rows))

    # notes
    add("<h2 id='notes'>Notes: scaling out on a cluster</h2><p>The runs above are local (Beam's "
        "DirectRunner in the process). Compiled for the cloud (<code>twinpipe compile --target "
        "vertex</code>, or <code>--beam-runner dataflow</code>), the TFX stack's Beam stages run "
        "as Dataflow jobs that scale out over workers; with <code>--beam-runner direct</code> "
        "(the default for <code>--target kfp</code>) they run inside their pods.</p>")
    notes = data.get("notes", {}).get("scale_out", SCALE_OUT)
    add("<div class='notes'>" + _table(["stage", "TFX on a cluster", "PyTorch stack's equivalent"],
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
        add(f"<h3>{html.escape(r['label'])}</h3>" + _table(["", ""], rows))

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


def build_report(run_dirs: list[str | Path], out_dir: str | Path | None = None,
                 bench: str | Path | None = None) -> Path:
    """Writes ``report.json`` and ``index.html`` into ``out_dir`` (default ``RUN_DIR/report``);
    ``bench``: see :func:`build_report_data`."""
    data = build_report_data(run_dirs, bench)
    out = Path(out_dir) if out_dir else Path(run_dirs[0]) / "report"
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("report.json", json.dumps(data, indent=2, default=str)),
                       ("index.html", render_html(data))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)
    return out / "index.html"
