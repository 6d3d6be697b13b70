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

from components.common import fault
from components.common.config import STEPS_PER_EXECUTION
from components.common.replicas import report_dir, weights_digest, write_replica_report
from components.common.threads import (
    COLLECTIVE_ENV,
    THREADS_ENV,
    threads_per_worker,
    visible_gpus,
    worker_gpu_env,
)

log = logging.getLogger("twinpipe.tfx.train")

SERVING_SIGNATURE = "serving_default"
RAW_SIGNATURE = "serving_raw"  # raw feature tensors in, the Transform layer inside (issue 15)
RAW_SIGNATURE_ERROR = "serving_raw.error.txt"  # under assets.extra/ when serving_raw failed
TRAIN_METRICS = "train_metrics.json"


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


# How often the local launcher relaunches the workers after one failed (as torchrun's
# --max_restarts for the torch stack): each relaunch resumes from the BackupAndRestore backup.
WORKER_MAX_RESTARTS = 3
BACKUP_PROGRESS = "progress.json"  # in the backup folder: the epochs it holds (for the logs)


def backup_dir(spec: dict) -> str | None:
    """Where :func:`fault_tolerance_callbacks` backs training up: ``backup/`` in the Trainer's
    model run folder (object storage when the run is there, so relaunched pods on other nodes
    find it), or the spec's own ``backup_dir``; None for a spec without a model run folder."""
    from components.common import storage

    if spec.get("backup_dir"):
        return spec["backup_dir"]
    return storage.join(spec["model_run_dir"], "backup") if spec.get("model_run_dir") else None


def backed_up_epochs(spec: dict) -> int:
    """The epochs the backup holds (0: none yet, training would start from scratch)."""
    from components.common import storage

    folder = backup_dir(spec)
    marker = storage.join(folder, BACKUP_PROGRESS) if folder else None
    if not marker or not storage.exists(marker):
        return 0
    return int(storage.read_json(marker)["epochs_done"])


def _start_workers(spec_path: str, workers: int, attempt: int, pinned: int, gpus: list[str],
                   procs: list[subprocess.Popen], threads: list[threading.Thread]) -> None:
    """Starts ``workers`` training processes on fresh localhost ports (a relaunch must not meet
    the previous attempt's sockets), each with its TF_CONFIG, their output streamed with a
    ``[tfx][train][worker i]`` prefix, pinned to ``pinned`` threads and given its own share of
    ``gpus`` when there are any (:func:`worker_gpu_env`); into ``procs``/``threads`` as they
    start, so that the caller stops those already running if a later one fails to start."""
    import portpicker

    ports = [portpicker.pick_unused_port() for _ in range(workers)]
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    for i in range(workers):
        env = dict(os.environ) | worker_gpu_env(i, workers, gpus)
        env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        env[THREADS_ENV] = str(pinned)
        env[fault.ATTEMPT_ENV] = str(attempt)
        proc = subprocess.Popen(
            [sys.executable, "-m", "components.tfx.trainer", spec_path],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        procs.append(proc)
        t = threading.Thread(target=_stream, args=(proc, f"[tfx][train][worker {i}]"), daemon=True)
        t.start()
        threads.append(t)


def launch_local_workers(spec: dict, workers: int, grace_s: float = WORKER_GRACE_S,
                         worker_threads: int | None = None, max_restarts: int | None = None) -> None:
    """Runs ``workers`` training processes on localhost with a shared TF_CONFIG cluster, each
    pinned to ``worker_threads`` intra-op threads (default: the tuned ``config["threads"]``, else
    :func:`threads_per_worker`).

    When one worker fails the others are stopped (:func:`supervise`): a MultiWorkerMirroredStrategy
    job cannot go on without every worker. Then, as TF recommends for that strategy, the whole
    job is relaunched, up to ``max_restarts`` times (``config["max_restarts"]``, default
    :data:`WORKER_MAX_RESTARTS`), and resumes from the ``BackupAndRestore`` backup of the last
    finished epoch. When the restarts are spent, RuntimeError names the failed worker.
    The spec file and the workers' scratch space live in one temporary folder, always removed.
    """
    if max_restarts is None:
        max_restarts = int(spec.get("config", {}).get("max_restarts", WORKER_MAX_RESTARTS))
    attempts = max_restarts + 1
    # what every attempt's workers get: the same threads and (when there are any) GPUs
    pinned = threads_per_worker(workers, worker_threads or spec.get("config", {}).get("threads"))
    gpus = visible_gpus() if workers > 1 else []
    run_dir = tempfile.mkdtemp(prefix="tfx-train-")
    try:
        spec_path = os.path.join(run_dir, "spec.json")
        with open(spec_path, "w") as f:
            json.dump({**spec, "scratch_dir": run_dir}, f)
        for attempt in range(attempts):
            procs: list[subprocess.Popen] = []
            threads: list[threading.Thread] = []
            try:
                _start_workers(spec_path, workers, attempt, pinned, gpus, procs, threads)
                outcome = supervise(procs, grace_s)
            finally:
                stop(procs, grace_s)  # an exception above (or Ctrl-C) leaves no worker running
                for t in threads:
                    t.join(timeout=5)
            if outcome.failed is None:  # every worker done: the backup has served
                from components.common import storage

                folder = backup_dir(spec)
                if folder and storage.exists(folder):
                    storage.rm(folder, recursive=True)
                return
            what = f"worker {outcome.failed} {_describe(outcome.codes[outcome.failed])}"
            fault.record("failed", stack="tfx", worker=outcome.failed, attempt=attempt,
                         code=outcome.codes[outcome.failed])
            if attempt + 1 < attempts:
                epoch = backed_up_epochs(spec)
                log.warning("[tfx][train] %s; relaunching attempt %d/%d (max_restarts %d), %s",
                            what, attempt + 2, attempts, max_restarts,
                            f"resuming from the backup at epoch {epoch}" if epoch
                            else "no backup yet: from the start")
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    stopped = (f"; stopped the other worker(s) {outcome.stopped}" if outcome.stopped else "")
    raise RuntimeError(
        f"[tfx][train] worker {outcome.failed} of {workers} "
        f"{_describe(outcome.codes[outcome.failed])}: multi-worker training failed after "
        f"{attempts} attempt(s) (max_restarts {max_restarts}; exit codes {outcome.codes}"
        f"{stopped}; see the [tfx][train][worker {outcome.failed}] lines above)"
    )


def fault_tolerance_callbacks(spec: dict, chief: bool, index: int) -> list:
    """``BackupAndRestore`` (TF's fault tolerance for MultiWorkerMirroredStrategy: a backup of
    the model, optimizer and epoch after every epoch; a relaunched job restores it in
    ``fit`` and goes on from the next epoch) and the progress it made, for the logs, the
    launcher and :mod:`components.common.fault`'s events.

    Every worker restores (and takes part in the backup's collectives); only the chief writes the
    backup. The local launcher removes the backup folder once every worker has finished."""
    import tensorflow as tf

    from components.common import storage

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
    """``serving_default``: serialized tf.Examples -> parse -> the Transform layer -> P."""
    import tensorflow as tf

    model.tft_layer = tft_output.transform_features_layer()
    raw_spec = {k: v for k, v in tft_output.raw_feature_spec().items() if k in feature_names}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(serialized):
        parsed = tf.io.parse_example(serialized, raw_spec)
        transformed = model.tft_layer(parsed)
        return {"probability": tf.squeeze(model(transformed), axis=1)}

    return serve


def raw_input_dtype(feature) -> str:
    """The raw-tensor signature's dtype for one raw feature spec (tf.io FixedLen/VarLenFeature).

    Each input is a 1-D tensor, one value per row. A missing value (a VarLen feature: nullable in
    the contract) is NaN for floats and ``""`` for strings (the Transform's own default for an
    absent string); a nullable int arrives as float64 with NaN, since int64 has no missing value.
    """
    import tensorflow as tf

    if feature.dtype == tf.string:
        return "string"
    if feature.dtype == tf.int64:
        return "float64" if _is_varlen(feature) else "int64"
    return "float32"


def _is_varlen(feature) -> bool:
    import tensorflow as tf

    return isinstance(feature, tf.io.VarLenFeature)


def _raw_serving_fn(model, tft_output, feature_names):
    """``serving_raw``: one 1-D tensor per raw feature (no tf.Example) -> the Transform layer -> P.

    What tf.io.parse_example would give the Transform layer is rebuilt from the dense inputs: a
    required feature becomes [N, 1], a nullable one a SparseTensor [N, 1] holding only the present
    values (NaN / "" = absent, :func:`raw_input_dtype`). TFLite converts from this signature: no
    string parsing of protos inside.

    The batch gets one padding row, whose probability is dropped: the TFLite runtime (TF 2.16)
    fails on a batch of one row whose nullable numeric feature is missing (an empty SparseTensor
    there loses its rank before the model's Concatenate); the pad row's numbers are present (0),
    its strings a copy of row 0's. The TF runtime gives the same probabilities either way."""
    import tensorflow as tf

    if not hasattr(model, "tft_layer"):
        model.tft_layer = tft_output.transform_features_layer()
    raw_spec = {k: v for k, v in sorted(tft_output.raw_feature_spec().items()) if k in feature_names}
    names = list(raw_spec)
    specs = [tf.TensorSpec([None], tf.dtypes.as_dtype(raw_input_dtype(raw_spec[n])), name=n)
             for n in names]

    def as_parsed(name, x):
        feature = raw_spec[name]
        if not _is_varlen(feature):
            return tf.expand_dims(x, 1)
        present = (tf.strings.length(x) > 0 if x.dtype == tf.string
                   else tf.logical_not(tf.math.is_nan(x)))
        rows = tf.where(present)
        values = tf.boolean_mask(x, present)
        if feature.dtype == tf.int64:
            values = tf.cast(values, tf.int64)
        return tf.SparseTensor(tf.concat([rows, tf.zeros_like(rows)], axis=1), values,
                               tf.stack([tf.shape(x, out_type=tf.int64)[0], 1]))

    def padded(x):  # one more row (see the docstring)
        if x.dtype == tf.string:  # a copy of row 0: TFLite's builtin Gather takes strings, Concat not
            return tf.gather(x, tf.concat([tf.range(tf.shape(x)[0]), [0]], axis=0))
        return tf.concat([x, tf.zeros([1], x.dtype)], axis=0)  # 0: a present value

    @tf.function(input_signature=specs)
    def serve(*tensors):
        parsed = {n: as_parsed(n, padded(x)) for n, x in zip(names, tensors, strict=True)}
        transformed = model.tft_layer(parsed)
        return {"probability": tf.squeeze(model(transformed), axis=1)[:-1]}

    return serve


def serving_signatures(model, tft_output, feature_names) -> tuple[dict, str | None]:
    """The SavedModel's signatures: ``serving_default`` (tf.Examples) and, unless it cannot be
    traced, ``serving_raw`` (raw feature tensors); and that failure's error, else None. A
    ``serving_raw`` failure never fails training: its error goes to ``assets.extra/``
    (:data:`RAW_SIGNATURE_ERROR`), which push records."""
    signatures = {SERVING_SIGNATURE: _serving_fn(model, tft_output, feature_names)}
    try:
        raw = _raw_serving_fn(model, tft_output, feature_names)
        raw.get_concrete_function()  # traces now: an error surfaces here, not inside model.save
        signatures[RAW_SIGNATURE] = raw
    except Exception as e:  # noqa: BLE001 — recorded, see the docstring
        log.warning("[tfx][train] no %s signature: %s", RAW_SIGNATURE, e)
        return signatures, f"{type(e).__name__}: {e}"
    return signatures, None


def _save_serving_model(model, target: str, signatures: dict, error: str | None) -> None:
    """model.save with the signatures of :func:`serving_signatures` (and the raw signature's
    error, if any, as ``assets.extra/`` text)."""
    import tensorflow as tf

    model.save(target, save_format="tf", signatures=signatures)
    if error is not None:
        tf.io.gfile.makedirs(f"{target}/assets.extra")
        with tf.io.gfile.GFile(f"{target}/assets.extra/{RAW_SIGNATURE_ERROR}", "w") as f:
            f.write(error)


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


def worker_strategy(n_workers: int):
    """(strategy, its name) for a worker of ``n_workers``, after pinning this process's threads to
    ``TWINPIPE_THREADS`` when set (before TensorFlow creates its thread pools, which the strategy's
    creation does)."""
    import tensorflow as tf

    if threads := os.environ.get(THREADS_ENV):
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(threads))
    if n_workers > 1:
        options = None
        if os.environ.get(COLLECTIVE_ENV) == "RING":  # workers sharing a GPU (no NCCL then)
            options = tf.distribute.experimental.CommunicationOptions(
                implementation=tf.distribute.experimental.CommunicationImplementation.RING)
        return (tf.distribute.MultiWorkerMirroredStrategy(communication_options=options),
                "MultiWorkerMirroredStrategy")
    return tf.distribute.MirroredStrategy(), "MirroredStrategy"


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
    train_rows = int(cfg.get("train_rows") or _count_records(spec["train_files"]))
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
    feature_spec = tft_output.transformed_feature_spec()
    train_ds = _dataset(spec["train_files"], feature_spec, LABEL_KEY, global_batch, shuffle=True,
                        seed=seed)
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
        _save_serving_model(model, target, signatures, raw_error)
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
    if "probe" in spec:  # the report's scaling probe (infra.scaling), launched like training
        from components.tfx.scaling_probe import probe_worker

        probe_worker(spec)
    else:
        train(spec)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
