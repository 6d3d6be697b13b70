"""The PyTorch stack's data gate: a Great Expectations checkpoint built from the contract.

The suite mirrors the TFDV schema the TFX stack imports (components/tfx/schema.py): every
contract column present with its type, non-nullable columns without nulls, numeric ranges,
categorical domains, the label in {0, 1}. No second hand-written rule list: both come from the
contract.

At scale the checkpoint runs batch by batch (:func:`run_checkpoint` over a rows source): GX's
pandas engine over one DataFrame per split held the whole split plus GX's per-expectation copies
(validate at 30x the flights, 9.8M rows: 173 s at 10.2 GB peak). Every expectation in the suite is
per-row or per-column-type, so its verdict over a split is the verdicts over any partition of it:
unexpected counts add up, and it passes only if every batch passes (a test holds batched and
whole-frame results equal on corrupted real rows). Measured (GX alone, both splits, 2 shared
cores; wall / peak RSS):

    rows (both splits)     whole frame         1M-row batches      500k-row batches
    3x   (0.98M rows)      18.2 s /  969 MB    17.0 s / 1041 MB    16.8 s /  880 MB
    10x  (3.27M rows)      42.7 s / 2511 MB    39.7 s / 1835 MB    41.2 s / 1406 MB

GX's time is per row, so the wall is the same; the whole frame's peak grows with the rows (10.2 GB
at 30x in the stage), the batches' with the batch (batches hold at most GX_BATCH_ROWS rows). 500k
rows per run is picked: the lowest peak, no slower.

GX's Spark engine was not tried: pyspark is not in the lock (a JVM and ~300 MB more in the
image) and the batched pandas path already bounds memory by the batch size, not the data.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from components.common import rows
from components.common import rows as rows_mod
from components.common.alerts import FailedCheck
from components.common.contract import Contract, load_contract
from components.common.errors import GateError
from components.common.gate import check_spans, enforce, merge_engine
from components.common.layout import GATE_JSON
from components.common.runinfo import record_stage
from components.common.spans import resolve_spans, select_spans, span_numbers

log = logging.getLogger("twinpipe.torch")

GX_BATCH_ROWS = 500_000  # rows per GX checkpoint run (see the module docstring for the measurement)

_PANDAS_TYPES = {
    "int": ["int64", "Int64", "int32"],
    "float": ["float64", "float32"],
    "string": ["object", "str", "StringDtype"],  # GX names pandas StringDtype by class
}


def expectations(contract: Contract, with_label: bool = True) -> list:
    """The contract as a list of GX expectations (``with_label=False``: of the raw input, before
    ingest derives the label)."""
    import great_expectations as gx

    ex = gx.expectations
    out: list = []
    for col in contract.columns:
        out.append(ex.ExpectColumnToExist(column=col.name))
        types = _PANDAS_TYPES[col.type]
        if col.type == "int" and col.nullable:  # Parquet int64 with nulls reads as float64
            types = [*types, "float64"]
        out.append(ex.ExpectColumnValuesToBeInTypeList(column=col.name, type_list=types))
        if not col.nullable and col.name != contract.label.source:
            out.append(ex.ExpectColumnValuesToNotBeNull(column=col.name))
        if col.numeric and (col.min is not None or col.max is not None):
            out.append(ex.ExpectColumnValuesToBeBetween(column=col.name, min_value=col.min,
                                                        max_value=col.max))
        if col.vocabulary:
            out.append(ex.ExpectColumnValuesToBeInSet(column=col.name, value_set=list(col.vocabulary)))
    if not with_label:
        return out
    label = contract.label.name
    out.append(ex.ExpectColumnToExist(column=label))
    out.append(ex.ExpectColumnValuesToNotBeNull(column=label))
    out.append(ex.ExpectColumnValuesToBeInSet(column=label, value_set=[0, 1]))
    return out


# GX expectation types -> the contract's check names.
_CHECK_OF = {
    "expect_column_to_exist": "schema",
    "expect_column_values_to_be_in_type_list": "schema",
    "expect_column_values_to_not_be_null": "not_null",
    "expect_column_values_to_be_between": "range",
    "expect_column_values_to_be_in_set": "unseen",
}


def gx_checks(result: GateResult, contract: Contract) -> list:
    """The checkpoint's failures as the contract's checks (one per column and check). A column
    that is missing or of the wrong type reports only that (schema), as TFDV does; a value set on
    a numeric column (the 0/1 label) is its range."""

    numeric = {c.name for c in contract.columns if c.numeric} | {contract.label.name}
    found: dict = {}
    for f in result.failures:
        check = _CHECK_OF.get(f["expectation"], "schema")
        if check == "unseen" and f["column"] in numeric:
            check = "range"
        found.setdefault(f["column"], {}).setdefault(check, []).append(f)
    out = []
    for column, checks in found.items():
        if "schema" in checks:
            checks = {"schema": checks["schema"]}
        for check, fs in checks.items():
            out.append(FailedCheck(
                check, column, "; ".join(f"{f['expectation']} failed on split {f['split']} "
                                         f"({f['unexpected_count']} rows)" for f in fs),
                "the contract's GX suite", contract.validation.policies.get(check, "fail"),
                [e for f in fs for e in f["examples"]][:3]))
    return out


@dataclass
class GateResult:
    passed: bool
    evaluated: int
    failures: list[dict] = field(default_factory=list)


def _frames(rows) -> Iterator[pd.DataFrame]:
    """A split's rows as DataFrames: one frame as it is, or a rows source (a rows reference, a
    spans or Parquet folder or file: :mod:`components.common.rows`) as GX_BATCH_ROWS batches."""

    if isinstance(rows, pd.DataFrame):
        yield rows
        return
    import pyarrow as pa

    # Record batches end at row groups and files (~64k-220k rows): gathered up to GX_BATCH_ROWS,
    # so the checkpoint's fixed cost per run is paid per GX_BATCH_ROWS rows, not per row group.
    source, split = rows
    held: list = []
    for batch in rows_mod.batches(source, split, batch_rows=GX_BATCH_ROWS):
        if held and sum(b.num_rows for b in held) + batch.num_rows > GX_BATCH_ROWS:
            yield pa.Table.from_batches(held).to_pandas()  # never more than GX_BATCH_ROWS rows
            held = []
        held.append(batch)
    if held:
        yield pa.Table.from_batches(held).to_pandas()


def build_checkpoint(contract: Contract, with_label: bool = True):
    """The contract's suite as a GX checkpoint over a pandas ``dataframe`` batch parameter, in an
    ephemeral context: built once, run on as many frames as needed (:func:`run_checkpoint`).
    ``with_label=False``: the suite of the raw input (no derived label column)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("spans")
    # One store write for the whole suite (add_expectation one by one re-serialises it each time:
    # 2.2 s of a 7.8 s checkpoint on a year of flights).
    suite = context.suites.add(gx.ExpectationSuite(name=f"{contract.name}-contract",
                                                   expectations=expectations(contract, with_label)))
    batch_def = source.add_dataframe_asset(name="rows").add_batch_definition_whole_dataframe("batch")
    vd = context.validation_definitions.add(
        gx.ValidationDefinition(name="contract", data=batch_def, suite=suite))
    return context.checkpoints.add(
        gx.Checkpoint(name="gate", validation_definitions=[vd],
                      result_format={"result_format": "SUMMARY", "partial_unexpected_count": 3}))


def run_checkpoint(contract: Contract, splits: dict, with_label: bool = True,
                   checkpoint=None) -> GateResult:
    """Runs the contract's GX checkpoint over every split's rows; collects the failed expectations.

    ``splits`` maps a split name to a DataFrame or to ``(source, split)``, a rows source
    (:mod:`components.common.rows`) read in batches of :data:`GX_BATCH_ROWS`. The context, suite
    and checkpoint are built once (or given: ``checkpoint``, from :func:`build_checkpoint`); each
    batch re-runs the checkpoint with the batch as its ``dataframe`` batch parameter. Per
    expectation, unexpected counts are summed over the batches, examples kept from the first
    failing batches, and it passes only if every batch passes.
    """
    if checkpoint is None:
        checkpoint = build_checkpoint(contract, with_label)
    result = GateResult(passed=True, evaluated=0)
    for split, split_rows in splits.items():
        failed: dict[int, dict] = {}  # expectation index in the suite -> its aggregated failure
        evaluated = 0
        for frame in _frames(split_rows):
            run = checkpoint.run(batch_parameters={"dataframe": frame})
            results = [r for vr in run.run_results.values() for r in vr.results]
            evaluated = len(results)
            for i, r in enumerate(results):
                if r.success:
                    continue
                res = r.result or {}
                f = failed.setdefault(i, {
                    "split": split, "expectation": r.expectation_config.type,
                    "column": r.expectation_config.kwargs.get("column"),
                    "unexpected_count": None, "examples": []})
                if res.get("unexpected_count") is not None:
                    f["unexpected_count"] = (f["unexpected_count"] or 0) + res["unexpected_count"]
                f["examples"] += res.get("partial_unexpected_list", [])[:3 - len(f["examples"])]
        result.evaluated += evaluated
        for i in sorted(failed):
            result.passed = False
            result.failures.append(failed[i])
    return result


def validate_stage(train_path: str, eval_path: str, contract_path: str, source: str,
                   record_dir: str = "", spans_dir: str = "", span: str = "all",
                   report_dir: str = "") -> bool:
    """The GX checkpoint over both splits, then the contract's gate rules over the same spans
    (components/common/gate.py); alerts, and raises GateError (after recording why) on failure."""
    from components.torch.validate import gx_checks, run_checkpoint

    t0 = time.time()
    contract = load_contract(contract_path or None)
    # Each split streamed through the checkpoint in batches (rows read in place, see validate.py).
    result = run_checkpoint(contract, {"train": (train_path, "train"), "eval": (eval_path, "eval")})
    report_dir = Path(report_dir or Path(record_dir or ".") / "validation")
    report_dir.mkdir(parents=True, exist_ok=True)
    gx_path = report_dir / "gx_result.json"
    gx_path.write_text(json.dumps({"passed": result.passed, "evaluated": result.evaluated,
                                   "failures": result.failures}, indent=2, default=str))
    # The gate checks the spans GX, train and evaluate read: the train reference's generation and
    # span numbers (shown under the spans folder while that still points at them).
    ref = rows.read_ref(train_path)
    if ref is None:
        spans = resolve_spans(spans_dir)
        numbers = select_spans(spans, span)
    else:
        spans, numbers = ref["spans_dir"], ref["spans"] or span_numbers(ref["spans_dir"])
        if spans_dir and rows.generation(spans_dir) == spans:
            spans = resolve_spans(spans_dir)
    report = check_spans(contract, spans, numbers, source=source)
    merge_engine(report, gx_checks(result, contract),
                 {"engine": "great_expectations", "result": str(gx_path),
                  "expectations_evaluated": result.evaluated})
    figures = {"passed": True, "expectations_evaluated": result.evaluated,
               "gx_passed": result.passed, "report": str(report_dir / GATE_JSON)}
    try:
        enforce(report, contract=contract, stack="torch", pipeline="twinpipe-torch",
                report_dir=report_dir, spans_dir=spans)
    except GateError as e:
        figures.update(passed=False, message=str(e), wall_s=round(time.time() - t0, 3),
                       checks=len(report.checks))
        record_stage(record_dir, "validate", figures)
        raise
    figures.update(wall_s=round(time.time() - t0, 3), checks=len(report.checks),
                   warnings=[c.line() for c in report.checks])
    record_stage(record_dir, "validate", figures)
    log.info("[torch][validate] GX checkpoint (%d expectations) and the gate rules passed",
             result.evaluated)
    return True
