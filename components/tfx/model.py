"""The TFX stack's model: the Keras network, its input pipeline over the Transform output, and the
distribution strategy a worker trains under."""

from __future__ import annotations

import os

from components.common.config import STEPS_PER_EXECUTION
from components.common.threads import (
    COLLECTIVE_ENV,
    THREADS_ENV,
)


def input_dataset(patterns, feature_spec, label_key, batch_size, shuffle, seed=0):
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


def count_records(patterns) -> int:
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
