"""The side-by-side report: ``RUN_DIR/report/index.html`` (self-contained, plots as embedded PNG)
and ``report.json``, built only from what runs wrote (run.json, scaling.json, measurements.json,
environment.json), so several runs (e.g. a CPU run and a GPU run) can be laid side by side.
"""

from __future__ import annotations

import ast
import json
import os
import time
from pathlib import Path

from comparison import claims, exports, fault_tolerance, serving_load, timeline
from comparison.html import SCALE_OUT, render_html
from comparison.scaling import sentence as scaling_sentence
from comparison.sections import STACK_NAMES, STACKS, num
from comparison.tuning import section as tuning_section
from comparison.validation_engines import section as validation_engines_section
from components.common.blessing import explain
from components.common.config import STAGES
from components.common.errors import DataError
from components.common.layout import (
    ENVIRONMENT_JSON,
    MEASUREMENTS_JSON,
    REPORT_HTML,
    REPORT_JSON,
    RUN_JSON,
    SCALING_JSON,
)

# The sections beyond the core ones, in report order (claims last: it reads every other section);
# each is a module defining KEY, TITLE, collect and render (see comparison.sections).
SECTIONS = (tuning_section, validation_engines_section, fault_tolerance, exports, serving_load,
            timeline, claims)

ROOT = Path(__file__).resolve().parents[1]

# Where each stage's code lives: files or ``file::top-level name``. "shared" is framework-neutral
# code both stacks call; each stack's own code is what it needs on top.
STAGE_CODE = {
    "ingest": {
        "shared": ["components/common/ingest.py", "components/common/sources.py",
                   "components/common/screen.py", "components/common/spans.py",
                   "components/common/publish.py", "components/common/split.py"],
        "tfx": ["components/tfx/ingest.py"],
        "torch": ["components/torch/ingest.py", "components/torch/kfp_components.py::ingest"],
    },
    "validate": {
        "shared": ["components/common/contract.py", "components/common/gate.py",
                   "components/common/alerts.py"],
        "tfx": ["components/tfx/schema.py", "components/tfx/validate.py"],
        "torch": ["components/torch/validate.py", "components/torch/kfp_components.py::validate"],
    },
    "train": {
        "shared": [],
        "tfx": ["components/tfx/transform.py", "components/tfx/trainer.py", "components/tfx/model.py",
                "components/tfx/launch.py"],
        "torch": ["components/torch/model.py", "components/torch/trainer.py",
                  "components/torch/launch.py", "components/torch/export.py",
                  "components/torch/kfp_components.py::train"],
    },
    "evaluate": {
        "shared": ["components/common/metrics.py", "components/common/blessing.py",
                   "components/common/rowdigest.py"],
        "tfx": ["components/tfx/evaluate.py", "components/tfx/eval_rows.py"],
        "torch": ["components/torch/evaluate.py", "components/torch/kfp_components.py::evaluate"],
    },
    "push": {
        "shared": ["components/common/registry.py"],
        "tfx": ["components/tfx/push.py", "components/tfx/export.py"],
        "torch": ["components/torch/push.py", "components/torch/kfp_components.py::push"],
    },
    "pipeline wiring": {
        "shared": ["components/common/config.py", "components/common/runinfo.py"],
        "tfx": ["pipelines/tfx/pipeline.py", "pipelines/tfx/local_runner.py"],
        "torch": ["pipelines/torch/pipeline.py", "pipelines/torch/local_runner.py"],
    },
}


# --- lines of code ------------------------------------------------------------------------------

def code_lines(source: str, first: int = 1, last: int | None = None) -> int:
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
        return code_lines(source)
    for node in ast.parse(source).body:
        if getattr(node, "name", None) == name:
            first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
            return code_lines(source, first, node.end_lineno)
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
        run = _read(run_dir / stack / RUN_JSON)
        if run is None:
            continue
        stacks[stack] = {"run": run, "scaling": _read(run_dir / stack / SCALING_JSON),
                         "measurements": _read(run_dir / stack / MEASUREMENTS_JSON)}
    if not stacks:
        raise DataError(f"{run_dir}: no tfx/run.json or torch/run.json; expected the --out folder "
                        "of a `twinpipe run`.")
    env = _read(run_dir / ENVIRONMENT_JSON) or {}
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


def summary_lines(runs: list[dict], loc: dict) -> list[str]:
    """A short written summary of what differed and why, generated from the numbers."""
    lines: list[str] = []
    run = runs[0]
    st = run["stacks"]
    both = "tfx" in st and "torch" in st
    cores = run["environment"].get("cpu_count")
    if both:

        t = {k: st[k]["run"]["total_wall_s"] for k in STACKS}
        fast, slow = sorted(STACKS, key=lambda k: t[k])
        lines.append(
            f"On the same {st['tfx']['run']['stages']['ingest'].get('rows', 0):,} rows (spans "
            f"{', '.join(map(str, run['spans']))}), the {STACK_NAMES[fast]} pipeline took "
            f"{t[fast]:.1f} s end to end ({tuning_section.config_text(st[fast]['run'])}) and "
            f"{STACK_NAMES[slow]} {t[slow]:.1f} s ({tuning_section.config_text(st[slow]['run'])}) "
            f"({t[slow] / t[fast]:.1f}x){tuning_section.compared_configs(st)}.")
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
        lines.append(f"{STACK_NAMES[stack]}: {explain(ev)}; "
                     f"{'pushed' if push.get('pushed') else 'not pushed'}.")
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
            f"({num(total['ratio'], 2)}x the hand-written script's {num(script_total, 2)} µs/row); "
            f"{top} takes the largest share, {us[top]:,.2f} µs/row "
            f"({f'{us[top] / positive:.0%}' if positive > 0 else 'n/a'} of the stages' growth), "
            f"{num(st['ratio'], 1)}x the "
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
    for section in SECTIONS:  # each sees the core keys and the sections before it
        data[section.KEY] = section.collect(runs, data)
    return data


# --- plots --------------------------------------------------------------------------------------


# --- HTML ---------------------------------------------------------------------------------------


def build_report(run_dirs: list[str | Path], out_dir: str | Path | None = None,
                 bench: str | Path | None = None) -> Path:
    """Writes ``report.json`` and ``index.html`` into ``out_dir`` (default ``RUN_DIR/report``);
    ``bench``: see :func:`build_report_data`."""
    data = build_report_data(run_dirs, bench)
    out = Path(out_dir) if out_dir else Path(run_dirs[0]) / "report"
    out.mkdir(parents=True, exist_ok=True)
    for name, text in ((REPORT_JSON, json.dumps(data, indent=2, default=str)),
                       (REPORT_HTML, render_html(data, SECTIONS))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)
    return out / REPORT_HTML
