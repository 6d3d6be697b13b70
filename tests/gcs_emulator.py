"""A real GCS JSON-API server on loopback for tests: ``gcp-storage-emulator`` (PyPI).

Started as a subprocess (``python -m tests.gcs_emulator -d DIR start --host 127.0.0.1 --port P
--default-bucket B``, the emulator's own command line) and reached by every client library through
``STORAGE_EMULATOR_HOST=http://127.0.0.1:P`` (gcsfs, google-cloud-storage, Beam's gcsio).

One addition, and why: gcp-storage-emulator 2026.7.19 ignores the upload precondition
``ifGenerationMatch`` (checked: two creates of one object with ``ifGenerationMatch=0`` both
succeed there, while GCS answers the second with 412 Precondition Failed). twinpipe's run lock and
registry version names rely on exactly that precondition, the documented GCS mutex idiom. So this
launcher runs the unmodified emulator with its object-insert handler wrapped: every insert is
serialised, and one that carries ``ifGenerationMatch`` is refused with 412 unless the object's
current generation matches (``0``: the object must not exist) — the service's documented rule.
A second one: a ``uploadType=media`` insert with an empty body (a zero-byte object, which is how
TensorFlow's GCS filesystem marks a directory: ``tf.io.gfile.makedirs``) crashes the emulator's
handler (``len(None)``: it decodes an empty body to ``None``); GCS stores the empty object. The
wrapper hands the handler the empty bytes the client sent.
Everything else is the emulator as shipped.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http import HTTPStatus
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _install_preconditions() -> None:
    """Wraps the emulator's object-insert handler with GCS's ``ifGenerationMatch`` rule, and its
    media upload with GCS's handling of an empty body (see the module docstring)."""
    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.handlers import objects

    original = objects.insert
    lock = threading.Lock()

    def insert(request, response, storage, *args, **kwargs):
        with lock:
            want = request.query.get("ifGenerationMatch")
            if want:
                name = (request.query.get("name") or [None])[0]
                if name is None and isinstance(request.data, dict):
                    name = (request.data.get("meta") or request.data).get("name")
                try:
                    current = str(storage.get_file_obj(request.params["bucket_name"], name)
                                  .get("generation", "1"))
                except NotFound:
                    current = "0"
                if current != want[0]:
                    response.status = HTTPStatus.PRECONDITION_FAILED
                    response.json({"error": {"code": 412, "message": "Precondition Failed",
                                             "errors": [{"reason": "conditionNotMet"}]}})
                    return None
            return original(request, response, storage, *args, **kwargs)

    objects.insert = insert

    media_upload = objects._media_upload

    def empty_safe_media_upload(request, response, storage):
        if request.data is None:
            request._data = b""  # the body was empty; the handler expects bytes
        return media_upload(request, response, storage)

    objects._media_upload = empty_safe_media_upload


def main(argv: list[str] | None = None) -> int:
    """The emulator's own CLI, with the precondition rule installed first."""
    _install_preconditions()
    from gcp_storage_emulator.__main__ import main as emulator_main

    sys.argv = ["gcp-storage-emulator", *(argv if argv is not None else sys.argv[1:])]
    return emulator_main() or 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GcsEmulator:
    """``with GcsEmulator(data_dir) as emu:`` — a running emulator; ``emu.host`` is the value for
    ``STORAGE_EMULATOR_HOST``; :meth:`bucket` creates a fresh bucket and returns ``gs://name``."""

    def __init__(self, data_dir: str | Path, default_bucket: str = "twinpipe-default",
                 in_memory: bool = False):
        self.data_dir = Path(data_dir)
        self.default_bucket = default_bucket
        # The emulator's disk store keeps object ``d/`` as the file ``d``, so an object ``d/a``
        # next to it cannot be written; its memory store keeps both. TensorFlow's GCS filesystem
        # writes exactly those directory markers (tests/gcs_tf.py), so TF tests use memory.
        self.in_memory = in_memory
        self.port = free_port()
        self.host = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir.parent / f"gcs-emulator-{self.port}.log"

    def start(self) -> GcsEmulator:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115 — the child holds it; closed on stop
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.gcs_emulator", "-d", str(self.data_dir), "start",
             "--host", "127.0.0.1", "--port", str(self.port),
             "--default-bucket", self.default_bucket, "--quiet",
             *(["--in-memory"] if self.in_memory else [])],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)))
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gcs emulator exited ({self.proc.returncode}): "
                                   f"{self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.host}/storage/v1/b/{self.default_bucket}",
                                            timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gcs emulator did not answer on {self.host} within 30 s")

    def bucket(self, name: str) -> str:
        """Creates bucket ``name`` (JSON API ``buckets.insert``) and returns ``gs://name``."""
        req = urllib.request.Request(f"{self.host}/storage/v1/b?project=twinpipe-test",
                                     data=f'{{"name": "{name}"}}'.encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200, r.status
        return f"gs://{name}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> GcsEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    raise SystemExit(main())
