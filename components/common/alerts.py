"""Data-validation alerts: one path for both stacks, configured once.

An :class:`Alert` names the pipeline, stack, span, each failed check (observed vs expected, a few
example rows) and where the validation report is. :func:`send` delivers it to the run's own
JSON-lines file (always) and every configured sink — another JSON-lines file, a generic JSON
webhook, a Slack incoming webhook, email over SMTP (plain, STARTTLS or implicit TLS, with login),
a Google Cloud Pub/Sub topic. Transient failures (HTTP 5xx and 429, SMTP 4xx, timeouts, connection
errors) are retried with exponential backoff; permanent ones (HTTP 4xx, SMTP 5xx such as a refused
login, an untrusted certificate, a bad setting) are not. A failed sink is reported in the result;
it never raises and never hangs the run.

Configuration (:meth:`AlertConfig.from_env`) overrides the contract's ``alerts:`` section with
``TWINPIPE_ALERT_SMTP`` (``smtp://HOST:PORT/?from=A&to=B,C``, ``&starttls=true`` or
``smtp+starttls://`` for STARTTLS, ``smtps://`` for implicit TLS), ``TWINPIPE_ALERT_PUBSUB``
(``projects/P/topics/T``), ``TWINPIPE_ALERT_FILE``. Secrets — the webhook and Slack URLs, the SMTP
password — come from ``TWINPIPE_ALERT_WEBHOOK``, ``TWINPIPE_ALERT_SLACK``,
``TWINPIPE_SMTP_PASSWORD`` or from the file named by the same variable + ``_FILE``; the SMTP user
from ``TWINPIPE_SMTP_USER``. An SMTP URL carrying credentials is refused. Secrets never show in a
result, a log line or the config's repr. The contract's ``alerts.examples`` (``full``,
``redacted``: each example row's location only, ``none``) shapes every sink's payload.

Every sink says the same: :meth:`Alert.summary` (``twinpipe data gate: 2 checks failed —
PIPELINE / STACK span SPAN``), :func:`finding_lines` (one per finding: check, column, observed vs
expected) and :func:`context` (stack, span, report) — Slack as Block Kit blocks (header, a section
per finding, a context block; ``text`` as the fallback), email as its subject and body lines, the
webhook, files and Pub/Sub as JSON with the structured ``checks`` besides ``summary`` and
``findings``. The docs: docs/alerts.md.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import shutil
import smtplib
import socket
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, MutableMapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from components.common import storage
from components.common.errors import ContractError

log = logging.getLogger("twinpipe.alerts")

SINKS = ("file", "webhook", "slack", "smtp", "pubsub")
EXAMPLES = ("full", "redacted", "none")  # the contract's alerts.examples
# secret settings and their variables; the variable + "_FILE" names a file holding the secret
SECRETS = {"webhook": "TWINPIPE_ALERT_WEBHOOK", "slack": "TWINPIPE_ALERT_SLACK",
           "smtp_password": "TWINPIPE_SMTP_PASSWORD"}
SMTP_USER = "TWINPIPE_SMTP_USER"
# On a cluster the sinks come from Secret ALERTS_SECRET (k8s/base/alerts-secret.yaml): each
# variable above from its key; an empty key leaves that sink off.
ALERTS_SECRET = "twinpipe-alerts"
ALERT_SECRET_KEYS = {
    "TWINPIPE_ALERT_PUBSUB": "pubsub",
    "TWINPIPE_ALERT_WEBHOOK": "webhook",
    "TWINPIPE_ALERT_SLACK": "slack",
    "TWINPIPE_ALERT_SMTP": "smtp",
    SMTP_USER: "smtp-user",
    SECRETS["smtp_password"]: "smtp-password",
}


def secret_env() -> list[dict]:
    """The sinks' variables from Secret ALERTS_SECRET as container env (``secretKeyRef``), each
    optional: the values never appear in a manifest, an argv or a log, and a key the operator
    did not set leaves its sink off."""
    return [{"name": var, "valueFrom": {"secretKeyRef": {"name": ALERTS_SECRET, "key": key,
                                                         "optional": True}}}
            for var, key in ALERT_SECRET_KEYS.items()]


# Where a pipeline pod has that Secret mounted as files (one per key), e.g. the torch validate task.
SECRET_DIR = "TWINPIPE_ALERT_SECRET_DIR"
REDACTED = "<redacted>"


@dataclass
class FailedCheck:
    check: str             # e.g. "range", "nulls", "drift", "schema", "volume"
    column: str | None
    observed: object
    expected: object
    policy: str = "fail"   # "fail" stops the run, "warn" only alerts
    examples: list = field(default_factory=list)
    span: str | None = None  # the span it was found in (None: the whole input)

    def line(self, with_span: bool = True) -> str:
        """One sentence: where, which rule, observed vs expected, examples."""
        where = f"span {self.span}: " if self.span and with_span else ""
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
    test: bool = False     # a sample from `twinpipe alert test`: no data was checked

    def summary(self) -> str:
        """The headline every sink leads with, e.g. ``twinpipe data gate: 2 checks failed —
        twinpipe-tfx / tfx span 201302`` (``[TEST] `` first for a test alert)."""
        failed = sum(c.policy != "warn" for c in self.checks)
        warned = len(self.checks) - failed
        counts = ([f"{failed} check{'s' if failed != 1 else ''} failed"] if failed else []) + \
                 ([f"{warned} warning{'s' if warned != 1 else ''}"] if warned else [])
        return (f"{'[TEST] ' if self.test else ''}twinpipe data gate: "
                f"{', '.join(counts) or 'no finding'} — {self.pipeline} / {self.stack} span {self.span}")

    def to_dict(self) -> dict:
        return {**asdict(self), "summary": self.summary(), "findings": finding_lines(self)}


TEST_NOTE = "a test alert from `twinpipe alert test`: no data was checked"


def finding_lines(alert: Alert) -> list[str]:
    """One line per finding — check, column, observed vs expected, a few examples — the same in
    every sink (Slack, email, webhook, files). The span is named when the alert covers several;
    a ``warn`` check is marked as such."""
    several = "," in alert.span
    return [c.line(with_span=several) + (" [warning]" if c.policy == "warn" else "")
            for c in alert.checks]


def context(alert: Alert) -> list[tuple[str, str]]:
    """(label, value) of where the findings come from: stack, span, report, engine report, input
    (and the test note), as the Slack context block and the email's closing lines show them."""
    out = [("stack", alert.stack), ("span", alert.span), ("report", alert.report)]
    out += [("engine report", alert.engine_report)] if alert.engine_report else []
    out += [("input", alert.source)] if alert.source else []
    return out + ([("note", TEST_NOTE)] if alert.test else [])


@dataclass(frozen=True, repr=False)
class AlertConfig:
    file: str | None = None
    webhook: str | None = None        # secret
    slack: str | None = None          # secret
    smtp: str | None = None           # no credentials in it (see smtp_settings)
    pubsub: str | None = None
    smtp_user: str | None = None
    smtp_password: str | None = None  # secret
    examples: str = "full"            # full | redacted | none
    attempts: int = 4
    backoff_s: float = 0.5
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.examples not in EXAMPLES:
            raise ContractError(f"alerts.examples is {self.examples!r}; allowed: {', '.join(EXAMPLES)}.")

    def __repr__(self) -> str:
        shown = (f"{f.name}={'<secret>' if f.name in SECRETS else repr(getattr(self, f.name))}"
                 for f in fields(self) if getattr(self, f.name) is not None)
        return f"AlertConfig({', '.join(shown)})"

    @classmethod
    def from_env(cls, base: dict | None = None, **overrides) -> AlertConfig:
        """``base`` (the contract's ``alerts:`` section), overridden by the environment
        (``TWINPIPE_ALERT_<SINK>``; for a secret the file named by ``<VAR>_FILE`` wins over the
        variable; a variable left unset is read from the mounted alerts Secret, when
        ``TWINPIPE_ALERT_SECRET_DIR`` names it), overridden by ``overrides`` (flags, ``examples``)."""
        conf = {k: v for k, v in (base or {}).items() if k in SINKS and v}
        for k in SINKS:
            var = f"TWINPIPE_ALERT_{k.upper()}"
            value = (_secret(var) if k in SECRETS else _env(var)) or _mounted(var)
            if value:
                conf[k] = value
        if user := _env(SMTP_USER) or _mounted(SMTP_USER):
            conf["smtp_user"] = user
        if password := _secret(SECRETS["smtp_password"]) or _mounted(SECRETS["smtp_password"]):
            conf["smtp_password"] = password
        conf.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**conf)

    def sinks(self) -> list[str]:
        return [k for k in SINKS if getattr(self, k)]

    def check(self) -> AlertConfig:
        """Itself, or a ContractError for a setting that can never deliver (early, at start-up)."""
        if self.smtp:
            smtp_settings(self.smtp)
        if self.smtp and bool(self.smtp_user) != bool(self.smtp_password):
            raise ContractError(f"SMTP login needs both {SMTP_USER} and {SECRETS['smtp_password']} "
                                f"(or {SECRETS['smtp_password']}_FILE); only one is set.")
        return self

    def secrets(self) -> list[str]:
        """Every secret value, and the path + query of each secret URL (errors may quote them)."""
        out = []
        for key in SECRETS:
            value = getattr(self, key)
            if value:
                u = urlparse(value)
                tail = u.path + (f"?{u.query}" if u.query else "")
                out += [value] + ([tail] if len(tail) > 1 and key != "smtp_password" else [])
        return sorted(set(out), key=len, reverse=True)

    def where(self, result: dict) -> str:
        """Where a :func:`send` result went, secrets left out: a file's path, the host of a webhook
        or Slack URL (its path is the secret), the SMTP server and recipients, the topic."""
        sink = result["sink"]
        if sink == "file":
            return str(result.get("path") or self.file)
        if sink in ("webhook", "slack"):
            u = urlparse(getattr(self, sink) or "")
            return u.netloc.rpartition("@")[2] or "?"
        if sink == "smtp":
            try:
                _, host, port, q = smtp_settings(self.smtp or "")
            except ContractError:
                return "?"
            return f"{host}:{port} to {q.get('to', ['root@localhost'])[0]}"
        return str(getattr(self, sink, "") or "")

    def scrub(self, text: str) -> str:
        for secret in self.secrets():
            text = text.replace(secret, "<secret>")
        return text


def _env(var: str) -> str | None:
    """``var``'s value, stripped: a Secret key made from a file often ends in a newline."""
    return os.environ.get(var, "").strip() or None


def _secret(var: str) -> str | None:
    """A secret from the file named by ``<var>_FILE``, else from ``var``."""
    path = os.environ.get(f"{var}_FILE")
    return read_secret_file(path, f"{var}_FILE") if path else _env(var)


def _mounted(var: str) -> str | None:
    """``var``'s key of the alerts Secret mounted at ``$TWINPIPE_ALERT_SECRET_DIR`` (an optional
    mount: a missing folder or key, or an empty value, leaves the sink off)."""
    folder, key = os.environ.get(SECRET_DIR), ALERT_SECRET_KEYS.get(var)
    if not (folder and key and os.path.isfile(path := os.path.join(folder, key))):
        return None
    try:
        return Path(path).read_text().strip() or None
    except OSError as e:
        raise ContractError(f"{SECRET_DIR}: cannot read the alerts Secret's key {key} at {path}: "
                            f"{e.strerror or e}.") from None


def read_secret_file(path: str, what: str) -> str:
    """The secret held by the file ``path`` (stripped); ContractError when it cannot be read."""
    if "://" in path:  # the secret itself where its file was expected: never repeat it
        raise ContractError(f"{what} must name a file holding the secret, not the secret itself.")
    try:
        value = Path(path).read_text().strip()
    except OSError as e:
        raise ContractError(f"{what}: cannot read {path}: {e.strerror or e}.") from None
    if not value:
        raise ContractError(f"{what}: {path} is empty.")
    return value


def secrets_to_files(files: dict[str, str | None] | None = None,
                     env: MutableMapping[str, str] = os.environ) -> None:
    """Leaves child processes file paths, never secrets: each secret variable (:data:`SECRETS`) is
    dropped from ``env`` and ``<VAR>_FILE`` set instead — to ``files[VAR]`` when given (a flag),
    else, when ``env`` holds the secret, to a 0600 file in a private directory removed at exit."""
    files, folder = files or {}, None
    for var in SECRETS.values():
        if files.get(var):
            env[f"{var}_FILE"] = str(Path(files[var]).absolute())
        elif env.get(var) and not env.get(f"{var}_FILE"):
            if folder is None:
                folder = tempfile.mkdtemp(prefix="twinpipe-secrets-")  # mode 0700
                atexit.register(shutil.rmtree, folder, ignore_errors=True)
            path = os.path.join(folder, var.lower())
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(env[var])
            env[f"{var}_FILE"] = path
        env.pop(var, None)


def smtp_settings(url: str) -> tuple[str, str, int, dict[str, list[str]]]:
    """(TLS mode ``plain`` | ``starttls`` | ``tls``, host, port, query) of an SMTP alert URL.

    Raises:
        ContractError: credentials in the URL (never repeated in the message), an unknown scheme,
            no host or a bad port.
    """
    u = urlparse(url)
    if "@" in u.netloc:
        raise ContractError(f"the smtp alert URL (host {u.hostname}) carries credentials "
                            f"(user:password@); set {SMTP_USER} and {SECRETS['smtp_password']} "
                            f"(or {SECRETS['smtp_password']}_FILE) instead.")
    q = parse_qs(u.query)
    starttls = q.get("starttls", [""])[0].lower() in ("true", "1", "yes")
    modes = {"smtp": "starttls" if starttls else "plain", "smtp+starttls": "starttls", "smtps": "tls"}
    if u.scheme not in modes:
        raise ContractError(f"the smtp alert URL has scheme {u.scheme!r}; use smtp://, "
                            f"smtp+starttls:// or smtps://.")
    if not u.hostname:
        raise ContractError("the smtp alert URL has no host.")
    try:
        port = u.port
    except ValueError:
        raise ContractError(f"the smtp alert URL (host {u.hostname}) has a bad port.") from None
    mode = modes[u.scheme]
    return mode, u.hostname, port or {"plain": 25, "starttls": 587, "tls": 465}[mode], q


def _redact(example: object) -> object:
    """An example's location only: ``file F, line L`` of ``file F, line L: column 'x': ...``; a
    dict keeps its keys, its values hidden."""
    if isinstance(example, dict):
        return dict.fromkeys(example, REDACTED)
    m = re.match(r"(.*?, (?:row|line) \d+)(?::|$)", example, re.S) if isinstance(example, str) else None
    return m.group(1) if m else REDACTED


def shown(alert: Alert, examples: str) -> Alert:
    """``alert`` with its examples as ``examples`` says: ``full``, ``redacted`` or ``none``."""
    if examples == "full":
        return alert
    return replace(alert, checks=[replace(c, examples=[] if examples == "none"
                                          else [_redact(e) for e in c.examples])
                                  for c in alert.checks])


def _post_json(url: str, payload: dict, timeout: float) -> None:
    req = urllib.request.Request(url, data=json.dumps(payload, default=str).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 — configured URL
        if resp.status >= 300:
            raise urllib.error.HTTPError(url, resp.status, resp.reason, resp.headers, None)


# Block Kit limits: 50 blocks a message, 150 characters in a header, 3000 in a section's text,
# 2000 in a context element; Slack advises a fallback text under 4000 characters.
SLACK_FINDINGS = 45


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _mrkdwn(text: str) -> str:
    """Text for Slack's mrkdwn: its three control characters escaped (``<= 5000`` stays literal)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_payload(alert: Alert) -> dict:
    """Block Kit: a header (the summary), one section per finding, a context block (stack, span,
    report, ...); ``text`` is the plain fallback notifications show."""
    lines = finding_lines(alert)
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text",
                                                      "text": _cut(alert.summary(), 150)}}]
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": _cut(f"• {_mrkdwn(line)}", 3000)}}
               for line in lines[:SLACK_FINDINGS]]
    if len(lines) > SLACK_FINDINGS:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": (
            f"… and {len(lines) - SLACK_FINDINGS} more finding(s) in the report")}})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": _cut(f"*{label}*: {_mrkdwn(value)}", 2000)}
        for label, value in context(alert)]})
    return {"text": _cut(_mrkdwn("\n".join([alert.summary(), *lines])), 4000), "blocks": blocks}


def email_body(alert: Alert) -> str:
    """The summary, one finding per line, then where they come from (``label: value``)."""
    return "\n".join([alert.summary(), "", *finding_lines(alert), "",
                      *(f"{label}: {value}" for label, value in context(alert))]) + "\n"


def _send_smtp(cfg: AlertConfig, alert: Alert) -> None:
    from email.message import EmailMessage

    mode, host, port, q = smtp_settings(cfg.smtp or "")
    cfg.check()
    if cfg.smtp_user and mode == "plain":
        raise ContractError("SMTP credentials are set but the smtp alert URL has no TLS; use "
                            "smtp+starttls://, ?starttls=true or smtps:// (no login in clear text).")
    msg = EmailMessage()
    msg["Subject"] = alert.summary()
    msg["From"] = q.get("from", ["twinpipe@localhost"])[0]
    msg["To"] = ", ".join(q.get("to", ["root@localhost"])[0].split(","))
    msg.set_content(email_body(alert))
    trust = ssl.create_default_context()  # system CAs (SSL_CERT_FILE / SSL_CERT_DIR honoured)
    server = (smtplib.SMTP_SSL(host, port, timeout=cfg.timeout_s, context=trust) if mode == "tls"
              else smtplib.SMTP(host, port, timeout=cfg.timeout_s))
    with server as s:
        if mode == "starttls":
            s.starttls(context=trust)  # SMTPNotSupportedError when not offered: no silent downgrade
        if cfg.smtp_user:
            s.login(cfg.smtp_user, cfg.smtp_password or "")
        s.send_message(msg)


def _send_pubsub(topic: str, alert: Alert, timeout: float) -> None:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    future = publisher.publish(topic, json.dumps(alert.to_dict(), default=str).encode(),
                               stack=alert.stack, severity=alert.severity, span=str(alert.span))
    future.result(timeout=timeout)


def _append_file(path: str, alert: Alert) -> None:
    """One JSON line appended. On object storage (no append) the object is read and rewritten
    whole: fine for one run's alerts (the run lock keeps writers to one OUT apart)."""

    line = json.dumps(alert.to_dict(), default=str) + "\n"
    if storage.is_remote(path):
        old = storage.read_text(path) if storage.exists(path) else ""
        storage.write_text(path, old + line)
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a") as f:
        f.write(json.dumps(alert.to_dict(), default=str) + "\n")


def transient(e: BaseException) -> bool:
    """Worth another try: timeouts, connection errors, HTTP 5xx and 429 Too Many Requests (the
    receiver asks to come back later), SMTP 4xx replies (transient by RFC 5321). Not: other HTTP
    4xx, SMTP 5xx (e.g. 535: login refused), an untrusted certificate, a bad setting."""
    if isinstance(e, urllib.error.HTTPError):
        return e.code >= 500 or e.code == 429
    if isinstance(e, smtplib.SMTPResponseException):
        return 400 <= e.smtp_code < 500
    if isinstance(e, smtplib.SMTPRecipientsRefused):
        return all(400 <= code < 500 for code, _ in e.recipients.values())
    if isinstance(e, urllib.error.URLError):
        return isinstance(e.reason, BaseException) and transient(e.reason)
    code = getattr(e, "code", None)  # google.api_core errors carry their HTTP status
    if isinstance(code, int) and 100 <= code < 600:
        return code >= 500 or code == 429
    return isinstance(e, (ConnectionError, TimeoutError, socket.gaierror,
                          smtplib.SMTPServerDisconnected, ssl.SSLEOFError, ssl.SSLZeroReturnError,
                          ssl.SSLSyscallError))


def _with_retries(name: str, fn: Callable[[], None], cfg: AlertConfig, **label) -> dict:
    delay, attempt = cfg.backoff_s, 0
    while True:
        attempt += 1
        try:
            fn()
            return {"sink": name, **label, "delivered": True, "attempts": attempt}
        except Exception as e:  # noqa: BLE001 — a sink must never crash the run
            last = cfg.scrub(f"{type(e).__name__}: {e}")
            again = attempt < cfg.attempts and transient(e)
            log.warning("[alerts] %s attempt %d/%d failed%s: %s", name, attempt, cfg.attempts,
                        "" if again or attempt == cfg.attempts else " (permanent: not retried)", last)
            if not again:
                return {"sink": name, **label, "delivered": False, "attempts": attempt, "error": last}
            time.sleep(delay)
            delay *= 2


def send(alert: Alert, cfg: AlertConfig, default_file: str | None = None) -> list[dict]:
    """Delivers ``alert`` (its examples as ``cfg.examples`` says) to the run's own file
    ``default_file`` — always — and to every configured sink; returns one result per sink."""
    alert = shown(alert, cfg.examples)
    sinks: list[tuple[str, Callable[[], None], dict]] = []
    paths: list[str] = []
    for path in (default_file, cfg.file):  # the configured file comes on top of the run's own
        if path and Path(path).absolute() not in {Path(p).absolute() for p in paths}:
            paths.append(path)
            sinks.append(("file", lambda path=path: _append_file(path, alert), {"path": path}))
    if cfg.webhook:
        sinks.append(("webhook", lambda: _post_json(cfg.webhook, alert.to_dict(), cfg.timeout_s), {}))
    if cfg.slack:
        sinks.append(("slack", lambda: _post_json(cfg.slack, _slack_payload(alert), cfg.timeout_s), {}))
    if cfg.smtp:
        sinks.append(("smtp", lambda: _send_smtp(cfg, alert), {}))
    if cfg.pubsub:
        sinks.append(("pubsub", lambda: _send_pubsub(cfg.pubsub, alert, cfg.timeout_s), {}))
    return [_with_retries(name, fn, cfg, **label) for name, fn, label in sinks]
