"""`twinpipe alert test` as a user runs it (a real CLI process) against real receivers on
loopback — a Slack-compatible and a webhook HTTP server, an SMTP server, a port nobody listens
on — and what every sink's message says (Slack Block Kit, email lines, webhook structure); and
``alerts.on``: a gate that passed with warnings only alerts only when the contract says ``warn``."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from components.common.alerts import SLACK_FINDINGS, Alert, FailedCheck, _slack_payload, email_body
from components.common.contract import load_contract
from tests.receivers import HttpReceiver, SmtpReceiver, body, free_port, subject

ROOT = Path(__file__).resolve().parents[2]
SLACK_TOKEN, HOOK_TOKEN = "T0KEN-slack-4711", "T0KEN-hook-0815"


@pytest.fixture(autouse=True)
def _no_alert_env(monkeypatch):
    for k in list(os.environ):
        if k.startswith(("TWINPIPE_ALERT", "TWINPIPE_SMTP")):
            monkeypatch.delenv(k)


def _cli(*argv: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TWINPIPE_ALERT", "TWINPIPE_SMTP"))}
    return subprocess.run([sys.executable, "-m", "infra.cli", "alert", "test", *argv],
                          env={**clean, "PYTHONPATH": str(ROOT), **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def _sink_lines(stdout: str) -> dict[str, str]:
    lines = stdout.strip().splitlines()
    return {line.split()[0]: line for line in lines[:-1]}


def test_alert_test_reaches_every_sink_with_the_same_findings(tmp_path):
    slack_file = tmp_path / "slack-url"
    with HttpReceiver() as http, SmtpReceiver() as smtp:
        slack_file.write_text(f"{http.url}/services/{SLACK_TOKEN}\n")
        proc = _cli("--alert-slack-file", str(slack_file), "--alert-smtp", smtp.url(),
                    "--alert-file", str(tmp_path / "extra.jsonl"), "--stack", "torch", cwd=tmp_path,
                    TWINPIPE_ALERT_WEBHOOK=f"{http.url}/hook/{HOOK_TOKEN}")
        got = dict(http.received)
        inbox = list(smtp.inbox)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert SLACK_TOKEN not in out and HOOK_TOKEN not in out and "Traceback" not in out
    sinks = _sink_lines(proc.stdout)
    assert list(sinks) == ["file", "webhook", "slack", "smtp"]
    port = http.url.rsplit(":", 1)[1]
    assert sinks["slack"].split() == ["slack", "delivered", "1", "attempt", f"127.0.0.1:{port}"]
    assert sinks["file"].split()[1:] == ["delivered", "1", "attempt", str(tmp_path / "extra.jsonl")]
    assert sinks["smtp"].split()[1:] == ["delivered", "1", "attempt", f"127.0.0.1:{smtp.port}",
                                         "to", "ops@x.org"]
    assert proc.stdout.strip().splitlines()[-1] == "4 of 4 sink(s) took the test alert."

    # Slack: a header, one section per finding, a context naming stack, span and report
    slack = got[f"/services/{SLACK_TOKEN}"]
    header, *findings, ctx = slack["blocks"]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    head = header["text"]["text"]
    assert head.startswith("[TEST] twinpipe data gate: 2 checks failed — twinpipe-torch / torch span ")
    span = head.rsplit(" ", 1)[1]
    assert len(span) == 6 and span.isdigit()
    assert [b["type"] for b in findings] == ["section", "section"]
    features = [c.name for c in load_contract().features][:2]
    assert findings[0]["text"] == {"type": "mrkdwn", "text": (
        f"• range on column '{features[0]}': observed max 99999, expected &lt;= 5000 (e.g. file "
        f"sample.csv, row 12: column '{features[0]}': value 99999)")}
    assert findings[1]["text"]["text"] == (f"• nulls on column '{features[1]}': observed 5.0% null, "
                                           "expected &lt;= 1.0%")
    assert ctx["type"] == "context"
    context = [e["text"] for e in ctx["elements"]]
    assert context[:3] == ["*stack*: torch", f"*span*: {span}", "*report*: none (a test alert)"]
    assert "no data was checked" in context[-1]
    assert slack["text"].splitlines()[0] == head  # the fallback

    # the webhook: the structure, a summary and the same finding lines
    hook = got[f"/hook/{HOOK_TOKEN}"]
    assert hook["test"] is True and hook["stack"] == "torch" and hook["summary"] == head
    assert [{k: c[k] for k in ("check", "column", "observed", "expected")} for c in hook["checks"]] == [
        {"check": "range", "column": features[0], "observed": "max 99999", "expected": "<= 5000"},
        {"check": "nulls", "column": features[1], "observed": "5.0% null", "expected": "<= 1.0%"}]
    lines = hook["findings"]
    assert [f"• {x.replace('<', '&lt;')}" for x in lines] == [b["text"]["text"] for b in findings]

    # email: the summary as subject, one finding per line, then stack, span, report
    (msg,) = inbox
    assert subject(msg) == head
    text = body(msg).splitlines()
    assert text[:5] == [head, "", *lines, ""]
    assert text[5:8] == ["stack: torch", f"span: {span}", "report: none (a test alert)"]

    # the configured file holds what the webhook got
    (line,) = (tmp_path / "extra.jsonl").read_text().splitlines()
    assert json.loads(line) == hook


def test_a_failing_sink_is_reported_and_the_exit_is_1(tmp_path):
    dead = free_port()  # nobody listens there
    with HttpReceiver() as http:
        (tmp_path / "slack-url").write_text(f"{http.url}/services/{SLACK_TOKEN}")
        proc = _cli("--alert-slack-file", str(tmp_path / "slack-url"), "--attempts", "2",
                    cwd=tmp_path, TWINPIPE_ALERT_WEBHOOK=f"http://127.0.0.1:{dead}/hook/{HOOK_TOKEN}")
        received = len(http.received)
    print(proc.stdout)
    assert proc.returncode == 1 and received == 1
    out = proc.stdout + proc.stderr
    assert SLACK_TOKEN not in out and HOOK_TOKEN not in out and "Traceback" not in out
    assert proc.stderr == ""  # each try's warning is not repeated: the line says it
    sinks = _sink_lines(proc.stdout)
    assert sinks["slack"].split()[1] == "delivered"
    assert sinks["webhook"].startswith(f"webhook  FAILED     2 attempts  127.0.0.1:{dead}: URLError: ")
    assert "Connection refused" in sinks["webhook"]
    assert proc.stdout.strip().splitlines()[-1] == \
        "1 of 2 sink(s) took the test alert; failed: webhook."


def test_no_sink_configured_says_how_to_configure_one(tmp_path):
    proc = _cli(cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("twinpipe: error: alert test: no alert sink is configured")
    assert "--alert-slack-file PATH" in line and "TWINPIPE_ALERT_" in line and "alerts:" in line


def test_the_contracts_alerts_section_is_used(tmp_path):
    import importlib.resources

    text = (importlib.resources.files("components.common") / "flights.yaml").read_text()
    contract = tmp_path / "contract.yaml"
    contract.write_text(text.replace("\nalerts: {}\n", f"\nalerts: {{file: {tmp_path / 'c.jsonl'}, "
                                                       "examples: none}\n"))
    proc = _cli("--contract", str(contract), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert list(_sink_lines(proc.stdout)) == ["file"]
    (line,) = (tmp_path / "c.jsonl").read_text().splitlines()
    doc = json.loads(line)
    assert doc["test"] is True and [c["examples"] for c in doc["checks"]] == [[], []]
    assert "e.g." not in " ".join(doc["findings"])  # examples: none leaves them out of the lines


def test_help_shows_every_default_and_examples(capsys):
    from infra.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["alert", "test", "--help"])
    text = capsys.readouterr().out
    entries: dict[str, str] = {}  # each flag's help, its wrapped lines joined
    for line in text.split("options:", 1)[1].split("examples:", 1)[0].splitlines():
        if line.startswith("  -"):
            flag = line.split()[0].rstrip(",")
            entries[flag] = line
        elif line.startswith("    ") and entries:
            entries[flag] += " " + line.strip()
    assert set(entries) == {"-h", "--contract", "--stack", "--attempts", "--alert-webhook-file",
                            "--alert-slack-file", "--alert-smtp", "--alert-smtp-password-file",
                            "--alert-pubsub", "--alert-file", "-v"}
    for flag, help_text in entries.items():
        assert flag in ("-h", "-v") or "(default: " in help_text, flag
    assert "(default: 4)" in entries["--attempts"] and "(default: tfx)" in entries["--stack"]
    assert "(default: unset)" in entries["--alert-slack-file"]
    assert "examples:\n  # " in text and "twinpipe alert test --contract" in text


# --- the message: one rendering of the findings for every sink ----------------------------------

def _alert(n: int, span: str = "201302", **kw) -> Alert:
    return Alert(pipeline="twinpipe-tfx", stack="tfx", span=span, severity="error",
                 report="gs://b/out/tfx/validation/gate.json",
                 checks=[FailedCheck("range", f"c{i}", f"max {i}", "<= 1", span="201302")
                         for i in range(n)], **kw)


def test_slack_stays_within_block_kit_limits():
    payload = _slack_payload(_alert(SLACK_FINDINGS + 7))
    blocks = payload["blocks"]
    assert len(blocks) <= 50 and len(blocks[0]["text"]["text"]) <= 150
    sections = [b for b in blocks if b["type"] == "section"]
    assert len(sections) == SLACK_FINDINGS + 1
    assert sections[-1]["text"]["text"] == "… and 7 more finding(s) in the report"
    assert len(payload["text"].splitlines()) == SLACK_FINDINGS + 7 + 1  # the fallback has them all
    long = _alert(1)
    long.checks[0].examples = ["x" * 5000]
    long.pipeline = "p" * 200
    (header, section, _) = _slack_payload(long)["blocks"]
    assert len(header["text"]["text"]) == 150 and len(section["text"]["text"]) == 3000


def test_findings_name_their_span_when_the_alert_covers_several_and_mark_warnings():
    alert = _alert(1, span="201301,201302")
    alert.checks.append(FailedCheck("drift", "distance", "0.2", "<= 0.1", policy="warn", span="201301"))
    assert alert.summary() == ("twinpipe data gate: 1 check failed, 1 warning — twinpipe-tfx / tfx "
                               "span 201301,201302")
    lines = email_body(alert).splitlines()
    assert lines[2:4] == ["span 201302: range on column 'c0': observed max 0, expected <= 1",
                          "span 201301: drift on column 'distance': observed 0.2, expected <= 0.1 "
                          "[warning]"]
    assert lines[5:8] == ["stack: tfx", "span: 201301,201302",
                          "report: gs://b/out/tfx/validation/gate.json"]


# --- alerts.on: a gate with warnings only ---------------------------------------------------------

@pytest.mark.parametrize("on", ["fail", "warn"])
def test_warnings_alone_alert_only_with_alerts_on_warn(on, tmp_path, monkeypatch):
    from components.common.gate import GateReport, enforce

    contract = load_contract()
    assert contract.alert_on == "fail"  # the default
    contract = replace(contract, alert_on=on)
    with HttpReceiver() as http:
        monkeypatch.setenv("TWINPIPE_ALERT_WEBHOOK", f"{http.url}/hook/{HOOK_TOKEN}")
        warn = GateReport(source="/in/jan.csv", spans=[201301], checks=[
            FailedCheck("drift", "distance", "0.2", "<= 0.1", policy="warn", span="201301")])
        enforce(warn, contract=contract, stack="torch", pipeline="twinpipe-torch",
                report_dir=tmp_path / "v")
        received = [body for _, body in http.received]
    own = tmp_path / "v" / "alerts.jsonl"
    assert (tmp_path / "v" / "gate.json").is_file()  # the warning is recorded either way
    if on == "fail":
        assert received == [] and not own.exists() and "alerts" not in warn.figures
    else:
        (hook,) = received
        assert hook["severity"] == "warning" and hook["summary"] == (
            "twinpipe data gate: 1 warning — twinpipe-torch / torch span 201301")
        assert hook["findings"] == ["drift on column 'distance': observed 0.2, expected <= 0.1 [warning]"]
        assert [r["sink"] for r in warn.figures["alerts"] if r["delivered"]] == ["file", "webhook"]
