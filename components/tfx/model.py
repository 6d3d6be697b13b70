"""The TFX stack's model: the Keras network, its input pipelines, and the distribution strategy a
worker trains under.

Two input pipelines, chosen by the Trainer config's ``examples_format``:

* ``tfrecord``: the Transform's materialized output (gzip TFRecords of transformed tf.Examples),
  parsed per batch;
* ``parquet``: ExampleGen's Parquet payload read with pyarrow a row group at a time, shuffled in
  NumPy, cut into global batches, and the Transform layer applied in the ``tf.data`` map (the
  Transform then materializes nothing). No tf.Example on the way.
"""

from __future__ import annotations

import os

from components.common import storage
from components.common.config import STEPS_PER_EXECUTION
from components.common.threads import (
    COLLECTIVE_ENV,
    THREADS_ENV,
)

TFRECORD, PARQUET = "tfrecord", "parquet"
EXAMPLES_FORMATS = (TFRECORD, PARQUET)


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


def count_records(patterns, examples_format: str = TFRECORD) -> int:
    import tensorflow as tf

    if examples_format == PARQUET:
        import pyarrow.parquet as pq

        total = 0
        for f in _files(patterns):
            with storage.open(f, "rb") as fh:
                total += pq.ParquetFile(fh).metadata.num_rows
        return total
    files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())

# Rows the Parquet reader shuffles together: whole row groups are read in a shuffled order, and
# the rows of this many are permuted (the TFRecord path's shuffle buffer holds as many).
SHUFFLE_ROWS = 100_000


def _files(patterns) -> list[str]:
    return sorted(f for p in patterns for f in storage.glob(p))


def _column_arrays(batch, raw_spec) -> dict:
    """One Arrow batch of the payload (list columns) as 1-D NumPy arrays, one value per row,
    NaN / b"" where a row has none (what the ``serving_raw`` signature takes)."""
    import numpy as np
    import pyarrow.compute as pc

    from components.tfx.raw_inputs import raw_input_dtype

    out = {}
    for name, feature in raw_spec.items():
        column = batch.column(batch.schema.get_field_index(name))
        if hasattr(column, "combine_chunks"):  # a Table's column
            column = column.combine_chunks()
        values = pc.list_element(column, 0)
        dtype = raw_input_dtype(feature)
        if dtype == "string":
            out[name] = np.asarray(values.fill_null(b"").to_numpy(zero_copy_only=False),
                                   dtype=object)
        elif dtype == "int64":
            out[name] = values.to_numpy(zero_copy_only=False).astype(np.int64)
        else:
            out[name] = values.cast("float64").fill_null(float("nan")).to_numpy(
                zero_copy_only=False).astype(dtype)
    return out


def _parquet_batches(files, raw_spec, batch_size: int, shuffle: bool, seed: int,
                     shard: tuple[int, int] = (0, 1)):
    """Endless batches of ``files`` (every row once per pass; row groups in a shuffled order and
    rows permuted within :data:`SHUFFLE_ROWS` when ``shuffle``). The last rows of a pass carry
    over into the next pass's first batch, so every batch is full. ``shard`` (index, count): only
    every count-th row group from the index-th, so that each worker reads its own part (all of
    them when there are fewer row groups than workers)."""
    import numpy as np
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    groups = []
    for f in files:
        with storage.open(f, "rb") as fh:
            groups += [(f, g) for g in range(pq.ParquetFile(fh).num_row_groups)]
    if not groups:
        raise ValueError(f"[tfx][train] no Parquet files in {files}")
    index, count = shard
    if count > 1 and len(groups) >= count:
        groups = groups[index::count]
    names = list(raw_spec)
    carry = None

    def emit(chunk):
        nonlocal carry
        if carry is not None:
            chunk = {n: np.concatenate([carry[n], chunk[n]]) for n in names}
        if shuffle:
            order = rng.permutation(len(chunk[names[0]]))
            chunk = {n: v[order] for n, v in chunk.items()}
        n = len(chunk[names[0]])
        full = n - n % batch_size
        for i in range(0, full, batch_size):
            yield {k: v[i:i + batch_size] for k, v in chunk.items()}
        carry = {k: v[full:] for k, v in chunk.items()}

    while True:
        buffer, rows = [], 0
        for f, g in (rng.permutation(groups).tolist() if shuffle else groups):
            with storage.open(f, "rb") as fh:
                table = pq.ParquetFile(fh).read_row_group(int(g), columns=names)
            buffer.append(_column_arrays(table, raw_spec))
            rows += table.num_rows
            if rows >= SHUFFLE_ROWS:
                yield from emit({n: np.concatenate([b[n] for b in buffer]) for n in names})
                buffer, rows = [], 0
        if buffer:
            yield from emit({n: np.concatenate([b[n] for b in buffer]) for n in names})


def parquet_dataset(patterns, tft_output, columns, label_key, batch_size, shuffle, seed=0,
                    shard: tuple[int, int] = (0, 1)):
    """(features, label) batches from ExampleGen's Parquet payload through the Transform layer;
    ``columns``: the raw columns the Transform reads (the contract's features and label);
    ``shard``: (index, count) of this input pipeline (see :func:`_parquet_batches`)."""
    import tensorflow as tf

    from components.tfx.raw_inputs import as_parsed, raw_input_dtype

    files = _files(patterns)
    raw_spec = {k: v for k, v in sorted(tft_output.raw_feature_spec().items()) if k in columns}
    signature = {n: tf.TensorSpec([batch_size], tf.dtypes.as_dtype(raw_input_dtype(f)))
                 for n, f in raw_spec.items()}
    ds = tf.data.Dataset.from_generator(
        lambda: _parquet_batches(files, raw_spec, batch_size, shuffle, seed, shard),
        output_signature=signature)
    tft_layer = tft_output.transform_features_layer()

    def transform(raw):
        feats = tft_layer({n: as_parsed(raw_spec[n], x) for n, x in raw.items()})
        label = feats.pop(label_key)
        return feats, label

    ds = ds.map(transform, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return ds.with_options(options)


def train_dataset(spec: dict, tft_output, label_key, batch_size, shuffle, seed=0, strategy=None):
    """The training input of a Trainer spec: its ``config["examples_format"]`` picks the reader
    (default ``tfrecord``, the Transform's materialized output).

    Parquet under a multi-worker ``strategy``: one input pipeline per worker, each reading its
    own row groups into per-replica batches (``distribute_datasets_from_function``), rather than
    every worker reading every row and keeping its share (what auto-sharding by data does), which
    doubles the input work on two workers sharing the cores."""
    if spec["config"].get("examples_format", TFRECORD) == PARQUET:
        cfg = spec["config"]
        columns = {*cfg["numeric"], *cfg["categorical"], cfg["label"]}
        if strategy is not None and strategy.extended._in_multi_worker_mode():  # noqa: SLF001
            return strategy.distribute_datasets_from_function(
                lambda ctx: parquet_dataset(
                    spec["train_files"], tft_output, columns, label_key,
                    ctx.get_per_replica_batch_size(batch_size),  # each local replica takes one
                    shuffle, seed, shard=(ctx.input_pipeline_id, ctx.num_input_pipelines)))
        return parquet_dataset(spec["train_files"], tft_output, columns, label_key, batch_size,
                               shuffle, seed)
    return input_dataset(spec["train_files"], tft_output.transformed_feature_spec(), label_key,
                         batch_size, shuffle, seed)


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
