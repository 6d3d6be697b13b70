"""The PyTorch stack's evaluate stage: the trained model scored on the eval rows, the blessing decided
against the contract and the pushed baseline."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

from components.common import registry, rows
from components.common.blessing import decide
from components.common.contract import load_contract
from components.common.metrics import binary_metrics
from components.common.runinfo import record_stage

log = logging.getLogger("twinpipe.torch")


def evaluate_stage(model_dir: str, eval_path: str, push_destination: str, contract_path: str,
                   blessing_path: str, record_dir: str = "") -> bool:
    """Candidate and baseline (latest pushed) scored on the same eval rows through onnxruntime.

    The eval rows (a rows reference or any rows source) stream by record batches: each batch is
    scored by both models and digested, and only the labels and probabilities (floats) are kept
    for the metrics, so memory does not grow with the rows' width."""
    from components.torch.export import OnnxScorer

    t0 = time.time()
    contract = load_contract(contract_path or None)
    baseline_dir = registry.latest(push_destination)
    with tempfile.TemporaryDirectory(prefix="torch-baseline-") as tmp:
        candidate = OnnxScorer(Path(model_dir) / "serving")
        # a gs:// version is downloaded for onnxruntime (via components.common.storage)
        baseline = OnnxScorer(registry.local_copy(baseline_dir, tmp)) if baseline_dir else None
        scorers = {"candidate": candidate.predict}
        if baseline is not None:
            scorers["baseline"] = baseline.predict
        scored = rows.score(eval_path, "eval", contract.label.name, list(contract.split.key),
                            scorers)  # the digest: which rows (the report compares the stacks')
    metrics = binary_metrics(scored.labels, scored.probs["candidate"])
    baseline_metrics = (binary_metrics(scored.labels, scored.probs["baseline"]) if baseline
                        else None)
    digest = scored.digest
    rule = contract.blessing
    decision = decide(rule, metrics[rule.metric],
                      baseline_metrics[rule.metric] if baseline_metrics else None)
    figures = {
        "wall_s": round(time.time() - t0, 3),
        "metrics": {k: round(v, 6) for k, v in metrics.items()},
        "auc": metrics["auc"],
        "eval_rows": len(scored.labels),
        "eval_rows_sha256": digest.sha256,
        "eval_rows_hashed": digest.rows,
        "eval_rows_key": list(contract.split.key),
        "blessed": decision.blessed,
        "reasons": list(decision.reasons),
        "baseline": str(baseline_dir) if baseline_dir else None,
        "baseline_auc": baseline_metrics["auc"] if baseline_metrics else None,
        "rule": {"metric": rule.metric, "lower_bound": rule.lower_bound,
                 "max_regression": rule.max_regression},
    }
    Path(blessing_path).parent.mkdir(parents=True, exist_ok=True)
    Path(blessing_path).write_text(json.dumps(figures, indent=2))
    record_stage(record_dir, "evaluate", figures)
    log.info("[torch][evaluate] auc %.4f baseline %s blessed %s on %d eval rows (%s)",
             metrics["auc"], figures["baseline_auc"], decision.blessed, len(scored.labels),
             rows.describe(eval_path))
    return decision.blessed
