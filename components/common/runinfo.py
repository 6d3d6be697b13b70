"""run.json: the per-stack run summary, one shape for every stack (the report reads it)."""

from __future__ import annotations

import json
from pathlib import Path

from components.common.config import RunConfig
from components.common.contract import Contract
from components.common.ingest import IngestResult


def run_summary(*, stack: str, pipeline: str, orchestrator: str, contract: Contract, cfg: RunConfig,
                ingested: IngestResult, ingest_s: float, wall: float, failed_stage: str | None,
                stages: dict, resources: dict | None = None, ingest_resources: dict | None = None,
                **extra) -> dict:
    """The run.json document. ``stages`` maps each stage name to its figures (``wall_s`` at least);
    the shared spans write is added to ``ingest``. ``resources`` ({stage: {cpu_s, peak_rss_mb}}
    from a :class:`~components.common.resources.ResourceMeter`) adds CPU time and peak memory,
    ``ingest_resources`` those of the shared spans write."""
    ig = stages["ingest"]
    ig["spans_write_s"] = round(ingest_s, 3)
    ig["wall_s"] = round(ig.get("wall_s", 0.0) + ingest_s, 3)
    resources = {k: dict(v) for k, v in (resources or {}).items()}
    if ingest_resources:
        own = resources.setdefault("ingest", {"cpu_s": 0.0, "peak_rss_mb": 0.0})
        own["cpu_s"] = round(own["cpu_s"] + ingest_resources["cpu_s"], 3)
        own["peak_rss_mb"] = max(own["peak_rss_mb"], ingest_resources["peak_rss_mb"])
    for name, st in stages.items():
        st.update(resources.get(name, {"cpu_s": None, "peak_rss_mb": None}))
        rows = st.get("rows") if name != "evaluate" else st.get("eval_rows")
        if name == "validate":
            rows = stages["ingest"].get("rows")
        if name == "train":
            rows = st.get("samples")
        st["rows_per_s"] = round(rows / st["wall_s"], 1) if rows and st.get("wall_s") else None
    ig.update(excluded_rows=ingested.excluded_rows, source=ingested.source,
              quarantined_rows=ingested.quarantined_rows,
              outside_window_rows=ingested.outside_window_rows,
              sampled_out_rows=ingested.sampled_out_rows, input_rows=ingested.input_rows)
    stages["push"].setdefault("pushed", False)
    stages["push"].setdefault("pushed_path", None)
    stages["train"].setdefault("workers", cfg.workers)
    return {
        "stack": stack,
        "pipeline": pipeline,
        "contract": {"name": contract.name, "version": contract.version, "path": contract.path},
        "months": sorted({s % 100 for s in ingested.span_numbers}),
        "spans": ingested.span_numbers,
        "workers": cfg.workers,
        # The training configuration it ran with and where it came from (flags, tuning file).
        "settings": cfg.settings(stack),
        "total_wall_s": round(wall + ingest_s, 3),
        "orchestrator": orchestrator,
        **extra,
        "failed_stage": failed_stage,
        "stages": stages,
    }


def record_skip(record_dir: str, stage: str) -> None:
    """A stage that did not run because no new delivery landed (its pipeline's first step said so)."""
    record_stage(record_dir, stage, {"skipped": "no new delivery", "wall_s": 0.0})


def record_stage(record_dir: str, stage: str, figures: dict) -> None:
    if record_dir:
        Path(record_dir).mkdir(parents=True, exist_ok=True)
        (Path(record_dir) / f"{stage}.json").write_text(json.dumps(figures, indent=2, default=str))
