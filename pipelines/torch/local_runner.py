"""Runs the PyTorch stack's KFP v2 pipeline on this machine with kfp.local (SubprocessRunner).

Thin: URIs and config in, the factory's pipeline to kfp.local, then run.json (the same shape as
the TFX stack's) from the artifacts kfp.local produced: each task's ``record`` artifact (its
stage figures), copied to ``torch/stages/``, and the validate task's ``validation`` (the gate report).

kfp.local keeps artifacts under a local pipeline root only (it makes the root an absolute local
path, and components write ``artifact.path``); the spans, registry and contract may still be
gs:// URIs, which the stages read through the storage layer.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import sys
import time
import warnings
from pathlib import Path

from components.common.config import STAGES, RunConfig, push_destination, stack_root
from components.common.contract import Contract
from components.common.errors import GateError, StageError
from components.common.gate import load_report
from components.common.ingest import IngestResult
from components.common.layout import GATE_JSON, RUN_JSON
from components.common.resources import ResourceMeter
from components.common.runinfo import run_summary
from components.common.threads import THREADS_ENV
from components.torch import job, launch
from pipelines.torch.pipeline import PIPELINE_NAME, create_pipeline

log = logging.getLogger("twinpipe.torch")


def stack_paths(out_dir: str | Path) -> dict[str, Path]:
    root = stack_root(out_dir, "torch")
    return {
        "root": root,
        "pipeline_root": root / "pipeline_root",
        "records": root / "stages",
        "pushed": root / "pushed",
        "run_json": root / RUN_JSON,
        "validation": root / "validation",
    }


class _TaskClock(io.TextIOBase):
    """kfp.local's console output: kept in a log file, task walls timed from its task events,
    and only twinpipe's own ``[torch][...]`` lines shown (live progress)."""

    _ansi = re.compile(r"\x1b\[[0-9;]*m")
    _start = re.compile(r"Executing task '(\w+)'")
    _end = re.compile(r"Task '(\w+)' finished with status (\w+)")

    def __init__(self, log_path: Path, meter=None):
        self.meter = meter
        self.file = open(log_path, "w")  # noqa: SIM115 — closed by close()
        self.started: dict[str, float] = {}
        self.walls: dict[str, float] = {}
        self._buf = ""

    def write(self, text: str) -> int:
        self.file.write(text)
        self._buf += text
        while "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            self._line(self._ansi.sub("", line))
        return len(text)

    def _line(self, line: str) -> None:
        now = time.time()
        if m := self._start.search(line):
            if self.meter is not None:
                self.meter.enter(m.group(1))
            self.started[m.group(1)] = now
            log.info("[torch][%s] running", m.group(1))
        elif m := self._end.search(line):
            if self.meter is not None:
                self.meter.enter(None)
            self.walls[m.group(1)] = round(now - self.started.get(m.group(1), now), 3)
            log.info("[torch][%s] %s in %.1fs", m.group(1), m.group(2).lower(), self.walls[m.group(1)])
        elif "[torch][" in line:
            sys.stderr.write(line[line.index("[torch]["):] + "\n")

    def close(self) -> None:
        self.file.close()
        super().close()


def run_torch(cfg: RunConfig, contract: Contract, ingested: IngestResult, ingest_s: float,
              scheduler: str = "local_cwd", ingest_resources: dict | None = None) -> dict:
    """Runs the whole pipeline on already-ingested spans and writes ``torch/run.json``."""
    from kfp import local


    paths = stack_paths(cfg.out_dir)
    shutil.rmtree(paths["records"], ignore_errors=True)
    paths["records"].mkdir(parents=True, exist_ok=True)
    paths["pipeline_root"].mkdir(parents=True, exist_ok=True)
    before = set(os.listdir(paths["pipeline_root"]))
    # Components run as `python3 -m kfp.dsl.executor_main`; make that this environment's python.
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    local.init(runner=local.SubprocessRunner(use_venv=False),
               pipeline_root=str(paths["pipeline_root"]), raise_on_error=True)
    pipeline = create_pipeline()
    log.info("[torch] kfp.local SubprocessRunner: spans %s, %d DDP worker(s) via TorchX %s",
             ingested.span_numbers, cfg.workers, scheduler)
    t0 = time.time()
    error = None
    meter = ResourceMeter()
    clock = _TaskClock(paths["root"] / "kfp_local.log", meter)
    try:
        with meter, contextlib.redirect_stdout(clock), warnings.catch_warnings():
            # kfp.local warns for every task that a custom base image runs as a subprocess: here
            # that is the point (the image holds this same environment), so the warning is noise.
            warnings.filterwarnings("ignore", message="You may be attemping to run a task",
                                    category=RuntimeWarning)
            # ... and a gs:// registry given to the importer is read by the stages through the
            # storage layer (its .uri), never as artifact.path, which is what kfp.local warns of.
            warnings.filterwarnings("ignore", message="It looks like you're using the remote file",
                                    category=UserWarning)
            pipeline(
                spans_uri=ingested.spans_dir,
                push_destination=push_destination(cfg, "torch"),
                contract_path=cfg.contract_path or "",
                source=ingested.source,
                workers=cfg.workers,
                epochs=cfg.epochs,
                batch_size=cfg.batch_size,
                learning_rate=cfg.learning_rate,
                scheduler=scheduler,
                run_label=cfg.run_label,
            )
    except Exception as e:  # noqa: BLE001 — reported below with the stage that failed
        error = e
    finally:
        clock.close()
    wall = time.time() - t0
    new_runs = sorted(set(os.listdir(paths["pipeline_root"])) - before)
    if new_runs:
        gather_records(paths["pipeline_root"] / new_runs[-1], paths["records"],
                       paths["validation"])
    summary = collect_run(paths, contract, ingested, ingest_s, wall, cfg, clock.walls,
                          resources=meter.figures(), ingest_resources=ingest_resources)
    paths["run_json"].write_text(json.dumps(summary, indent=2, default=str))
    if error is not None:
        validate = summary["stages"]["validate"]
        if validate.get("passed") is False:
            gate = load_report(validate["report"])
            raise GateError(validate["message"], gate.failed, validate["report"],
                            source=gate.source, quarantine=gate.quarantine) from None
        raise StageError(
            f"[torch][{summary['failed_stage']}] the KFP pipeline failed: {error}. "
            f"Partial run summary: {paths['run_json']}"
        ) from error
    return summary


def gather_records(run_root: Path, records: Path, validation: Path) -> dict[str, Path]:
    """Copies each task's stage figures (``<task>/record/<stage>.json`` under kfp.local's run
    folder) into ``records``, and the validate task's gate report folder into ``validation``
    (the run's report stays where the CLI and alerts have always named it); returns the records
    found. The gate report's own path is rewritten to the copy."""
    found: dict[str, Path] = {}
    for stage in STAGES:
        src = run_root / stage / "record" / f"{stage}.json"
        if src.is_file():
            found[stage] = records / src.name
            shutil.copyfile(src, found[stage])
    report = run_root / "validate" / "validation"
    if report.is_dir():
        shutil.copytree(report, validation, dirs_exist_ok=True)
        if "validate" in found:
            rec = json.loads(found["validate"].read_text())
            rec["report"] = str(validation / GATE_JSON)
            found["validate"].write_text(json.dumps(rec, indent=2, default=str))
    return found


def collect_run(paths, contract: Contract, ingested: IngestResult, ingest_s: float, wall: float,
                cfg: RunConfig, task_walls: dict[str, float], resources: dict | None = None,
                ingest_resources: dict | None = None) -> dict:
    """run.json: each stage's figures from its record; ``wall_s`` is the task's whole wall time
    as kfp.local ran it (subprocess start-up included), ``work_s`` the time inside the stage."""
    stages: dict = {}
    for stage in STAGES:
        f = paths["records"] / f"{stage}.json"
        stages[stage] = json.loads(f.read_text()) if f.exists() else {"wall_s": 0.0}
        stages[stage]["work_s"] = stages[stage].get("wall_s", 0.0)
        stages[stage]["wall_s"] = task_walls.get(stage, stages[stage]["work_s"])
    failed = None
    for stage in STAGES:
        if not (paths["records"] / f"{stage}.json").exists() or stages[stage].get("passed") is False:
            failed = stage
            break
    return run_summary(
        stack="torch", pipeline=PIPELINE_NAME, orchestrator="kfp.local.SubprocessRunner",
        contract=contract, cfg=cfg, ingested=ingested, ingest_s=ingest_s, wall=wall,
        failed_stage=failed, stages=stages, resources=resources,
        ingest_resources=ingest_resources,
    )


def probe_scaling(cfg: RunConfig, contract: Contract, ingested: IngestResult, summary: dict,
                  workers: int, threads: int, batches: list[int], steps: int, warmup: int) -> dict:
    """The scaling probe (:mod:`components.torch.scaling_probe`) on the run's train rows:
    ``workers`` DDP ranks through TorchX dist.ddp + torchrun as the train stage launches them,
    each pinned to ``threads`` (``TWINPIPE_THREADS``), timed at each per-rank batch of
    ``batches``."""
    import tempfile


    tr = summary["stages"]["train"]
    with tempfile.TemporaryDirectory(prefix="torch-probe-") as tmp:
        app_args = [
            "--train", tr["train_path"], "--out", f"{tmp}/probe.json",
            "--numeric", ",".join(c.name for c in contract.numeric_features),
            "--categorical", ",".join(c.name for c in contract.categorical_features),
            "--label", contract.label.name, "--batches", ",".join(map(str, batches)),
            "--steps", str(steps), "--warmup", str(warmup),
            "--learning-rate", str(cfg.learning_rate),
            "--hidden-units", ",".join(str(u) for u in cfg.hidden_units),
        ]
        app = job.train_appdef(*app_args, workers=workers, max_restarts=0,
                                  env={THREADS_ENV: str(threads)},
                                  module="components.torch.scaling_probe")
        launch.run_training(app, "local_cwd", {"log_dir": f"{tmp}/torchx"})
        return json.loads((Path(tmp) / "probe.json").read_text())
