"""The TFX stack's scaling probe: timed Keras steps at fixed threads per worker, one process per
worker, launched as training is (:func:`components.tfx.trainer.launch_local_workers`: TF_CONFIG,
``TWINPIPE_THREADS``) with a spec holding a ``probe`` entry.

Each worker builds the Trainer's model (:func:`components.tfx.trainer.build_model`) on the
Trainer's input pipeline over the Transform output, whose first batches are cached in memory (so
the steps time the training step, not the TFRecord parsing, whose tf.data threads the thread knob
does not pin), and for each per-worker batch in ``probe.batches`` runs two timed loops:

* ``fused``: Keras' own train function (what ``model.fit`` calls, ``steps_per_execution`` steps
  per call; under MultiWorkerMirroredStrategy the optimizer all-reduces the gradients inside the
  step): samples/s and mean step time;
* ``split``: the same step as three separately called ``tf.function``\\ s under the strategy —
  gradients (forward + backward; made dense, as torch's are), their all-reduce (the replica
  context's ``all_reduce``, the collective the optimizer would run), the optimizer update
  without aggregation — each timed from Python; compute = gradients + update, comm = the
  all-reduce, which also holds the wait for the slower worker. Each call is a Python round trip
  the fused loop does not make, so the split step is slower than the fused one; the parts are
  what the comparison is about.

Every worker writes its figures to ``probe.out_dir/worker-<index>.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

from components.tfx.model import build_model, cluster_role, train_dataset, worker_strategy

log = logging.getLogger("twinpipe.tfx.scaling")

# Global batches each phase cycles through, cached after their first pass.
HELD_BATCHES = 32


def fused(model, iterator, steps: int, warmup: int) -> dict:
    """Keras' train function (``steps_per_execution`` steps per call) over ``iterator``."""
    train_fn = model.make_train_function()
    per_call = int(model._steps_per_execution.numpy())
    for _ in range(max(1, math.ceil(warmup / per_call))):
        train_fn(iterator)
    calls = max(1, math.ceil(steps / per_call))
    t0 = time.perf_counter()
    for _ in range(calls):
        logs = train_fn(iterator)
    float(logs["loss"])  # its value: the last call has finished
    wall = time.perf_counter() - t0
    return {"steps": calls * per_call, "step_ms": round(1000 * wall / (calls * per_call), 4),
            "wall_s": wall}


def split(strategy, model, iterator, global_batch: int, steps: int, warmup: int) -> dict:
    """Gradients, all-reduce and update as three timed calls per step; the means in ms."""
    import numpy as np
    import tensorflow as tf

    variables = model.trainable_variables
    optimizer = model.optimizer

    def grads_of(x, y):
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            per_example = tf.keras.losses.binary_crossentropy(
                tf.reshape(tf.cast(y, tf.float32), (-1, 1)), pred)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
        # Dense, as torch's are: the embeddings' IndexedSlices would be all-gathered instead.
        return [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]

    @tf.function
    def compute(batch):
        return strategy.run(grads_of, args=batch)

    def reduce_replica(grads):
        # identity: placed on this replica's device (strategy.run's scope); the function's own
        # inputs carry no device, from which the collective would take its destinations.
        return tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, [tf.identity(g) for g in grads])

    @tf.function
    def all_reduce(grads):
        return strategy.run(reduce_replica, args=(grads,))

    @tf.function
    def update(grads):
        strategy.run(lambda g: optimizer.apply_gradients(zip(g, variables, strict=True),
                                                         skip_gradients_aggregation=True),
                     args=(grads,))

    def step() -> np.ndarray:
        t0 = time.perf_counter()
        batch = next(iterator)
        t1 = time.perf_counter()
        grads = compute(batch)
        t2 = time.perf_counter()
        reduced = all_reduce(grads)
        t3 = time.perf_counter()
        update(reduced)
        t4 = time.perf_counter()
        return np.array([t4 - t0, (t2 - t1) + (t4 - t3), t3 - t2])

    for _ in range(warmup):
        step()
    totals = sum(step() for _ in range(steps))
    step_ms, compute_ms, comm_ms = (1000 * totals / steps).tolist()
    return {"steps": steps, "step_ms": round(step_ms, 4), "compute_ms": round(compute_ms, 4),
            "comm_ms": round(comm_ms, 4)}


def probe_worker(spec: dict) -> dict:
    """One worker's probe: every per-worker batch of ``spec["probe"]["batches"]``, both loops."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from components.tfx.transform import LABEL_KEY

    probe, cfg = spec["probe"], spec["config"]
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    n_workers, index, chief = cluster_role(tf_config)
    strategy, strategy_name = worker_strategy(n_workers)
    replicas = strategy.num_replicas_in_sync
    tft_output = tft.TFTransformOutput(spec["transform_output"])
    steps, warmup = int(probe["steps"]), int(probe["warmup"])
    phases = []
    for size in (int(b) for b in probe["batches"]):
        global_batch = size * replicas
        ds = train_dataset(spec, tft_output, LABEL_KEY, global_batch, shuffle=False)
        ds = ds.take(HELD_BATCHES).cache().repeat()
        iterator = iter(strategy.experimental_distribute_dataset(ds))
        with strategy.scope():
            tf.keras.utils.set_random_seed(0)
            model = build_model(tft_output, cfg)
        f = fused(model, iterator, steps, max(warmup, HELD_BATCHES))
        phase = {"per_worker_batch": size, "global_batch": global_batch, "steps": f["steps"],
                 "samples_per_s": round(f["steps"] * global_batch / f["wall_s"], 1),
                 "step_ms": f["step_ms"],
                 "split": split(strategy, model, iterator, global_batch, steps, warmup)}
        phases.append(phase)
        if chief:
            log.info("[tfx][scaling] batch %d per worker: %.0f samples/s, step %.3f ms "
                     "(un-overlapped: compute %.3f + all-reduce %.3f ms)", size,
                     phase["samples_per_s"], phase["step_ms"], phase["split"]["compute_ms"],
                     phase["split"]["comm_ms"])
    doc = {"workers": n_workers, "index": index, "replicas": replicas, "strategy": strategy_name,
           # what TensorFlow runs with (0: its default, all cores)
           "threads": tf.config.threading.get_intra_op_parallelism_threads(),
           "devices": [d.name for d in tf.config.list_logical_devices()], "phases": phases}
    out = Path(probe["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"worker-{index}.json").write_text(json.dumps(doc, indent=2))
    return doc


def merge_workers(docs: list[dict]) -> dict:
    """The probe's figures from every worker's file: the chief's throughput and step time (the
    workers step in lockstep), each part of the un-overlapped step averaged over the workers."""
    if not docs:
        raise RuntimeError("[tfx][scaling] the probe's workers wrote no figures")
    chief = min(docs, key=lambda d: d["index"])
    phases = []
    for i, phase in enumerate(chief["phases"]):
        parts = [d["phases"][i]["split"] for d in docs]
        mean = {k: round(sum(p[k] for p in parts) / len(parts), 4)
                for k in ("step_ms", "compute_ms", "comm_ms")}
        phases.append({**phase, "split": {**phase["split"], **mean}})
    return {**{k: v for k, v in chief.items() if k != "index"}, "phases": phases}
