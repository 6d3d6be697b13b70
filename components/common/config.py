"""The run configuration: one frozen object built from CLI flags, passed in explicitly."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# The stages of every stack, in order: the names used in code, logs, run.json and the report.
STAGES = ("ingest", "validate", "train", "evaluate", "push")


def stack_root(out_dir: str | Path, stack: str) -> Path:
    """Where one stack's outputs of a run live: ``OUT/<stack>/``."""
    return Path(out_dir).resolve() / stack


def default_beam_args() -> list[str]:
    """Beam DirectRunner in-memory: measured fastest here for ExampleGen, StatisticsGen and
    Transform (327k rows, 2 cores: 22.7 / 11.5 / 51.1 s vs 30.4 / 17.7 / 52.6 s multi-processing,
    which starts fresh SDK worker processes for every Beam job)."""
    return [
        "--runner=DirectRunner",
        "--direct_running_mode=in_memory",
        "--default_sdk_harness_log_level=WARNING",
    ]


# TFMA scores candidate + baseline per row: CPU-bound work that multi-processing spreads over the
# cores, after starting its worker processes (~20 s more fixed cost). Measured on 2 cores:
# 3.9k eval rows 18.1 s in-memory vs 34.6 s multi-processing; 65k rows 80.5 s vs 51.8 s; the
# lines cross near 27k eval rows.
EVALUATOR_MULTIPROCESS_MIN_ROWS = 27_000


def evaluator_beam_args() -> list[str]:
    """The Evaluator's own override when it has at least EVALUATOR_MULTIPROCESS_MIN_ROWS rows."""
    return ["--direct_running_mode=multi_processing",
            f"--direct_num_workers={max(1, os.cpu_count() or 1)}"]


@dataclass(frozen=True)
class RunConfig:
    out_dir: str = "out"
    months: tuple[int, ...] = (1, 2, 3)
    sample: int | None = None
    workers: int = 1
    input_path: str | None = None
    contract_path: str | None = None
    epochs: int = 3
    batch_size: int = 512
    learning_rate: float = 2e-3
    hidden_units: tuple[int, ...] = (64, 32)
    beam_args: tuple[str, ...] = field(default_factory=lambda: tuple(default_beam_args()))
    # Evaluator-only Beam args (empty when the user chose a runner mode with --beam-arg).
    evaluator_beam_args: tuple[str, ...] = field(default_factory=lambda: tuple(evaluator_beam_args()))
    run_label: str = ""
