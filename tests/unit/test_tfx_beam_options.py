"""The TFX stack's local Beam options: in-memory or multi-processing by data size, the runner pinned
to Beam's FnApiRunner (never the DirectRunner's Prism attempt), --beam-arg overrides over the sized
options, and the Evaluator's metrics all TFMA-native (none run through a Keras metric wrapper, none
added from the Keras models' compiled metrics)."""

import logging

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from components.common.beam_options import (
    MULTI_PROCESSING_MIN_ROWS,
    default_beam_args,
    direct_beam_args,
    direct_mode,
    override_beam_args,
)
from components.common.config import RunConfig
from pipelines.tfx.local_runner import local_beam_args


def _opts(args):
    return dict(a.lstrip("-").partition("=")[::2] for a in args)


@pytest.mark.parametrize("rows, cores, mode, workers", [
    (None, 2, "in_memory", 1),                             # unknown size: a compiled spec's pods
    (1_000, 2, "in_memory", 1),
    (MULTI_PROCESSING_MIN_ROWS - 1, 16, "in_memory", 1),
    (MULTI_PROCESSING_MIN_ROWS, 2, "multi_processing", 2),
    (10_000_000, 16, "multi_processing", 16),
    (10_000_000, 1, "in_memory", 1),                       # one core: nothing to spread over
])
def test_running_mode_and_workers_follow_the_data_size(rows, cores, mode, workers):
    chosen = direct_mode(rows, cores)
    assert (chosen.running_mode, chosen.workers) == (mode, workers)
    opts = _opts(chosen.args())
    assert opts["runner"] == "FnApiRunner"
    assert (opts["direct_running_mode"], opts["direct_num_workers"]) == (mode, str(workers))
    assert chosen.record() == {"runner": "FnApiRunner", "running_mode": mode, "workers": workers,
                               "rows": rows, "multi_processing_min_rows": MULTI_PROCESSING_MIN_ROWS}


@pytest.mark.parametrize("rows", [None, 10_000_000])
def test_the_runner_is_pinned_to_fnapirunner(rows, caplog):
    """Beam resolves the options to FnApiRunner itself (``--runner=DirectRunner`` would be the
    SwitchingDirectRunner, which tries Prism first since Beam 2.68), and a pipeline run with
    them never mentions Prism."""
    args = direct_beam_args(rows, n_cores=2)
    assert type(beam.Pipeline(options=PipelineOptions(args)).runner) is FnApiRunner
    if rows is None:  # a real run; the multi-processing one would start SDK worker processes
        caplog.set_level(logging.INFO)
        with beam.Pipeline(options=PipelineOptions(args)) as p:
            counted = p | beam.Create(range(100)) | beam.combiners.Count.Globally()
            assert_that(counted, equal_to([100]))
        assert not [r for r in caplog.records if "prism" in r.getMessage().lower()]


def test_defaults_are_the_unsized_in_memory_options():
    assert default_beam_args() == direct_beam_args(None)
    assert _opts(default_beam_args())["direct_running_mode"] == "in_memory"


def test_run_sizes_the_defaults_and_applies_the_user_overrides_over_them():
    big = MULTI_PROCESSING_MIN_ROWS * 3
    args, mode = local_beam_args(RunConfig(), big)
    assert mode is not None and mode["rows"] == big
    assert _opts(args)["direct_running_mode"] == ("multi_processing" if mode["workers"] > 1
                                                  else "in_memory")
    overrides = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
    cfg = RunConfig(beam_args=tuple(override_beam_args(default_beam_args(), overrides)),
                    beam_overrides=overrides)
    args, _ = local_beam_args(cfg, big)
    assert _opts(args)["direct_running_mode"] == "in_memory"
    assert args.count("--direct_num_workers=1") == 1 and "--runner=FnApiRunner" in args
    small, mode = local_beam_args(RunConfig(), 1_000)
    assert _opts(small)["direct_running_mode"] == "in_memory" and mode["workers"] == 1


def test_beam_args_a_caller_set_are_kept_as_given():
    own = ("--runner=DirectRunner", "--direct_running_mode=multi_threading")
    assert local_beam_args(RunConfig(beam_args=own), 10_000_000) == (list(own), None)


def test_evaluator_metrics_are_tfma_native():
    """A class name TFMA does not define is looked up in Keras and run through its TF metric
    wrapper (``BinaryCrossentropy`` was: a TF graph call per batch in a Beam combiner)."""
    import tensorflow_model_analysis as tfma

    from components.common.contract import load_contract
    from components.tfx.evaluate import eval_config

    cfg = eval_config(load_contract(None))
    names = [m.class_name for s in cfg.metrics_specs for m in s.metrics]
    assert "BinaryCrossEntropy" in names
    assert all(hasattr(tfma.metrics, n) for n in names), names
    # nor the Keras models' compiled loss and metrics, which TFMA adds unless told not to
    assert cfg.options.HasField("include_default_metrics")
    assert cfg.options.include_default_metrics.value is False
