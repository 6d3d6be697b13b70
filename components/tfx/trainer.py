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
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from components.common.replicas import report_dir, weights_digest, write_replica_report

log = logging.getLogger("twinpipe.tfx.train")

SERVING_SIGNATURE = "serving_default"
TRAIN_METRICS = "train_metrics.json"
# Train steps Keras runs inside one tf.function call: a small MLP's step is ~1 ms of math, so one
# Python round trip (and callback dispatch) per step was a large share of the loop. Batch-level
# callbacks then run once per execution, not per step.
STEPS_PER_EXECUTION = 64


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


TRAIN_SPEC = "train-spec.json"


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


def launch_cluster_job(spec: dict, cluster_job: dict) -> None:
    """Writes the training spec beside the model run (object storage on a cluster, where every
    training pod reads it) and runs the cluster job that trains on it."""
    from components.common import storage
    from components.tfx.launch import ClusterJob, submit_and_wait

    job = ClusterJob.from_dict(cluster_job)
    spec_uri = storage.join(spec["model_run_dir"], TRAIN_SPEC)
    storage.write_json(spec_uri, spec)
    submit_and_wait(job, spec_uri, run_key=spec["model_run_dir"])


# TF's CPU build prints these on every start; they say nothing about the run.
_NOISE = ("Unable to register cuFFT", "Unable to register cuDNN", "Unable to register cuBLAS",
          "TF-TRT Warning", "could not open file to read NUMA node")


def _stream(proc: subprocess.Popen, prefix: str) -> None:
    for line in proc.stdout:  # type: ignore[union-attr]
        if not any(n in line for n in _NOISE):
            sys.stderr.write(f"{prefix} {line}")


# How long the launcher lets the other workers stop after SIGTERM (one worker failed) before it
# sends SIGKILL: a MultiWorkerMirroredStrategy sibling can otherwise hang in a collective.
WORKER_GRACE_S = 5.0


@dataclass
class Supervised:
    """What :func:`supervise` saw: every process's exit code (``-N``: killed by signal N), the
    index of the first one that failed (None when all exited 0), and the ones it stopped."""

    codes: list[int]
    failed: int | None = None
    stopped: list[int] = field(default_factory=list)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def supervise(procs: list[subprocess.Popen], grace_s: float = WORKER_GRACE_S,
              poll_s: float = 0.1) -> Supervised:
    """Waits for ``procs``; as soon as one exits non-zero, the others get SIGTERM, then SIGKILL
    after ``grace_s`` seconds. Returns when every process has exited."""
    failed = None
    while failed is None:
        codes = [p.poll() for p in procs]
        failed = next((i for i, c in enumerate(codes) if c not in (None, 0)), None)
        if failed is None:
            if all(c is not None for c in codes):
                return Supervised(codes)  # type: ignore[arg-type]
            time.sleep(poll_s)
    stopped = [i for i, p in enumerate(procs) if p.poll() is None]
    stop(procs, grace_s)
    return Supervised([p.returncode for p in procs], failed, stopped)


def stop(procs: list[subprocess.Popen], grace_s: float = WORKER_GRACE_S) -> None:
    """SIGTERM to the running ``procs``, SIGKILL to those still running ``grace_s`` later."""
    running = [p for p in procs if p.poll() is None]
    for p in running:
        p.terminate()
    deadline = time.monotonic() + grace_s
    for p in running:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def launch_local_workers(spec: dict, workers: int, grace_s: float = WORKER_GRACE_S) -> None:
    """Runs ``workers`` training processes on localhost with a shared TF_CONFIG cluster.

    When one worker fails the others are stopped (:func:`supervise`) and RuntimeError names it.
    The spec file and the workers' scratch space live in one temporary folder, always removed.
    """
    import portpicker

    ports = [portpicker.pick_unused_port() for _ in range(workers)]
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    run_dir = tempfile.mkdtemp(prefix="tfx-train-")
    procs: list[subprocess.Popen] = []
    threads = []
    try:
        spec_path = os.path.join(run_dir, "spec.json")
        with open(spec_path, "w") as f:
            json.dump({**spec, "scratch_dir": run_dir}, f)
        threads_per_worker = int(spec["config"].get("threads")
                                 or max(1, (os.cpu_count() or 1) // workers))
        for i in range(workers):
            env = dict(os.environ)
            env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
            env["TWINPIPE_THREADS"] = str(threads_per_worker)
            proc = subprocess.Popen(
                [sys.executable, "-m", "components.tfx.trainer", spec_path],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            procs.append(proc)
            t = threading.Thread(target=_stream, args=(proc, f"[tfx][train][worker {i}]"), daemon=True)
            t.start()
            threads.append(t)
        outcome = supervise(procs, grace_s)
    finally:
        stop(procs, grace_s)  # an exception above (or Ctrl-C) leaves no worker running
        for t in threads:
            t.join(timeout=5)
        shutil.rmtree(run_dir, ignore_errors=True)
    if outcome.failed is not None:
        stopped = (f"; stopped the other worker(s) {outcome.stopped}" if outcome.stopped else "")
        raise RuntimeError(
            f"[tfx][train] worker {outcome.failed} of {workers} "
            f"{_describe(outcome.codes[outcome.failed])}: multi-worker training failed "
            f"(exit codes {outcome.codes}{stopped}; see the [tfx][train][worker "
            f"{outcome.failed}] lines above)"
        )


def _dataset(patterns, feature_spec, label_key, batch_size, shuffle, seed=0):
    import tensorflow as tf

    files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
    if shuffle:
        ds = ds.shuffle(100_000, seed=seed, reshuffle_each_iteration=True)
    ds = ds.repeat().batch(batch_size, drop_remainder=True)

    def parse(records):
        feats = tf.io.parse_example(records, feature_spec)
        label = feats.pop(label_key)
        return feats, label

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return ds.with_options(options)


def _count_records(patterns) -> int:
    import tensorflow as tf

    files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())


def build_model(tft_output, config: dict):
    """A small tabular MLP: z-scored numerics + one embedding per categorical."""
    import tensorflow as tf

    keras = tf.keras
    inputs, parts = {}, []
    for name in config["numeric"]:
        inputs[name] = keras.Input(shape=(), name=name, dtype=tf.float32)
        parts.append(keras.layers.Reshape((1,))(inputs[name]))
    for name in config["categorical"]:
        vocab = tft_output.vocabulary_size_by_name(name) + 1  # + the OOV bucket
        inputs[name] = keras.Input(shape=(), name=name, dtype=tf.int64)
        dim = min(8, max(2, int(round(vocab**0.5))))
        parts.append(keras.layers.Embedding(vocab, dim, name=f"emb_{name}")(inputs[name]))
    if not parts:
        raise ValueError("[tfx][train] no feature columns: numeric and categorical are both empty")
    # One feature column (one part) is the MLP's input itself: no Concatenate over a single input
    # (a no-op layer here, an error in Keras versions that want two inputs or more).
    x = keras.layers.Concatenate()(parts) if len(parts) > 1 else parts[0]
    for units in config.get("hidden_units", [64, 32]):
        x = keras.layers.Dense(units, activation="relu")(x)
    out = keras.layers.Dense(1, activation="sigmoid", name="probability")(x)
    model = keras.Model(inputs=inputs, outputs=out)
    model.compile(
        optimizer=keras.optimizers.Adam(config.get("learning_rate", 1e-3)),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
        steps_per_execution=int(config.get("steps_per_execution", STEPS_PER_EXECUTION)),
    )
    return model


def _serving_fn(model, tft_output, feature_names):
    import tensorflow as tf

    model.tft_layer = tft_output.transform_features_layer()
    raw_spec = {k: v for k, v in tft_output.raw_feature_spec().items() if k in feature_names}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(serialized):
        parsed = tf.io.parse_example(serialized, raw_spec)
        transformed = model.tft_layer(parsed)
        return {"probability": tf.squeeze(model(transformed), axis=1)}

    return serve


def cluster_role(tf_config: dict) -> tuple[int, int, bool]:
    """(training replicas, this one's global index, is it the chief) from a TF_CONFIG.

    Volcano's plugin and the local launcher name only ``worker`` tasks (worker 0 is the chief);
    Vertex names a ``chief`` plus ``worker`` tasks, whose index restarts at 0 after the chief."""
    cluster = tf_config.get("cluster", {})
    chiefs = len(cluster.get("chief", []))
    n = chiefs + len(cluster.get("worker", []))
    task = tf_config.get("task", {})
    index = int(task.get("index", 0))
    if task.get("type") == "chief":
        return max(n, 1), index, True
    return max(n, 1), chiefs + index, chiefs == 0 and index == 0


def train(spec: dict) -> dict:
    """Trains under the strategy TF_CONFIG implies and saves the serving model (chief only)."""
    threads = os.environ.get("TWINPIPE_THREADS")
    import tensorflow as tf
    import tensorflow_transform as tft

    from components.tfx.transform import LABEL_KEY

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(threads))
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    n_workers, index, chief = cluster_role(tf_config)
    if n_workers > 1:
        strategy, strategy_name = tf.distribute.MultiWorkerMirroredStrategy(), "MultiWorkerMirroredStrategy"
    else:
        strategy, strategy_name = tf.distribute.MirroredStrategy(), "MirroredStrategy"
    cfg = spec["config"]
    replicas = strategy.num_replicas_in_sync
    global_batch = int(cfg["batch_size"]) * replicas
    # Known from ingest on local runs; counted here when compiled for a cluster (rows unknown).
    train_rows = int(cfg.get("train_rows") or _count_records(spec["train_files"]))
    if train_rows <= 0:
        raise ValueError(f"[tfx][train] no train rows in {spec['train_files']}: nothing to train on")
    # Fewer rows than a global batch still train: the dataset repeats, so each step's batch is
    # full (rows reused) and every worker takes the same steps_per_epoch steps.
    steps_per_epoch = max(1, math.ceil(train_rows / global_batch))
    epochs = int(cfg["epochs"])
    log.info("[tfx][train] %s, %d worker(s), %d replica(s), global batch %d, %d steps x %d epochs",
             strategy_name, n_workers, replicas, global_batch, steps_per_epoch, epochs)

    tft_output = tft.TFTransformOutput(spec["transform_output"])
    feature_spec = tft_output.transformed_feature_spec()
    train_ds = _dataset(spec["train_files"], feature_spec, LABEL_KEY, global_batch, shuffle=True)
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
    t0 = time.perf_counter()
    history = model.fit(
        train_ds, epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=[clock],
        verbose=2 if chief else 0,
    )
    wall = time.perf_counter() - t0
    steps = steps_per_epoch * epochs
    timed = steps - getattr(clock, "steps_at_t0", steps)
    samples_per_s = timed * global_batch / max(clock.t1 - clock.t0, 1e-9) if timed > 0 else 0.0

    if report_dir() is not None:  # every worker, so replicas on different hosts can be compared
        names = [w.name for w in model.weights]
        write_replica_report(
            "tfx", index, n_workers, weights_digest(zip(names, model.get_weights(), strict=True)),
            task=tf_config.get("task", {}), cluster=tf_config.get("cluster", {}),
            strategy=strategy_name, replicas=replicas, steps=steps)

    feature_names = set(cfg["numeric"]) | set(cfg["categorical"])
    signatures = {SERVING_SIGNATURE: _serving_fn(model, tft_output, feature_names)}
    # Every MultiWorkerMirroredStrategy worker must save (the save runs collectives); only the
    # chief's copy is the model, the others write to scratch space.
    # The launcher's run folder holds the scratch copies and removes them, even after a crash.
    target = (spec["serving_model_dir"] if chief
              else tempfile.mkdtemp(prefix=f"worker{index}-", dir=spec.get("scratch_dir")))
    try:
        model.save(target, save_format="tf", signatures=signatures)
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
        "train_wall_s": round(wall, 3),
        "samples_per_s": round(samples_per_s, 1),
        "samples": steps * global_batch,
        "final_loss": float(history.history["loss"][-1]),
        "devices": [d.name for d in tf.config.list_logical_devices()],
    }
    if chief:  # model_run_dir is the Trainer's artifact: a gs:// URI when the root is a bucket
        from components.common import storage

        storage.write_json(storage.join(spec["model_run_dir"], TRAIN_METRICS), metrics)
        log.info("[tfx][train] %.0f samples/s (%d workers)", samples_per_s, n_workers)
    return metrics


def _main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("twinpipe").setLevel(logging.INFO)
    from components.common import storage

    spec = storage.read_json(argv[1])  # a local file, or the gs:// spec a cluster job reads
    if contract := os.environ.get("TWINPIPE_CONTRACT"):  # set on cluster jobs: the run's lineage
        log.info("[tfx][train] contract %s", contract)
    missing = [k for k in SPEC_KEYS if k not in spec]
    if missing:  # before TensorFlow's import: a bad spec fails every worker within a second
        raise ValueError(f"[tfx][train] training spec {argv[1]} lacks {missing}")
    train(spec)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
