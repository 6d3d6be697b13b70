"""The spans' history beyond their profiles: the gate's verdict on each span, and the keys of the
rows each span holds.

Under ``spans_dir/history/`` (carried from one spans generation to the next by ingest)::

    span-201307.json                  the span's profile (components.common.profile)
    keys-span-201307.npy              the 64-bit hashes of its rows' split keys (duplicates rule)
    verdicts/span-201307/tfx.json     one verdict per judge: a stack's validate stage (tfx,
    verdicts/span-201307/torch.json   torch), `twinpipe validate` (gate), the shared ingest
    verdicts/span-201307/operator.json (ingest), or an operator's `twinpipe accept` (operator)

One file per judge, so two stacks judging the same span at once never overwrite each other. A
span is **refused** when any judge refused it, unless an operator accepted it since (for the
same rows: the acceptance names the profile it was given for); **accepted** when a judge passed
it; **unjudged** before any gate ran on it. Drift is measured against the newest earlier span
that is not refused (:func:`reference`), so a refused delivery never becomes the reference that
later months are judged by.
"""

from __future__ import annotations

import hashlib
import io
import time

import numpy as np

from components.common import storage
from components.common.spans import HISTORY, span_history

VERDICTS = "verdicts"
OPERATOR = "operator"
REFUSED, ACCEPTED, UNJUDGED = "refused", "accepted", "unjudged"


def profile_digest(spans_dir: str, span: int) -> str | None:
    """SHA-256 of the span's persisted profile: the same rows give the same profile, so an
    operator's acceptance holds for the rows it was given for and lapses when they change."""
    path = span_history(spans_dir).get(span)
    return hashlib.sha256(storage.read_bytes(path)).hexdigest() if path else None


def _verdict_dir(spans_dir: str, span: int) -> str:
    return storage.join(spans_dir, HISTORY, VERDICTS, f"span-{span}")


def record_verdict(spans_dir: str, span: int, judge: str, status: str, reasons: list[str] = (),
                   **extra) -> dict:
    """Writes ``judge``'s verdict on ``span`` (atomic for readers) and returns it."""
    if status not in (REFUSED, ACCEPTED):
        raise ValueError(f"verdict {status!r}: expected {REFUSED} or {ACCEPTED}")
    doc = {"span": span, "judge": judge, "status": status, "reasons": list(reasons),
           "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
    storage.write_json(storage.join(_verdict_dir(spans_dir, span), f"{judge}.json"), doc)
    return doc


def verdicts(spans_dir: str, span: int) -> dict[str, dict]:
    """Every judge's verdict on ``span``, by judge."""
    d = _verdict_dir(spans_dir, span)
    if not storage.isdir(d):
        return {}
    return {n[:-5]: storage.read_json(storage.join(d, n)) for n in sorted(storage.listdir(d))
            if n.endswith(".json")}


def _operator_reasons(spans_dir: str, span: int, op: dict | None) -> list[str] | None:
    """The reasons of an operator's acceptance ``op`` when it holds for the rows ``span`` holds
    now (it names their profile), else None."""
    if op is not None and op.get("profile_sha256") == profile_digest(spans_dir, span):
        return list(op.get("reasons") or [])
    return None


def status(spans_dir: str, span: int) -> tuple[str, list[str]]:
    """(refused | accepted | unjudged, the reasons) of ``span`` as the judges left it."""
    found = verdicts(spans_dir, span)
    op = _operator_reasons(spans_dir, span, found.pop(OPERATOR, None))
    if op is not None:
        return ACCEPTED, [f"accepted by an operator: {op[0]}" if op else "accepted by an operator"]
    refused = [f"[{j}] {r}" for j, v in found.items() if v["status"] == REFUSED
               for r in v.get("reasons") or ["refused"]]
    if refused:
        return REFUSED, refused
    return (ACCEPTED, []) if found else (UNJUDGED, [])


def operator_accepted(spans_dir: str, span: int) -> str | None:
    """The operator's reason when an operator accepted ``span`` as it is now, else None."""
    op = _operator_reasons(spans_dir, span, verdicts(spans_dir, span).get(OPERATOR))
    return None if op is None else (op or ["no reason given"])[0]


def accept(spans_dir: str, span: int, reason: str, who: str = "") -> dict:
    """An operator's acceptance of a refused span (a real shift, e.g. a season): for the rows it
    holds now, it then passes the gate's failing checks as warnings that name the reason, becomes
    training data, and the reference later spans are compared with."""
    digest = profile_digest(spans_dir, span)
    if digest is None:
        raise FileNotFoundError(f"{storage.join(spans_dir, HISTORY)}: no profile of span {span}")
    return record_verdict(spans_dir, span, OPERATOR, ACCEPTED, [reason], profile_sha256=digest,
                          by=who)


def months_between(earlier: int, later: int) -> int:
    """Months from span ``earlier`` to span ``later`` (YYYYMM numbers)."""
    return (later // 100 * 12 + later % 100) - (earlier // 100 * 12 + earlier % 100)


def reference(spans_dir: str, span: int, candidates: list[int]) -> tuple[int | None, str]:
    """The newest of ``candidates`` before ``span`` that is not refused, and a note for findings
    when it is not the month right before (refused months skipped, months missing)."""
    earlier = sorted((p for p in candidates if p < span), reverse=True)
    skipped = []
    for p in earlier:
        if status(spans_dir, p)[0] == REFUSED:
            skipped.append(p)
            continue
        notes = []
        if skipped:
            notes.append(f"{', '.join(map(str, sorted(skipped)))} refused")
        gap = months_between(p, span) - 1 - len(skipped)
        if gap > 0:
            notes.append(f"{gap} month(s) missing")
        note = (f"; the newest accepted span, {months_between(p, span)} months back: "
                f"{' and '.join(notes)}") if notes else ""
        return p, note
    return None, ""


def write_keys(path: str, hashes: np.ndarray) -> None:
    """A span's key hashes (uint64) as a .npy object."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(hashes, dtype=np.uint64), allow_pickle=False)
    storage.write_bytes(path, buf.getvalue())


def keys_path(spans_dir: str, span: int) -> str:
    return storage.join(spans_dir, HISTORY, f"keys-span-{span}.npy")


def ingested_keys(spans_dir: str, exclude: set[int]) -> dict[int, np.ndarray]:
    """The key hashes of every span in the history except ``exclude`` (the spans a delivery is
    about to replace) and refused ones (their rows never became training data)."""
    d = storage.join(spans_dir, HISTORY)
    if not storage.isdir(d):
        return {}
    found = {}
    for n in storage.listdir(d):
        if n.startswith("keys-span-") and n.endswith(".npy") and n[10:-4].isdigit():
            span = int(n[10:-4])
            if span in exclude or status(spans_dir, span)[0] == REFUSED:
                continue
            found[span] = np.load(io.BytesIO(storage.read_bytes(storage.join(d, n))),
                                  allow_pickle=False)
    return found
