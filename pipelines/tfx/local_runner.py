"""Runs the TFX pipeline on this machine: LocalDagRunner, Beam DirectRunner, MLMD on SQLite.

Thin: paths and config in, the factory's pipeline out to LocalDagRunner, then run.json built
from what MLMD recorded (per-node wall times, artifacts, custom properties).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import re
import time
from pathlib import Path

from components.common.beam_options import default_beam_args, direct_mode, override_beam_args, tuned_mode
from components.common.config import STAGES, RunConfig, push_destination, stack_root
from components.common.contract import Contract
from components.common.errors import DataError, StageError
from components.common.gate import load_report
from components.common.ingest import IngestResult
from components.common.layout import GATE_JSON, RUN_JSON, TRAIN_METRICS_JSON
from components.common.resources import ResourceMeter
from components.common.runinfo import run_summary
from components.tfx.eval_rows import eval_rows_digest
from components.tfx.export import signature_json
from components.tfx.launch import launch_local_workers
from components.tfx.scaling_probe import merge_workers
from components.tfx.schema import write_schema
from pipelines.tfx.pipeline import STAGE_OF_NODE, create_pipeline

log = logging.getLogger("twinpipe.tfx")

PIPELINE_NAME = "twinpipe-tfx"


def stack_paths(out_dir: str | Path) -> dict[str, Path]:
    root = stack_root(out_dir, "tfx")
    return {
        "root": root,
        "pipeline_root": root / "pipeline_root",
        "metadata": root / "metadata.sqlite",
        "schema": root / "schema" / "schema.pbtxt",
        "pushed": root / "pushed",
        "run_json": root / RUN_JSON,
        "validation": root / "validation",
    }


def train_config(cfg: RunConfig, contract: Contract, train_rows: int) -> dict:
    return {
        "numeric": [c.name for c in contract.numeric_features],
        "categorical": [c.name for c in contract.categorical_features],
        "label": contract.label.name,
        "workers": cfg.workers,
        "batch_size": cfg.batch_size,
        "epochs": cfg.epochs,
        "learning_rate": cfg.learning_rate,
        "hidden_units": list(cfg.hidden_units),
        "train_rows": train_rows,
        "examples_format": cfg.tfx_examples,
        # Tuned settings (``--tuning``), only when set: the Trainer's own defaults otherwise.
        **({"steps_per_execution": cfg.steps_per_execution} if cfg.steps_per_execution else {}),
        **({"threads": cfg.threads} if cfg.threads else {}),
    }


def local_beam_args(cfg: RunConfig, rows: int) -> tuple[list[str], dict | None]:
    """The Beam options of this run and what run.json records of their mode: the defaults are
    sized by ``rows`` (``components.common.beam_options.direct_mode``), the ``--beam-arg`` overrides applied
    over them; Beam options a caller set in ``cfg.beam_args`` itself are kept as given."""

    if tuple(cfg.beam_args) != tuple(override_beam_args(default_beam_args(), cfg.beam_overrides)):
        return list(cfg.beam_args), None
    mode = direct_mode(rows)
    if cfg.beam_mode:  # the tuning's choice, measured on this machine (comparison/tuning)
        mode = tuned_mode(cfg.beam_mode, rows)
    return override_beam_args(mode.args(), cfg.beam_overrides), mode.record()


class _NodeProgress:
    """Turns LocalDagRunner's 'Component X is running/finished.' into [tfx][stage] lines and
    stage boundaries for the resource meter.

    It wraps the runner module's own ``logging`` (absl) rather than listening on a logger: an
    in-process Beam job can raise the absl logger's level mid-run, which would silently drop
    the INFO records a handler depends on.
    """

    _pattern = re.compile(r"Component (\S+) is (running|finished)\.")

    def __init__(self, real, meter=None):
        self.real = real
        self.meter = meter
        self.started: dict[str, float] = {}

    def __getattr__(self, name):
        return getattr(self.real, name)

    def info(self, msg, *args, **kwargs):
        if isinstance(msg, str):
            m = self._pattern.match(msg % args if args else msg)
            if m:
                self._event(*m.groups())
        return self.real.info(msg, *args, **kwargs)

    def _event(self, node: str, state: str) -> None:
        stage = STAGE_OF_NODE.get(node, node)
        if self.meter is not None:
            self.meter.enter(stage if state == "running" else None)
        if state == "running":
            self.started[node] = time.time()
            log.info("[tfx][%s] %s running", stage, node)
        else:
            took = time.time() - self.started.get(node, time.time())
            log.info("[tfx][%s] %s finished in %.1fs", stage, node, took)


@contextlib.contextmanager
def _stage_progress(meter=None):
    from tfx.orchestration.local import local_dag_runner

    real = local_dag_runner.logging
    local_dag_runner.logging = _NodeProgress(real, meter)
    try:
        yield
    finally:
        local_dag_runner.logging = real


def run_tfx(cfg: RunConfig, contract: Contract, ingested: IngestResult, ingest_s: float,
            ingest_resources: dict | None = None) -> dict:
    """Runs the whole TFX pipeline on already-ingested spans and writes ``tfx/run.json``."""
    from tfx import v1 as tfx


    paths = stack_paths(cfg.out_dir)
    paths["root"].mkdir(parents=True, exist_ok=True)
    beam, beam_mode = local_beam_args(cfg, ingested.rows)
    cfg = dataclasses.replace(cfg, beam_args=tuple(beam))
    if beam_mode is not None:
        log.info("[tfx] Beam %s, %s, %d worker(s) for %d rows", beam_mode["runner"],
                 beam_mode["running_mode"], beam_mode["workers"], ingested.rows)
    write_schema(contract, paths["schema"])
    eval_schema = paths["schema"].with_name("eval_schema.pbtxt")
    if cfg.tfx_examples == "parquet":
        write_schema(contract, eval_schema, eval_schema=True)
    train_rows = sum(s.train_rows for s in ingested.spans)
    tcfg = train_config(cfg, contract, train_rows)
    pipeline = create_pipeline(
        pipeline_name=PIPELINE_NAME,
        pipeline_root=str(paths["pipeline_root"]),
        spans_dir=ingested.spans_dir,
        schema_path=str(paths["schema"]),
        push_destination=push_destination(cfg, "tfx"),
        contract=contract,
        train_config=tcfg,
        train_steps=cfg.epochs * math.ceil(train_rows / cfg.batch_size),
        beam_pipeline_args=list(cfg.beam_args),
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(paths["metadata"])
        ),
        signature_json=signature_json(contract),
        run_label=cfg.run_label,
        data_source=ingested.source,
        report_dir=str(paths["validation"]),
        contract_path=cfg.contract_path or "",
        examples_format=cfg.tfx_examples,
        eval_schema_path=str(eval_schema) if cfg.tfx_examples == "parquet" else "",
    )
    log.info("[tfx] LocalDagRunner: %d components, spans %s", len(pipeline.components),
             ingested.span_numbers)
    t0 = time.time()
    error = None
    try:
        with ResourceMeter() as meter, _stage_progress(meter):
            tfx.orchestration.LocalDagRunner().run(pipeline)
    except Exception as e:  # noqa: BLE001 — reported below with the stage that failed
        error = e
    wall = time.time() - t0
    summary = collect_run(paths, contract, ingested, ingest_s, wall, cfg,
                          resources=meter.figures(), ingest_resources=ingest_resources,
                          beam_mode=beam_mode)
    paths["run_json"].write_text(json.dumps(summary, indent=2, default=str))
    if error is not None:
        cause = error
        while cause is not None and not isinstance(cause, DataError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            cause.__traceback__ = None
            raise cause from None
        failed = summary.get("failed_stage") or "unknown stage"
        raise StageError(
            f"[tfx][{failed}] the TFX pipeline failed: {type(error).__name__}: {error}. "
            f"Partial run summary: {paths['run_json']}"
        ) from error
    return summary


def _run_executions(store, pipeline_name: str) -> dict:
    """{node_id: execution} of the newest pipeline run (LocalDagRunner's pipeline_run context).

    Earlier runs share the same MLMD; nodes the newest run never started are absent.
    """
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        return {}
    run_exec_ids = {e.id for e in store.get_executions_by_context(max(runs, key=lambda c: c.id).id)}
    out = {}
    prefix = f"{pipeline_name}."
    for ctx in store.get_contexts_by_type("node"):
        if not ctx.name.startswith(prefix):
            continue
        execs = [e for e in store.get_executions_by_context(ctx.id) if e.id in run_exec_ids]
        if execs:
            out[ctx.name[len(prefix):]] = max(execs, key=lambda e: e.id)
    return out


def _outputs(store, execution, kind: str = "OUTPUT") -> dict:
    """{output key: [artifacts]} of one execution (its inputs with ``kind="INPUT"``)."""
    from ml_metadata.proto import metadata_store_pb2

    events = store.get_events_by_execution_ids([execution.id])
    out_events = [e for e in events if e.type == metadata_store_pb2.Event.Type.Value(kind)]
    arts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in out_events])}
    result: dict = {}
    for e in out_events:
        key = e.path.steps[0].key if e.path.steps else ""
        result.setdefault(key, []).append(arts[e.artifact_id])
    return result


def _prop(artifact, name):
    p = artifact.custom_properties.get(name)
    if p is None:
        return None
    return p.int_value if p.HasField("int_value") else p.string_value


def _tfma_metrics(evaluation_uri: str) -> dict[str, dict[str, float]]:
    """Overall-slice metrics by model: {"candidate": {...}, "baseline": {...}} (diffs left out)."""
    import tensorflow_model_analysis as tfma

    by_model: dict[str, dict[str, float]] = {"candidate": {}, "baseline": {}}
    for m in tfma.load_metrics(evaluation_uri):
        if m.slice_key.single_slice_keys:
            continue  # overall slice only
        for kv in m.metric_keys_and_values:
            if kv.key.is_diff:
                continue
            model = "baseline" if kv.key.model_name == "baseline" else "candidate"
            by_model[model][kv.key.name] = kv.value.double_value.value
    return by_model


def _scored_rows(store, evaluator, contract: Contract) -> dict:
    """The key digest of the eval examples the Evaluator read (its own input artifact)."""

    t0 = time.time()
    (examples,) = _outputs(store, evaluator, "INPUT")["examples"]
    digest = eval_rows_digest(examples.uri, contract.split.key)
    return {"eval_rows_sha256": digest.sha256, "eval_rows_hashed": digest.rows,
            "eval_rows_key": list(contract.split.key),
            "eval_rows_digest_s": round(time.time() - t0, 3)}


def collect_run(paths, contract, ingested: IngestResult, ingest_s: float, wall: float,
                cfg: RunConfig, resources: dict | None = None,
                ingest_resources: dict | None = None, beam_mode: dict | None = None) -> dict:
    """run.json from MLMD: per-stage wall seconds and key figures."""
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2

    conn = metadata_store_pb2.ConnectionConfig()
    conn.sqlite.filename_uri = str(paths["metadata"])
    store = mlmd.MetadataStore(conn)
    execs = _run_executions(store, PIPELINE_NAME)

    nodes = {}
    for node_id, e in execs.items():
        nodes[node_id] = {
            "state": metadata_store_pb2.Execution.State.Name(e.last_known_state),
            "wall_s": round((e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000, 3),
        }
    stages = {s: {"wall_s": 0.0, "nodes": []} for s in STAGES}
    for node_id, info in nodes.items():
        st = stages[STAGE_OF_NODE.get(node_id, "train")]
        st["wall_s"] = round(st["wall_s"] + info["wall_s"], 3)
        st["nodes"].append({"id": node_id, **info})
    failed = [n for n, i in nodes.items() if i["state"] == "FAILED"]

    stages["ingest"].update(rows=ingested.rows, spans=ingested.span_numbers)
    stages["validate"]["passed"] = (
        nodes.get("validate_gate", {}).get("state") == "COMPLETE"
    )
    gate = paths["validation"] / GATE_JSON
    if gate.exists() and "validate_gate" in nodes:
        found = load_report(gate).checks
        stages["validate"].update(report=str(gate), checks=len(found),
                                  warnings=[c.line() for c in found if c.policy == "warn"])
    if "transform" in execs and nodes["transform"]["state"] == "COMPLETE":
        outs = _outputs(store, execs["transform"])
        stages["train"]["transform_graph_uri"] = outs["transform_graph"][0].uri
        if outs.get("transformed_examples"):  # materialized on the tfrecord path only
            stages["train"]["transformed_examples_uri"] = outs["transformed_examples"][0].uri
    if "ingest" in execs and nodes["ingest"]["state"] == "COMPLETE":
        examples = _outputs(store, execs["ingest"]).get("examples", [None])[0]
        if examples is not None:
            stages["ingest"]["examples_uri"] = examples.uri
    if "train" in execs and nodes["train"]["state"] == "COMPLETE":
        run_dir = _outputs(store, execs["train"]).get("model_run", [None])[0]
        model = _outputs(store, execs["train"]).get("model", [None])[0]
        if run_dir is not None:
            tm = json.loads((Path(run_dir.uri) / TRAIN_METRICS_JSON).read_text())
            stages["train"].update(tm)
        if model is not None:
            stages["train"]["model_uri"] = model.uri
    if "evaluate" in execs and nodes["evaluate"]["state"] == "COMPLETE":
        outs = _outputs(store, execs["evaluate"])
        evaluation, blessing = outs["evaluation"][0], outs["blessing"][0]
        by_model = _tfma_metrics(evaluation.uri)
        metrics = by_model["candidate"]
        baseline_src = None
        if "baseline" in execs:
            b = _outputs(store, execs["baseline"]).get("baseline", [None])[0]
            baseline_src = _prop(b, "baseline_source") if b is not None else None
        rule = contract.blessing
        stages["evaluate"].update(
            metrics={k: round(v, 6) for k, v in metrics.items()},
            auc=metrics.get("auc"),
            eval_rows=int(metrics.get("example_count", 0)),
            blessed=_prop(blessing, "blessed") == 1,
            baseline=baseline_src or None,
            baseline_auc=by_model["baseline"].get(rule.metric) if baseline_src else None,
            rule={"metric": rule.metric, "lower_bound": rule.lower_bound,
                  "max_regression": rule.max_regression},
            evaluation_uri=evaluation.uri,
        )
        stages["evaluate"].update(_scored_rows(store, execs["evaluate"], contract))
    if "push" in execs and nodes["push"]["state"] == "COMPLETE":
        pm = _outputs(store, execs["push"])["pushed_model"][0]
        stages["push"].update(pushed=_prop(pm, "pushed") == 1,
                              pushed_path=_prop(pm, "pushed_destination") or None)
    summary = run_summary(
        stack="tfx", pipeline=PIPELINE_NAME, orchestrator="tfx.LocalDagRunner", contract=contract,
        cfg=cfg, ingested=ingested, ingest_s=ingest_s, wall=wall,
        failed_stage=STAGE_OF_NODE.get(failed[0]) if failed else None, stages=stages,
        resources=resources, ingest_resources=ingest_resources, beam_args=list(cfg.beam_args),
        beam_mode=beam_mode,
    )
    return summary


def retrain_spec(summary: dict, work_dir: str, config: dict) -> dict:
    """A Trainer spec that trains again on what the run's Trainer read (the scaling probe, the
    fault-tolerance measurement): the Transform's output, or on the Parquet path ExampleGen's
    payload with the Transform graph; its serving model and run folder under ``work_dir``."""
    tr = summary["stages"]["train"]
    examples = tr.get("transformed_examples_uri")
    if examples is None:
        examples = summary["stages"]["ingest"]["examples_uri"]
        config = {**config, "examples_format": "parquet"}
    return {
        "train_files": [f"{examples}/Split-train/*"],
        "eval_files": [f"{examples}/Split-eval/*"],
        "transform_output": tr["transform_graph_uri"],
        "serving_model_dir": f"{work_dir}/serving",
        "model_run_dir": f"{work_dir}/run",
        "config": config,
    }


def probe_scaling(cfg: RunConfig, contract: Contract, ingested: IngestResult, summary: dict,
                  workers: int, threads: int, batches: list[int], steps: int, warmup: int) -> dict:
    """The scaling probe (:mod:`components.tfx.scaling_probe`) on the run's Transform output:
    ``workers`` processes launched as the Trainer launches them, each pinned to ``threads``,
    timed at each per-worker batch of ``batches``; the workers' figures merged."""
    import tempfile


    with tempfile.TemporaryDirectory(prefix="tfx-probe-") as tmp:
        config = train_config(cfg, contract, sum(s.train_rows for s in ingested.spans))
        spec = {**retrain_spec(summary, tmp, {**config, "workers": workers}),
                "probe": {"out_dir": f"{tmp}/probe", "batches": list(batches), "steps": steps,
                          "warmup": warmup}}
        launch_local_workers(spec, workers, worker_threads=threads, max_restarts=0)  # a probe
        return merge_workers([json.loads(p.read_text())
                              for p in sorted(Path(tmp, "probe").glob("worker-*.json"))])
