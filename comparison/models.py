"""The model the measurements score, per stack: the pushed model (or the run's candidate), the scorer
of the export its server runs, its artifact sizes, and the core measurement
(OUT/<stack>/measurements.json): the model scored on the run's eval rows with one metrics
implementation, ROC and calibration points, and serving latency/throughput at batch 1 and 256
through its runtime."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from components.common import registry, rows, storage
from components.common.contract import Contract
from components.common.layout import MEASUREMENTS_JSON, SIGNATURE_JSON
from components.common.metrics import binary_metrics, calibration, roc_points
from components.common.serving_bench import latency, predict

log = logging.getLogger("twinpipe.measure")

LATENCY_BATCHES = (1, 256)


MEASURED_COPY = ".measured-model"  # where a gs:// push is downloaded to be measured


def model_under_test(stack: str, summary: dict) -> tuple[Path | str, str]:
    """The pushed model when the run pushed one (a ``gs://`` URL when pushed to object storage),
    else the run's candidate."""
    push = summary["stages"]["push"]
    if push.get("pushed_path"):
        pushed = push["pushed_path"]
        return (pushed if storage.is_remote(pushed) else Path(pushed)), "pushed"
    tr = summary["stages"]["train"]
    if stack == "tfx":
        return Path(tr["model_uri"]) / "Format-Serving", "candidate (not pushed)"
    return Path(tr["model_dir"]), "candidate (not pushed)"


SERVED = {"tfx": "saved_model", "torch": "onnx"}  # the export each stack's server runs


def serving_scorer(stack: str, model_dir: Path, contract: Contract):
    """The scorer of the model the stack serves (:data:`SERVED`), in its own runtime."""

    return scorer_for(stack, SERVED[stack], model_dir, contract)


def sizes(stack: str, model_dir: Path) -> dict:
    if stack == "tfx":  # the SavedModel alone: push puts model.tflite beside it
        from components.tfx.export import saved_model_bytes

        return {"SavedModel": saved_model_bytes(model_dir)}
    files = json.loads((model_dir / SIGNATURE_JSON).read_text())["files"]
    names = {"torchscript": "TorchScript", "onnx": "ONNX"}  # a failed export has no file
    return {names[k]: (model_dir / f).stat().st_size for k, f in files.items() if k in names}


def measure_model(stack: str, summary: dict, contract: Contract, out_dir: Path) -> dict:
    """Scores the stack's model on the run's eval rows and times its serving runtime."""

    model_ref, which = model_under_test(stack, summary)
    # A push on object storage is measured from a local download (the runtimes read local files).
    model_dir = registry.local_copy(model_ref, out_dir / stack / MEASURED_COPY)
    # The run's eval rows, in span order (what both stacks evaluate on), streamed by record
    # batch: only labels, probabilities and row hashes are kept; the first batch also serves the
    # latency benchmark (it uses the first rows of the table given).
    with rows.split_ref(out_dir / "spans", "eval", summary["spans"]) as ref:
        scorer = serving_scorer(stack, model_dir, contract)
        score_s = 0.0

        def timed(frame):
            nonlocal score_s
            t0 = time.perf_counter()
            out = predict(scorer, frame)
            score_s += time.perf_counter() - t0
            return out

        scored = rows.score(ref, "eval", contract.label.name, list(contract.split.key),
                            {"model": timed})
    labels, probs, first = scored.labels, scored.probs["model"], scored.first
    metrics = binary_metrics(labels, probs)
    measured = scored.digest
    doc = {
        "stack": stack,
        "runtime": scorer.runtime,
        "model": str(model_ref),
        "model_is": which,
        "eval_rows": len(labels),
        "eval_rows_sha256": measured.sha256,
        "metrics": {k: round(v, 6) for k, v in metrics.items()},
        "pipeline_auc": summary["stages"]["evaluate"].get("auc"),
        "score_all_s": round(score_s, 3),
        "roc": roc_points(labels, probs),
        "calibration": calibration(labels, probs),
        "sizes_bytes": sizes(stack, model_dir),
        "latency": latency(scorer, first, LATENCY_BATCHES),
        "threads": "runtime defaults",
    }
    storage.write_json(out_dir / stack / MEASUREMENTS_JSON, doc)
    log.info("[%s][measure] auc %.4f on %d eval rows; batch-1 p50 %.3f ms", stack,
             metrics["auc"], len(labels), doc["latency"]["1"]["p50_ms"])
    return doc


def scorer_for(stack: str, name: str, folder: Path, contract: Contract):
    """The scorer (``encode``/``score``) of export ``name`` in its own runtime."""
    if stack == "tfx":
        from components.tfx.export import SavedModelRawScorer, SavedModelScorer, TFLiteScorer

        if name == "saved_model":
            return SavedModelScorer(str(folder), [c.name for c in contract.features])
        return {"saved_model_raw": SavedModelRawScorer, "tflite": TFLiteScorer}[name](str(folder))
    from components.torch.export import (
        EagerScorer,
        ExportedProgramScorer,
        OnnxScorer,
        TorchScriptScorer,
    )

    return {"eager": EagerScorer, "onnx": OnnxScorer, "pt2": ExportedProgramScorer,
            "torchscript": TorchScriptScorer}[name](folder)
