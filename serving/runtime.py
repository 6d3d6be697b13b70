"""The model runtime behind `twinpipe serve`: one process in the project's venv that scores rows.

KServe's ``ModelServer`` (:mod:`serving.kserve_front`) runs in its own venv (kserve 0.21 needs
protobuf 6 and numpy 2, the TFX lock pins protobuf 4 and numpy 1.26), so the stack's serving
runtime cannot live in its process. It runs here instead, exactly as ``twinpipe predict`` runs it
(:class:`~components.tfx.export.SavedModelScorer`, :class:`~components.torch.export.OnnxScorer`,
rows conformed to the contract first), and the front talks to it over a pipe: one JSON line per
request on stdin, one JSON line per answer on stdout (floats round-trip exactly through JSON).

Hot swap: a poller thread reads ``DEST/current.json`` every ``poll_s`` seconds; on a new version it
loads it beside the serving one, then swaps one reference. A request takes that reference once,
so a request in flight finishes on the model it started with; the old model is dropped after.

Protocol (stdout): first ``{"ready": true, "version": V, "uri": U}`` or ``{"error": "..."}`` (then
exit 1); then per request ``{"id": N, "probability": [...], "version": V, "validate_ms": ...,
"score_ms": ...}`` or
``{"id": N, "error": "...", "kind": "input"|"internal"}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.common import registry, storage
from components.common.contract import load_contract
from components.common.errors import DataError, TwinpipeError
from components.common.layout import SIGNATURE_JSON
from components.common.screen import conform

log = logging.getLogger("twinpipe.serve")

RUNTIMES = {"tfx": "tensorflow-saved-model", "torch": "onnx"}


@dataclass(frozen=True)
class Loaded:
    """A loaded model version: what a request takes one reference to."""

    version: str
    uri: str
    scorer: object
    local: str = ""  # the downloaded copy of a gs:// version ("" when served in place)

    def predict(self, table) -> np.ndarray:
        """As ``twinpipe predict`` scores: the scorer's own batching (SavedModel 4,096 rows per
        call, ONNX 65,536)."""
        return self.scorer.predict(table)


def current_version(dest: str) -> tuple[str, str]:
    """(version, uri) that ``dest`` serves now: DEST/current.json (what a push writes last), or
    ``dest`` itself when it is one pushed version folder (no polling then).

    Raises:
        DataError: nothing servable there, in one paragraph naming the path.
    """

    if storage.exists(storage.join(dest, SIGNATURE_JSON)):
        return storage.basename(dest), str(dest)
    pointer = storage.join(dest, registry.CURRENT)
    if storage.exists(pointer):
        try:
            doc = storage.read_json(pointer)
            return str(doc["version"]), str(doc["uri"])
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"--model {dest}: {pointer} is not a push pointer "
                            f"({{\"version\", \"uri\"}}): {e}.") from None
    uri = registry.serving_uri(dest) if storage.exists(dest) else None
    if uri is None:
        raise DataError(
            f"--model {dest}: no pushed model there: expected a push destination (a folder or "
            f"gs:// prefix holding {registry.CURRENT} and versioned folders, as `twinpipe run` "
            "pushes them: OUT/<stack>/pushed) or one pushed version folder (with signature.json). "
            "Check the path, or run `twinpipe run` until a model is blessed and pushed.")
    return storage.basename(uri), uri


def load(stack: str, version: str, uri: str, workdir: str) -> Loaded:
    """Loads one pushed version with the stack's runtime (a gs:// version is downloaded first)."""

    local = registry.local_copy(uri, workdir)
    sig_path = Path(local) / SIGNATURE_JSON
    if not sig_path.is_file():
        raise DataError(f"--model: version {uri} has no signature.json; not a pushed model folder.")
    runtime = json.loads(sig_path.read_text()).get("runtime")
    if runtime != RUNTIMES[stack]:
        raise DataError(f"--model: version {uri} holds a {runtime!r} model, but --stack {stack} "
                        f"serves {RUNTIMES[stack]!r}; give the {stack} stack's push destination.")
    if stack == "tfx":
        from components.tfx.export import SavedModelScorer

        scorer = SavedModelScorer(str(local))
    else:
        from components.torch.export import OnnxScorer

        scorer = OnnxScorer(local)
    return Loaded(version, uri, scorer, str(local) if storage.is_remote(uri) else "")


class Runtime:
    """The serving model of ``dest`` for ``stack``, swapped for each newer push (see module doc)."""

    def __init__(self, stack: str, dest: str, contract_path: str | None, poll_s: float):

        self.stack, self.dest, self.poll_s = stack, dest, poll_s
        self.contract = load_contract(contract_path)
        self._workdir = tempfile.mkdtemp(prefix=f"twinpipe-serve-{stack}-")
        version, uri = current_version(dest)
        self.current = load(stack, version, uri, self._workdir)
        self._stop = threading.Event()

    def score(self, columns: dict[str, list]) -> dict:
        """P for the rows given column-wise (raw contract values, None = missing), the version that
        scored them and where the time went (``validate_ms``: the contract check, ``score_ms``: the
        runtime). Raises DataError for rows that break the contract."""
        import pandas as pd


        lengths = {k: len(v) if isinstance(v, list) else -1 for k, v in columns.items()}
        if len(set(lengths.values())) > 1 or -1 in lengths.values():
            raise DataError(f"request: every input must be a list of one value per row, of the "
                            f"same length; got lengths {lengths}")
        model = self.current  # one reference for the whole request (a swap does not cut in)
        t0 = time.perf_counter()
        table = conform(pd.DataFrame(columns), self.contract, "request", features_only=True)
        t1 = time.perf_counter()
        probs = [float(p) for p in model.predict(table)]
        t2 = time.perf_counter()
        return {"probability": probs, "version": model.version,
                "validate_ms": round((t1 - t0) * 1e3, 3), "score_ms": round((t2 - t1) * 1e3, 3)}

    def close(self) -> None:
        """Stops polling and removes the downloaded versions."""
        self._stop.set()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def poll_forever(self) -> None:
        """Loads and swaps in each newer push; a failed poll or load keeps the model it has (a
        version that failed to load is not tried again until current.json names another)."""
        failed = None
        while not self._stop.wait(self.poll_s):
            try:
                version, uri = current_version(self.dest)
                if version == self.current.version or (version, uri) == failed:
                    continue
                failed = (version, uri)  # until the load below succeeds
                t0 = time.perf_counter()
                loaded = load(self.stack, version, uri, self._workdir)
                old, self.current, failed = self.current, loaded, None
                log.info("[%s][serve] now serving version %s (was %s; loaded in %.1fs)", self.stack,
                         version, old.version, time.perf_counter() - t0)
                if old.local:  # loaded models are in memory: the old download is not read again
                    shutil.rmtree(old.local, ignore_errors=True)
            except Exception as e:  # noqa: BLE001 -- keep serving the loaded model
                log.warning("[%s][serve] poll of %s failed, still serving %s: %s", self.stack,
                            self.dest, self.current.version, e)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    p = argparse.ArgumentParser(prog="python -m serving.runtime")
    p.add_argument("--stack", choices=tuple(RUNTIMES), required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--contract", default=None)
    p.add_argument("--poll-s", type=float, default=2.0)
    args = p.parse_args(argv)
    # Ctrl-C reaches the whole process group: the front shuts down and closes our stdin, which
    # ends the loop below; the signal itself would only print a traceback here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the front owns shutdown (a group-wide stop)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    for noisy in ("absl", "tensorflow"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    out = sys.stdout
    sys.stdout = sys.stderr  # library prints must not corrupt the answer stream

    def answer(doc: dict) -> None:
        out.write(json.dumps(doc) + "\n")
        out.flush()


    try:
        rt = Runtime(args.stack, args.model, args.contract, args.poll_s)
    except TwinpipeError as e:
        answer({"error": str(e)})
        return 1
    log.info("[%s][serve] loaded version %s from %s", args.stack, rt.current.version, rt.current.uri)
    answer({"ready": True, "version": rt.current.version, "uri": rt.current.uri})
    if args.poll_s > 0:
        threading.Thread(target=rt.poll_forever, daemon=True, name="poll").start()
    try:
        for line in sys.stdin:  # until the front closes the pipe
            req = json.loads(line)
            try:
                answer({"id": req["id"], **rt.score(req["columns"])})
            except TwinpipeError as e:
                answer({"id": req["id"], "error": str(e), "kind": "input"})
            except Exception as e:  # noqa: BLE001 -- one bad request must not stop the server
                log.exception("[%s][serve] request %s failed", args.stack, req.get("id"))
                answer({"id": req["id"], "error": f"{type(e).__name__}: {e}", "kind": "internal"})
    finally:
        rt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
