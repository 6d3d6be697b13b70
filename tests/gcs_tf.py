"""TensorFlow's own GCS filesystem against the GCS emulator: a network-namespace sandbox.

TF's C++ GCS filesystem (``tf.io.gfile`` on ``gs://``, hence TFX ``fileio``, SavedModel and
TFRecord I/O) cannot be pointed at an emulator by configuration. Checked in TF's source
(tsl/platform/cloud/gcs_file_system.cc and google_auth_provider.cc, the code in TF 2.16's
libtensorflow_framework): the JSON API base ``https://www.googleapis.com/storage/v1/``, the upload
base ``https://www.googleapis.com/upload/storage/v1/`` and the media host
``storage.googleapis.com`` are compile-time constants; what the environment does control is the
bearer token (``GOOGLE_AUTH_TOKEN_FOR_TESTING``; ``NO_GCE_CHECK=true`` skips the metadata server)
and the CA bundle curl trusts (``CURL_CA_BUNDLE``).

So the TF code runs in a child process inside its own network namespace (tests/netns.py
:func:`linked_host`), whose ``/etc/hosts`` resolves ``www.googleapis.com`` and
``storage.googleapis.com`` to this side of a veth link. There a small TLS-terminating reverse proxy
(a throwaway CA and a certificate for those two names, made with ``cryptography``; the child's
``CURL_CA_BUNDLE`` names the CA) forwards every request unchanged to the real gcp-storage-emulator
on loopback: the bytes live in the emulator, the same one gcsfs (components.common.storage) talks
to. The proxy only routes: it rewrites nothing but the scheme of a resumable-upload ``Location``
(the emulator answers ``http://`` + the Host it was asked for; TF must come back over TLS). A
second, plain-HTTP listener on the same address is the child's ``STORAGE_EMULATOR_HOST``, for the
Python clients in the same process (gcsfs, Beam's gcsio). Every proxied request is recorded, so a
test can show the TF traffic really went this way.

Test infrastructure only; nothing here is product code.
"""

from __future__ import annotations

import datetime
import http.client
import os
import ssl
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from tests.netns import Host, linked_host

GCS_HOSTS = ("www.googleapis.com", "storage.googleapis.com")
# Not a credential: the emulator accepts any bearer token; TF just needs one to skip OAuth.
TEST_TOKEN = "twinpipe-emulator-token"  # noqa: S105
_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
        "upgrade", "expect", "content-length"}


def make_tls_files(workdir: Path, names: Sequence[str] = GCS_HOSTS) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for ``names`` signed by it; returns the paths of
    (CA pem, certificate chain pem, key pem). Valid for one day: the files live in a test dir."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "twinpipe test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    paths = workdir / "ca.pem", workdir / "server.pem", workdir / "server.key"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(cert.public_bytes(pem) + ca.public_bytes(pem))
    paths[2].write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return paths


@dataclass
class Request:
    """One proxied request: which listener, the Host asked for, method, path (no query), status."""

    tls: bool
    host: str
    method: str
    path: str
    status: int


def _handler(upstream: tuple[str, int], tls: bool, seen: list[Request]) -> type:
    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive as curl expects; answers Expect: 100-continue

        def _forward(self) -> None:
            body = self._body()
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            conn = http.client.HTTPConnection(*upstream, timeout=120)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
            host = self.headers.get("Host", "")
            seen.append(Request(tls, host.split(":")[0], self.command, urlsplit(self.path).path,
                                resp.status))
            self.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() in _HOP:
                    continue
                if tls and k.lower() == "location" and v.startswith("http://"):
                    v = "https://" + v[len("http://"):]
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _body(self) -> bytes | None:
            """The request body per HTTP/1.1: chunked framing wins over Content-Length (RFC 9112
            6.3). TF's resumable-upload PUT sends both headers with a chunked body."""
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()  # the CRLF after each chunk
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields, up to the blank line
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else None

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward

        def log_message(self, *args) -> None:  # the request list is the log
            pass

    return Forward


@dataclass
class Sandbox:
    """A running sandbox: :meth:`run` starts a command in the namespace with the TF/GCS env."""

    host: Host
    address: str
    env: dict[str, str]
    requests: list[Request] = field(default_factory=list)

    def run(self, argv: Sequence[str], timeout_s: float, cwd: str | Path | None = None,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """``argv`` inside the namespace (its own hosts file, only the veth link out)."""
        return subprocess.run(self.host.command(argv), env={**self.env, **(extra_env or {})},
                              cwd=cwd, capture_output=True, text=True, timeout=timeout_s)

    def tf_hosts(self) -> set[str]:
        """The Google API host names requests came in for over TLS (i.e. from TF's client)."""
        return {r.host for r in self.requests if r.tls}


@contextmanager
def tf_gcs_sandbox(emulator_host: str, workdir: Path) -> Iterator[Sandbox]:
    """The namespace, the TLS proxy for TF and the plain proxy for Python clients, all forwarding
    to the emulator at ``emulator_host`` (``http://127.0.0.1:P``); torn down on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    ca, chain, key = make_tls_files(workdir)
    up = urlsplit(emulator_host)
    upstream = (up.hostname or "127.0.0.1", up.port or 80)
    with linked_host("tg", GCS_HOSTS) as (host, address):
        seen: list[Request] = []
        tls_server = ThreadingHTTPServer((address, 443), _handler(upstream, True, seen))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(chain, key)
        tls_server.socket = ctx.wrap_socket(tls_server.socket, server_side=True)
        plain_server = ThreadingHTTPServer((address, 0), _handler(upstream, False, seen))
        servers = (tls_server, plain_server)
        threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
        for t in threads:
            t.start()
        env = {k: v for k, v in os.environ.items()
               if k.lower() not in {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}}
        env.update(NO_GCE_CHECK="true", GOOGLE_AUTH_TOKEN_FOR_TESTING=TEST_TOKEN,
                   CURL_CA_BUNDLE=str(ca),
                   STORAGE_EMULATOR_HOST=f"http://{address}:{plain_server.server_address[1]}")
        try:
            yield Sandbox(host, address, env, seen)
        finally:
            for s in servers:
                s.shutdown()
                s.server_close()
