"""The Exports measurement (issue 15): every export a stack's push produced, each in its own
runtime, on the same eval rows as the stack's reference model.

For each stack that trained, the model under test (the pushed version, else the candidate; see
:func:`comparison.measure.model_under_test`) is read with its ``signature.json``. Every export it
describes gets: converted or not (with the error), its size, latency p50/p95 at batch 1 and 256
in its own runtime (:func:`components.common.serving_bench.latency`: the runtime's call alone on
an encoded batch), and the largest |Δprobability| against the stack's reference model on the
identical eval rows — the first :data:`SAMPLE_ROWS` eval rows of the run's spans, in span order,
whose key digest is recorded (``eval_rows_sha256``).

References: TFX — the SavedModel's ``serving_default`` over serialized tf.Examples (what TFMA
evaluated and ``twinpipe predict`` serves); PyTorch — the trained FlightsNet in eager PyTorch,
rebuilt from the state dict push keeps beside the exports.

Writes ``OUT/<stack>/exports.json``; the report's Exports section (:mod:`comparison.exports`)
reads it.
"""

from __future__ import annotations

import html
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from comparison.models import MEASURED_COPY, model_under_test, scorer_for
from comparison.sections import SHORT_NAMES, stack_files, table
from components.common import registry, rows, storage
from components.common.contract import Contract
from components.common.errors import short_error
from components.common.layout import EXPORTS_JSON, SIGNATURE_JSON
from components.common.rowdigest import frame_digest
from components.common.serving_bench import latency, predict
from components.tfx.export import export_bytes

log = logging.getLogger("twinpipe.measure")

SAMPLE_ROWS = 20_000  # eval rows every export scores (bounded: the measurement runs in make demo)
LATENCY_BATCHES = (1, 256)
LATENCY_MIN_S = 0.5  # timed seconds per batch size and export (at least 20 calls each)
SCORE_CHUNK = 4096

# Largest |Δprobability| accepted against the reference, by export. Why these:
# * saved_model_raw: the same SavedModel, graph and TF kernels as serving_default; only the input
#   path differs (raw tensors instead of tf.Example parsing): identical up to float32 rounding.
# * onnx / pt2 / torchscript: float32 everywhere; pt2 and TorchScript run the same ATen kernels as
#   eager, onnxruntime its own GEMMs, whose different summation order moves a probability by a few
#   float32 ulps (~1e-7): 1e-5 leaves two orders of magnitude and still catches a wrong op,
#   a lost imputation or a wrong vocabulary index (differences of 1e-2 and up).
# * tflite: its own kernels (XNNPack/ruy fully-connected, Flex for TF Select ops) with other
#   accumulation orders and fused activations through a 3-layer MLP: 1e-4, ten times the others,
#   still far below any threshold or calibration bin (0.1 wide) the evaluation uses.
TOLERANCE = {"saved_model": 0.0, "saved_model_raw": 1e-6, "tflite": 1e-4,
             "eager": 0.0, "onnx": 1e-5, "pt2": 1e-5, "torchscript": 1e-5}
REFERENCE = {"tfx": "saved_model", "torch": "eager"}


def described_exports(stack: str, signature: dict) -> dict[str, dict]:
    """signature.json's exports, the reference first (torch keeps its reference outside
    ``exports``: it is the trained model, not an export of it)."""
    exports = dict(signature.get("exports") or {})
    if stack == "torch" and signature.get("reference"):
        ref = signature["reference"]
        exports = {"eager": {"file": ref["file"], "format": ref["format"],
                             "runtime": "torch (eager)", "converted": True, "error": None},
                   **exports}
    ref_name = REFERENCE[stack]
    if ref_name in exports:
        exports = {ref_name: exports[ref_name], **exports}
    return exports


def eval_sample(out_dir: Path, summary: dict, contract: Contract, limit: int = SAMPLE_ROWS):
    """The first ``limit`` eval rows of the run's spans (span order) and their key digest."""

    with rows.split_ref(out_dir / "spans", "eval", summary["spans"]) as ref:
        total = rows.count(ref)
        frame = rows.head(ref, "eval", limit)
    return frame, frame_digest(frame, list(contract.split.key)), total


def _probs(scorer, frame: pd.DataFrame) -> np.ndarray:
    return predict(scorer, frame, SCORE_CHUNK).astype(np.float64)


def measure_stack(stack: str, summary: dict, contract: Contract, out_dir: Path,
                  sample_rows: int = SAMPLE_ROWS, latency_s: float = LATENCY_MIN_S) -> dict:
    """Every export of ``stack``'s model under test: converted, size, latency, max |Δp|."""

    t0 = time.perf_counter()
    model_ref, which = model_under_test(stack, summary)
    folder = Path(registry.local_copy(model_ref, out_dir / stack / MEASURED_COPY))
    signature = json.loads((folder / SIGNATURE_JSON).read_text())
    frame, digest, total = eval_sample(out_dir, summary, contract, sample_rows)
    exports = described_exports(stack, signature)
    ref_name = REFERENCE[stack]
    reference = None
    results = []
    for name, entry in exports.items():
        row = {"export": name, "format": entry.get("format"), "file": entry.get("file"),
               "converted": bool(entry.get("converted")), "error": entry.get("error"),
               "reference": name == ref_name, "tolerance": TOLERANCE.get(name)}
        for extra in ("signature", "exporter", "opset", "select_tf_ops", "flex_ops",
                      "asset_paths_frozen", "warnings", "dynamo_error"):
            if entry.get(extra) is not None:
                row[extra] = entry[extra]
        if row["converted"]:
            row["size_bytes"] = export_bytes(folder, entry)
            try:
                scorer = scorer_for(stack, name, folder, contract)
                probs = _probs(scorer, frame)
                if name == ref_name:
                    reference = probs
                row["runtime"] = scorer.runtime
                row["latency"] = latency(scorer, frame, LATENCY_BATCHES, min_seconds=latency_s)
                if reference is not None:
                    row["max_abs_dp"] = float(np.max(np.abs(probs - reference)))
                    row["within_tolerance"] = (row["tolerance"] is not None
                                               and row["max_abs_dp"] <= row["tolerance"])
            except Exception as e:  # noqa: BLE001 — an export that does not run is a finding
                row["run_error"] = short_error(e)
                row["within_tolerance"] = False
                log.warning("[%s][exports] %s does not run: %s", stack, name, row["run_error"])
        results.append(row)
    doc = {
        "stack": stack,
        "model": str(model_ref),
        "model_is": which,
        "reference": ref_name,
        "reference_available": reference is not None,
        "eval_rows": len(frame),
        "eval_rows_total": total,
        "eval_rows_sample": f"the first {len(frame):,} of {total:,} eval rows, in span order",
        "eval_rows_sha256": digest.sha256,
        "latency_batches": list(LATENCY_BATCHES),
        "latency_min_s": latency_s,
        "exports": results,
        "wall_s": round(time.perf_counter() - t0, 2),
    }
    if not signature.get("exports"):
        doc["note"] = ("the model's signature.json describes no exports (pushed before the "
                       "exports existed): only the reference is measured")
    return doc


def measure_exports(out_dir, cfg, contract: Contract, ingested, summaries: dict[str, dict]) -> dict:
    """``comparison.measure.EXTRA_MEASUREMENTS["exports"]``: writes ``OUT/<stack>/exports.json``."""
    out = Path(out_dir)
    docs = {}
    for stack, summary in summaries.items():
        doc = measure_stack(stack, summary, contract, out)
        storage.write_json(out / stack / EXPORTS_JSON, doc)
        ok = sum(1 for r in doc["exports"] if r.get("within_tolerance"))
        log.info("[%s][exports] %d export(s), %d within tolerance of %s on %d eval rows (%.1fs)",
                 stack, len(doc["exports"]), ok, doc["reference"], doc["eval_rows"],
                 doc["wall_s"])
        docs[stack] = doc
    return docs


KEY = "exports"


TITLE = "Exports"


def collect(runs: list[dict], data: dict) -> dict | None:
    found = [{"run": r["label"], "stack": stack, **doc}
             for r, stack, doc in stack_files(runs, EXPORTS_JSON)]
    return {"stacks": found} if found else None


def _ms(row: dict, batch: str, q: str) -> str:
    v = (row.get("latency") or {}).get(batch, {}).get(q)
    return "–" if v is None else f"{v:.3g}"


def _dp(row: dict) -> str:
    v = row.get("max_abs_dp")
    return "–" if v is None else ("0" if v == 0 else f"{v:.2e}")


def _met(row: dict) -> str:
    if row.get("reference"):
        return "reference"
    if "within_tolerance" not in row:
        return "–"
    tol = row.get("tolerance")
    if tol is None:
        return "no tolerance"
    return f"{'yes' if row['within_tolerance'] else 'NO'} (≤ {tol:.0e})"


def _notes(row: dict) -> str:
    parts = []
    if row.get("signature"):
        parts.append(f"signature {row['signature']}"
                     + (" (same SavedModel)" if row.get("file") == "." and not row.get("reference")
                        else ""))
    if row.get("exporter"):
        parts.append(row["exporter"])
    if row.get("select_tf_ops"):
        parts.append("TF Select ops: " + ", ".join(row.get("flex_ops") or ["?"]))
    if row.get("asset_paths_frozen"):
        parts.append("vocabulary paths made constants for the converter")
    for w in row.get("warnings") or []:
        parts.append(w)
    for key in ("error", "run_error", "dynamo_error"):
        if row.get(key):
            parts.append(f"{key.replace('_', ' ')}: {row[key][:300]}")
    return "; ".join(parts)


HEADERS = ["export", "format", "converted", "size KiB", "b1 p50 ms", "b1 p95 ms", "b256 p50 ms",
           "b256 p95 ms", "max |Δp|", "tolerance met", "notes"]


def table_rows(doc: dict) -> list[list[str]]:
    out = []
    for row in doc["exports"]:
        size = row.get("size_bytes")
        out.append([row["export"], row.get("format") or "", "yes" if row["converted"] else "NO",
                    "–" if size is None else f"{size / 1024:,.1f}",
                    _ms(row, "1", "p50_ms"), _ms(row, "1", "p95_ms"),
                    _ms(row, "256", "p50_ms"), _ms(row, "256", "p95_ms"),
                    _dp(row), _met(row), _notes(row)])
    return out


def render(doc: dict) -> str:

    parts = ["<p>Each export push produced, loaded in its own runtime and scored on the same eval "
             "rows as the stack's reference (TFX: <code>serving_default</code> over serialized "
             "tf.Examples; PyTorch: the trained model in eager PyTorch). Latency: the runtime's "
             "call alone on an encoded batch (p50/p95). max |Δp|: the largest difference in "
             "probability from the reference on those rows.</p>"]
    for s in doc["stacks"]:
        name = SHORT_NAMES.get(s["stack"], s["stack"])
        parts.append(f"<h3>{html.escape(name)} · {html.escape(s['run'])}</h3>"
                     f"<p>{html.escape(s['eval_rows_sample'])} (key digest "
                     f"<code>{html.escape(s['eval_rows_sha256'][:16])}</code>); model: "
                     f"{html.escape(s['model_is'])}.</p>")
        if s.get("note"):
            parts.append(f"<p>{html.escape(s['note'])}</p>")
        parts.append(table(HEADERS, table_rows(s)))
    return "".join(parts)
