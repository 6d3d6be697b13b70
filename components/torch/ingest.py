"""The PyTorch stack's ingest stages: the landing ingest (new deliveries taken and ingested into
the shared spans, :func:`components.common.landing.land`), then the run's train and eval rows as
references to the spans (read in place, never copied)."""

from __future__ import annotations

import logging
import time

from components.common import rows, storage
from components.common.contract import load_contract
from components.common.landing import land, run_id
from components.common.runinfo import record_stage
from components.common.spans import select_spans

log = logging.getLogger("twinpipe.torch")


def ingest_stage(spans_dir: str, train_path: str, eval_path: str, record_dir: str = "",
                 span: str = "all") -> int:
    """Writes a rows reference (:func:`components.common.rows.write_ref`) to the run's train and
    eval spans at ``train_path`` / ``eval_path``: the spans are read in place by the later stages,
    never copied (at 30x the flights a copy is gigabytes and over a minute per run). The current
    generation is resolved here, once, so every stage reads the same files; ``spans_dir`` is a
    local folder or a gs:// URI (the reference then names gs:// files). Row counts come from the
    Parquet metadata."""
    t0 = time.time()
    current = rows.generation(spans_dir)  # resolved once: both references name the same files
    figures: dict = {"spans": select_spans(current, span)}
    for split, path in (("train", train_path), ("eval", eval_path)):
        ref = rows.write_ref(path, current, split, figures["spans"])
        figures[f"{split}_rows"] = ref["rows"]
        figures[f"{split}_files"] = len(ref["files"])
    figures["rows"] = figures["train_rows"] + figures["eval_rows"]
    figures["spans_dir"] = ref["spans_dir"]
    figures["wall_s"] = round(time.time() - t0, 3)
    figures["rows_per_s"] = round(figures["rows"] / max(figures["wall_s"], 1e-9), 1)
    record_stage(record_dir, "ingest", figures)
    log.info("[torch][ingest] %d rows from spans %s, referenced in place in %s", figures["rows"],
             figures["spans"], figures["spans_dir"])
    return figures["rows"]


CONSUMER = "torch"  # this pipeline's ledger (each compiled stack takes every delivery once)


def land_stage(landing_uri: str, spans_uri: str, contract_path: str = "", retrain: bool = False,
               run_label: str = "", record_dir: str = "", report_dir: str = "") -> bool:
    """The pipeline's first step: takes the new deliveries under ``landing_uri`` and ingests them
    into ``spans_uri`` (whose parent is the data root, where the ledger lives); returns whether
    the later stages run (False: no new delivery). ``landing_uri`` '': no landing step (the spans
    were published before, e.g. by a local run's shared ingest), the later stages run."""
    t0 = time.time()
    landed = land(landing_uri, storage.parent(spans_uri), load_contract(contract_path or None),
                  run_id(run_label), consumer=CONSUMER, retrain=retrain, pipeline="twinpipe-torch",
                  report_dir=report_dir or None)
    record_stage(record_dir, "land", landed.to_dict() | {"wall_s": round(time.time() - t0, 3)})
    log.info("[torch][land] %s: %d taken, %d seen before", landed.status, len(landed.taken),
             len(landed.seen_before))
    return landed.proceed
