"""Each stack's best configuration on this machine, chosen by a small measured sweep.

`twinpipe tune` (and `twinpipe run --tuning auto`) measures, per stack, on the run's hardware:

* **training points** — worker count x threads per worker, batch size and (TFX)
  ``steps_per_execution`` — each trained by the stack's own training code on one prepared slice of
  the run's rows (:data:`SLICE_TRAIN_ROWS` train rows for as many epochs as make
  :data:`SLICE_SAMPLES` samples, the same for every point): steady-state samples/s from the
  trainer's own clock, and the AUC of the trained model on :data:`SLICE_EVAL_ROWS` eval rows.
  TFX: the Trainer's ``train()`` on a Transform output of the slice (TF Transform on Beam, the
  stack's ``preprocessing_fn``); torch: the DDP training app under torchrun, as the TorchX stage
  runs it;
* **the Beam mode** (TFX) — a Beam stage on *all* the run's rows (TFDV statistics, StatisticsGen's
  engine) timed with FnApiRunner in-memory and multi-processing (one SDK worker per core): the
  fixed start-up of multi-processing against its per-row gain is a matter of data size, so it is
  measured on the run's data, not on the slice;
* **the examples format** (TFX) — the train stage on the slice at the chosen point, both ways:
  ``tfrecord`` (Transform analyzes and materializes transformed tf.Examples, the Trainer parses
  them) against ``parquet`` (the slice as ExampleGen's Parquet payload, Transform analyzes only,
  the Trainer applies the Transform layer itself) — preparation plus training, one process each.

**The rule** (:func:`choose`): the point with the shortest estimated train stage on the run's
samples (its steady-state samples/s, plus the start-up of a fresh TensorFlow process for a TFX
point that needs its own process) whose AUC is at least the reference point's AUC minus
:data:`AUC_TOLERANCE`; the reference is the built-in configuration (1 worker,
every core, the default batch and learning rate). A larger batch keeps the learning-rate/batch
relation (Adam: lr x sqrt(batch / default batch)) and trains the same samples in fewer steps, as
the real run would; on the slice it gets fewer steps than on the full data, so the AUC check is
conservative (it may refuse a batch the full data would have tolerated, never the reverse).
The Beam mode and the examples format: the faster of the two.

``OUT/tuning.json`` keeps every point; `twinpipe run --tuning auto|PATH` applies the chosen
settings per stack (:func:`apply`), explicit ``--workers``/``--batch-size``/``--learning-rate``
winning over them; the report's Tuning section (:mod:`comparison.tuning.section`) shows the sweep.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from comparison.tuning.choice import (
    AUC_TOLERANCE,
    BEAM_MODES,
    KIND,
    MIN_GAIN,
    RULE,
    SLICE_EVAL_ROWS,
    SLICE_SAMPLES,
    SLICE_TRAIN_ROWS,
    apply,
    candidates,
    choose,
    cores,
    load,
    matches,
    same_file,
    tuning_path,
    why,
)
from components.common import rows, storage
from components.common.beam_options import tuned_mode
from components.common.config import RunConfig
from components.common.contract import Contract
from components.common.metrics import binary_metrics
from components.common.threads import THREADS_ENV, threads_env
from components.tfx.export import SavedModelScorer
from components.tfx.launch import launch_local_workers
from components.tfx.schema import contract_to_schema
from components.tfx.trainer import TRAIN_METRICS, train

log = logging.getLogger("twinpipe.tuning")


# --- the points and the rule --------------------------------------------------------------------


# --- the slice ----------------------------------------------------------------------------------

def write_slice(spans_dir: str, out: Path, seed: int = 0) -> dict:
    """A seeded random sample of the run's train and eval rows (every span represented) as
    ``out/train.parquet`` and ``out/eval.parquet``; rows read by index, never the whole split."""
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sizes = {}
    for split, want in (("train", SLICE_TRAIN_ROWS), ("eval", SLICE_EVAL_ROWS)):
        data = rows.dataset(spans_dir, split)
        n = data.count_rows()
        idx = np.sort(rng.choice(n, size=min(want, n), replace=False))
        pq.write_table(data.take(idx), out / f"{split}.parquet")
        sizes[split] = int(len(idx))
    return sizes


def _auc(contract: Contract, source: str, predict) -> float:
    """AUC of ``predict(frame) -> probabilities`` on the slice's eval rows (the shared metrics)."""

    scored = rows.score(source, "eval", contract.label.name, list(contract.split.key),
                        {"m": predict})
    return round(float(binary_metrics(scored.labels, scored.probs["m"])["auc"]), 6)


# --- torch ----------------------------------------------------------------------------------------

def slice_epochs(train_rows: int) -> int:
    """Epochs over the slice that train :data:`SLICE_SAMPLES` samples (at least 1)."""
    return max(1, math.ceil(SLICE_SAMPLES / max(train_rows, 1)))


def sweep_torch(contract: Contract, base: RunConfig, slice_dir: Path, work: Path,
                epochs: int) -> list[dict]:
    """Every torch point: the training app on the slice with ``TWINPIPE_THREADS`` threads per
    rank — multi-worker points as DDP ranks under torchrun (as the TorchX stage runs them),
    single-worker ones in this process (the same ``main``; torchrun would only add a process
    start, outside the steady-state clock) — and the AUC of the trained module on the eval slice."""
    import torch

    from components.torch import trainer as train_app
    from components.torch.launch import train_app_args
    from components.torch.trainer import load_model

    results = []
    for i, p in enumerate(candidates("torch", base)):
        out = work / f"torch-{i}"
        args = train_app_args(contract, str(slice_dir / "train.parquet"), str(out), epochs,
                              p["batch_size"], p["learning_rate"],
                              ",".join(map(str, base.hidden_units)))
        t0 = time.time()
        if p["workers"] == 1:
            threads_before = torch.get_num_threads()
            with threads_env(p["threads"]):
                try:
                    train_app.main(args)
                finally:  # this process's own threads as they were (the environment: threads_env)
                    torch.set_num_threads(threads_before)
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={p['workers']}", "-m", "components.torch.trainer", *args]
            env = dict(os.environ, **{THREADS_ENV: str(p["threads"])})
            _check(subprocess.run(cmd, env=env, capture_output=True, text=True), "torch", p)
        model, prep, metrics = load_model(out)

        def predict(frame, model=model, prep=prep):
            num, cat = prep.encode(frame)
            with torch.no_grad():
                return model(torch.from_numpy(num), torch.from_numpy(cat)).numpy().ravel()

        results.append(_result(p, metrics, _auc(contract, str(slice_dir / "eval.parquet"),
                                                 predict), time.time() - t0))
        log.info("[torch][tune] %s", _line(results[-1]))
    return results


# --- TFX ------------------------------------------------------------------------------------------

def transform_slice(contract: Contract, slice_dir: Path, out: Path) -> dict:
    """The slice's train rows through the stack's ``preprocessing_fn`` (TF Transform on Beam,
    in-memory): ``out/transform`` (the transform graph the Trainer reads) and
    ``out/train/*.gz`` (transformed tf.Examples). Returns the Trainer's file patterns."""
    import functools

    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
    from tfx_bsl.public import tfxio

    from components.tfx.ingest import table_to_examples
    from components.tfx.transform import preprocessing_fn

    config = {"numeric": [c.name for c in contract.numeric_features],
              "categorical": [c.name for c in contract.categorical_features],
              "label": contract.label.name}
    examples = table_to_examples(rows.dataset(str(slice_dir / "train.parquet")).to_table())
    schema = contract_to_schema(contract)
    source = tfxio.TFExampleBeamRecord(physical_format="tfrecord", schema=schema,
                                       telemetry_descriptors=["twinpipe", "tune"])
    options = PipelineOptions(tuned_mode("in_memory", len(examples)).args())
    with beam.Pipeline(options=options) as p, tft_beam.Context(temp_dir=str(out / "tmp")):
        raw = p | beam.Create(examples, reshuffle=False) | source.BeamSource()
        (data, metadata), transform_fn = (
            (raw, source.TensorAdapterConfig())
            | tft_beam.AnalyzeAndTransformDataset(
                functools.partial(preprocessing_fn, custom_config=config)))
        coder = tft.coders.ExampleProtoCoder(metadata.schema)
        _ = (data | beam.Map(coder.encode)
             | beam.io.WriteToTFRecord(str(out / "train" / "part"), file_name_suffix=".gz",
                                       compression_type=beam.io.filesystem.CompressionTypes.GZIP))
        _ = transform_fn | tft_beam.WriteTransformFn(str(out / "transform"))
    # The raw schema beside it, as TFX's Transform writes it: the serving signature parses with it.
    metadata_io.write_metadata(dataset_metadata.DatasetMetadata(schema),
                               str(out / "transform" / tft.TFTransformOutput.RAW_METADATA_DIR))
    return {"train_files": [str(out / "train" / "*")], "transform_output": str(out / "transform"),
            "train_rows": len(examples)}


def point_config(base: RunConfig, point: dict) -> RunConfig:
    """The run configuration of one TFX sweep point: one Keras epoch (see :func:`sweep_tfx`) over
    the slice's materialized Transform output, so the tf.Example reader whatever the run's
    examples format (the formats are compared apart, by :func:`examples_seconds`)."""
    return dataclasses.replace(base, epochs=1, tfx_examples="tfrecord", **point)


def sweep_tfx(contract: Contract, base: RunConfig, slice_dir: Path, work: Path,
              epochs: int) -> list[dict]:
    """Every TFX point: the Trainer's ``train()`` on the slice's Transform output — single-worker
    points of one thread count in one process (TF's thread pools are fixed per process), multi-
    worker points through the Trainer's own local launcher (MultiWorkerMirroredStrategy); AUC of
    the saved serving model (its ``serving_default`` signature) on the raw eval slice."""
    from pipelines.tfx.local_runner import train_config

    t0 = time.time()
    prepared = transform_slice(contract, slice_dir, work / "tfx-slice")
    log.info("[tfx][tune] Transform of the %d-row slice: %.1f s", prepared["train_rows"],
             time.time() - t0)
    points = candidates("tfx", base)
    specs = []
    for i, p in enumerate(points):
        # The slice's epochs as one Keras epoch over the repeated slice (the Trainer's dataset
        # repeats): the same samples, without Keras's per-epoch overhead, which would weigh on
        # the short epochs of large batches on the slice and not in the run.
        cfg = point_config(base, p)
        specs.append({"train_files": prepared["train_files"], "eval_files": [],
                      "transform_output": prepared["transform_output"],
                      "serving_model_dir": str(work / f"tfx-{i}" / "serving"),
                      "model_run_dir": str(work / f"tfx-{i}" / "run"),
                      "config": train_config(cfg, contract, prepared["train_rows"] * epochs)})
    walls: dict[int, float] = {}
    for threads in sorted({p["threads"] for p in points if p["workers"] == 1}):
        group = [i for i, p in enumerate(points) if p["workers"] == 1 and p["threads"] == threads]
        spec_file = work / f"tfx-threads-{threads}.json"
        spec_file.write_text(json.dumps([specs[i] for i in group]))
        t0 = time.time()
        _check(subprocess.run([sys.executable, "-m", "comparison.tuning.sweep", str(spec_file)],
                              env=dict(os.environ, **{THREADS_ENV: str(threads)}),
                              capture_output=True, text=True), "tfx", points[group[0]])
        walls.update({i: (time.time() - t0) / len(group) for i in group})
    for i, p in enumerate(points):
        if p["workers"] > 1:
            t0 = time.time()
            launch_local_workers(specs[i], p["workers"], max_restarts=0)  # a point: no retry
            walls[i] = time.time() - t0
    features = [c.name for c in contract.features]
    results = []
    for i, p in enumerate(points):
        metrics = json.loads((Path(specs[i]["model_run_dir"]) / TRAIN_METRICS).read_text())
        scorer = SavedModelScorer(specs[i]["serving_model_dir"], features)
        auc = _auc(contract, str(slice_dir / "eval.parquet"),
                   lambda frame, s=scorer: s.score(s.encode(frame)))
        results.append(_result(p, metrics, auc, walls[i]))
        log.info("[tfx][tune] %s", _line(results[-1]))
    return results


def transform_slice_parquet(contract: Contract, slice_dir: Path, out: Path) -> dict:
    """The Parquet path's preparation of the slice: its train rows as ExampleGen's Parquet payload
    (``out/train/payload.parquet``), read back through ``ParquetTFXIO`` by TF Transform, which
    analyzes only (the Transform graph, no transformed rows). Returns the Trainer's patterns."""
    import functools

    import apache_beam as beam
    import pyarrow.parquet as pq
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
    from tfx_bsl.tfxio.parquet_tfxio import ParquetTFXIO

    from components.tfx.ingest import payload_table
    from components.tfx.transform import preprocessing_fn

    config = {"numeric": [c.name for c in contract.numeric_features],
              "categorical": [c.name for c in contract.categorical_features],
              "label": contract.label.name}
    payload = payload_table(rows.dataset(str(slice_dir / "train.parquet")).to_table())
    (out / "train").mkdir(parents=True, exist_ok=True)
    path = out / "train" / "payload.parquet"
    pq.write_table(payload, path, use_compliant_nested_type=False)
    schema = contract_to_schema(contract)
    source = ParquetTFXIO(file_pattern=str(path), column_names=payload.schema.names,
                          schema=schema, telemetry_descriptors=["twinpipe", "tune"])
    options = PipelineOptions(tuned_mode("in_memory", payload.num_rows).args())
    with beam.Pipeline(options=options) as p, tft_beam.Context(temp_dir=str(out / "tmp")):
        raw = p | source.BeamSource(8192)
        transform_fn = ((raw, source.TensorAdapterConfig())
                        | tft_beam.AnalyzeDataset(
                            functools.partial(preprocessing_fn, custom_config=config)))
        _ = transform_fn | tft_beam.WriteTransformFn(str(out / "transform"))
    metadata_io.write_metadata(dataset_metadata.DatasetMetadata(schema),
                               str(out / "transform" / tft.TFTransformOutput.RAW_METADATA_DIR))
    return {"train_files": [str(path)], "transform_output": str(out / "transform"),
            "train_rows": payload.num_rows}


def examples_seconds(contract: Contract, base: RunConfig, point: dict, slice_dir: Path,
                     work: Path, epochs: int) -> dict:
    """Seconds of the TFX train stage on the slice at ``point`` with each examples format:
    the format's preparation (Transform) plus the Trainer's ``train()``, in a fresh process each
    (the same start-up for both), single worker at the point's batch."""
    from pipelines.tfx.local_runner import train_config

    seconds = {}
    for fmt in ("tfrecord", "parquet"):
        spec_file = work / f"tfx-examples-{fmt}.json"
        cfg = dataclasses.replace(base, epochs=1, tfx_examples=fmt,
                                  **{k: v for k, v in point.items()
                                     if k in ("batch_size", "learning_rate",
                                              "steps_per_execution")})
        spec_file.write_text(json.dumps({
            "format": fmt, "contract": contract.path or "", "slice": str(slice_dir),
            "work": str(work / f"tfx-examples-{fmt}"),
            "config": train_config(cfg, contract, 0), "epochs": epochs}))
        t0 = time.time()
        _check(subprocess.run([sys.executable, "-m", "comparison.tuning.sweep", "--examples",
                               str(spec_file)], capture_output=True, text=True), "tfx",
               {"examples": fmt})
        seconds[fmt] = round(time.time() - t0, 2)
    return seconds


def _examples_point(spec_file: str) -> int:
    """One examples format's preparation + training on the slice (``python -m
    comparison.tuning.sweep --examples SPEC.json``)."""
    from components.common.contract import load_contract

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    doc = json.loads(Path(spec_file).read_text())
    contract = load_contract(doc["contract"] or None)
    work, slice_dir = Path(doc["work"]), Path(doc["slice"])
    prepare = transform_slice_parquet if doc["format"] == "parquet" else transform_slice
    prepared = prepare(contract, slice_dir, work)
    config = {**doc["config"], "train_rows": prepared["train_rows"] * doc["epochs"]}
    train({"train_files": prepared["train_files"], "eval_files": [],
           "transform_output": prepared["transform_output"],
           "serving_model_dir": str(work / "serving"), "model_run_dir": str(work / "run"),
           "config": config})
    return 0


def tfx_process_start_s() -> float:
    """Seconds a fresh Python process takes to start TensorFlow and run one op: the fixed cost
    of a Trainer launched in its own process (a set thread count or several workers)."""
    t0 = time.time()
    subprocess.run([sys.executable, "-c", "import tensorflow as tf; tf.constant(1.0) + 1.0"],
                   check=True, capture_output=True)
    return time.time() - t0


def _train_specs(spec_file: str) -> int:
    """The single-worker TFX points of one thread count, trained one after the other in this
    process (``python -m comparison.tuning.sweep SPECS.json``, with ``TWINPIPE_THREADS`` set)."""
    import tensorflow as tf


    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    for spec in json.loads(Path(spec_file).read_text()):
        train(spec)
        tf.keras.backend.clear_session()
    return 0


def beam_stage_seconds(spans_dir: str, mode: str) -> float:
    """Wall seconds of one Beam stage over every row of the run (train and eval splits): TFDV's
    GenerateStatistics (StatisticsGen's engine), FnApiRunner in ``mode``, start-up included."""
    import apache_beam as beam
    import tensorflow_data_validation as tfdv
    from apache_beam.options.pipeline_options import PipelineOptions


    files = rows.files(spans_dir, "train") + rows.files(spans_dir, "eval")
    t0 = time.perf_counter()
    with beam.Pipeline(options=PipelineOptions(tuned_mode(mode, None).args())) as p:
        _ = (p | beam.Create(files) | beam.FlatMap(_record_batches)
             | tfdv.GenerateStatistics(tfdv.StatsOptions()) | beam.Map(lambda _: None))
    return round(time.perf_counter() - t0, 2)


def _record_batches(path: str):
    """One Parquet file's rows as the list-valued record batches ExampleGen's tf.Examples decode
    to (what StatisticsGen reads)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from components.tfx.ingest import _as_value_lists

    with storage.open(path, "rb") as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=8192):
            yield pa.RecordBatch.from_arrays([_as_value_lists(c) for c in batch.columns],
                                             names=batch.schema.names)


# --- shared -------------------------------------------------------------------------------------

def _check(proc: subprocess.CompletedProcess, stack: str, point: dict) -> None:
    if proc.returncode != 0:
        raise RuntimeError(f"[{stack}][tune] training point {point} failed (exit "
                           f"{proc.returncode}):\n{proc.stderr[-3000:]}")


def _result(point: dict, metrics: dict, auc: float, wall_s: float) -> dict:
    return {"config": point, "samples_per_s": float(metrics["samples_per_s"]), "auc": auc,
            "global_batch": metrics.get("global_batch"), "steps": metrics.get("steps"),
            "wall_s": round(wall_s, 1)}


def _line(r: dict) -> str:
    c = r["config"]
    spe = f" spe {c['steps_per_execution']}" if "steps_per_execution" in c else ""
    return (f"{c['workers']}w x {c['threads']}t batch {c['batch_size']}{spe}: "
            f"{r['samples_per_s']:,.0f} samples/s, AUC {r['auc']:.4f} ({r['wall_s']:.0f} s)")


def tune(out_dir: str | Path, cfg: RunConfig, contract: Contract, ingested,
         stacks: tuple[str, ...]) -> dict:
    """Runs the sweep for ``stacks`` on the run's ingested spans and writes ``OUT/tuning.json``."""
    t_all = time.time()
    doc = {"kind": KIND, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cores": cores(),
           "contract": contract.name, "rows": ingested.rows, "spans": ingested.span_numbers,
           "base": {"batch_size": cfg.batch_size, "learning_rate": cfg.learning_rate},
           "rule": {"text": RULE, "auc_tolerance": AUC_TOLERANCE, "min_gain": MIN_GAIN,
                    "reference": 0},
           "slice": {}, "stacks": {}}
    with tempfile.TemporaryDirectory(prefix="twinpipe-tune-") as tmp:
        work = Path(tmp)
        doc["slice"].update(write_slice(ingested.spans_dir, work / "slice"))
        doc["slice"]["epochs"] = epochs = slice_epochs(doc["slice"]["train"])
        doc["run_samples"] = run_samples = sum(s.train_rows for s in ingested.spans) * cfg.epochs
        for stack in stacks:
            t0 = time.time()
            sweep = sweep_tfx if stack == "tfx" else sweep_torch
            points = sweep(contract, cfg, work / "slice", work, epochs)
            if stack == "tfx":  # what a Trainer in its own process adds (the reference runs in
                fixed = tfx_process_start_s()  # the pipeline's process)
                for p in points:
                    own = p["config"]["workers"] > 1 or p["config"]["threads"] != cores()
                    p["fixed_s"] = round(fixed, 2) if own else 0.0
            best = choose(points, run_samples=run_samples)
            entry = {"points": points, "chosen_index": best,
                     "chosen": dict(points[best]["config"]), "why": why(points, best, run_samples)}
            if stack == "tfx":
                seconds = {}
                for mode in BEAM_MODES:
                    seconds[mode] = beam_stage_seconds(ingested.spans_dir, mode)
                    log.info("[tfx][tune] Beam %s: TFDV statistics over %d rows in %.1f s", mode,
                             ingested.rows, seconds[mode])
                mode = min(seconds, key=seconds.get)
                entry["beam"] = {"stage": "TFDV GenerateStatistics over the run's rows "
                                          "(StatisticsGen's engine), start-up included",
                                 "rows": ingested.rows, "seconds": seconds, "chosen": mode}
                entry["chosen"]["beam_mode"] = mode
                fmt_s = examples_seconds(contract, cfg, points[best]["config"], work / "slice",
                                         work, epochs)
                fmt = min(fmt_s, key=fmt_s.get)
                log.info("[tfx][tune] examples: %s", ", ".join(
                    f"{k} {v:.1f} s" for k, v in fmt_s.items()))
                entry["examples"] = {"stage": "the train stage on the slice (Transform + "
                                              "Trainer, one process each), at the chosen point",
                                     "seconds": fmt_s, "chosen": fmt}
                entry["chosen"]["tfx_examples"] = fmt
            entry["sweep_s"] = round(time.time() - t0, 1)
            doc["stacks"][stack] = entry
            log.info("[%s][tune] chosen: %s", stack, entry["why"])
    doc["wall_s"] = round(time.time() - t_all, 1)
    storage.write_json(tuning_path(out_dir), doc)
    return doc


# --- applying it ----------------------------------------------------------------------------------


def resolve(mode: str, cfg: RunConfig, contract: Contract, ingested, stacks: tuple[str, ...],
            explicit: set[str]) -> RunConfig:
    """``--tuning``: ``none`` leaves ``cfg`` as it is; ``auto`` reuses ``OUT/tuning.json`` when it
    :func:`matches` this run, else sweeps now; a path applies that file (any machine's: its cores
    are logged when they differ). The applied file is kept as ``OUT/tuning.json`` for the report."""
    if mode == "none":
        return cfg
    path = tuning_path(cfg.out_dir)
    if mode == "auto":
        doc = load(path) if storage.isfile(path) else None
        if doc is not None and matches(doc, contract, ingested, stacks):
            log.info("[tune] reusing %s (measured %s)", path, doc.get("measured_at"))
        else:
            log.info("[tune] sweeping %s on %d cores (~2-3 min on 2 cores)", " and ".join(stacks),
                     cores())
            doc = tune(cfg.out_dir, cfg, contract, ingested, stacks)
        source = path
    else:
        doc = load(mode)
        if doc.get("cores") != cores():
            log.info("[tune] %s was measured on %s cores, this machine has %d", mode,
                     doc.get("cores"), cores())
        if not same_file(mode, path):
            storage.write_json(path, doc)
        source = mode
    missing = [s for s in stacks if s not in doc.get("stacks", {})]
    if missing:
        log.info("[tune] %s has no sweep for %s: built-in settings there", source, ", ".join(missing))
    return apply(cfg, doc, source, stacks, explicit)


if __name__ == "__main__":
    if sys.argv[1] == "--examples":
        # TF Transform's in-process Beam and a Keras fit in one interpreter crash its teardown
        # (SIGSEGV while collecting garbage at exit, after the model is written): the point's
        # work is done and timed here, so end without the teardown.
        rc = _examples_point(sys.argv[2])
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    sys.exit(_train_specs(sys.argv[1]))
