"""`twinpipe serve`: KServe's Python ModelServer on a stack's push destination.

Two processes, because one cannot hold both dependency sets (requirements/serve.in):

* the front, :mod:`serving.kserve_front`, in ``.venv-serve`` (kserve 0.21: protobuf 6, numpy 2):
  V1 and V2 (Open Inference Protocol) REST, health and readiness, model name = the stack;
* the runtime, :mod:`serving.runtime`, in the project's venv (TF 2.16 / onnxruntime with the
  lock's protobuf 4): the same scorers and contract checks as ``twinpipe predict``, reloading each
  newer push (``current.json``) without a restart.

:class:`Server` starts both on a loopback port for the load test and the tests.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from components.common import storage
from components.common.errors import TwinpipeError
from serving.runtime import current_version

ROOT = Path(__file__).resolve().parents[1]
SERVE_VENV = ".venv-serve"
DEFAULT_POLL_S = 2.0


def serve_python() -> str:
    """The Python of the serve venv (``TWINPIPE_SERVE_PYTHON`` overrides; in an image, the path
    the Dockerfile made)."""
    py = os.environ.get("TWINPIPE_SERVE_PYTHON") or str(ROOT / SERVE_VENV / "bin" / "python")
    if not os.access(py, os.X_OK):
        raise TwinpipeError(
            f"twinpipe serve: KServe's model server runs in its own venv ({py}), which is missing. "
            "Create it with `make setup` (or `bash infra/scripts/setup_serve_env.sh`): kserve "
            "needs protobuf 6 and numpy 2, which the TFX lock cannot take.")
    return py


def command(stack: str, model: str, port: int, contract: str | None = None,
            poll_s: float = DEFAULT_POLL_S, host: str = "127.0.0.1") -> tuple[list[str], dict]:
    """The front's command line (the runtime's after ``--``) and environment. Local paths are
    made absolute: the runtime runs from the repository, not from the caller's folder."""

    def where(path):
        return path if storage.is_remote(str(path)) else str(Path(path).resolve())

    model = where(model)
    contract = where(contract) if contract else None
    runtime = [sys.executable, "-m", "serving.runtime", "--stack", stack, "--model", str(model),
               "--poll-s", str(poll_s)]
    if contract:
        runtime += ["--contract", str(contract)]
    env = dict(os.environ)  # the runtime sets TensorFlow's defaults itself (serve_runtime.main)
    # The front runs as a file with -P (its folder not on sys.path) and no PYTHONPATH of ours:
    # it imports only the standard library and kserve, never the project venv's packages (in an
    # image the project is in that venv's site-packages). The runtime inherits cwd = ROOT.
    front = str(Path(__file__).with_name("kserve_front.py"))
    return [serve_python(), "-P", front, "--stack", stack, "--port", str(port), "--host", host,
            "--", *runtime], env


def check_model(model: str) -> str:
    """The version ``model`` serves now, or a DataError in one paragraph (before any server
    starts, so a wrong path fails fast with exit 1)."""

    return current_version(str(model))[0]


def serve(stack: str, model: str, port: int, contract: str | None = None,
          poll_s: float = DEFAULT_POLL_S, host: str = "127.0.0.1") -> int:
    """Runs the server in the foreground: this process *becomes* the front (exec), so SIGTERM
    (a pod's stop, PID 1 there) and Ctrl-C reach the server itself, which drains and stops the
    runtime; nothing is left holding the port."""
    version = check_model(model)
    cmd, env = command(stack, model, port, contract, poll_s, host)
    print(f"[{stack}][serve] {model}: version {version} -> http://{host}:{port} "
          f"(V2 /v2/models/{stack}/infer, V1 /v1/models/{stack}:predict; polls every {poll_s:g}s)",
          file=sys.stderr, flush=True)
    os.chdir(ROOT)  # the runtime imports the project from here (paths above are absolute)
    os.execve(cmd[0], cmd, env)


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_json(conn: http.client.HTTPConnection, path: str, doc: dict) -> tuple[int, dict]:
    """One POST on a kept-alive connection: (status, JSON answer)."""
    conn.request("POST", path, body=json.dumps(doc), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    body = resp.read()
    try:
        return resp.status, json.loads(body)
    except ValueError:
        return resp.status, {"error": body.decode("utf-8", "replace")}


def v2_request(table, datatypes: dict[str, str] | None = None) -> dict:
    """A V2 infer request for raw contract rows (a DataFrame): one input per column, ``null`` for
    a missing value (JSON has no NaN)."""
    inputs = []
    for name in table.columns:
        col = table[name]
        kind = (datatypes or {}).get(name) or ("BYTES" if col.dtype == object or str(col.dtype) in (
            "string", "category") else "INT64" if col.dtype.kind in "iu" else "FP64")
        data = [None if v is None or v != v else v for v in col.astype(object).tolist()]
        inputs.append({"name": str(name), "shape": [len(col)], "datatype": kind, "data": data})
    return {"inputs": inputs}


class Server:
    """`twinpipe serve`'s processes on a free loopback port, for a ``with`` block: started and
    ready on entry, stopped on exit. ``pid`` is the front's (the runtime is its child)."""

    def __init__(self, stack: str, model: str, port: int | None = None, contract: str | None = None,
                 poll_s: float = DEFAULT_POLL_S, log_path: str | Path | None = None,
                 ready_timeout_s: float = 120.0):
        self.stack, self.model, self.port = stack, str(model), port or free_port()
        self.contract, self.poll_s, self.log_path = contract, poll_s, log_path
        self.ready_timeout_s = ready_timeout_s
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def __enter__(self) -> Server:
        check_model(self.model)
        cmd, env = command(self.stack, self.model, self.port, self.contract, self.poll_s)
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=self._log,
                                     stderr=subprocess.STDOUT if self.log_path else None)
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TwinpipeError(f"[{self.stack}][serve] the server exited ({self.proc.returncode}) "
                                    f"before it was ready{self._log_hint()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", f"/v2/models/{self.stack}/ready")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
                conn.close()
            except OSError:
                pass
            time.sleep(0.2)
        raise TwinpipeError(f"[{self.stack}][serve] not ready after {self.ready_timeout_s:.0f}s"
                            f"{self._log_hint()}")

    def _log_hint(self) -> str:
        return f"; see {self.log_path}" if self.log_path else ""

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # kserve drains, then closes the runtime's pipe
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
