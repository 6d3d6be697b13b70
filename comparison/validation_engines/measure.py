"""The validation engines compared on raw rows: which engine catches which corruption at which rate.

In a pipeline run TFDV (TFX stack) and the Great Expectations checkpoint (PyTorch stack) only see
spans the shared ingest screen already cleaned, so they cannot change a verdict and the report
could not say what each one contributes. This measurement gives each engine the *raw* rows
instead — real rows of the run's input (one span, at most :data:`ENGINE_ROWS` rows), each
corruption of :mod:`components.common.corruptions` at each of its rates, written as the CSV a
user would deliver — and records what each engine reports:

* ``tfdv``: ``tfdv.generate_statistics_from_dataframe`` (TFDV's in-memory path; the pipeline's
  StatisticsGen runs the same statistics generators on Beam) + ``tfdv.validate_statistics``
  against the contract's schema (:func:`components.tfx.schema.contract_to_schema`, without the
  label ingest derives), anomalies mapped onto the contract's checks as ValidateGate maps them;
* ``gx``: the contract's GX suite as a checkpoint (:func:`components.torch.validate.run_checkpoint`)
  on the same DataFrame, failures mapped as the torch validate stage maps them;
* ``rules``: what the pipeline itself runs on a raw file: ingest (read, screen, quarantine, spans)
  then the gate's checks (:func:`components.common.gate.check_spans`), with the previous span's
  profile as the drift reference.

TFDV and GX get the file as pandas reads it (``pd.read_csv`` with the contract's missing
markers): a column holding one word among numbers is text, as in a notebook. A finding counts as
a detection when the engine does not report the same (check, column) on the clean rows. Each
engine runs in its own process (``python -m comparison.validation_engines.measure ENGINE CORPUS OUT``), so its
import time, time per case and peak RSS (the kernel's exact high-water mark, ``VmHWM``) are its own.

Writes ``OUT/validation_engines.json`` (run-level); the report's ``validation_engines`` section
(:mod:`comparison.validation_engines.section`) reads it.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from components.common import storage
from components.common.contract import Contract, load_contract
from components.common.corruptions import RATES, cases, corpus, corrupt
from components.common.errors import GateError
from components.common.gate import check_spans
from components.common.ingest import ingest
from components.common.layout import VALIDATION_ENGINES_JSON
from components.common.sources import load_default_table, load_input_table
from components.tfx.schema import contract_to_schema
from components.torch.validate import gx_checks, run_checkpoint

log = logging.getLogger("twinpipe.validation_engines")

ENGINE_ROWS = 20_000      # raw rows per corpus file: ~1 min for all engines on 2 cores
ENGINES = ("tfdv", "gx", "rules")
ENGINE_NAMES = {"tfdv": "TFDV", "gx": "Great Expectations", "rules": "the shared gate"}
CLEAN = "clean"           # the kind of the undamaged rows (the baseline every case is read against)
RESULT = VALIDATION_ENGINES_JSON
REPO = Path(__file__).resolve().parents[1]


# --- the corpus ---------------------------------------------------------------------------------

def read_raw(path: str | Path, contract: Contract) -> pd.DataFrame:
    """A raw CSV as pandas reads it, only the contract's markers meaning "no value"."""
    return pd.read_csv(path, keep_default_na=False, na_values=list(contract.missing_values))


def raw_rows(contract: Contract, input_path: str | None, span: int | None, rows: int = ENGINE_ROWS,
             seed: int = 0) -> dict:
    """Real rows of the input before any screening: up to ``rows`` of span ``span`` (the input's
    newest when None) and of the newest earlier span (the drift reference; None when there is
    none), typed as pandas reads them back from CSV."""
    import io


    if input_path:
        table, source = load_input_table(input_path)
        table = table.drop(columns=["__file", "__row"], errors="ignore")
    else:
        table, source = load_default_table(contract)
    spans = contract.span_of(table)
    present = sorted(int(s) for s in spans.dropna().unique())
    target = span if span in present else present[-1]
    earlier = [s for s in present if s < target]

    def take(s):
        part = table[spans == s]
        part = part.sample(n=min(rows, len(part)), random_state=seed).sort_index()
        buf = io.StringIO()  # typed as pandas types a delivered file, whatever the input was
        part.to_csv(buf, index=False)
        buf.seek(0)
        return read_raw(buf, contract)

    return {"source": source, "span": target, "rows": take(target),
            "reference_span": earlier[-1] if earlier else None,
            "reference": take(earlier[-1]) if earlier else None}


def write_corpus(folder: Path, contract: Contract, raw: dict, rates=RATES,
                 contract_path: str | None = None) -> dict:
    """Writes every case of the corpus (and the clean rows, and the reference span) as CSV files
    under ``folder`` plus ``corpus.json`` listing them: what each engine's process reads."""
    folder.mkdir(parents=True, exist_ok=True)
    kinds = corpus(contract)
    todo = [(CLEAN, 0.0)] + [(k, r) for k, r in cases(contract, rates)
                             if raw["reference"] is not None or not k.endswith("_drift")]
    listed = []
    for i, (kind, rate) in enumerate(todo):
        frame = raw["rows"] if kind == CLEAN else corrupt(raw["rows"], kind, rate, contract)
        path = folder / f"case-{i:03d}-{kind}.csv"
        frame.to_csv(path, index=False)
        listed.append({"kind": kind, "rate": rate, "file": path.name, "rows": len(frame),
                       "title": "clean rows" if kind == CLEAN else kinds[kind].title,
                       "column": "" if kind == CLEAN else kinds[kind].column,
                       "expect": [] if kind == CLEAN else sorted(kinds[kind].expect)})
    doc = {"source": raw["source"], "span": raw["span"], "rows": len(raw["rows"]),
           "reference_span": raw["reference_span"], "reference": None,
           "contract_path": contract_path, "rates": list(rates), "cases": listed}
    if raw["reference"] is not None:
        raw["reference"].to_csv(folder / "reference.csv", index=False)
        doc["reference"] = "reference.csv"
    (folder / "corpus.json").write_text(json.dumps(doc, indent=2, default=str))
    return doc


# --- the engines --------------------------------------------------------------------------------

def tfdv_findings(frame: pd.DataFrame, contract: Contract, with_label: bool = False) -> list:
    """TFDV's anomalies on ``frame`` against the contract's schema, as the contract's checks."""
    import tensorflow_data_validation as tfdv

    from components.tfx.validate import anomalies_to_checks

    stats = tfdv.generate_statistics_from_dataframe(frame)
    anomalies = tfdv.validate_statistics(stats, contract_to_schema(contract, with_label),
                                         environment="TRAINING")
    return anomalies_to_checks(anomalies, contract.validation.policies)


def gx_findings(frame: pd.DataFrame, contract: Contract, with_label: bool = False,
                checkpoint=None) -> list:
    """The contract's GX checkpoint (``checkpoint``: one built already) on ``frame``, failures as
    the contract's checks."""

    return gx_checks(run_checkpoint(contract, {"rows": frame}, with_label, checkpoint), contract)


class Rules:
    """The pipeline's own path on a raw file: ingest (screen + quarantine + spans) then the gate's
    checks, into one spans folder whose history holds the reference span's profile (ingested
    first, carried into every later generation), so drift is measured against it."""

    def __init__(self, contract: Contract, folder: Path, reference: Path | None):

        self.contract, self.spans = contract, folder / "spans"
        if reference is not None:
            ingest(contract, self.spans, input_path=reference)

    def findings(self, path: Path) -> list:

        try:
            ingested = ingest(self.contract, self.spans, input_path=path)
        except GateError as e:  # stopped at ingest (schema): no span written, every stack stops
            return list(e.checks)
        return check_spans(self.contract, self.spans, ingested.span_numbers, source=str(path)).checks


def _peak_rss() -> int:
    """This process's peak resident memory in bytes: the kernel's high-water mark of its address
    space (``VmHWM``, new at exec). Not ``ru_maxrss``: Linux carries the parent's peak at fork
    into it, so a child of a big driver would report the driver's memory."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # elsewhere: KiB (Linux)


def run_engine(engine: str, corpus_dir: str | Path) -> dict:
    """Runs ``engine`` over every case of the corpus in this process: findings per case, the
    engine's seconds per case (the CSV read timed apart for TFDV and GX; the rules read it
    themselves, inside ingest), import seconds, set-up seconds (GX: the checkpoint; the rules: the
    reference span's ingest), RSS after the imports and the peak RSS."""
    import psutil

    corpus_dir = Path(corpus_dir)
    doc = json.loads((corpus_dir / "corpus.json").read_text())
    contract = load_contract(doc.get("contract_path"))
    t0 = time.perf_counter()
    if engine == "tfdv":
        import tensorflow_data_validation  # noqa: F401

        import components.tfx.validate  # noqa: F401
    elif engine == "gx":
        import great_expectations  # noqa: F401
    import_s = time.perf_counter() - t0
    rss_after_import = psutil.Process().memory_info().rss
    with tempfile.TemporaryDirectory(prefix="engine-rules-") as tmp:
        t1 = time.perf_counter()
        checkpoint = None
        if engine == "rules":
            ref = doc.get("reference")
            rules = Rules(contract, Path(tmp), corpus_dir / ref if ref else None)
        elif engine == "gx":  # built once, as the torch validate stage builds it once per run
            from components.torch.validate import build_checkpoint

            checkpoint = build_checkpoint(contract, with_label=False)
        setup_s = time.perf_counter() - t1
        out = []
        for case in doc["cases"]:
            path = corpus_dir / case["file"]
            t1 = time.perf_counter()
            frame = read_raw(path, contract) if engine != "rules" else None
            read_s = time.perf_counter() - t1
            t1 = time.perf_counter()
            if engine == "tfdv":
                found = tfdv_findings(frame, contract)
            elif engine == "gx":
                found = gx_findings(frame, contract, checkpoint=checkpoint)
            else:
                found = rules.findings(path)
            out.append({"kind": case["kind"], "rate": case["rate"],
                        "seconds": round(time.perf_counter() - t1, 3), "read_s": round(read_s, 3),
                        "findings": [{"check": c.check, "column": c.column, "policy": c.policy,
                                      "observed": str(c.observed)[:200]} for c in found]})
    peak = _peak_rss()
    return {"engine": engine, "import_s": round(import_s, 2), "setup_s": round(setup_s, 2),
            "rss_after_import_mb": round(rss_after_import / 2**20, 1),
            "peak_rss_mb": round(peak / 2**20, 1),
            "check_s": round(sum(c["seconds"] for c in out), 2),
            "read_s": round(sum(c["read_s"] for c in out), 2), "cases": out}


def _in_subprocess(engine: str, corpus_dir: Path, timeout: float) -> dict:
    """:func:`run_engine` in a fresh interpreter (its own imports, time and memory)."""
    result = corpus_dir / f"{engine}.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env.setdefault("TF_USE_LEGACY_KERAS", "1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "comparison.validation_engines.measure", engine,
                               str(corpus_dir), str(result)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        log.warning("[measure][validation_engines] %s ran over %.0f s: stopped", engine, timeout)
        return {"engine": engine, "error": f"ran over the {timeout:.0f} s limit",
                "wall_s": round(time.perf_counter() - t0, 2)}
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not result.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        log.warning("[measure][validation_engines] %s failed (exit %s): %s", engine,
                    proc.returncode, " | ".join(tail))
        return {"engine": engine, "error": f"exit {proc.returncode}: {' | '.join(tail)}",
                "wall_s": round(wall, 2)}
    return json.loads(result.read_text()) | {"wall_s": round(wall, 2)}


# --- the matrix ---------------------------------------------------------------------------------

def _key(f: dict) -> tuple:
    return (f["check"], f["column"])


def detections(doc: dict, results: dict[str, dict]) -> list[dict]:
    """One row per case: for each engine, the findings it did not report on the clean rows, its
    verdict (``fail``: it stops the run; ``warn``: it reports and the run goes on — for the rules'
    row checks, the rows are quarantined; ``-``: nothing new) and whether it named the damaged
    column with the check the contract names it by (``on_target``)."""
    rows = []
    for i, case in enumerate(doc["cases"]):
        if case["kind"] == CLEAN:
            continue
        row = {k: case[k] for k in ("kind", "title", "column", "rate", "rows")}
        expect = {tuple(e) for e in case["expect"]}
        for engine, res in results.items():
            if "cases" not in res:
                row[engine] = {"verdict": "n/a", "findings": [], "on_target": False}
                continue
            base = {_key(f) for f in res["cases"][0]["findings"]}
            new = [f for f in res["cases"][i]["findings"] if _key(f) not in base]
            verdict = ("fail" if any(f["policy"] == "fail" for f in new)
                       else "warn" if new else "-")
            cols = {f["column"] for f in new}
            row[engine] = {"verdict": verdict,
                           "findings": sorted({f"{f['check']}:{f['column']}" for f in new}),
                           "on_target": bool(expect & {_key(f) for f in new})
                           or bool(case["column"] and case["column"] in cols),
                           "seconds": res["cases"][i]["seconds"]}
        rows.append(row)
    return rows


def engine_figures(results: dict[str, dict], doc: dict) -> dict:
    """Time and memory per engine: import, per-case mean, total, RSS after import and peak."""
    out = {}
    for engine, res in results.items():
        if "cases" not in res:
            out[engine] = {"error": res.get("error")}
            continue
        n = len(res["cases"])
        out[engine] = {k: res.get(k) for k in ("import_s", "setup_s", "check_s", "read_s",
                                                 "rss_after_import_mb", "peak_rss_mb", "wall_s")}
        out[engine]["cases"] = n
        out[engine]["per_case_s"] = round(res["check_s"] / max(n, 1), 3)
        out[engine]["rows_per_s"] = round(sum(c["rows"] for c in doc["cases"])
                                          / max(res["check_s"], 1e-9))
    return out


def compare(corpus_dir: Path, engines=ENGINES, isolate: bool = True, timeout: float = 600) -> dict:
    """Runs ``engines`` over the corpus in ``corpus_dir`` (each in its own process when
    ``isolate``; in this one otherwise, for tests: no memory figure is then the engine's own) and
    returns the detection matrix with each engine's time and memory."""
    doc = json.loads((corpus_dir / "corpus.json").read_text())
    results = {}
    for engine in engines:
        t0 = time.perf_counter()
        results[engine] = (_in_subprocess(engine, corpus_dir, timeout) if isolate
                           else run_engine(engine, corpus_dir) | {"wall_s": None})
        log.info("[measure][validation_engines] %s: %d cases in %.1f s", engine,
                 len(doc["cases"]), time.perf_counter() - t0)
    return {k: v for k, v in doc.items() if k != "cases"} | {
        "engines": list(engines),
        "isolated": isolate,
        "clean_findings": {e: r["cases"][0]["findings"] for e, r in results.items() if "cases" in r},
        "figures": engine_figures(results, doc),
        "matrix": detections(doc, results),
    }


def pipeline_design(contract: Contract) -> dict:
    """What the pipeline does with the engines (stated in the report next to the matrix)."""
    return {
        "engines_see": "screened spans",
        "max_bad_row_rate": contract.validation.max_bad_row_rate,
        "max_label_missing_rate": contract.validation.max_label_missing_rate,
        "text": (
            "In a pipeline run TFDV (TFX) and the GX checkpoint (PyTorch) validate the spans that "
            "ingest wrote after its screen: quarantined rows never reach them, so on the pipeline's "
            "path they can only repeat what the shared gate said. Kept that way: on raw rows "
            "their schema and suite have no tolerated share of bad rows, so they would stop runs "
            "the contract lets go on with the bad rows quarantined (at or below max_bad_row_rate); "
            "each stays as its stack's native second opinion on the written spans."),
    }


def measure(out_dir, cfg, contract: Contract, ingested, summaries) -> dict:
    """``EXTRA_MEASUREMENTS['validation_engines']``: the corpus from the run's input (its newest
    span: as many rows as the run had of it, at most :data:`ENGINE_ROWS`), every engine over it,
    ``OUT/validation_engines.json``."""
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    span, rows = None, ENGINE_ROWS
    if ingested is not None and ingested.spans:  # the run's newest span, no more rows than it had
        last = max(ingested.spans, key=lambda s: s.span)
        span = last.span
        rows = min(rows, last.train_rows + last.eval_rows + last.excluded_rows
                   + last.quarantined_rows) or rows
    raw = raw_rows(contract, cfg.input_path, span, rows)
    with tempfile.TemporaryDirectory(prefix="engines-corpus-") as tmp:
        write_corpus(Path(tmp), contract, raw, contract_path=(  # the engines run from the repo
            str(Path(cfg.contract_path).resolve()) if cfg.contract_path else None))
        corpus_s = time.perf_counter() - t0
        doc = compare(Path(tmp))
    doc |= {"measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cpu_count": os.cpu_count(),
            "corpus_s": round(corpus_s, 2), "wall_s": round(time.perf_counter() - t0, 1),
            "pipeline": pipeline_design(contract)}
    storage.write_json(out_dir / RESULT, doc)
    log.info("[measure][validation_engines] %d cases x %d engines in %.1f s: %s", len(doc["matrix"]),
             len(doc["engines"]), doc["wall_s"], out_dir / RESULT)
    return doc


def main(argv: list[str] | None = None) -> int:
    """One engine's process: ``python -m comparison.validation_engines.measure ENGINE CORPUS OUT``."""
    engine, corpus_dir, result = (argv or sys.argv[1:])[:3]
    logging.basicConfig(level=logging.WARNING)
    doc = run_engine(engine, corpus_dir)
    Path(result).write_text(json.dumps(doc, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
