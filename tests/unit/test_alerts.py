"""Alert sinks against real receivers on loopback: an HTTP server (webhook + Slack), SMTP servers
(aiosmtpd: plain, STARTTLS, implicit TLS, login), the Pub/Sub emulator from gcloud; transient
delivery failures retry with backoff, permanent ones do not, none raises; secrets (webhook and
Slack URLs, the SMTP password) never show in results, logs, reprs, or a child's environment/argv."""

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from components.common.alerts import EXAMPLES, Alert, AlertConfig, FailedCheck, send, smtp_settings
from components.common.contract import load_contract
from components.common.errors import ContractError
from tests.receivers import HttpReceiver, SmtpReceiver, body, free_port, self_signed_cert, subject


@pytest.fixture(autouse=True)
def _no_alert_env(monkeypatch):
    """Each test sees only the alert settings it makes."""
    for k in list(os.environ):
        if k.startswith(("TWINPIPE_ALERT", "TWINPIPE_SMTP")):
            monkeypatch.delenv(k)


def _alert() -> Alert:
    return Alert(pipeline="twinpipe-torch", stack="torch", span="201302", severity="error",
                 checks=[FailedCheck("range", "distance", observed="max 99999", expected="<= 5000",
                                     examples=[{"flight": 1545, "distance": 99999}])],
                 report="/tmp/out/torch/stages/validate.json", source="/tmp/bad.csv")


@pytest.fixture()
def http():
    with HttpReceiver() as receiver:
        yield receiver


def test_webhook_slack_and_file_receive_the_alert(http, tmp_path):
    url, handler = http.url, http
    cfg = AlertConfig(webhook=f"{url}/hook", slack=f"{url}/slack", file=str(tmp_path / "a.jsonl"),
                      backoff_s=0.01)
    results = send(_alert(), cfg)
    assert [r["delivered"] for r in results] == [True, True, True]
    got = dict(handler.received)
    assert got["/hook"]["checks"][0]["observed"] == "max 99999"
    assert got["/hook"]["span"] == "201302" and got["/hook"]["report"].endswith("validate.json")
    slack = got["/slack"]
    assert "distance" in slack["text"] and "99999" in slack["text"]  # the plain fallback
    header, finding, ctx = slack["blocks"]
    assert header["text"]["text"] == "twinpipe data gate: 1 check failed — twinpipe-torch / torch span 201302"
    assert finding["text"]["text"].startswith(
        "• range on column 'distance': observed max 99999, expected &lt;= 5000 (e.g. {")
    assert [e["text"] for e in ctx["elements"]] == [
        "*stack*: torch", "*span*: 201302", "*report*: /tmp/out/torch/stages/validate.json",
        "*input*: /tmp/bad.csv"]
    line = json.loads((tmp_path / "a.jsonl").read_text().splitlines()[0])
    assert line["stack"] == "torch" and line["checks"][0]["examples"][0]["flight"] == 1545


def test_failed_deliveries_retry_with_backoff_and_never_raise(http):
    url, handler = http.url, http
    handler.fail_first = 2
    t0 = time.perf_counter()
    (ok,) = send(_alert(), AlertConfig(webhook=f"{url}/hook", attempts=4, backoff_s=0.05))
    assert ok == {"sink": "webhook", "delivered": True, "attempts": 3}
    assert time.perf_counter() - t0 >= 0.05 + 0.1  # two backoffs: 0.05 s then 0.1 s
    dead = free_port()  # a port nobody listens on
    (bad,) = send(_alert(), AlertConfig(webhook=f"http://127.0.0.1:{dead}/x", attempts=2,
                                        backoff_s=0.01, timeout_s=1))
    assert bad["delivered"] is False and bad["attempts"] == 2 and "Error" in bad["error"]


def test_email_reaches_an_smtp_server(tmp_path):
    with SmtpReceiver() as smtp:
        (r,) = send(_alert(), AlertConfig(smtp=smtp.url("tp@x.org", "ops@x.org")))
    assert r["delivered"] is True
    (msg,) = smtp.inbox
    assert msg["To"] == "ops@x.org"
    assert subject(msg) == "twinpipe data gate: 1 check failed — twinpipe-torch / torch span 201302"
    assert body(msg).splitlines()[2] == ("range on column 'distance': observed max 99999, expected "
                                         "<= 5000 (e.g. {'flight': 1545, 'distance': 99999})")


def test_pubsub_emulator_receives_the_alert(tmp_path):
    if not shutil.which("gcloud"):
        pytest.skip("gcloud (with its Pub/Sub emulator) is not installed on this machine")
    port = free_port()
    proc = subprocess.Popen(["gcloud", "beta", "emulators", "pubsub", "start",
                             f"--host-port=127.0.0.1:{port}", f"--data-dir={tmp_path}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    os.environ["PUBSUB_EMULATOR_HOST"] = f"127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        from google.cloud import pubsub_v1

        topic, sub = "projects/tp/topics/alerts", "projects/tp/subscriptions/alerts-test"
        pubsub_v1.PublisherClient().create_topic(name=topic)
        subscriber = pubsub_v1.SubscriberClient()
        subscriber.create_subscription(name=sub, topic=topic)
        (r,) = send(_alert(), AlertConfig(pubsub=topic, timeout_s=20))
        assert r["delivered"] is True
        resp = subscriber.pull(subscription=sub, max_messages=1, timeout=20)
        (m,) = resp.received_messages
        body = json.loads(m.message.data)
        assert body["pipeline"] == "twinpipe-torch" and m.message.attributes["severity"] == "error"
    finally:
        os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def test_config_from_env_and_flags(monkeypatch):
    monkeypatch.setenv("TWINPIPE_ALERT_WEBHOOK", "http://env/hook")
    monkeypatch.setenv("TWINPIPE_ALERT_SLACK", "http://env/slack")
    cfg = AlertConfig.from_env(webhook="http://flag/hook")
    assert cfg.webhook == "http://flag/hook" and cfg.slack == "http://env/slack"
    # the contract's alerts: section is the base, the environment overrides it
    cfg = AlertConfig.from_env({"smtp": "smtp://contract:25/", "slack": "http://contract/slack"})
    assert cfg.smtp == "smtp://contract:25/" and cfg.slack == "http://env/slack"
    assert cfg.sinks() == ["webhook", "slack", "smtp"]


# --- the run's own file, retries ---------------------------------------------------------------

def test_the_runs_own_file_is_always_written_and_a_configured_file_comes_on_top(tmp_path):
    own, extra = tmp_path / "run" / "alerts.jsonl", tmp_path / "ops" / "all.jsonl"
    results = send(_alert(), AlertConfig(file=str(extra)), default_file=str(own))
    assert [(r["sink"], r["path"], r["delivered"]) for r in results] == \
        [("file", str(own), True), ("file", str(extra), True)]
    for p in (own, extra):
        (line,) = p.read_text().splitlines()
        assert json.loads(line)["span"] == "201302"
    # the same file named twice gets the alert once
    (r,) = send(_alert(), AlertConfig(file=str(own)), default_file=str(own))
    assert r["delivered"] and len(own.read_text().splitlines()) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_an_http_4xx_answer_is_not_retried(status):
    with HttpReceiver(fail_first=10, status=status) as http:
        (r,) = send(_alert(), AlertConfig(webhook=f"{http.url}/hook", attempts=4, backoff_s=0.01))
    assert r["delivered"] is False and r["attempts"] == 1 and f"HTTP Error {status}" in r["error"]
    assert http.hits == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_429_and_5xx_answers_are_retried(status):
    with HttpReceiver(fail_first=2, status=status) as http:
        (r,) = send(_alert(), AlertConfig(webhook=f"{http.url}/hook", attempts=4, backoff_s=0.01))
    assert r == {"sink": "webhook", "delivered": True, "attempts": 3}
    assert http.hits == 3 and len(http.received) == 1


def test_a_receiver_that_never_answers_times_out_and_is_retried():
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        t0 = time.perf_counter()
        (r,) = send(_alert(), AlertConfig(webhook=f"http://127.0.0.1:{port}/hook", attempts=2,
                                          backoff_s=0.01, timeout_s=0.3))
    assert r["delivered"] is False and r["attempts"] == 2 and "timed out" in r["error"]
    assert time.perf_counter() - t0 < 5


# --- SMTP: STARTTLS, implicit TLS, login -----------------------------------------------------

PASSWORD = "pw-3xQ9-never-shown"


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture()
def trusted(cert, monkeypatch):
    """ssl.create_default_context() trusts the test certificate, and only for this test."""
    monkeypatch.setenv("SSL_CERT_FILE", cert[0])
    return cert


@pytest.mark.parametrize("form", ["query", "scheme"])
def test_email_over_starttls_with_login(trusted, monkeypatch, form):
    monkeypatch.setenv("TWINPIPE_SMTP_USER", "alerts")
    monkeypatch.setenv("TWINPIPE_SMTP_PASSWORD", PASSWORD)
    with SmtpReceiver(tls="starttls", cert=trusted, users={"alerts": PASSWORD}) as smtp:
        url = (smtp.url() + "&starttls=true" if form == "query"
               else smtp.url().replace("smtp://", "smtp+starttls://"))
        (r,) = send(_alert(), AlertConfig.from_env(smtp=url))
    assert r == {"sink": "smtp", "delivered": True, "attempts": 1}
    (msg,) = smtp.inbox
    assert "201302" in subject(msg) and "distance" in body(msg)
    assert [(login, ok) for _, login, ok in smtp.logins] == [("alerts", True)]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # the TLS is implicit
def test_email_over_implicit_tls_with_the_password_from_a_file(trusted, monkeypatch, tmp_path):
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    monkeypatch.setenv("TWINPIPE_SMTP_USER", "alerts")
    monkeypatch.setenv("TWINPIPE_SMTP_PASSWORD_FILE", str(tmp_path / "pw"))
    with SmtpReceiver(tls="implicit", cert=trusted, users={"alerts": PASSWORD}) as smtp:
        assert smtp.url().startswith("smtps://")
        (r,) = send(_alert(), AlertConfig.from_env(smtp=smtp.url()))
    assert r["delivered"] is True and len(smtp.inbox) == 1
    assert [(login, ok) for _, login, ok in smtp.logins] == [("alerts", True)]


def test_a_wrong_smtp_password_is_not_delivered_and_not_retried(trusted, caplog):
    cfg = AlertConfig(smtp="", smtp_user="alerts", smtp_password=PASSWORD, attempts=4, backoff_s=0.01)
    with SmtpReceiver(tls="starttls", cert=trusted, users={"alerts": "the-right-one"}) as smtp:
        cfg = replace(cfg, smtp=smtp.url().replace("smtp://", "smtp+starttls://"))
        with caplog.at_level(logging.WARNING, logger="twinpipe.alerts"):
            (r,) = send(_alert(), cfg)
    assert r["delivered"] is False and r["attempts"] == 1 and "535" in r["error"]
    assert smtp.inbox == []
    assert smtp.logins and not any(ok for _, _, ok in smtp.logins)
    assert len({peer for peer, _, _ in smtp.logins}) == 1  # one connection: no retry
    assert PASSWORD not in json.dumps(r) + caplog.text


def test_an_untrusted_certificate_gets_no_login_and_no_retry(cert, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)  # the system CAs do not know this cert
    with SmtpReceiver(tls="starttls", cert=cert, users={"alerts": PASSWORD}) as smtp:
        (r,) = send(_alert(), AlertConfig(smtp=smtp.url() + "&starttls=1", smtp_user="alerts",
                                          smtp_password=PASSWORD, backoff_s=0.01))
    assert r["delivered"] is False and r["attempts"] == 1 and "CERTIFICATE_VERIFY_FAILED" in r["error"]
    assert smtp.logins == [] and smtp.inbox == []


def test_no_starttls_no_login_in_clear(trusted):
    # a server that requires STARTTLS refuses a plain client: permanent (5xx), not retried
    with SmtpReceiver(tls="starttls", cert=trusted) as smtp:
        (r,) = send(_alert(), AlertConfig(smtp=smtp.url(), backoff_s=0.01))
    assert r["delivered"] is False and r["attempts"] == 1 and "530" in r["error"]
    # credentials over a URL without TLS: refused before connecting
    with SmtpReceiver() as smtp:
        (r,) = send(_alert(), AlertConfig(smtp=smtp.url(), smtp_user="alerts",
                                          smtp_password=PASSWORD, backoff_s=0.01))
    assert r["delivered"] is False and r["attempts"] == 1 and "no TLS" in r["error"]
    assert smtp.inbox == []


def test_credentials_in_an_smtp_url_are_refused_without_repeating_them(tmp_path):
    url = f"smtp://alerts:{PASSWORD}@127.0.0.1:2525/?from=a@x.org&to=b@x.org"
    with pytest.raises(ContractError) as e:
        smtp_settings(url)
    msg = str(e.value)
    assert PASSWORD not in msg and "alerts" not in msg.replace("smtp alert", "")
    assert "\n" not in msg and "TWINPIPE_SMTP_USER" in msg
    with pytest.raises(ContractError, match="carries credentials"):
        AlertConfig(smtp=url).check()
    (r,) = send(_alert(), AlertConfig(smtp=url, backoff_s=0.01))
    assert r["delivered"] is False and r["attempts"] == 1 and PASSWORD not in r["error"]
    # in the contract: named with the contract file and key, not repeated either
    path = _contract_file(tmp_path, f"alerts: {{smtp: '{url}'}}")
    with pytest.raises(ContractError) as e:
        load_contract(path)
    assert str(path) in str(e.value) and "alerts.smtp" in str(e.value)
    assert PASSWORD not in str(e.value)


# --- secrets: environment or file, never shown ------------------------------------------------

def test_secrets_come_from_the_environment_or_a_file_and_the_file_wins(monkeypatch, tmp_path):
    (tmp_path / "hook").write_text("http://file/hook\n")
    (tmp_path / "pw").write_text(PASSWORD)
    monkeypatch.setenv("TWINPIPE_ALERT_WEBHOOK", "http://env/hook")
    monkeypatch.setenv("TWINPIPE_ALERT_SLACK", "http://env/slack")
    monkeypatch.setenv("TWINPIPE_ALERT_WEBHOOK_FILE", str(tmp_path / "hook"))
    monkeypatch.setenv("TWINPIPE_SMTP_PASSWORD_FILE", str(tmp_path / "pw"))
    cfg = AlertConfig.from_env()
    assert cfg.webhook == "http://file/hook" and cfg.slack == "http://env/slack"
    assert cfg.smtp_password == PASSWORD
    # the secret itself where its file was expected: refused, not repeated
    monkeypatch.setenv("TWINPIPE_ALERT_SLACK_FILE", "https://hooks.slack.com/services/T0KEN-x1")
    with pytest.raises(ContractError) as e:
        AlertConfig.from_env()
    assert "TWINPIPE_ALERT_SLACK_FILE" in str(e.value) and "T0KEN-x1" not in str(e.value)
    monkeypatch.setenv("TWINPIPE_ALERT_SLACK_FILE", str(tmp_path / "missing"))
    with pytest.raises(ContractError, match="cannot read"):
        AlertConfig.from_env()


def test_sinks_come_from_the_mounted_alerts_secret_unless_the_environment_sets_them(
        monkeypatch, tmp_path):
    """The cluster's way (k8s/base/alerts-secret.yaml mounted into the validate task): one file
    per Secret key; empty keys leave their sink off; the environment still wins."""
    from components.common.alerts import ALERT_SECRET_KEYS, SECRET_DIR

    for var in ALERT_SECRET_KEYS:
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "pubsub").write_text("projects/p/topics/twinpipe-dev-alerts\n")
    (tmp_path / "slack").write_text("https://hooks.slack.com/services/T0KEN-m\n")
    (tmp_path / "webhook").write_text("")
    (tmp_path / "smtp-password").write_text(PASSWORD)
    assert AlertConfig.from_env().sinks() == []  # no folder named: nothing read
    monkeypatch.setenv(SECRET_DIR, str(tmp_path))
    cfg = AlertConfig.from_env()
    assert cfg.pubsub == "projects/p/topics/twinpipe-dev-alerts"
    assert cfg.slack == "https://hooks.slack.com/services/T0KEN-m"
    assert cfg.webhook is None and cfg.smtp is None and cfg.smtp_password == PASSWORD
    assert "T0KEN-m" not in repr(cfg)
    monkeypatch.setenv("TWINPIPE_ALERT_PUBSUB", "projects/p/topics/other")
    assert AlertConfig.from_env().pubsub == "projects/p/topics/other"
    monkeypatch.setenv(SECRET_DIR, str(tmp_path / "not-mounted"))  # optional mount, absent
    assert AlertConfig.from_env().slack is None


def test_values_from_a_secret_made_of_files_lose_their_trailing_newline(monkeypatch):
    """`kubectl create secret --from-file` keeps a file's last newline; secretKeyRef env has it."""
    monkeypatch.setenv("TWINPIPE_ALERT_SLACK", "https://hooks.slack.com/services/T0KEN-n\n")
    monkeypatch.setenv("TWINPIPE_ALERT_SMTP", "smtp://mail:25/?to=a@x.org\n")
    monkeypatch.setenv("TWINPIPE_SMTP_USER", "alerts\n")
    cfg = AlertConfig.from_env()
    assert (cfg.slack, cfg.smtp, cfg.smtp_user) == (
        "https://hooks.slack.com/services/T0KEN-n", "smtp://mail:25/?to=a@x.org", "alerts")
    monkeypatch.setenv("TWINPIPE_ALERT_SLACK", "\n")
    assert AlertConfig.from_env().slack is None


def test_the_config_repr_hides_secrets():
    cfg = AlertConfig(webhook="http://h/hook/T0KEN-a", slack="https://hooks.slack.com/T0KEN-b",
                      smtp="smtps://mail:465/?to=a@b", smtp_user="alerts", smtp_password=PASSWORD,
                      file="/tmp/a.jsonl")
    for text in (repr(cfg), str(cfg), f"{cfg!r}", repr([cfg])):
        assert "T0KEN" not in text and PASSWORD not in text
    assert "webhook=<secret>" in repr(cfg) and "smtp='smtps://mail:465/?to=a@b'" in repr(cfg)


def test_delivery_errors_and_log_lines_never_show_a_secret_url(caplog):
    token = "T0KEN-8c1f"
    # no scheme, a stray space: urllib quotes the URL (or its path) in its errors
    cfg = AlertConfig(webhook=f"hooks.example/services/{token}",
                      slack=f"http://127.0.0.1:{free_port()}/services/{token} x",
                      attempts=2, backoff_s=0.01, timeout_s=1)
    with caplog.at_level(logging.WARNING, logger="twinpipe.alerts"):
        results = send(_alert(), cfg)
    assert [r["delivered"] for r in results] == [False, False]
    assert all(r["attempts"] == 1 for r in results)  # a bad URL is permanent
    assert token not in json.dumps(results) + caplog.text
    assert all("<secret>" in r["error"] for r in results)


# --- alerts.examples ---------------------------------------------------------------------------

def _private_alert() -> Alert:
    return Alert(pipeline="p", stack="tfx", span="201302", severity="error", report="/out/gate.json",
                 checks=[FailedCheck("malformed", "distance", "3 of 100 rows quarantined", "<= 1%",
                                     examples=["file /in/jan.csv, row 12: column 'distance': "
                                               "value 'PRIV-far' is not a number",
                                               "malformed line: 3 fields (PRIV-line)"]),
                         FailedCheck("nulls", "dep_delay", "5% null", "<= 1%",
                                     examples=[{"flight": "PRIV-1545", "tailnum": "PRIV-N1"}])])


@pytest.mark.parametrize("mode", EXAMPLES)
def test_examples_full_redacted_or_none_in_every_sink(mode, http, tmp_path):
    with SmtpReceiver() as smtp:
        results = send(_private_alert(),
                       AlertConfig(webhook=f"{http.url}/hook", slack=f"{http.url}/slack",
                                   smtp=smtp.url(), file=str(tmp_path / "extra.jsonl"),
                                   examples=mode, backoff_s=0.01),
                       default_file=str(tmp_path / "own.jsonl"))
    assert all(r["delivered"] for r in results) and len(results) == 5
    got = dict(http.received)
    payloads = {"webhook": json.dumps(got["/hook"]), "slack": got["/slack"]["text"],
                "slack blocks": json.dumps(got["/slack"]["blocks"]), "email": body(smtp.inbox[0]),
                "own file": (tmp_path / "own.jsonl").read_text(),
                "file": (tmp_path / "extra.jsonl").read_text()}
    for sink, text in payloads.items():
        assert ("PRIV-" in text) == (mode == "full"), sink
        assert ("file /in/jan.csv, row 12" in text) == (mode != "none"), sink
    examples = [c["examples"] for c in got["/hook"]["checks"]]
    assert examples == {
        "full": [_private_alert().checks[0].examples, _private_alert().checks[1].examples],
        "redacted": [["file /in/jan.csv, row 12", "<redacted>"],
                     [{"flight": "<redacted>", "tailnum": "<redacted>"}]],
        "none": [[], []]}[mode]
    line = json.loads((tmp_path / "own.jsonl").read_text())
    assert [c["examples"] for c in line["checks"]] == examples


def _contract_file(tmp_path, alerts: str):
    import importlib.resources

    text = (importlib.resources.files("components.common") / "flights.yaml").read_text()
    assert "\nalerts: {}\n" in text
    path = tmp_path / "contract.yaml"
    path.write_text(text.replace("\nalerts: {}\n", f"\n{alerts}\n"))
    return path


def test_the_contract_sets_alerts_examples(tmp_path):
    assert load_contract().alert_examples == "full"
    c = load_contract(_contract_file(tmp_path, "alerts: {examples: redacted, file: /tmp/a.jsonl}"))
    assert c.alert_examples == "redacted" and c.alerts == (("file", "/tmp/a.jsonl"),)
    path = _contract_file(tmp_path, "alerts: {examples: partial}")
    with pytest.raises(ContractError) as e:
        load_contract(path)
    assert str(path) in str(e.value) and "alerts.examples" in str(e.value) and "partial" in str(e.value)


def test_enforce_applies_the_contracts_examples_setting(tmp_path):
    from components.common.gate import GateReport, enforce

    contract = replace(load_contract(_contract_file(tmp_path, "alerts: {examples: redacted}")),
                       alert_on="warn")  # the report below has warnings only
    report = GateReport(source="/in/jan.csv", spans=[201301], checks=[
        replace(c, policy="warn", span="201301") for c in _private_alert().checks])
    enforce(report, contract=contract, stack="gate", pipeline="p", report_dir=tmp_path / "v")
    (line,) = (tmp_path / "v" / "alerts.jsonl").read_text().splitlines()
    assert "PRIV-" not in line
    assert json.loads(line)["checks"][0]["examples"] == ["file /in/jan.csv, row 12", "<redacted>"]
    assert report.figures["alerts"] == [{"sink": "file", "path": str(tmp_path / "v" / "alerts.jsonl"),
                                         "delivered": True, "attempts": 1}]


# --- the CLI: secrets reach children as file paths only -----------------------------------------

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import json, os, subprocess, sys
from infra.cli import build_parser
from infra.cli.commands import alert_env
alert_env(build_parser().parse_args(sys.argv[2:]))  # the CLI's own wiring
grandchild = subprocess.run([sys.executable, sys.argv[1]], capture_output=True, text=True)
print(grandchild.stdout, grandchild.stderr)
print(json.dumps({"env": dict(os.environ), "argv": sys.argv}))
"""
GRANDCHILD = """
import json, os, stat, sys
from components.common.alerts import Alert, AlertConfig, send
cfg = AlertConfig.from_env()  # what a kfp.local task or TFX component does in enforce
results = send(Alert("p", "torch", "1", "error", [], "gate.json"), cfg)
path = os.environ["TWINPIPE_ALERT_WEBHOOK_FILE"]
print("GRANDCHILD " + json.dumps({
    "env": dict(os.environ), "argv": sys.argv, "cmdline": open("/proc/self/cmdline").read(),
    "results": results, "repr": repr(cfg), "folder": os.path.dirname(path),
    "file_mode": stat.S_IMODE(os.stat(path).st_mode),
    "dir_mode": stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode)}))
"""


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWINPIPE_ALERT", "TWINPIPE_SMTP"))}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def test_the_cli_hands_children_file_paths_never_secrets(http, trusted, tmp_path):
    hook_token, slack_token = "T0KEN-hook-77", "T0KEN-slack-88"
    (tmp_path / "slack").write_text(f"{http.url}/slack/{slack_token}")
    (tmp_path / "child.py").write_text(CHILD)
    (tmp_path / "grandchild.py").write_text(GRANDCHILD)
    with SmtpReceiver(tls="starttls", cert=trusted, users={"alerts": PASSWORD}) as smtp:
        proc = subprocess.run(
            [sys.executable, str(tmp_path / "child.py"), str(tmp_path / "grandchild.py"),
             "validate", "in.csv", "--alert-slack-file", str(tmp_path / "slack"),
             "--alert-smtp", smtp.url() + "&starttls=true"],
            env=_clean_env(TWINPIPE_ALERT_WEBHOOK=f"{http.url}/hook/{hook_token}",
                           TWINPIPE_SMTP_USER="alerts", TWINPIPE_SMTP_PASSWORD=PASSWORD),
            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr  # both processes' environment, argv, results, repr
    for secret in (hook_token, slack_token, PASSWORD):
        assert secret not in out
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("GRANDCHILD ")]
    grand = json.loads(line.removeprefix("GRANDCHILD "))
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    for env in (child["env"], grand["env"]):
        assert {"TWINPIPE_ALERT_WEBHOOK", "TWINPIPE_ALERT_SLACK", "TWINPIPE_SMTP_PASSWORD"}.isdisjoint(env)
        assert env["TWINPIPE_ALERT_SLACK_FILE"] == str(tmp_path / "slack")
        assert env["TWINPIPE_ALERT_WEBHOOK_FILE"].startswith(grand["folder"])
        assert env["TWINPIPE_SMTP_PASSWORD_FILE"].startswith(grand["folder"])
    assert grand["file_mode"] == 0o600 and grand["dir_mode"] == 0o700
    # the child still delivers to every sink, through the files
    assert [(r["sink"], r["delivered"]) for r in grand["results"]] == \
        [("webhook", True), ("slack", True), ("smtp", True)]
    assert sorted(p for p, _ in http.received) == [f"/hook/{hook_token}", f"/slack/{slack_token}"]
    assert len(smtp.inbox) == 1 and [ok for _, _, ok in smtp.logins] == [True]
    assert not Path(grand["folder"]).exists()  # removed when the CLI process exited


def test_the_cli_refuses_url_flags_and_credentials_in_urls(capsys, tmp_path):
    from infra.cli import build_parser

    parser = build_parser()
    for argv in (["--alert-webhook", "http://h/T0KEN-1"], ["--alert-slack=http://h/T0KEN-1"],
                 ["--alert-webhook"]):
        with pytest.raises(SystemExit) as e:
            parser.parse_args(["validate", "in.csv", *argv])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "was removed" in err and "-file PATH" in err
        assert "T0KEN" not in err
    with pytest.raises(SystemExit):
        parser.parse_args(["validate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--alert-webhook-file PATH" in help_text and "--alert-webhook URL" not in help_text
    assert "never a command-line argument, which every local user can read" in help_text
    proc = subprocess.run([sys.executable, "-m", "infra.cli", "validate", "in.csv", "--alert-smtp",
                           f"smtp://alerts:{PASSWORD}@127.0.0.1:25/?to=a@x.org"],
                          env=_clean_env(), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 1 and PASSWORD not in proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("twinpipe: error: the smtp alert URL") and "carries credentials" in line
