"""Keras training for the TFX Trainer: MirroredStrategy on one host, MultiWorkerMirroredStrategy
across workers driven by TF_CONFIG.

``run_fn`` is the Trainer's entry point. With ``workers > 1`` and no TF_CONFIG yet (the embedded
default), it starts that many worker processes on localhost, each with its own TF_CONFIG, and
waits for them: a real multi-worker collective run (gRPC ring all-reduce between processes). On a
cluster (a ``cluster_job`` in the Trainer's custom config) it writes the training spec next to the
model run and submits a job of its own (:mod:`components.tfx.launch`: a Volcano Job with the
``tensorflow`` plugin, or Vertex CustomJob worker pools), whose pods get TF_CONFIG from the job and
each run :func:`train` directly. With ``TWINPIPE_REPLICA_REPORT_DIR`` set, every worker writes its host
and a digest of its final weights there (:mod:`components.common.replicas`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time

from components.common import fault, storage
from components.common.layout import TRAIN_METRICS_JSON
from components.common.replicas import report_dir, weights_digest, write_replica_report
from components.tfx.export import save_serving_model, serving_signatures
from components.tfx.launch import BACKUP_PROGRESS, backup_dir, launch_cluster_job, launch_local_workers
from components.tfx.model import (
    TFRECORD,
    build_model,
    cluster_role,
    count_records,
    train_dataset,
    worker_strategy,
)

log = logging.getLogger("twinpipe.tfx.train")

TRAIN_METRICS = TRAIN_METRICS_JSON


SPEC_KEYS = ("train_files", "eval_files", "transform_output", "serving_model_dir", "model_run_dir",
             "config")


def _spec_from_fn_args(fn_args) -> dict:
    return {
        "train_files": list(fn_args.train_files),
        "eval_files": list(fn_args.eval_files),
        "transform_output": fn_args.transform_output,
        "serving_model_dir": fn_args.serving_model_dir,
        "model_run_dir": fn_args.model_run_dir,
        "config": dict(fn_args.custom_config),
    }


def run_fn(fn_args) -> None:
    """TFX Trainer entry point."""
    spec = _spec_from_fn_args(fn_args)
    workers = int(spec["config"].get("workers", 1))
    cluster_job = spec["config"].get("cluster_job")
    if cluster_job and "TF_CONFIG" not in os.environ:
        launch_cluster_job(spec, cluster_job)
    elif (workers > 1 or spec["config"].get("threads")) and "TF_CONFIG" not in os.environ:
        # A set thread count (tuning) needs a fresh process: in the pipeline's process TF is
        # already initialised and its thread pools can no longer change.
        launch_local_workers(spec, workers)
    else:
        train(spec)


def fault_tolerance_callbacks(spec: dict, chief: bool, index: int) -> list:
    """``BackupAndRestore`` (TF's fault tolerance for MultiWorkerMirroredStrategy: a backup of
    the model, optimizer and epoch after every epoch; a relaunched job restores it in
    ``fit`` and goes on from the next epoch) and the progress it made, for the logs, the
    launcher and :mod:`components.common.fault`'s events.

    Every worker restores (and takes part in the backup's collectives); only the chief writes the
    backup. The local launcher removes the backup folder once every worker has finished."""
    import tensorflow as tf


    folder = backup_dir(spec)
    if folder is None:
        return []
    attempt = int(os.environ.get(fault.ATTEMPT_ENV, "0"))

    class _Progress(tf.keras.callbacks.Callback):
        _supports_tf_logs = True
        resumed_epoch = 0

        def on_epoch_begin(self, epoch, logs=None):  # the first: after the restore
            self.resumed_epoch = epoch
            if epoch:
                log.info("[tfx][train][worker %d] resuming from the backup at epoch %d (attempt "
                         "%d)", index, epoch, attempt + 1)
            fault.record("start", stack="tfx", rank=index, attempt=attempt, resumed_epoch=epoch)
            self.on_epoch_begin = super().on_epoch_begin  # type: ignore[method-assign]

        def on_train_batch_end(self, batch, logs=None):  # once: training is progressing
            fault.record("step", stack="tfx", rank=index, attempt=attempt)
            self.on_train_batch_end = super().on_train_batch_end  # type: ignore[method-assign]

        def on_epoch_end(self, epoch, logs=None):  # after BackupAndRestore saved this epoch
            if chief:
                storage.write_json(storage.join(folder, BACKUP_PROGRESS), {"epochs_done": epoch + 1})
                fault.record("epoch_end", stack="tfx", rank=index, attempt=attempt, epoch=epoch)

        def on_train_end(self, logs=None):
            # The backup folder is not removed here: another worker may still be writing its
            # last backup into it. The local launcher removes it once every worker has exited.
            if chief:
                fault.record("end", stack="tfx", rank=index, attempt=attempt)

    return [tf.keras.callbacks.BackupAndRestore(folder), _Progress()]


def train(spec: dict) -> dict:
    """Trains under the strategy TF_CONFIG implies and saves the serving model (chief only)."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from components.tfx.transform import LABEL_KEY

    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    n_workers, index, chief = cluster_role(tf_config)
    strategy, strategy_name = worker_strategy(n_workers)
    cfg = spec["config"]
    replicas = strategy.num_replicas_in_sync
    global_batch = int(cfg["batch_size"]) * replicas
    # Known from ingest on local runs; counted here when compiled for a cluster (rows unknown).
    train_rows = int(cfg.get("train_rows") or count_records(
        spec["train_files"], cfg.get("examples_format", TFRECORD)))
    if train_rows <= 0:
        raise ValueError(f"[tfx][train] no train rows in {spec['train_files']}: nothing to train on")
    # Fewer rows than a global batch still train: the dataset repeats, so each step's batch is
    # full (rows reused) and every worker takes the same steps_per_epoch steps.
    steps_per_epoch = max(1, math.ceil(train_rows / global_batch))
    epochs = int(cfg["epochs"])
    log.info("[tfx][train] %s, %d worker(s), %d replica(s), global batch %d, %d steps x %d epochs",
             strategy_name, n_workers, replicas, global_batch, steps_per_epoch, epochs)

    # One seed for the initial weights and the shuffle on every worker and every (re)launch: a run
    # is reproducible, and a relaunch that resumes differs from an undisturbed run only by the
    # kill (the torch app seeds the same way).
    seed = int(cfg.get("seed", 0))
    tf.keras.utils.set_random_seed(seed)
    tft_output = tft.TFTransformOutput(spec["transform_output"])
    train_ds = train_dataset(spec, tft_output, LABEL_KEY, global_batch, shuffle=True, seed=seed,
                             strategy=strategy)
    with strategy.scope():
        model = build_model(tft_output, cfg)

    class _Clock(tf.keras.callbacks.Callback):
        """Steady-state throughput: the clock starts after the first execution (which traces the
        step function). Its batch hook runs once per ``steps_per_execution`` steps, and only until
        it has started the clock: then it unhooks itself, so nothing runs per batch after. It
        takes the logs as tensors (``_supports_tf_logs``): no per-batch copy of them to NumPy,
        which would wait for the step to finish."""

        _supports_tf_logs = True

        def on_train_batch_end(self, batch, logs=None):
            self.t0, self.steps_at_t0 = time.perf_counter(), batch + 1
            self.on_train_batch_end = super().on_train_batch_end  # type: ignore[method-assign]

        def on_train_end(self, logs=None):
            self.t1 = time.perf_counter()

    clock = _Clock()
    recovery = fault_tolerance_callbacks(spec, chief, index)
    t0 = time.perf_counter()
    history = model.fit(
        train_ds, epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=[*recovery, clock],
        verbose=2 if chief else 0,
    )
    wall = time.perf_counter() - t0
    resumed_from = recovery[-1].resumed_epoch if recovery else 0
    steps = steps_per_epoch * (epochs - resumed_from)  # this process's steps
    timed = steps - getattr(clock, "steps_at_t0", steps)
    samples_per_s = timed * global_batch / max(clock.t1 - clock.t0, 1e-9) if timed > 0 else 0.0

    if report_dir() is not None:  # every worker, so replicas on different hosts can be compared
        names = [w.name for w in model.weights]
        write_replica_report(
            "tfx", index, n_workers, weights_digest(zip(names, model.get_weights(), strict=True)),
            task=tf_config.get("task", {}), cluster=tf_config.get("cluster", {}),
            strategy=strategy_name, replicas=replicas, steps=steps)

    feature_names = set(cfg["numeric"]) | set(cfg["categorical"])
    signatures, raw_error = serving_signatures(model, tft_output, feature_names)
    # Every MultiWorkerMirroredStrategy worker must save (the save runs collectives); only the
    # chief's copy is the model, the others write to scratch space.
    # The launcher's run folder holds the scratch copies and removes them, even after a crash.
    target = (spec["serving_model_dir"] if chief
              else tempfile.mkdtemp(prefix=f"worker{index}-", dir=spec.get("scratch_dir")))
    try:
        save_serving_model(model, target, signatures, raw_error)
    finally:
        if not chief:
            shutil.rmtree(target, ignore_errors=True)

    metrics = {
        "strategy": strategy_name,
        "workers": n_workers,
        "replicas": replicas,
        "global_batch": global_batch,
        "steps": steps,
        "epochs": epochs,
        "resumed_from_epoch": resumed_from,
        "train_wall_s": round(wall, 3),
        "samples_per_s": round(samples_per_s, 1),
        "samples": steps * global_batch,
        "final_loss": float(history.history["loss"][-1]),
        "devices": [d.name for d in tf.config.list_logical_devices()],
    }
    if chief:  # model_run_dir is the Trainer's artifact: a gs:// URI when the root is a bucket
        storage.write_json(storage.join(spec["model_run_dir"], TRAIN_METRICS), metrics)
        log.info("[tfx][train] %.0f samples/s (%d workers)", samples_per_s, n_workers)
    return metrics


def _main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("twinpipe").setLevel(logging.INFO)

    spec = storage.read_json(argv[1])  # a local file, or the gs:// spec a cluster job reads
    if contract := os.environ.get("TWINPIPE_CONTRACT"):  # set on cluster jobs: the run's lineage
        log.info("[tfx][train] contract %s", contract)
    missing = [k for k in SPEC_KEYS if k not in spec]
    if missing:  # before TensorFlow's import: a bad spec fails every worker within a second
        raise ValueError(f"[tfx][train] training spec {argv[1]} lacks {missing}")
    if "probe" in spec:  # the report's scaling probe (comparison.scaling), launched like training
        from components.tfx.scaling_probe import probe_worker

        probe_worker(spec)
    else:
        train(spec)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
