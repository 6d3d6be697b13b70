"""run.json: the per-stack run summary, one shape for every stack (the report reads it)."""

from __future__ import annotations

from components.common.config import RunConfig
from components.common.contract import Contract
from components.common.ingest import IngestResult


def run_summary(*, stack: str, pipeline: str, orchestrator: str, contract: Contract, cfg: RunConfig,
                ingested: IngestResult, ingest_s: float, wall: float, failed_stage: str | None,
                stages: dict, **extra) -> dict:
    """The run.json document. ``stages`` maps each stage name to its figures (``wall_s`` at least);
    the shared spans write is added to ``ingest``."""
    ig = stages["ingest"]
    ig["spans_write_s"] = round(ingest_s, 3)
    ig["wall_s"] = round(ig.get("wall_s", 0.0) + ingest_s, 3)
    ig.update(excluded_rows=ingested.excluded_rows, source=ingested.source)
    stages["push"].setdefault("pushed", False)
    stages["push"].setdefault("pushed_path", None)
    stages["train"].setdefault("workers", cfg.workers)
    return {
        "stack": stack,
        "pipeline": pipeline,
        "contract": {"name": contract.name, "version": contract.version, "path": contract.path},
        "months": list(cfg.months),
        "spans": ingested.span_numbers,
        "workers": cfg.workers,
        "total_wall_s": round(wall + ingest_s, 3),
        "orchestrator": orchestrator,
        **extra,
        "failed_stage": failed_stage,
        "stages": stages,
    }
