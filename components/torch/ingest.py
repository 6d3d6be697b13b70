"""The PyTorch stack's ingest stage: the run's train and eval rows as references to the shared spans
(read in place, never copied)."""

from __future__ import annotations

import logging
import time

from components.common import rows
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
