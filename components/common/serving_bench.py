"""Inference latency and throughput of a serving runtime, measured the same way for every stack.

A scorer has ``encode(table)`` (the client builds the request from raw contract rows) and
``score(encoded)`` (the serving runtime's work). Latency is timed around ``score`` alone on an
already-encoded batch; the encode cost is reported beside it.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd


def predict(scorer, table: pd.DataFrame, batch_size: int = 4096) -> np.ndarray:
    """P(label) for raw contract rows: ``table`` encoded and scored ``batch_size`` rows at a time
    (one per row, in the scorer's dtype; an empty float32 array for no rows)."""
    out = [np.asarray(scorer.score(scorer.encode(table.iloc[i:i + batch_size]))).reshape(-1)
           for i in range(0, len(table), batch_size)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def latency(scorer, table: pd.DataFrame, batch_sizes=(1, 256), min_seconds: float = 1.0,
            min_calls: int = 20, max_calls: int = 2000, warmup: int = 5) -> dict:
    """{batch: {p50_ms, p95_ms, rows_per_s, calls, encode_ms}} for each batch size."""
    results = {}
    for b in batch_sizes:
        batch = table.iloc[:b]
        if len(batch) < b:  # tiny tables: repeat rows up to the batch size
            batch = table.sample(b, replace=True, random_state=0)
        t0 = time.perf_counter()
        encoded = scorer.encode(batch)
        encode_ms = (time.perf_counter() - t0) * 1e3
        for _ in range(warmup):
            scorer.score(encoded)
        times = []
        start = time.perf_counter()
        while len(times) < max_calls and (len(times) < min_calls
                                          or time.perf_counter() - start < min_seconds):
            t = time.perf_counter()
            scorer.score(encoded)
            times.append(time.perf_counter() - t)
        arr = np.array(times) * 1e3
        results[str(b)] = {
            "p50_ms": round(float(np.percentile(arr, 50)), 4),
            "p95_ms": round(float(np.percentile(arr, 95)), 4),
            "rows_per_s": round(b * len(arr) / (arr.sum() / 1e3), 1),
            "calls": len(arr),
            "encode_ms": round(encode_ms, 3),
        }
    return results
