"""Alert sinks against real receivers on loopback: an HTTP server (webhook + Slack), an SMTP server
(aiosmtpd), the Pub/Sub emulator from gcloud; delivery failures retry with backoff and never raise."""

import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from components.common.alerts import Alert, AlertConfig, FailedCheck, send
from tests.receivers import HttpReceiver, SmtpReceiver, free_port


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
    assert "distance" in got["/slack"]["text"] and "99999" in got["/slack"]["text"]
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
    assert msg["To"] == "ops@x.org" and "201302" in msg["Subject"]
    assert "distance" in msg.get_payload()


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
