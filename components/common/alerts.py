"""Data-validation alerts: one path for both stacks, configured once.

An :class:`Alert` names the pipeline, stack, span, each failed check (observed vs expected, a few
example rows) and where the validation report is. :func:`send` delivers it to every configured
sink — a local JSON-lines file (always), a generic JSON webhook, a Slack incoming webhook, email
over SMTP, a Google Cloud Pub/Sub topic — retrying each with exponential backoff and a deadline.
A sink that keeps failing is reported in the result; it never raises and never hangs the run.

Configuration (:func:`AlertConfig.from_env`): ``TWINPIPE_ALERT_WEBHOOK``, ``TWINPIPE_ALERT_SLACK``,
``TWINPIPE_ALERT_SMTP`` (``smtp://host:port/?from=a@b&to=c@d,e@f``), ``TWINPIPE_ALERT_PUBSUB``
(``projects/P/topics/T``), ``TWINPIPE_ALERT_FILE`` override the contract's ``alerts:`` section;
flags override the environment.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

log = logging.getLogger("twinpipe.alerts")

SINKS = ("file", "webhook", "slack", "smtp", "pubsub")


@dataclass
class FailedCheck:
    check: str             # e.g. "range", "nulls", "drift", "schema", "volume"
    column: str | None
    observed: object
    expected: object
    policy: str = "fail"   # "fail" stops the run, "warn" only alerts
    examples: list = field(default_factory=list)
    span: str | None = None  # the span it was found in (None: the whole input)

    def line(self) -> str:
        """One sentence: where, which rule, observed vs expected, examples."""
        where = f"span {self.span}: " if self.span else ""
        col = f"column '{self.column}'" if self.column else "table"
        ex = f" (e.g. {'; '.join(str(e) for e in self.examples[:3])})" if self.examples else ""
        return f"{where}{self.check} on {col}: observed {self.observed}, expected {self.expected}{ex}"


@dataclass
class Alert:
    pipeline: str
    stack: str
    span: str
    severity: str          # "error" (the run stopped) or "warning"
    checks: list[FailedCheck]
    report: str            # path or URL of the gate's report (gate.json)
    source: str = ""
    engine_report: str = ""  # the stack engine's own result: TFDV anomalies / GX checkpoint result

    def summary(self) -> str:
        return (f"[{self.stack}][validate] {self.pipeline} span {self.span}: "
                f"{'data rejected' if self.severity == 'error' else 'data warning'} — "
                + "; ".join(c.line() for c in self.checks))

    def to_dict(self) -> dict:
        return {**asdict(self), "summary": self.summary()}


@dataclass(frozen=True)
class AlertConfig:
    file: str | None = None
    webhook: str | None = None
    slack: str | None = None
    smtp: str | None = None
    pubsub: str | None = None
    attempts: int = 4
    backoff_s: float = 0.5
    timeout_s: float = 5.0

    @classmethod
    def from_env(cls, base: dict | None = None, **overrides) -> AlertConfig:
        """``base`` (the contract's ``alerts:`` section), overridden by ``TWINPIPE_ALERT_*``
        variables, overridden by ``overrides`` (flags)."""
        conf = {k: v for k, v in (base or {}).items() if k in SINKS}
        conf.update({k: os.environ[f"TWINPIPE_ALERT_{k.upper()}"] for k in SINKS
                     if os.environ.get(f"TWINPIPE_ALERT_{k.upper()}")})
        conf.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**conf)

    def sinks(self) -> list[str]:
        return [k for k in SINKS if getattr(self, k)]



def _post_json(url: str, payload: dict, timeout: float) -> None:
    req = urllib.request.Request(url, data=json.dumps(payload, default=str).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 — configured URL
        if resp.status >= 300:
            raise OSError(f"HTTP {resp.status}")


def _slack_payload(alert: Alert) -> dict:
    lines = [f"*{alert.summary()}*", f"report: {alert.report}"]
    if alert.engine_report:
        lines.append(f"engine report: {alert.engine_report}")
    for c in alert.checks:
        if c.examples:
            lines.append(f"`{c.column}` e.g. {c.examples[:3]}")
    return {"text": "\n".join(lines)}


def _send_smtp(url: str, alert: Alert, timeout: float) -> None:
    import smtplib
    from email.message import EmailMessage

    u = urlparse(url)
    q = parse_qs(u.query)
    msg = EmailMessage()
    msg["Subject"] = f"[twinpipe] {alert.severity}: {alert.pipeline} span {alert.span}"
    msg["From"] = q.get("from", ["twinpipe@localhost"])[0]
    msg["To"] = ", ".join(q.get("to", ["root@localhost"])[0].split(","))
    msg.set_content(alert.summary() + "\n\nreport: " + alert.report
                    + (f"\nengine report: {alert.engine_report}" if alert.engine_report else "") + "\n\n"
                    + json.dumps(alert.to_dict(), indent=2, default=str))
    with smtplib.SMTP(u.hostname, u.port or 25, timeout=timeout) as s:
        s.send_message(msg)


def _send_pubsub(topic: str, alert: Alert, timeout: float) -> None:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    future = publisher.publish(topic, json.dumps(alert.to_dict(), default=str).encode(),
                               stack=alert.stack, severity=alert.severity, span=str(alert.span))
    future.result(timeout=timeout)


def _append_file(path: str, alert: Alert) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a") as f:
        f.write(json.dumps(alert.to_dict(), default=str) + "\n")


def _with_retries(name: str, fn: Callable[[], None], cfg: AlertConfig) -> dict:
    delay, last = cfg.backoff_s, ""
    for attempt in range(1, cfg.attempts + 1):
        try:
            fn()
            return {"sink": name, "delivered": True, "attempts": attempt}
        except Exception as e:  # noqa: BLE001 — a sink must never crash the run
            last = f"{type(e).__name__}: {e}"
            log.warning("[alerts] %s attempt %d/%d failed: %s", name, attempt, cfg.attempts, last)
            if attempt < cfg.attempts:
                time.sleep(delay)
                delay *= 2
    return {"sink": name, "delivered": False, "attempts": cfg.attempts, "error": last}


def send(alert: Alert, cfg: AlertConfig, default_file: str | None = None) -> list[dict]:
    """Delivers ``alert`` to every configured sink; returns one result per sink."""
    results = []
    sinks: list[tuple[str, Callable[[], None]]] = []
    path = cfg.file or default_file
    if path:
        sinks.append(("file", lambda: _append_file(path, alert)))
    if cfg.webhook:
        sinks.append(("webhook", lambda: _post_json(cfg.webhook, alert.to_dict(), cfg.timeout_s)))
    if cfg.slack:
        sinks.append(("slack", lambda: _post_json(cfg.slack, _slack_payload(alert), cfg.timeout_s)))
    if cfg.smtp:
        sinks.append(("smtp", lambda: _send_smtp(cfg.smtp, alert, cfg.timeout_s)))
    if cfg.pubsub:
        sinks.append(("pubsub", lambda: _send_pubsub(cfg.pubsub, alert, cfg.timeout_s)))
    for name, fn in sinks:
        results.append(_with_retries(name, fn, cfg))
    return results
