"""cProfile of the TFX stack's run, once per examples format, on the same spans
(``make profile-tfx``):

    python -m benchmarks.profile_tfx --months 1-12 --out out/profile-tfx

Each format runs through the workflow API (what ``twinpipe run`` calls) in its own spawned
process under cProfile, with one training worker and Beam in memory (the 1x year is below the
multi-processing threshold), so that every stage's Python runs in the profiled process. Prints,
per format, each stage's cumulative seconds (its executor's ``Do``) and the functions with the
most own time; writes ``<format>.prof`` (for ``python -m pstats`` or snakeviz) and
``profile.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing
import os
import pstats
import sys
import time
from pathlib import Path

# the stage each TFX executor's Do belongs to (module path fragment -> stage)
EXECUTORS = {
    "ingest": ("components/tfx/ingest.py",),
    "validate": ("tfx/components/statistics_gen/executor.py",
                 "tfx/components/example_validator/executor.py"),
    "train": ("tfx/components/transform/executor.py", "tfx/components/trainer/executor.py"),
    "evaluate": ("tfx/components/evaluator/executor.py",),
}
TOP = 15


def _profiled_run(prof: str, log: str, out: str, months: str, epochs: int, fmt: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from components.common.config import RunConfig
    from components.common.spans import parse_months
    from pipelines import workflow

    cfg = RunConfig(out_dir=out, months=tuple(parse_months(months)), workers=1, epochs=epochs,
                    run_label=time.strftime("%Y%m%dT%H%M%S"), tfx_examples=fmt)
    profiler = cProfile.Profile()
    try:
        profiler.runcall(workflow.run, cfg, ("tfx",), explicit={"workers"}, report=False,
                         scaling_probe=False, measure=())
    finally:
        profiler.dump_stats(prof)


def summarize(prof: Path) -> dict:
    """{stages: {stage: cumulative s}, top: [[own s, cumulative s, calls, function]]}."""
    st = pstats.Stats(str(prof))
    stages = {}
    for (file, _line, func), (_cc, _nc, _tt, ct, _callers) in st.stats.items():
        for stage, frags in EXECUTORS.items():
            if func == "Do" and any(file.endswith(f) for f in frags):
                stages[stage] = round(stages.get(stage, 0.0) + ct, 2)
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:TOP]
    top = [[round(tt, 2), round(ct, 2), nc, f"{_short(file)}:{line}({func})"]
           for (file, line, func), (_cc, nc, tt, ct, _callers) in rows]
    return {"stages": stages, "top": top, "total_s": round(st.total_tt, 2)}


def _short(file: str) -> str:
    return file.split("site-packages/")[-1] if "site-packages/" in file else file


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--months", default="1-12")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--format", action="append", choices=("parquet", "tfrecord"),
                   help="examples format, repeatable (default: both)")
    p.add_argument("--out", default="out/profile-tfx")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    doc = {}
    for fmt in args.format or ["tfrecord", "parquet"]:
        prof, log = out / f"{fmt}.prof", out / f"{fmt}.log"
        print(f"[profile] tfx {fmt}: twinpipe run under cProfile (months {args.months}, 1 worker, "
              f"{args.epochs} epochs) ...", flush=True)
        t0 = time.perf_counter()
        child = multiprocessing.get_context("spawn").Process(
            target=_profiled_run, args=(str(prof), str(log), str(out / fmt), args.months, args.epochs, fmt))
        child.start()
        child.join()
        if child.exitcode:
            print(f"[profile] tfx {fmt}: the run failed (exit {child.exitcode}); see {log}", file=sys.stderr)
            return 1
        doc[fmt] = summarize(prof) | {"wall_s": round(time.perf_counter() - t0, 1)}
        print(f"\n## tfx {fmt}: wall {doc[fmt]['wall_s']} s under the profiler; stage cumulative s: "
              + ", ".join(f"{s} {v}" for s, v in doc[fmt]["stages"].items()))
        print("own s | cumulative s | calls | function")
        for tt, ct, nc, fn in doc[fmt]["top"]:
            print(f"{tt:8.2f} | {ct:8.2f} | {nc:9d} | {fn}")
    (out / "profile.json").write_text(json.dumps(doc, indent=2))
    print(f"\nprofiles: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
