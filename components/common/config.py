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
    """Beam DirectRunner in multi-processing mode, one worker per core."""
    return [
        "--runner=DirectRunner",
        "--direct_running_mode=multi_processing",
        f"--direct_num_workers={max(1, os.cpu_count() or 1)}",
        "--default_sdk_harness_log_level=WARNING",
    ]


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
    run_label: str = ""
