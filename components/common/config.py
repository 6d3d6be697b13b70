"""The run configuration: one frozen object built from CLI flags, passed in explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from components.common import storage
from components.common.beam_options import default_beam_args
from components.common.threads import default_threads

# TFX: train steps Keras runs inside one tf.function call: a small MLP's step is ~1 ms of math, so
# one Python round trip (and callback dispatch) per step was a large share of the loop. Batch-level
# callbacks then run once per execution, not per step.
STEPS_PER_EXECUTION = 64

# The stages of every stack, in order: the names used in code, logs, run.json and the report.
STAGES = ("ingest", "validate", "train", "evaluate", "push")


def stack_root(out_dir: str | Path, stack: str) -> Path:
    """Where one stack's outputs of a run live: ``OUT/<stack>/``."""
    return Path(out_dir).resolve() / stack


def push_destination(cfg: RunConfig, stack: str) -> str:
    """The stack's registry: ``OUT/<stack>/pushed`` (a ``gs://`` URL for an object-store run)."""

    if cfg.push_root:
        return storage.join(cfg.push_root, stack, "pushed")
    return str(stack_root(cfg.out_dir, stack) / "pushed")


# What a stack's settings may override of the run configuration (``--tuning``: the sweep's choice
# per stack, comparison/tuning). ``threads``: intra-op threads per training worker (None: the
# stacks' own rule, cores // workers); ``steps_per_execution``: train steps per tf.function call
# (TFX; None: the Trainer's default); ``beam_mode``: the TFX Beam stages' FnApiRunner running mode
# (``in_memory`` | ``multi_processing``; None: sized by rows, components.common.beam_options.direct_mode);
# ``tfx_examples``: what ExampleGen writes and the TFX stages read (``parquet`` | ``tfrecord``).
STACK_SETTINGS = ("workers", "batch_size", "learning_rate", "threads", "steps_per_execution",
                  "beam_mode", "tfx_examples")

# The TFX stack's examples by default: a Parquet payload read through TFXIO (Arrow end to end);
# ``tfrecord``: gzip TFRecords of tf.Examples, the Transform's output materialized.
TFX_EXAMPLES = "parquet"


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
    threads: int | None = None
    steps_per_execution: int | None = None
    beam_mode: str | None = None
    tfx_examples: str = TFX_EXAMPLES
    # Per-stack overrides of the fields in STACK_SETTINGS: ((stack, ((field, value), ...)), ...)
    # (tuples: the config stays hashable), and where they came from (the tuning file).
    per_stack: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = ()
    settings_source: str = ""

    def for_stack(self, stack: str) -> RunConfig:
        """This configuration as ``stack`` runs it: its per-stack settings applied (the rest of
        the run, window and data included, is shared by both stacks)."""
        import dataclasses

        own = dict(dict(self.per_stack).get(stack, ()))
        return dataclasses.replace(self, **own, per_stack=()) if own else self

    def settings(self, stack: str) -> dict:
        """What run.json records of the training configuration the stack ran with."""

        cfg = self.for_stack(stack)
        doc = {"workers": cfg.workers, "batch_size": cfg.batch_size,
               "learning_rate": cfg.learning_rate, "epochs": cfg.epochs,
               "threads_per_worker": cfg.threads or default_threads(cfg.workers),
               "source": self.settings_source or "flags and defaults"}
        if stack == "tfx":
            doc.update(steps_per_execution=cfg.steps_per_execution or STEPS_PER_EXECUTION,
                       beam_mode=cfg.beam_mode or "sized by rows", examples=cfg.tfx_examples)
        return doc
