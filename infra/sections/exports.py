"""Report section **Exports** (``report.json`` key ``exports``): every export each stack's push
produced, in its own runtime — converted or not, size, latency p50/p95 at batch 1 and 256, and the
largest |Δprobability| against the stack's reference model on the identical eval rows.

Reads ``<run>/<stack>/exports.json`` (written by :mod:`infra.exports`)."""

from __future__ import annotations

import html

from infra.sections import SHORT_NAMES, stack_files

KEY = "exports"
TITLE = "Exports"



def collect(runs: list[dict], data: dict) -> dict | None:
    found = [{"run": r["label"], "stack": stack, **doc}
             for r, stack, doc in stack_files(runs, "exports.json")]
    return {"stacks": found} if found else None


def _ms(row: dict, batch: str, q: str) -> str:
    v = (row.get("latency") or {}).get(batch, {}).get(q)
    return "–" if v is None else f"{v:.3g}"


def _dp(row: dict) -> str:
    v = row.get("max_abs_dp")
    return "–" if v is None else ("0" if v == 0 else f"{v:.2e}")


def _met(row: dict) -> str:
    if row.get("reference"):
        return "reference"
    if "within_tolerance" not in row:
        return "–"
    tol = row.get("tolerance")
    if tol is None:
        return "no tolerance"
    return f"{'yes' if row['within_tolerance'] else 'NO'} (≤ {tol:.0e})"


def _notes(row: dict) -> str:
    parts = []
    if row.get("signature"):
        parts.append(f"signature {row['signature']}"
                     + (" (same SavedModel)" if row.get("file") == "." and not row.get("reference")
                        else ""))
    if row.get("exporter"):
        parts.append(row["exporter"])
    if row.get("select_tf_ops"):
        parts.append("TF Select ops: " + ", ".join(row.get("flex_ops") or ["?"]))
    if row.get("asset_paths_frozen"):
        parts.append("vocabulary paths made constants for the converter")
    for w in row.get("warnings") or []:
        parts.append(w)
    for key in ("error", "run_error", "dynamo_error"):
        if row.get(key):
            parts.append(f"{key.replace('_', ' ')}: {row[key][:300]}")
    return "; ".join(parts)


HEADERS = ["export", "format", "converted", "size KiB", "b1 p50 ms", "b1 p95 ms", "b256 p50 ms",
           "b256 p95 ms", "max |Δp|", "tolerance met", "notes"]


def table_rows(doc: dict) -> list[list[str]]:
    out = []
    for row in doc["exports"]:
        size = row.get("size_bytes")
        out.append([row["export"], row.get("format") or "", "yes" if row["converted"] else "NO",
                    "–" if size is None else f"{size / 1024:,.1f}",
                    _ms(row, "1", "p50_ms"), _ms(row, "1", "p95_ms"),
                    _ms(row, "256", "p50_ms"), _ms(row, "256", "p95_ms"),
                    _dp(row), _met(row), _notes(row)])
    return out


def render(doc: dict) -> str:
    from infra.report import _table

    parts = ["<p>Each export push produced, loaded in its own runtime and scored on the same eval "
             "rows as the stack's reference (TFX: <code>serving_default</code> over serialized "
             "tf.Examples; PyTorch: the trained model in eager PyTorch). Latency: the runtime's "
             "call alone on an encoded batch (p50/p95). max |Δp|: the largest difference in "
             "probability from the reference on those rows.</p>"]
    for s in doc["stacks"]:
        name = SHORT_NAMES.get(s["stack"], s["stack"])
        parts.append(f"<h3>{html.escape(name)} · {html.escape(s['run'])}</h3>"
                     f"<p>{html.escape(s['eval_rows_sample'])} (key digest "
                     f"<code>{html.escape(s['eval_rows_sha256'][:16])}</code>); model: "
                     f"{html.escape(s['model_is'])}.</p>")
        if s.get("note"):
            parts.append(f"<p>{html.escape(s['note'])}</p>")
        parts.append(_table(HEADERS, table_rows(s)))
    return "".join(parts)
