"""Load test of `twinpipe serve` on loopback: concurrent clients against the V2 infer endpoint.

Each level (1, 8, 32 clients by default) is bounded twice -- at most ``max_requests`` requests and
at most ``max_seconds`` seconds -- and every client is a thread with its own kept-alive HTTP
connection to 127.0.0.1, sending real eval rows (``rows_per_request`` per request, cycling through
the rows given). Per level: throughput, latency p50/p99 (of the successful requests), error rate,
and the server's CPU and memory (psutil on the front's process tree: the KServe front and the
model runtime it started), sampled while the level runs.

Used by the ``serving_load`` measurement (:func:`measure_serving_load`, registered in
``comparison.measure.EXTRA_MEASUREMENTS``), which writes ``OUT/<stack>/serving_load.json`` for the
report's "Serving under load" section (:mod:`comparison.serving_load`). The environment
variables ``TWINPIPE_SERVING_LOAD_S`` and ``TWINPIPE_SERVING_LOAD_REQUESTS`` lower the per-level
bounds (the tests' small load test).
"""

from __future__ import annotations

import html
import http.client
import itertools
import json
import logging
import threading
import time
from pathlib import Path

import numpy as np

from comparison.plots import COLORS, png
from comparison.sections import img, stack_files, table
from components.common import rows, storage
from components.common.errors import TwinpipeError
from components.common.layout import SERVING_LOAD_JSON
from components.common.resources import tree_cpu_and_rss
from serving.server import Server, post_json, v2_request

log = logging.getLogger("twinpipe")

CLIENTS = (1, 8, 32)
MAX_REQUESTS = 4000    # per level
MAX_SECONDS = 12.0     # per level: 3 levels + start-up stay within ~1 min per stack
ROWS = 512             # distinct eval rows the requests cycle through
WARMUP_REQUESTS = 5


class _Sampler(threading.Thread):
    """CPU seconds and peak RSS of a process and its children, sampled every ``every_s``."""

    def __init__(self, pid: int, every_s: float = 0.1):
        super().__init__(daemon=True, name="load-sampler")
        import psutil

        self.root, self.every_s = psutil.Process(pid), every_s
        self.peak_rss = 0
        self._done = threading.Event()
        self.cpu0, _ = tree_cpu_and_rss(self.root)

    def run(self) -> None:
        while not self._done.wait(self.every_s):
            self.peak_rss = max(self.peak_rss, tree_cpu_and_rss(self.root)[1])

    def stop(self) -> tuple[float, int]:
        """(CPU seconds used since start, peak RSS bytes)."""
        self._done.set()
        self.join()
        cpu, rss = tree_cpu_and_rss(self.root)
        self.peak_rss = max(self.peak_rss, rss)
        return cpu - self.cpu0, self.peak_rss


def run_level(port: int, path: str, payloads: list[bytes], clients: int, max_requests: int,
              max_seconds: float, server_pid: int, rows_per_request: int) -> dict:
    """One level: ``clients`` threads send ``payloads`` (cycling) until either bound is hit."""
    tickets = itertools.count()
    deadline = time.monotonic() + max_seconds
    lat: list[float] = []
    errors: list[str] = []
    server_ms: list[tuple[float, float]] = []  # (validate_ms, score_ms) the runtime reported
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, bad, split = [], [], []
        while time.monotonic() < deadline:
            n = next(tickets)
            if n >= max_requests:
                break
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=payloads[n % len(payloads)],
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                body = resp.read()
                ok = resp.status == 200
                if not ok:
                    bad.append(f"HTTP {resp.status}: {body[:200].decode('utf-8', 'replace')}")
            except (OSError, http.client.HTTPException) as e:
                ok = False
                bad.append(f"{type(e).__name__}: {e}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            if ok:
                mine.append(time.perf_counter() - t0)
                params = json.loads(body).get("parameters") or {}
                split.append((params.get("validate_ms", np.nan), params.get("score_ms", np.nan)))
        conn.close()
        with lock:
            lat.extend(mine)
            errors.extend(bad)
            server_ms.extend(split)

    sampler = _Sampler(server_pid)
    sampler.start()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, name=f"client-{i}") for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu_s, peak_rss = sampler.stop()
    sent = len(lat) + len(errors)
    ms = np.array(lat) * 1e3
    return {
        "clients": clients,
        "requests": sent,
        "errors": len(errors),
        "error_rate": round(len(errors) / sent, 6) if sent else None,
        "first_errors": errors[:3],
        "wall_s": round(wall, 3),
        "throughput_rps": round(len(lat) / wall, 2) if wall else None,
        "rows_per_s": round(len(lat) * rows_per_request / wall, 1) if wall else None,
        "p50_ms": round(float(np.percentile(ms, 50)), 3) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 3) if len(ms) else None,
        "server_validate_ms_p50": _median(server_ms, 0),
        "server_score_ms_p50": _median(server_ms, 1),
        "server_cpu_cores": round(cpu_s / wall, 3) if wall else None,
        "server_peak_rss_mb": round(peak_rss / 2**20, 1),
        "stopped_by": "requests" if sent >= max_requests else "time",
    }


def _median(pairs: list[tuple[float, float]], i: int) -> float | None:
    vals = np.array([p[i] for p in pairs], dtype=float)
    vals = vals[~np.isnan(vals)]
    return round(float(np.median(vals)), 3) if len(vals) else None


def load_test(stack: str, model: str, table, clients=CLIENTS, max_requests: int = MAX_REQUESTS,
              max_seconds: float = MAX_SECONDS, rows_per_request: int = 1,
              log_path: str | Path | None = None, contract: str | None = None) -> dict:
    """Starts `twinpipe serve` for ``stack`` on ``model`` (a push destination) on a free loopback
    port, runs one level per entry of ``clients`` with requests built from ``table`` (raw contract
    feature rows), stops the server; the figures."""

    payloads = [json.dumps(v2_request(table.iloc[i:i + rows_per_request])).encode()
                for i in range(0, len(table) - rows_per_request + 1, rows_per_request)]
    path = f"/v2/models/{stack}/infer"
    t0 = time.perf_counter()
    with Server(stack, model, contract=contract, poll_s=0, log_path=log_path) as srv:
        start_s = time.perf_counter() - t0
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        version = None
        for p in payloads[:WARMUP_REQUESTS]:
            status, doc = post_json(conn, path, json.loads(p))
            if status != 200:
                raise TwinpipeError(f"[{stack}][serve] load test: warm-up request answered "
                                    f"HTTP {status}: {doc}")
            version = doc.get("model_version")
        conn.close()
        levels = []
        for c in clients:
            level = run_level(srv.port, path, payloads, c, max_requests, max_seconds, srv.pid,
                              rows_per_request)
            log.info("[%s][serve] %2d clients: %.0f req/s, p50 %.1f ms, p99 %.1f ms, %d errors, "
                     "server %.2f cores, %.0f MB", stack, c, level["throughput_rps"] or 0,
                     level["p50_ms"] or 0, level["p99_ms"] or 0, level["errors"],
                     level["server_cpu_cores"] or 0, level["server_peak_rss_mb"])
            levels.append(level)
    return {
        "stack": stack,
        "model": str(model),
        "model_version": version,
        "endpoint": f"V2 REST {path} (KServe ModelServer, loopback)",
        "rows_per_request": rows_per_request,
        "distinct_rows": len(payloads) * rows_per_request,
        "bounds": {"max_requests": max_requests, "max_seconds": max_seconds},
        "server_start_s": round(start_s, 2),
        "levels": levels,
    }


def eval_features(out_dir: Path, spans: list[int], contract, n: int = ROWS):
    """The first ``n`` rows of the run's eval split (span order), feature columns only."""

    with rows.split_ref(out_dir / "spans", "eval", spans) as ref:
        return rows.head(ref, "eval", n, columns=[c.name for c in contract.features])


def measure_serving_load(out_dir, cfg, contract, ingested, summaries: dict[str, dict]) -> None:
    """The ``serving_load`` measurement: each pushed stack's server under load, on the run's eval
    rows, into ``OUT/<stack>/serving_load.json`` (a stack that pushed nothing is recorded as
    skipped)."""
    import os


    out = Path(out_dir)
    # Tests shorten the levels (the measurement runs inside every `twinpipe run` with a report).
    max_seconds = float(os.environ.get("TWINPIPE_SERVING_LOAD_S") or MAX_SECONDS)
    max_requests = int(os.environ.get("TWINPIPE_SERVING_LOAD_REQUESTS") or MAX_REQUESTS)
    for stack, summary in summaries.items():
        pushed = summary["stages"]["push"].get("pushed_path")
        target = out / stack / SERVING_LOAD_JSON
        if not pushed:
            doc = {"stack": stack, "skipped": "the run pushed no model (not blessed)"}
        else:
            table = eval_features(out, summary["spans"], contract)
            doc = load_test(stack, storage.parent(pushed), table, max_requests=max_requests,
                            max_seconds=max_seconds, log_path=out / stack / "serving_load.log",
                            contract=cfg.contract_path)  # the run's own contract checks the rows
        storage.write_json(target, doc)
        log.info("[%s][measure] serving load -> %s", stack, target)


KEY = "serving_load"


TITLE = "Serving under load"


COLUMNS = ("clients", "requests", "errors", "error_rate", "throughput_rps", "rows_per_s", "p50_ms",
           "p99_ms", "server_validate_ms_p50", "server_score_ms_p50", "server_cpu_cores",
           "server_peak_rss_mb", "stopped_by")


def collect(runs: list[dict], data: dict) -> dict | None:
    found = {(stack if len(runs) == 1 else f"{stack} · {r['label']}"): doc | {"stack": stack}
             for r, stack, doc in stack_files(runs, SERVING_LOAD_JSON)}
    return {"runs": found} if found else None


def table_rows(doc: dict) -> list[list]:
    out = []
    for label, d in doc["runs"].items():
        if d.get("skipped"):
            out.append([label, f"skipped: {d['skipped']}", *[""] * (len(COLUMNS) - 1)])
            continue
        for lv in d["levels"]:
            out.append([label, *(("" if lv.get(c) is None else lv[c]) for c in COLUMNS)])
    return out


def _plot(doc: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for label, d in doc["runs"].items():
        levels = d.get("levels") or []
        if not levels:
            continue
        x = [lv["clients"] for lv in levels]
        color = COLORS.get(d["stack"])
        a.plot(x, [lv["throughput_rps"] or 0 for lv in levels], "o-", color=color, label=label)
        b.plot(x, [lv["p99_ms"] or 0 for lv in levels], "o-", color=color, label=label)
    clients = sorted({lv["clients"] for d in doc["runs"].values() for lv in d.get("levels") or []})
    for ax, title, unit in ((a, "Throughput", "requests/s"), (b, "p99 latency", "ms")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(clients, [str(c) for c in clients])
        ax.set_ylim(bottom=0)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return png(fig)


def render(doc: dict) -> str:

    first = next((d for d in doc["runs"].values() if d.get("levels")), None)
    intro = ("<p>The pushed model of each stack behind KServe's Python ModelServer "
             "(<code>twinpipe serve</code>: V2 Open Inference Protocol REST; the model runs in the "
             "stack's own runtime process), on loopback.")
    if first:
        intro += (f" One request = {first['rows_per_request']} real eval row(s), cycling through "
                  f"{first['distinct_rows']}; each level stops at {first['bounds']['max_requests']} "
                  f"requests or {first['bounds']['max_seconds']:g} s. Latency is the client's "
                  "(request sent to answer read); server_validate_ms / server_score_ms are the "
                  "runtime's own medians for the contract check of the request's rows (the same "
                  "check as <code>twinpipe predict</code>) and the model call; server CPU (cores "
                  "busy) and peak RSS cover the front and the runtime process.")
    intro += "</p>"
    parts = [intro, table(("stack", *COLUMNS), table_rows(doc))]
    if first:
        parts.append(img(_plot(doc), "throughput and p99 latency vs concurrent clients"))
    errors = [f"{label} at {lv['clients']} clients: {e}" for label, d in doc["runs"].items()
              for lv in d.get("levels") or [] for e in lv.get("first_errors") or []]
    if errors:
        parts.append("<p>First errors: " + "; ".join(html.escape(e) for e in errors[:6]) + "</p>")
    return "\n".join(parts)
