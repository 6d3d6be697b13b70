"""The PyTorch stack's stages as plain functions over paths; KFP v2 components only call these.

Each stage records its figures as ``<record_dir>/<stage>.json`` (when a record_dir is given; in
the pipeline, the task's ``record`` output artifact), from which the local runner builds
``torch/run.json`` in the same shape as the TFX stack's.

Inputs that live outside the task (the spans, the contract, the model registry) are URIs: a local
path or ``gs://...``, read through :mod:`components.common.storage`. A task on a cluster shares no
filesystem with the others: it reads object storage in place (the rows through
:mod:`components.common.rows`, the gate through the storage layer), and copies to its own disk only
what a runtime needs as local files (a baseline model for onnxruntime, the trained model back).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

from components.common import registry, rows, storage
from components.common.blessing import decide
from components.common.contract import load_contract
from components.common.metrics import binary_metrics
from components.common.spans import resolve_spans, select_spans, span_numbers

log = logging.getLogger("twinpipe.torch")


def record(record_dir: str, stage: str, figures: dict) -> None:
    if record_dir:
        Path(record_dir).mkdir(parents=True, exist_ok=True)
        (Path(record_dir) / f"{stage}.json").write_text(json.dumps(figures, indent=2, default=str))


def _contract(contract_path: str):
    """The contract at a path or a gs:// URI (load_contract reads both); '' = the packaged one."""
    return load_contract(contract_path or None)


def ingest_stage(spans_dir: str, train_path: str, eval_path: str, record_dir: str = "",
                 span: str = "all") -> int:
    """Writes a rows reference (:func:`components.common.rows.write_ref`) to the run's train and
    eval spans at ``train_path`` / ``eval_path``: the spans are read in place by the later stages,
    never copied (at 30x the flights a copy is gigabytes and over a minute per run). The current
    generation is resolved here, once, so every stage reads the same files; ``spans_dir`` is a
    local folder or a gs:// URI (the reference then names gs:// files). Row counts come from the
    Parquet metadata."""
    t0 = time.time()
    current = rows.generation(spans_dir)  # resolved once: both references name the same files
    figures: dict = {"spans": select_spans(current, span)}
    for split, path in (("train", train_path), ("eval", eval_path)):
        ref = rows.write_ref(path, current, split, figures["spans"])
        figures[f"{split}_rows"] = ref["rows"]
        figures[f"{split}_files"] = len(ref["files"])
    figures["rows"] = figures["train_rows"] + figures["eval_rows"]
    figures["spans_dir"] = ref["spans_dir"]
    figures["wall_s"] = round(time.time() - t0, 3)
    figures["rows_per_s"] = round(figures["rows"] / max(figures["wall_s"], 1e-9), 1)
    record(record_dir, "ingest", figures)
    log.info("[torch][ingest] %d rows from spans %s, referenced in place in %s", figures["rows"],
             figures["spans"], figures["spans_dir"])
    return figures["rows"]


def validate_stage(train_path: str, eval_path: str, contract_path: str, source: str,
                   record_dir: str = "", spans_dir: str = "", span: str = "all",
                   report_dir: str = "") -> bool:
    """The GX checkpoint over both splits, then the contract's gate rules over the same spans
    (components/common/gate.py); alerts, and raises GateError (after recording why) on failure."""
    from components.common.errors import GateError
    from components.common.gate import check_spans, enforce, merge_engine
    from components.torch.validate import gx_checks, run_checkpoint

    t0 = time.time()
    contract = _contract(contract_path)
    # Each split streamed through the checkpoint in batches (rows read in place, see validate.py).
    result = run_checkpoint(contract, {"train": (train_path, "train"), "eval": (eval_path, "eval")})
    report_dir = Path(report_dir or Path(record_dir or ".") / "validation")
    report_dir.mkdir(parents=True, exist_ok=True)
    gx_path = report_dir / "gx_result.json"
    gx_path.write_text(json.dumps({"passed": result.passed, "evaluated": result.evaluated,
                                   "failures": result.failures}, indent=2, default=str))
    # The gate checks the spans GX, train and evaluate read: the train reference's generation and
    # span numbers (shown under the spans folder while that still points at them).
    ref = rows.read_ref(train_path)
    if ref is None:
        spans = resolve_spans(spans_dir)
        numbers = select_spans(spans, span)
    else:
        spans, numbers = ref["spans_dir"], ref["spans"] or span_numbers(ref["spans_dir"])
        if spans_dir and rows.generation(spans_dir) == spans:
            spans = resolve_spans(spans_dir)
    report = check_spans(contract, spans, numbers, source=source)
    merge_engine(report, gx_checks(result, contract),
                 {"engine": "great_expectations", "result": str(gx_path),
                  "expectations_evaluated": result.evaluated})
    figures = {"passed": True, "expectations_evaluated": result.evaluated,
               "gx_passed": result.passed, "report": str(report_dir / "gate.json")}
    try:
        enforce(report, contract=contract, stack="torch", pipeline="twinpipe-torch",
                report_dir=report_dir)
    except GateError as e:
        figures.update(passed=False, message=str(e), wall_s=round(time.time() - t0, 3),
                       checks=len(report.checks))
        record(record_dir, "validate", figures)
        raise
    figures.update(wall_s=round(time.time() - t0, 3), checks=len(report.checks),
                   warnings=[c.line() for c in report.checks])
    record(record_dir, "validate", figures)
    log.info("[torch][validate] GX checkpoint (%d expectations) and the gate rules passed",
             result.evaluated)
    return True


def train_app_args(contract, train_path: str, out: str, epochs: int, batch_size: int,
                   learning_rate: float, hidden_units: str = "64,32",
                   fail_once_after_epoch: int = -1) -> list[str]:
    """The training app's arguments (``components.torch.train_app``) for ``contract``'s columns:
    the train stage's, and the tuning sweep's (infra/tuning.py), which runs the app directly."""
    return [
        "--train", train_path, "--out", out,
        "--numeric", ",".join(c.name for c in contract.numeric_features),
        "--categorical", ",".join(c.name for c in contract.categorical_features),
        "--label", contract.label.name, "--epochs", str(epochs), "--batch-size", str(batch_size),
        "--learning-rate", str(learning_rate), "--hidden-units", hidden_units,
        "--fail-once-after-epoch", str(fail_once_after_epoch),
    ]


def train_stage(
    train_path: str, model_dir: str, contract_path: str, workers: int, epochs: int,
    batch_size: int, learning_rate: float, hidden_units: str = "64,32",
    scheduler: str = "local_cwd", fail_once_after_epoch: int = -1, record_dir: str = "",
    scheduler_options: str = "", train_job: str = "", job_out: str = "",
) -> float:
    """Launches the DDP app, then writes the exports (ONNX, .pt2, TorchScript; see
    :mod:`components.torch.export`) into ``model_dir``.

    With ``train_job`` empty the app runs through TorchX ``scheduler`` (``local_cwd`` here) on
    ``train_path`` and writes into ``model_dir/train``. ``scheduler_options`` are TorchX scheduler
    settings as ``key=value,...``. With ``train_job`` (the cluster job's JSON, see
    ``infra.compile.train_job_spec``) the job runs on its own pods through
    ``components.torch.launch.submit_training``: they share no filesystem with this task, so
    ``train_path`` must then be an object URI and the app writes to ``job_out`` (a URI too, e.g. the
    model artifact's ``uri + "/train"``), which is copied back here for the export.
    """
    from components.common.errors import ContractError
    from components.torch import launch
    from components.torch.export import export, signature_doc
    from components.torch.train_app import check_shard, load_model

    t0 = time.time()
    contract = _contract(contract_path)
    out = Path(model_dir)
    work = out / "train"
    if train_job and not (storage.is_remote(train_path) and storage.is_remote(job_out)):
        raise ContractError(
            f"[torch][train] a cluster train job (train_job) needs object URIs for its rows and "
            f"output, got {train_path!r} and {job_out!r}: the training pods share no filesystem "
            "with the launcher task. Run the pipeline with pipeline_root on gs://.")
    if train_job:
        local = [f for f in rows.files(train_path) if not storage.is_remote(f)]
        if local:
            raise ContractError(
                f"[torch][train] the rows reference {train_path} names local files ({local[0]} and "
                f"{len(local) - 1} more): the training pods cannot read them. Put the spans on "
                "object storage (spans_uri gs://...).")
    if not train_job:
        # The app checks this too; here it stops before torchrun would restart a doomed job.
        check_shard(rows.count(train_path), workers)
    app_args = train_app_args(contract, train_path, job_out if train_job else str(work), epochs,
                              batch_size, learning_rate, hidden_units, fail_once_after_epoch)
    if train_job:
        launch.submit_training(app_args, workers=workers, train_job=train_job,
                               log_dir=str(out / "job_logs"))
        storage.download(job_out, work)
    else:
        cfg = dict(kv.split("=", 1) for kv in scheduler_options.split(",") if kv)
        if scheduler == "local_cwd":
            cfg.setdefault("log_dir", str(out / "torchx_logs"))
        launch.run_training(launch.train_appdef(*app_args, workers=workers), scheduler=scheduler,
                            cfg=cfg)
    model, prep, metrics = load_model(work)
    t_export = time.time()
    label = contract.label
    doc = export(model, prep, out / "serving",
                 signature_doc(prep, contract.name, contract.version,
                               f"P({label.source} >= {label.threshold:g})"))
    metrics["export_s"] = round(time.time() - t_export, 3)
    metrics["exports"] = {name: e["converted"] for name, e in doc["exports"].items()}
    metrics["model_dir"] = str(out / "serving")
    metrics["train_path"] = train_path
    metrics["wall_s"] = round(time.time() - t0, 3)
    record(record_dir, "train", metrics)
    return float(metrics["samples_per_s"])


def evaluate_stage(model_dir: str, eval_path: str, push_destination: str, contract_path: str,
                   blessing_path: str, record_dir: str = "") -> bool:
    """Candidate and baseline (latest pushed) scored on the same eval rows through onnxruntime.

    The eval rows (a rows reference or any rows source) stream by record batches: each batch is
    scored by both models and digested, and only the labels and probabilities (floats) are kept
    for the metrics, so memory does not grow with the rows' width."""
    from components.torch.export import OnnxScorer

    t0 = time.time()
    contract = _contract(contract_path)
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
    record(record_dir, "evaluate", figures)
    log.info("[torch][evaluate] auc %.4f baseline %s blessed %s on %d eval rows (%s)",
             metrics["auc"], figures["baseline_auc"], decision.blessed, len(scored.labels),
             rows.describe(eval_path))
    return decision.blessed


def push_stage(model_dir: str, blessing_path: str, push_destination: str, run_label: str = "",
               record_dir: str = "") -> str:
    """Publishes the serving folder as a new version, atomically, only when blessed."""
    t0 = time.time()
    blessing = json.loads(Path(blessing_path).read_text())
    pushed_path = ""
    if blessing["blessed"]:
        serving = Path(model_dir) / "serving"
        version = registry.push_atomic(
            push_destination,
            lambda tmp: shutil.copytree(serving, tmp, dirs_exist_ok=True),
            {"stack": "torch", "run": run_label, "auc": blessing["auc"]},
        )
        pushed_path = str(version)
        log.info("[torch][push] pushed %s", version)
    else:
        log.info("[torch][push] model not blessed: not pushed (%s)", "; ".join(blessing["reasons"]))
    record(record_dir, "push", {"wall_s": round(time.time() - t0, 3), "pushed": bool(pushed_path),
                                "pushed_path": pushed_path or None})
    return pushed_path
