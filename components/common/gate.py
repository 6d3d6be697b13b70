"""The data gate: one rule set for both stacks' validate stages, framework-neutral.

Each stack runs its own engine first (TFX: TFDV statistics + ExampleValidator against the
contract's schema; PyTorch: the Great Expectations checkpoint built from the contract) and then
:func:`check_spans` over the same spans, so the same data gets the same verdict. The rules, all
from the contract's ``validation:`` section, each with a ``fail`` or ``warn`` policy:

* row-level rules (malformed cells, nulls in non-nullable columns, out of range, unseen
  categories): ingest quarantined the offending rows with their reason; the share of a span's rows
  breaking a rule is checked against ``max_bad_row_rate`` (below it: a warning);
* volume: fewer labelled rows in a span than ``min_rows_per_span``;
* nulls: the null share of a nullable column above its ``max_null_rate``;
* drift against the previous span: L-infinity distance between category frequencies, Jensen-
  Shannon divergence (log base 2, in [0, 1]) between numeric histograms on the previous span's
  quantile bins; thresholds per column or the contract default;
* skew: the same distances between one span's train and eval rows, the numeric ones on the
  span's own quantile bins (its history profile, over train + eval: one streaming pass; before
  issue 13 on the train split's bins, which needs the split in memory — values moved by
  <= 0.0015 on the flights, verdicts the same);
* table-level findings of ingest (extra columns, rows belonging to no span).

:func:`enforce` turns the verdict into an alert (every configured sink) and, when a ``fail``
check failed, a :class:`~components.common.errors.GateError` that stops the run before training.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from components.common import storage
from components.common.alerts import Alert, AlertConfig, FailedCheck, send
from components.common.contract import ROW_RULES, Contract
from components.common.errors import DataError, GateError
from components.common.history import ACCEPTED, REFUSED, operator_accepted, record_verdict
from components.common.history import reference as history_reference
from components.common.layout import ALERTS_JSONL, GATE_JSON, MANIFEST_JSON
from components.common.profile import (
    ProfileAccumulator,
    bins_of,
    categorical_profile,
    js_vs,
    linf_vs,
    numeric_edges,
    numeric_profile,
)
from components.common.spans import HISTORY, iter_spans, span_dataset, span_history, span_numbers

log = logging.getLogger("twinpipe.gate")


def linf(a: pd.Series, b: pd.Series) -> float:
    """L-infinity distance between the category frequencies of ``a`` and ``b``."""
    return linf_vs(a, categorical_profile(b))


def jensen_shannon(a: pd.Series, b: pd.Series) -> float:
    """Jensen-Shannon divergence (base 2) of ``a`` against ``b`` on ``b``'s quantile bins."""
    return js_vs(a, numeric_profile(b))


def _shift(col, cur: dict, ref: dict) -> str:
    """A few words on how a column moved from the reference profile to the current one
    (:meth:`ProfileAccumulator.column`): the mean for numbers, the top category's share."""
    if col.vocabulary:
        if not cur["freq"]:
            return "no values"
        k, share = next(iter(cur["freq"].items()))
        return f"'{k}' {ref['freq'].get(k, 0.0):.0%} -> {share:.0%}"
    was, now = ref.get("mean"), cur.get("mean")
    return (f"mean {was if was is None else format(was, '.4g')} -> "
            f"{float('nan') if now is None else now:.4g}")


@dataclass
class GateReport:
    """The verdict over a run's spans: every finding (fail and warn) plus the figures behind it."""

    source: str
    spans: list[int]
    checks: list[FailedCheck] = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    quarantine: list[str] = field(default_factory=list)
    engine: dict = field(default_factory=dict)   # the stack engine's own result (TFDV / GX)

    @property
    def failed(self) -> list[FailedCheck]:
        return [c for c in self.checks if c.policy == "fail"]

    @property
    def passed(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict:
        return {"source": self.source, "spans": self.spans, "passed": self.passed,
                "checks": [asdict(c) for c in self.checks], "figures": self.figures,
                "quarantine": self.quarantine, "engine": self.engine}


def rate_check(contract: Contract, rule: str, column: str | None, n: int, total: int, what: str,
               scope: str, examples: list, span: str | None = None) -> FailedCheck:
    """A row rule's finding: ``n`` of ``total`` rows broke it; the rule's policy when their share
    exceeds ``max_bad_row_rate``, a warning otherwise."""
    rate, limit = n / max(total, 1), contract.validation.max_bad_row_rate
    return FailedCheck(rule, column, f"{n} of {total} rows ({rate:.2%}) {what}",
                       f"<= {limit:.2%}{scope}",
                       contract.validation.policies[rule] if rate > limit else "warn",
                       examples, span=span)


def _batches(spans_dir: str, span: int, split: str, columns: list[str]):
    """The span's split as pandas frames of at most one row group (none when the span folder has
    no such split), only ``columns``: what the gate streams instead of whole splits."""
    try:
        for batch in iter_spans(spans_dir, split, [span], columns):
            yield batch.to_pandas()
    except DataError:  # no such split in this span folder
        return


def _own_bins(contract: Contract, spans_dir: str, span: int, profile: dict | None) -> dict:
    """The bins a span's train and eval rows are compared on (skew): its own profile's (ingest
    wrote it from the span's labelled rows); for a span without one (an older layout), quantile
    edges of the first batch of its train split, else of its eval split — a sample of at most
    one row group, so the skew is measured on approximate bins rather than by reading twice."""
    if profile is not None:
        bins = bins_of(profile)
        if all(c.name in bins for c in contract.features):
            return bins
    first = next(_batches(spans_dir, span, "train", [c.name for c in contract.features]), None)
    if first is None:
        first = next(_batches(spans_dir, span, "eval", [c.name for c in contract.features]),
                     pd.DataFrame())
    return {c.name: None if c.vocabulary else numeric_edges(first[c.name])
            for c in contract.features if c.name in first.columns}


def _stream_profile(contract: Contract, spans_dir: str, span: int) -> dict:
    """The profile of a span's labelled rows read in batches, for a span with no persisted
    profile (bins as :func:`_own_bins` picks them)."""
    acc = ProfileAccumulator(_own_bins(contract, spans_dir, span, None))
    for split in ("train", "eval"):
        for frame in _batches(spans_dir, span, split, list(acc.edges)):
            acc.add(frame)
    return acc.profile()


def check_spans(contract: Contract, spans_dir: str | Path, spans: list[int] | None = None,
                source: str = "") -> GateReport:
    """The gate's rules over ``spans`` (all span folders when None) of ``spans_dir``: a folder or
    a ``gs://`` prefix (every read goes through :mod:`components.common.storage`)."""
    d = str(spans_dir)
    rules, pol = contract.validation, contract.validation.policies
    on_disk = span_numbers(d)
    history = span_history(d)
    profiles: dict[int, dict] = {}  # persisted or streamed profiles, each read once

    def profile_of(span: int) -> dict | None:
        if span not in profiles:
            if span in history:
                profiles[span] = storage.read_json(history[span])
            elif span in on_disk:
                profiles[span] = _stream_profile(contract, d, span)
            else:
                return None
        return profiles[span]

    def reference(span: int) -> tuple[int | None, dict | None, str]:
        """The newest span before ``span`` that no gate refused, its profile and a note when it is
        not the month before: from the persisted history (which reaches outside the run's
        window), else streamed from an earlier span folder."""
        ref, note = history_reference(d, span, sorted(set(history) | set(on_disk)))
        return ref, (profile_of(ref) if ref is not None else None), note

    key = list(contract.split.key)
    spans = list(spans) if spans is not None else on_disk
    report = GateReport(source=source or str(d), spans=spans)
    manifest = storage.join(d, MANIFEST_JSON)
    ingested = storage.read_json(manifest) if storage.exists(manifest) else {}
    # table-level findings of ingest (extra columns, rows of no span)
    report.checks += [FailedCheck(**c) for c in ingested.get("checks", [])]
    # Volumes compare only at the input's own size: a sampled or scaled run's spans are not.
    volumes_comparable = not ingested.get("sampled_out_rows") and ingested.get("scale", 1) == 1
    if storage.exists(storage.join(d, "quarantine", "data.parquet")):
        report.quarantine.append(storage.join(d, "quarantine", "data.parquet"))
    for span in spans:
        s = str(span)
        # One streaming pass over the span's train and eval rows: counts per split on the span's
        # own bins (null rates, skew) and on the reference's bins (drift); no split held whole.
        ref_span, ref, ref_note = reference(span)
        bins = _own_bins(contract, d, span, history.get(span) and profile_of(span))
        per_split = {split: ProfileAccumulator(bins) for split in ("train", "eval")}
        against_ref = ProfileAccumulator.binned_like(ref or {})
        null_keys: dict[str, list] = {c.name: [] for c in contract.features if c.nullable}
        for split, acc in per_split.items():
            for frame in _batches(d, span, split, list(dict.fromkeys(list(bins) + key))):
                acc.add(frame)
                against_ref.add(frame)
                for name, ex in null_keys.items():
                    if len(ex) < 3 and name in frame.columns:
                        ex += frame.loc[frame[name].isna(), key].head(3 - len(ex)).to_dict("records")
        train, ev = per_split["train"], per_split["eval"]
        rows = train.rows + ev.rows
        fig: dict = {"rows": rows, "train_rows": train.rows, "eval_rows": ev.rows}
        report.figures[s] = fig
        if rows < contract.min_rows_per_span:
            report.checks.append(FailedCheck("volume", None, f"{rows} rows",
                                             f">= {contract.min_rows_per_span} rows",
                                             pol["volume"], span=s))
        quarantine = storage.join(d, f"span-{span}", "quarantine")
        if storage.exists(storage.join(quarantine, "summary.json")):
            q = storage.read_json(storage.join(quarantine, "summary.json"))
            fig["quarantined_rows"] = q["quarantined_rows"]
            if q["quarantined_rows"]:
                report.quarantine.append(storage.join(quarantine, "data.parquet"))
            for rule in ROW_RULES:
                n = q["by_rule"].get(rule, 0)
                if not n:
                    continue
                cols = q.get("by_rule_column", {}).get(rule, {})
                report.checks.append(rate_check(
                    contract, rule, ", ".join(sorted(cols, key=cols.get, reverse=True)) or None,
                    n, q["input_rows"], "quarantined", " of the span's rows",
                    q["examples"].get(rule, [])[:3], span=s))
        try:  # the count from the Parquet footers; examples from the first batch
            n_excluded = span_dataset(d, "excluded", [span]).count_rows()
        except DataError:
            n_excluded = 0
        n_all = rows + n_excluded
        if n_all:
            rate, limit = n_excluded / n_all, rules.max_label_missing_rate
            fig["label_missing_rate"] = round(rate, 4)
            if rate > limit:
                first = next(_batches(d, span, "excluded", key), pd.DataFrame(columns=key))
                report.checks.append(FailedCheck(
                    "label_missing", contract.label.source,
                    f"{n_excluded} of {n_all} rows ({rate:.2%}) have no label",
                    f"<= {limit:.0%}", pol["label_missing"],
                    first[key].head(3).to_dict("records"), span=s))
        if not rows:
            continue
        both = ProfileAccumulator(bins).merge(train).merge(ev)
        fig["previous_span"] = ref_span
        if ref_note:
            fig["reference_note"] = ref_note.lstrip("; ")
        if ref and ref.get("rows") and volumes_comparable:
            ratio = rows / ref["rows"]
            fig["volume_ratio"] = round(ratio, 3)
            lo, hi = rules.volume_min_ratio, rules.volume_max_ratio
            if not lo <= ratio <= hi:
                report.checks.append(FailedCheck(
                    "volume_change", None, f"{rows} labelled rows, {ratio:.2f}x the {ref['rows']} "
                    f"of span {ref_span}{ref_note}", f"{lo:g}x to {hi:g}x the previous accepted "
                    "span's", pol["volume_change"], span=s))
        fig["null_rate"], fig["drift"], fig["skew"] = {}, {}, {}
        for col in contract.features:
            if col.name not in both.seen:
                continue
            if col.nullable:
                rate = both.nulls[col.name] / rows
                fig["null_rate"][col.name] = round(rate, 4)
                if rate > col.max_null_rate:
                    report.checks.append(FailedCheck(
                        "nulls", col.name, f"{rate:.2%} null", f"<= {col.max_null_rate:.0%}",
                        pol["nulls"], null_keys[col.name], span=s))
            kind = "L-inf" if col.vocabulary else "JS"
            prof = (ref or {}).get("columns", {}).get(col.name)
            if prof is not None:
                v = against_ref.distance(col.name, prof)
                limit = rules.drift_threshold(col)
                fig["drift"][col.name] = round(v, 4)
                if v > limit:
                    report.checks.append(FailedCheck(
                        "drift", col.name, f"{kind} {v:.3f} vs span {ref_span} "
                        f"({_shift(col, both.column(col.name), prof)}{ref_note})", f"<= {limit}",
                        pol["drift"], span=s))
            if train.rows and ev.rows:
                tprof = train.column(col.name)
                v = ev.distance(col.name, tprof)
                limit = rules.skew_threshold(col)
                fig["skew"][col.name] = round(v, 4)
                if v > limit:
                    report.checks.append(FailedCheck(
                        "skew", col.name, f"{kind} {v:.3f} train vs eval "
                        f"({_shift(col, ev.column(col.name), tprof)})", f"<= {limit}",
                        pol["skew"], span=s))
    _operator_accepted(report, d)
    return report


def _operator_accepted(report: GateReport, spans_dir: str) -> None:
    """A span an operator accepted as it is (`twinpipe accept`): its failing checks go on as
    warnings that name the operator's reason."""
    reasons: dict[str, str | None] = {}  # by span: its history is read once
    for i, c in enumerate(report.checks):
        if c.policy == "fail" and c.span and c.span.isdigit():
            if c.span not in reasons:
                reasons[c.span] = operator_accepted(spans_dir, int(c.span))
            reason = reasons[c.span]
            if reason is not None:
                report.checks[i] = dataclasses.replace(
                    c, policy="warn", expected=f"{c.expected} (accepted by an operator: {reason})")


def record_verdicts(report: GateReport, spans_dir: str, judge: str) -> None:
    """Each span's verdict from this report, as ``judge`` gave it (:mod:`components.common.history`):
    refused when a failing check names it (every span of the report for a table-level failure),
    accepted otherwise."""
    failed = report.failed
    whole = [c.line() for c in failed if not c.span]
    for span in report.spans:
        reasons = whole + [c.line() for c in failed if c.span == str(span)]
        if storage.exists(storage.join(spans_dir, HISTORY, f"span-{span}.json")):
            record_verdict(spans_dir, int(span), judge, REFUSED if reasons else ACCEPTED, reasons)


def merge_engine(report: GateReport, engine_checks: list[FailedCheck], engine: dict) -> None:
    """Adds what the stack's engine (TFDV / GX) found and the rules did not already report (same
    check and column), so an engine can only make the verdict stricter; keeps its raw result."""
    seen = {(c.check, c.column) for c in report.checks}
    for c in engine_checks:
        if (c.check, c.column) not in seen:
            report.checks.append(c)
            seen.add((c.check, c.column))
    report.engine = engine


def render(checks: list[FailedCheck], source: str, contract: Contract, quarantine: str = "") -> str:
    """The one-paragraph message: input, contract, each failed rule with observed vs expected."""
    text = (f"data gate: {source} breaks the contract '{contract.name}' — "
            + "; ".join(c.line() for c in checks) + ".")
    if quarantine:
        text += f" Rows kept aside with their reason: {quarantine}."
    return text


def enforce(report: GateReport, *, contract: Contract, stack: str, pipeline: str,
            report_dir: str | Path, spans_dir: str | Path | None = None) -> GateReport:
    """Writes ``report_dir/gate.json``, alerts (``report_dir/alerts.jsonl`` plus the configured
    sinks) when a ``fail`` check failed — or on warnings alone when the contract says
    ``alerts.on: warn`` — and raises GateError when a ``fail`` check failed.

    The error's text is the same for every stack given the same data (:func:`render`); the stack
    and the report path travel as its prefix and attributes. With ``spans_dir``, each span's
    verdict is recorded in its history as ``stack``'s (:func:`record_verdicts`), so a refused
    span never becomes a drift reference.
    """
    report_path = storage.join(report_dir, GATE_JSON)
    # a gate that passed with warnings only alerts when the contract says alerts.on: warn
    if report.failed or (report.checks and contract.alert_on == "warn"):
        spans = sorted({c.span for c in report.checks if c.span}) or [str(s) for s in report.spans]
        alert = Alert(pipeline=pipeline, stack=stack, span=",".join(spans),
                      severity="error" if report.failed else "warning",
                      checks=report.failed + [c for c in report.checks if c.policy == "warn"],
                      report=report_path, source=report.source,
                      engine_report=str(report.engine.get("anomalies_uri")
                                        or report.engine.get("result") or ""))
        cfg = AlertConfig.from_env(dict(contract.alerts), examples=contract.alert_examples)
        report.figures["alerts"] = send(alert, cfg, default_file=storage.join(report_dir, ALERTS_JSONL))
        for r in report.figures["alerts"]:
            if not r["delivered"]:
                log.warning("[%s][validate] alert to %s not delivered: %s", stack, r["sink"], r["error"])
    storage.write_text(report_path, json.dumps(report.to_dict(), indent=2, default=str))
    if spans_dir is not None:  # the verdict on each span, for the drift references to come
        record_verdicts(report, str(spans_dir), stack)
    for c in report.checks:
        if c.policy == "warn":
            log.warning("[%s][validate] warning: %s", stack, c.line())
    if report.failed:
        quarantine = ", ".join(report.quarantine[:3]) + (" ..." if len(report.quarantine) > 3 else "")
        body = render(report.failed, report.source, contract, quarantine)
        raise GateError(body, report.failed, report_path, source=report.source,
                        quarantine=report.quarantine)
    return report


def load_report(path: str | Path) -> GateReport:
    """A gate.json written by :func:`enforce`, back as a GateReport."""
    doc = storage.read_json(path)
    return GateReport(source=doc["source"], spans=doc["spans"],
                      checks=[FailedCheck(**c) for c in doc["checks"]], figures=doc["figures"],
                      quarantine=doc["quarantine"], engine=doc["engine"])
