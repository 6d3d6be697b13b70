"""KServe's Python ModelServer in front of the stack's runtime: V1 and V2 (Open Inference
Protocol) REST on one port. Runs in .venv-serve (see requirements/serve.in); imports only the
standard library and ``kserve`` -- the model runs in :mod:`serving.runtime`, a child process
in the project's venv, which this front starts and talks to over its pipes.

Requests (model name = the stack, ``tfx`` or ``torch``):

* V2: ``POST /v2/models/<stack>/infer`` with one input per contract feature column, each
  ``{"name": COLUMN, "shape": [N], "datatype": "FP64"|"INT64"|"BYTES", "data": [...]}``
  (``null`` = missing); the answer has one output ``probability`` (FP32, [N]) and
  ``model_version`` = the pushed version that scored the rows.
* V1: ``POST /v1/models/<stack>:predict`` with ``{"instances": [{COLUMN: value, ...}, ...]}``;
  the answer is ``{"predictions": [P, ...]}``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import subprocess
import sys
import threading
import warnings

import kserve
from kserve import InferOutput, InferRequest, InferResponse
from kserve.errors import InferenceError, InvalidInput

log = logging.getLogger("twinpipe.serve")


class RuntimeModel(kserve.Model):
    """A ``kserve.Model`` whose predict is answered by the runtime process (one request at a
    time: the runtime is single-threaded, and the lock pairs each answer with its request)."""

    def __init__(self, stack: str, runtime_cmd: list[str]):
        super().__init__(stack)
        self.stack, self.runtime_cmd = stack, runtime_cmd
        self.proc: subprocess.Popen | None = None
        self.version: str | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._stopping = False

    def start_runtime(self) -> None:
        """Starts the runtime and waits for its first line (loaded, or why not). Plain pipes and a
        thread lock, not asyncio's: the server's event loop starts only after this."""
        self.proc = subprocess.Popen(self.runtime_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1 << 20)
        first = self.proc.stdout.readline()
        doc = json.loads(first) if first else {"error": "the runtime exited before loading a model"}
        if "error" in doc:
            raise RuntimeError(doc["error"])
        self.version = doc["version"]
        self.ready = True

    def watch_runtime(self) -> None:
        """A runtime that exits on its own (a crash, an OOM kill) takes the server down with it:
        the front exits 1 at once, so a pod's container is restarted instead of answering 500
        while its probes say ready. Nothing is drained: without the runtime no request in flight
        can be answered (and a signal to itself could arrive before uvicorn handles signals)."""
        def wait() -> None:
            code = self.proc.wait()
            if self._stopping:
                return
            self.ready = False
            print(f"[{self.stack}][serve] the model runtime exited (code {code}); the server "
                  "stops with it", file=sys.stderr, flush=True)
            os._exit(1)

        threading.Thread(target=wait, name=f"{self.stack}-runtime-watch", daemon=True).start()

    def stop_runtime(self) -> None:
        self._stopping = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()  # the runtime's loop ends at EOF
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def _score(self, columns: dict[str, list]) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            raise InferenceError(f"[{self.stack}][serve] the model runtime is not running")
        with self._lock:
            req_id = next(self._ids)
            try:
                self.proc.stdin.write(json.dumps({"id": req_id, "columns": columns}) + "\n")
                self.proc.stdin.flush()
                line = self.proc.stdout.readline()
            except OSError:  # the runtime died mid-request (the watcher stops the server)
                line = ""
        if not line:
            raise InferenceError(f"[{self.stack}][serve] the model runtime exited")
        doc = json.loads(line)
        if "error" in doc:
            raise (InvalidInput if doc.get("kind") == "input" else InferenceError)(doc["error"])
        if doc["version"] != self.version:
            log.info("[%s][serve] answering with version %s", self.stack, doc["version"])
            self.version = doc["version"]
        return doc

    async def predict(self, payload, headers=None, response_headers=None):
        if isinstance(payload, InferRequest):
            columns = {inp.name: _values(inp) for inp in payload.inputs}
            doc = await asyncio.to_thread(self._score, columns)
            probs = doc["probability"]
            out = InferOutput(name="probability", shape=[len(probs)], datatype="FP32", data=probs)
            return InferResponse(response_id=payload.id or str(next(self._ids)),
                                 model_name=self.name, infer_outputs=[out],
                                 model_version=doc["version"],
                                 parameters={k: doc[k] for k in ("validate_ms", "score_ms")})
        instances = payload.get("instances") if isinstance(payload, dict) else None
        if not isinstance(instances, list) or not all(isinstance(r, dict) for r in instances):
            raise InvalidInput('V1 request: expected {"instances": [{COLUMN: value, ...}, ...]}')
        names = list(dict.fromkeys(k for r in instances for k in r))
        doc = await asyncio.to_thread(self._score, {n: [r.get(n) for r in instances] for n in names})
        return {"predictions": doc["probability"]}


def _values(inp) -> list:
    """An input tensor's values as a flat list (JSON data as sent; BYTES as text)."""
    data = inp.data
    if hasattr(data, "tolist"):
        data = data.tolist()
    if inp.datatype == "BYTES":
        data = [v.decode("utf-8") if isinstance(v, bytes) else v for v in data]
    return list(data)


def _one_line_for_bad_input(stack: str):
    """kserve logs every handled error with its traceback; a client's bad rows are no bug."""
    def keep(record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, InvalidInput):
            record.msg, record.args, record.exc_info = f"[{stack}][serve] 400: %s", (exc,), None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
    return keep


def _listen_on(host: str) -> None:
    """kserve 0.21 builds its uvicorn config with ``host="0.0.0.0"`` fixed (every interface); the
    server here listens on ``host`` instead (loopback unless told otherwise)."""
    import uvicorn

    init = uvicorn.Config.__init__

    def bound(self, *a, **kw):
        kw["host"] = host
        init(self, *a, **kw)

    uvicorn.Config.__init__ = bound


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kserve_front.py")
    p.add_argument("--stack", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to listen on (default loopback; 0.0.0.0 in a pod)")
    p.add_argument("runtime_cmd", nargs=argparse.REMAINDER,
                   help="after --: the runtime's command line (serving.runtime)")
    args = p.parse_args(argv)
    cmd = args.runtime_cmd[1:] if args.runtime_cmd[:1] == ["--"] else args.runtime_cmd
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")  # kserve's responses
    model = RuntimeModel(args.stack, cmd)
    try:
        model.start_runtime()
    except RuntimeError as e:
        print(f"[{args.stack}][serve] {e}", file=sys.stderr)
        return 1
    log.info("[%s][serve] version %s on http://%s:%d (V1 /v1/models/%s:predict, "
             "V2 /v2/models/%s/infer)", args.stack, model.version, args.host, args.port, args.stack,
             args.stack)
    _listen_on(args.host)
    try:
        server = kserve.ModelServer(http_port=args.port, enable_grpc=False, workers=1,
                                    enable_latency_logging=False)
        # after kserve configured its loggers: not two timing lines per request, and a request
        # that breaks the contract is one line (the client has the 400 and the message)
        logging.getLogger("kserve.trace").setLevel(logging.WARNING)
        logging.getLogger("kserve").addFilter(_one_line_for_bad_input(args.stack))
        model.watch_runtime()
        server.start([model])
    finally:
        model.stop_runtime()
    return 0


if __name__ == "__main__":
    sys.exit(main())
