"""The run configuration: one frozen object built from CLI flags, passed in explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# The stages of every stack, in order: the names used in code, logs, run.json and the report.
STAGES = ("ingest", "validate", "train", "evaluate", "push")


def stack_root(out_dir: str | Path, stack: str) -> Path:
    """Where one stack's outputs of a run live: ``OUT/<stack>/``."""
    return Path(out_dir).resolve() / stack


def push_destination(cfg: RunConfig, stack: str) -> str:
    """The stack's registry: ``OUT/<stack>/pushed`` (a ``gs://`` URL for an object-store run)."""
    from components.common import storage

    if cfg.push_root:
        return storage.join(cfg.push_root, stack, "pushed")
    return str(stack_root(cfg.out_dir, stack) / "pushed")


def default_beam_args() -> list[str]:
    """The local Beam options when the data size is not known (a compiled spec's pods, a bare
    RunConfig): FnApiRunner in-memory, pinned. `twinpipe run` sizes them by the ingested rows
    instead (``infra.beam_options.direct_mode``: multi-processing over every core for large data).
    """
    from infra.beam_options import direct_beam_args

    return direct_beam_args(None)


def _option_key(arg: str) -> str:
    """A Beam option's name: ``--max_num_workers=4`` -> ``max_num_workers``; a boolean's negation
    names the same option (``--no_use_public_ips`` and ``--use_public_ips``)."""
    name = arg.split("=", 1)[0].lstrip("-")
    return name[3:] if name.startswith("no_") else name


def override_beam_args(base: list[str] | tuple[str, ...], overrides: list[str] | tuple[str, ...]
                       ) -> list[str]:
    """``base`` with every option named in ``overrides`` replaced by the overrides (by option name,
    all of its occurrences: one ``--experiments=...`` replaces every default experiment), the
    overrides appended in their order."""
    keys = {_option_key(a) for a in overrides}
    return [a for a in base if _option_key(a) not in keys] + list(overrides)


@dataclass(frozen=True)
class RunConfig:
    out_dir: str = "out"
    months: tuple[int, ...] | None = None   # month numbers in any year; None: every month present
    spans: tuple[int, ...] | None = None    # span numbers YYYYMM; None: every span present
    sample: int | None = None
    workers: int = 1
    input_path: str | None = None
    contract_path: str | None = None
    epochs: int = 3
    batch_size: int = 512
    learning_rate: float = 2e-3
    hidden_units: tuple[int, ...] = (64, 32)
    beam_args: tuple[str, ...] = field(default_factory=lambda: tuple(default_beam_args()))
    # The user's --beam-arg options: `twinpipe run` applies them over the Beam options it sizes by
    # the ingested rows (pipelines/tfx/local_runner.local_beam_args).
    beam_overrides: tuple[str, ...] = ()
    run_label: str = ""
    # Where the stacks push (``<push_root>/<stack>/pushed``) when it is not out_dir: the
    # object-store OUT of a ``--out gs://`` run, whose out_dir is local scratch (infra/objectstore).
    push_root: str | None = None
