"""Real alert receivers on loopback for tests: an HTTP server (JSON webhook and Slack-style
payloads) and an SMTP server (aiosmtpd; plain, STARTTLS or implicit TLS, with login)."""

import datetime
import ipaddress
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed_cert(folder: Path) -> tuple[str, str]:
    """(cert, key) PEM files of a self-signed certificate for localhost and 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


class HttpReceiver:
    """Records (path, JSON body) of every POST it accepts; answers ``status`` (503 unless told)
    to the first ``fail_first`` ones; ``hits`` counts every POST."""

    def __init__(self, fail_first: int = 0, status: int = 503):
        self.received: list = []
        self.fail_first = fail_first
        self.status = status
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.hits += 1
                if outer.fail_first > 0:
                    outer.fail_first -= 1
                    self.send_response(outer.status)
                    self.end_headers()
                    return
                outer.received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def subject(message) -> str:
    """A received message's Subject, its RFC 2047 encoded words decoded."""
    from email.header import decode_header, make_header

    return str(make_header(decode_header(message["Subject"])))


def body(message) -> str:
    """A received message's text, its transfer encoding (quoted-printable, base64) undone."""
    return message.get_payload(decode=True).decode(message.get_content_charset() or "utf-8")


class SmtpReceiver:
    """An aiosmtpd server keeping every message in ``inbox``.

    ``tls``: None (plain), ``"starttls"`` (required before any other command) or ``"implicit"``
    (SMTPS), with ``cert`` = (cert, key) files. ``users`` ({login: password}) requires a login —
    over TLS only — and ``logins`` records (peer, login, accepted) of every attempt.
    """

    def __init__(self, tls: str | None = None, cert: tuple[str, str] | None = None,
                 users: dict | None = None):
        from aiosmtpd.controller import Controller
        from aiosmtpd.handlers import Message
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.inbox: list = []
        self.logins: list = []
        inbox, logins = self.inbox, self.logins

        class Keep(Message):
            def handle_message(self, message):
                inbox.append(message)

        kwargs: dict = {}
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*cert)
            kwargs.update({"tls_context": ctx, "require_starttls": True} if tls == "starttls"
                          else {"ssl_context": ctx})
        if users is not None:
            def authenticate(server, session, envelope, mechanism, auth_data):
                ok = (isinstance(auth_data, LoginPassword)
                      and users.get(auth_data.login.decode()) == auth_data.password.decode())
                logins.append((session.peer, auth_data.login.decode(), ok))
                return AuthResult(success=ok, handled=False)

            # implicit TLS: aiosmtpd only counts STARTTLS as TLS for auth_require_tls
            kwargs.update(authenticator=authenticate, auth_required=True,
                          auth_require_tls=tls == "starttls")
        self.scheme = "smtps" if tls == "implicit" else "smtp"
        self.port = free_port()
        self.controller = Controller(Keep(), hostname="127.0.0.1", port=self.port, **kwargs)

    def url(self, sender: str = "twinpipe@x.org", to: str = "ops@x.org") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/?from={sender}&to={to}"

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()
