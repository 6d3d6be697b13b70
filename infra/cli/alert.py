"""`twinpipe alert test`: a sample alert, marked as a test, to every sink a run would use (the
``--alert-*`` flags over ``TWINPIPE_ALERT_*`` over the contract's ``alerts:``), one line per
delivery; exit 0 when every sink took it, 1 when one did not or none is configured."""

from __future__ import annotations

import argparse
import logging
import time

from components.common.alerts import Alert, AlertConfig, FailedCheck, send
from components.common.contract import Contract, load_contract
from components.common.errors import TwinpipeError
from infra.cli.commands import STACKS, alert_env

EXAMPLES = """examples:
  # the sinks a run would use: environment (e.g. the cluster's Secret) and the contract
  twinpipe alert test
  # a Slack webhook URL kept in a file (never in argv), plus email over STARTTLS
  TWINPIPE_SMTP_USER=alerts twinpipe alert test --alert-slack-file ~/.slack-url \\
      --alert-smtp 'smtp+starttls://mail.example.org:587/?from=tp@example.org&to=ops@example.org' \\
      --alert-smtp-password-file ~/.smtp-password
  # the sinks of your own contract, one try per sink
  twinpipe alert test --contract my-contract.yaml --attempts 1

exit status: 0 every sink took the test alert, 1 one did not (or no sink is configured)."""


class _DefaultsShown(argparse.RawDescriptionHelpFormatter):
    """Every flag's help ends with its default ("unset" for none), the epilog kept as written."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is argparse.SUPPRESS or "default" in text or not action.option_strings \
                or action.help is argparse.SUPPRESS:
            return text
        shown = "unset" if action.default is None else "%(default)s"
        return f"{text} (default: {shown})"


def add_alert_parser(sub, alert_flags) -> None:
    """``twinpipe alert test``; ``alert_flags`` adds the run's ``--alert-*`` flags."""
    a = sub.add_parser("alert", help="alert sinks: `alert test` sends a sample alert to each")
    asub = a.add_subparsers(dest="alert_command", required=True, metavar="test")
    t = asub.add_parser("test", formatter_class=_DefaultsShown, epilog=EXAMPLES,
                        help="send a sample alert, marked as a test, to every configured sink",
                        description="Sends a sample alert, marked [TEST], to every sink a run "
                                    "would alert:\nthe --alert-* flags, over the TWINPIPE_ALERT_* "
                                    "environment, over the contract's\nalerts: section. Prints "
                                    "one line per sink: delivered or FAILED, attempts, where\n"
                                    "(never a secret), the error.")
    t.add_argument("--contract", default=None, metavar="PATH",
                   help="contract YAML whose alerts: section (sinks, examples) applies "
                        "(default: the packaged flights contract)")
    t.add_argument("--stack", choices=STACKS, default="tfx",
                   help="the stack the sample alert names")
    t.add_argument("--attempts", type=int, choices=range(1, 11), default=AlertConfig.attempts,
                   metavar="N", help="tries per sink, with backoff between (a run's setting)")
    alert_flags(t)
    t.set_defaults(func=cmd_alert_test)


def sample_alert(contract: Contract, stack: str) -> Alert:
    """Two made-up findings on the contract's first feature columns, the alert marked a test."""
    cols = [c.name for c in contract.features][:2] or ["column"]
    first, second = cols[0], cols[-1]
    return Alert(pipeline=f"twinpipe-{stack}", stack=stack, span=time.strftime("%Y%m"),
                 severity="error", test=True, source="twinpipe alert test (no input)",
                 report="none (a test alert)",
                 checks=[FailedCheck("range", first, observed="max 99999", expected="<= 5000",
                                     examples=[f"file sample.csv, row 12: column '{first}': "
                                               "value 99999"]),
                         FailedCheck("nulls", second, observed="5.0% null", expected="<= 1.0%")])


def cmd_alert_test(args) -> int:
    alert_env(args)  # flags -> environment; secrets reach nothing but files; bad settings stop
    contract = load_contract(args.contract)
    cfg = AlertConfig.from_env(dict(contract.alerts), examples=contract.alert_examples,
                               attempts=args.attempts).check()
    if not cfg.sinks():
        raise TwinpipeError(
            "alert test: no alert sink is configured, so nothing was sent. Give one with an "
            "--alert-* flag (e.g. --alert-slack-file PATH, --alert-smtp URL), a TWINPIPE_ALERT_* "
            f"variable, or the alerts: section of the contract ({contract.path}); see docs/alerts.md.")
    if not args.verbose:  # each try's warning would repeat what the lines below say
        logging.getLogger("twinpipe.alerts").setLevel(logging.ERROR)
    results = send(sample_alert(contract, args.stack), cfg)
    width = max(len(r["sink"]) for r in results)
    for r in results:
        tries = f"{r['attempts']} attempt{'s' if r['attempts'] != 1 else ''}"
        status = "delivered" if r["delivered"] else "FAILED"
        error = "" if r["delivered"] else f": {r['error']}"
        print(f"{r['sink']:<{width}}  {status:<9}  {tries:<10}  {cfg.where(r)}{error}")
    failed = [r["sink"] for r in results if not r["delivered"]]
    print(f"{len(results) - len(failed)} of {len(results)} sink(s) took the test alert"
          + (f"; failed: {', '.join(failed)}" if failed else "") + ".")
    return 1 if failed else 0
