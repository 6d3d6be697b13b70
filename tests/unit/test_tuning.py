"""The tuning sweep's rule and how its choice reaches each stack (comparison/tuning): the points,
the quality rule, per-stack settings over the shared run configuration, explicit flags winning,
and what the TFX runner makes of the settings (Trainer config, Beam mode)."""

import dataclasses
import json
import math

import pytest

from comparison import tuning
from components.common.config import RunConfig
from components.common.contract import load_contract
from infra.cli import build_parser
from infra.cli.commands import explicit, run_config
from pipelines.tfx.local_runner import local_beam_args, train_config


def _points(speeds_aucs):
    return [{"config": {"i": i}, "samples_per_s": s, "auc": a}
            for i, (s, a) in enumerate(speeds_aucs)]


@pytest.mark.parametrize("speeds_aucs, expected", [
    ([(100, 0.72), (300, 0.72), (200, 0.73)], 1),            # fastest, quality kept
    ([(100, 0.72), (900, 0.70), (200, 0.718)], 2),           # 900 refused: AUC 0.02 below
    ([(100, 0.72), (90, 0.75)], 0),                          # slower but better: speed decides
    ([(100, 0.72), (150, 0.72 - tuning.AUC_TOLERANCE)], 1),  # on the tolerance: admitted
    ([(500, 0.60), (400, 0.70)], 0),                         # the reference always qualifies
    ([(100, 0.72), (104, 0.72)], 0),                         # < MIN_GAIN faster: noise
])
def test_choice_is_the_fastest_point_within_the_auc_tolerance(speeds_aucs, expected):
    points = _points(speeds_aucs)
    assert tuning.choose(points) == expected
    floor = points[0]["auc"] - tuning.AUC_TOLERANCE
    admissible = [p for i, p in enumerate(points) if i == 0 or p["auc"] >= floor]
    fastest = max(p["samples_per_s"] for p in admissible)
    wins = fastest >= points[0]["samples_per_s"] * (1 + tuning.MIN_GAIN)
    assert points[expected]["samples_per_s"] == (fastest if wins else points[0]["samples_per_s"])


@pytest.mark.parametrize("stack", ["tfx", "torch"])
def test_points_start_at_the_reference_and_keep_the_lr_batch_relation(stack):
    base = RunConfig(batch_size=256, learning_rate=1e-3)
    points = tuning.candidates(stack, base, n_cores=4)
    assert points[0] == {"workers": 1, "threads": 4, "batch_size": 256, "learning_rate": 1e-3,
                         **({"steps_per_execution": 64} if stack == "tfx" else {})}
    assert len({json.dumps(p, sort_keys=True) for p in points}) == len(points)
    assert {(p["workers"], p["threads"]) for p in points} == {(1, 4), (1, 1), (2, 2)}
    for p in points:
        k = p["batch_size"] / 256
        assert p["learning_rate"] == pytest.approx(1e-3 * math.sqrt(k), rel=1e-5)
        assert p["workers"] * p["threads"] <= 4
    assert ("steps_per_execution" in points[-1]) == (stack == "tfx")
    if stack == "tfx":
        assert {p["steps_per_execution"] for p in points} == {1, 64}
    # one core: nothing to split between threads or workers
    assert {(p["workers"], p["threads"]) for p in tuning.candidates(stack, base, 1)} == {(1, 1)}


def _doc(chosen_tfx, chosen_torch, cores):
    return {"kind": tuning.KIND, "cores": cores,
            "stacks": {"tfx": {"chosen": chosen_tfx}, "torch": {"chosen": chosen_torch}}}


def _cfg(argv):
    args = build_parser().parse_args(["run", *argv])
    return args, run_config(args)


def test_tuning_applies_per_stack_and_explicit_flags_win(monkeypatch):
    monkeypatch.setattr(tuning, "cores", lambda: 2)
    doc = _doc({"workers": 1, "threads": 1, "batch_size": 1024, "learning_rate": 0.0028,
                "steps_per_execution": 16, "beam_mode": "multi_processing",
                "tfx_examples": "tfrecord"},
               {"workers": 2, "threads": 1, "batch_size": 512, "learning_rate": 0.002}, 2)
    args, cfg = _cfg(["--stack", "both"])
    assert explicit(args) == set() and cfg.workers == 1 and cfg.batch_size == 512
    tuned = tuning.apply(cfg, doc, "t.json", ("tfx", "torch"), explicit(args))
    tfx, torch_ = tuned.for_stack("tfx"), tuned.for_stack("torch")
    assert (tfx.workers, tfx.threads, tfx.batch_size, tfx.learning_rate) == (1, 1, 1024, 0.0028)
    assert (tfx.steps_per_execution, tfx.beam_mode) == (16, "multi_processing")
    assert tfx.tfx_examples == "tfrecord"  # the sweep's measured examples format
    # 2 workers x 1 thread is the stacks' own rule on 2 cores: left to it
    assert (torch_.workers, torch_.threads, torch_.batch_size) == (2, None, 512)
    assert tuned.workers == 1 and tuned.batch_size == 512  # the shared config is untouched
    s = tuned.settings("tfx")
    assert s["source"] == "tuning t.json" and s["threads_per_worker"] == 1
    assert s["beam_mode"] == "multi_processing" and s["steps_per_execution"] == 16
    assert s["examples"] == "tfrecord"

    args, cfg = _cfg(["--workers", "2", "--batch-size", "256", "--tfx-examples", "parquet"])
    assert explicit(args) == {"workers", "batch_size", "tfx_examples"}
    tuned = tuning.apply(cfg, doc, "t.json", ("tfx", "torch"), explicit(args))
    tfx = tuned.for_stack("tfx")
    # explicit flags win; the tuned lr (scaled for the tuned batch) and threads (for the tuned
    # worker count) go with them; the rest of the tuning stays
    assert (tfx.workers, tfx.batch_size, tfx.learning_rate, tfx.threads) == (2, 256, 2e-3, None)
    assert tfx.steps_per_execution == 16 and tfx.tfx_examples == "parquet"
    assert ("explicit flags kept: batch_size, tfx_examples, workers"
            in tuned.settings("tfx")["source"])


def test_tfx_sweep_points_read_the_materialized_slice_whatever_the_default_format():
    from comparison.tuning.sweep import point_config

    point = {"workers": 1, "threads": 1, "batch_size": 512, "learning_rate": 0.002,
             "steps_per_execution": 64}
    cfg = point_config(RunConfig(epochs=5), point)   # the run's default: parquet
    tc = train_config(cfg, load_contract(None), 1000)
    assert tc["examples_format"] == "tfrecord" and cfg.epochs == 1
    assert (tc["batch_size"], tc["steps_per_execution"]) == (512, 64)


def test_tfx_runner_uses_the_stack_settings():
    contract = load_contract(None)
    cfg = RunConfig(threads=1, steps_per_execution=8, beam_mode="multi_processing")
    tc = train_config(cfg, contract, 1000)
    assert tc["threads"] == 1 and tc["steps_per_execution"] == 8
    assert tc["examples_format"] == "parquet"  # the default: what the Trainer reads
    assert "threads" not in train_config(RunConfig(), contract, 1000)
    args, mode = local_beam_args(cfg, rows=1000)  # small data, yet the measured mode
    assert mode["running_mode"] == "multi_processing"
    assert "--direct_running_mode=multi_processing" in args
    args, mode = local_beam_args(dataclasses.replace(
        cfg, beam_overrides=("--direct_running_mode=in_memory",)), rows=1000)
    assert args.count("--direct_running_mode=in_memory") == 1  # --beam-arg still wins


def test_a_file_that_is_not_a_tuning_says_so(tmp_path):
    from components.common.errors import ContractError

    bad = tmp_path / "t.json"
    bad.write_text("{}")
    with pytest.raises(ContractError, match="not a twinpipe tuning file"):
        tuning.load(bad)
    with pytest.raises(ContractError, match="cannot read a tuning file"):
        tuning.load(tmp_path / "missing.json")


def _matching_sweep(monkeypatch):
    """(contract, ingested, tuning doc) for a 2-core run of 1,234 rows of span 201301 that the
    doc was measured for."""
    from types import SimpleNamespace

    monkeypatch.setattr(tuning, "cores", lambda: 2)
    contract = load_contract(None)
    ingested = SimpleNamespace(rows=1234, span_numbers=[201301])
    doc = {**_doc({"workers": 1, "threads": 2, "batch_size": 1024, "learning_rate": 0.0028},
                  {"workers": 1, "threads": 1, "batch_size": 512, "learning_rate": 0.002}, 2),
           "contract": contract.name, "rows": 1234, "spans": [201301]}
    return contract, ingested, doc


def test_auto_reuses_a_matching_sweep_and_a_path_is_kept_for_the_report(tmp_path, monkeypatch):
    contract, ingested, doc = _matching_sweep(monkeypatch)
    out = tmp_path / "out"
    out.mkdir()
    (out / "tuning.json").write_text(json.dumps(doc))
    cfg = RunConfig(out_dir=str(out))

    def no_sweep(*a, **k):
        raise AssertionError("a matching tuning.json must be reused, not swept again")

    monkeypatch.setattr(tuning, "tune", no_sweep)
    tuned = tuning.resolve("auto", cfg, contract, ingested, ("tfx", "torch"), set())
    assert tuned.for_stack("tfx").batch_size == 1024 and tuned.for_stack("torch").threads == 1
    assert tuning.resolve("none", cfg, contract, ingested, ("tfx",), set()) is cfg
    # another machine's or another window's sweep is not reused by auto
    assert not tuning.matches({**doc, "cores": 16}, contract, ingested, ("tfx",))
    assert not tuning.matches({**doc, "rows": 99}, contract, ingested, ("tfx",))
    # a file elsewhere is applied as given and copied into OUT for the report
    other = tmp_path / "elsewhere.json"
    other.write_text(json.dumps({**doc, "cores": 16}))
    (out / "tuning.json").unlink()
    tuned = tuning.resolve(str(other), cfg, contract, ingested, ("torch",), set())
    assert tuned.for_stack("torch").threads == 1
    assert json.loads((out / "tuning.json").read_text())["cores"] == 16


def test_auto_and_a_path_work_on_object_storage(tmp_path, monkeypatch, gcs_bucket):
    """A run into gs:// reuses the bucket's OUT/tuning.json (not a local "gs:/" folder), and a
    tuning file on gs:// is applied and kept in OUT for the report."""
    from components.common import storage

    monkeypatch.chdir(tmp_path)
    contract, ingested, doc = _matching_sweep(monkeypatch)
    out = f"{gcs_bucket}/runs/out"
    storage.write_json(f"{out}/tuning.json", doc)
    monkeypatch.setattr(tuning, "tune", lambda *a, **k: pytest.fail("swept again"))
    cfg = RunConfig(out_dir=out)
    tuned = tuning.resolve("auto", cfg, contract, ingested, ("tfx", "torch"), set())
    assert tuned.for_stack("tfx").batch_size == 1024 and out in tuned.settings_source
    storage.rm(f"{out}/tuning.json")
    storage.write_json(f"{gcs_bucket}/elsewhere.json", {**doc, "cores": 16})
    tuned = tuning.resolve(f"{gcs_bucket}/elsewhere.json", cfg, contract, ingested, ("torch",),
                           set())
    assert tuned.for_stack("torch").threads == 1
    assert storage.read_json(f"{out}/tuning.json")["cores"] == 16
    assert not (tmp_path / "gs:").exists()


def test_the_start_up_a_point_adds_counts_against_it():
    # 10% faster in steady state, but its own process costs 5 s on a run of 1M samples
    ref = {"config": {}, "samples_per_s": 250_000.0, "auc": 0.72, "fixed_s": 0.0}
    own = {"config": {}, "samples_per_s": 275_000.0, "auc": 0.72, "fixed_s": 5.0}
    assert tuning.choose([ref, own]) == 1                          # speed alone
    assert tuning.choose([ref, own], run_samples=1_000_000) == 0   # 8.6 s vs 4.0 s
    assert tuning.choose([ref, own], run_samples=10**9) == 1       # start-up amortised
    assert "start-up" in tuning.why([ref, own], 1, run_samples=10**9)
