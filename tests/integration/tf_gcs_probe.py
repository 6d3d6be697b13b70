"""Run inside the TF/GCS sandbox (tests/gcs_tf.py): TensorFlow's own GCS filesystem on a bucket.

``python -m tests.integration.tf_gcs_probe gs://BUCKET/PREFIX`` exercises, all through TF's C++
``gs://`` client: gfile writes, reads, listings, renames, globs and deletes; a Keras SavedModel saved
to the bucket and loaded back; a GZIP TFRecord file (as TFX writes examples) written and read. It
also reads ``PREFIX/from-gcsfs.txt``, which the test wrote through gcsfs. Prints one JSON line of
what it observed; the test asserts on it and on the bucket itself.
"""

from __future__ import annotations

import json
import sys


def main(prefix: str) -> dict:
    import numpy as np
    import tensorflow as tf

    gfile = tf.io.gfile
    seen: dict = {"from_gcsfs": gfile.GFile(f"{prefix}/from-gcsfs.txt").read()}

    gfile.makedirs(f"{prefix}/files/sub")
    for name, text in (("a.txt", "alpha"), ("b.txt", "beta"), ("sub/c.txt", "gamma")):
        with gfile.GFile(f"{prefix}/files/{name}", "w") as f:
            f.write(text)
    big = bytes(range(256)) * 4096  # 1 MiB: more than one read-ahead block
    with gfile.GFile(f"{prefix}/files/big.bin", "wb") as f:
        f.write(big)
    with gfile.GFile(f"{prefix}/files/big.bin", "rb") as f:
        f.seek(700_000)
        seen["big_slice_ok"] = f.read(1000) == big[700_000:701_000]
    seen["big_size"] = gfile.stat(f"{prefix}/files/big.bin").length
    seen["listdir"] = sorted(gfile.listdir(f"{prefix}/files"))
    gfile.rename(f"{prefix}/files/a.txt", f"{prefix}/files/renamed.txt")
    seen["after_rename"] = {"old": gfile.exists(f"{prefix}/files/a.txt"),
                            "new": gfile.GFile(f"{prefix}/files/renamed.txt").read()}
    seen["glob"] = sorted(gfile.glob(f"{prefix}/files/*.txt"))
    seen["isdir_sub"] = gfile.isdir(f"{prefix}/files/sub")
    gfile.remove(f"{prefix}/files/b.txt")
    seen["after_remove"] = gfile.exists(f"{prefix}/files/b.txt")

    tf.keras.utils.set_random_seed(7)
    inputs = np.random.default_rng(7).normal(size=(16, 4)).astype("float32")
    model = tf.keras.Sequential([tf.keras.layers.Dense(8, activation="relu", input_shape=(4,)),
                                 tf.keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(inputs, (inputs[:, 0] > 0).astype("float32"), epochs=2, verbose=0)
    model.save(f"{prefix}/model", save_format="tf")
    loaded = tf.keras.models.load_model(f"{prefix}/model")
    seen["model_scores_identical"] = bool(np.array_equal(model.predict(inputs, verbose=0),
                                                         loaded.predict(inputs, verbose=0)))

    records = f"{prefix}/examples/data.tfrecord.gz"
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(records, options) as writer:
        for i in range(50):
            feature = {"x": tf.train.Feature(int64_list=tf.train.Int64List(value=[i]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature))
                         .SerializeToString())
    parsed = [tf.train.Example.FromString(r.numpy()).features.feature["x"].int64_list.value[0]
              for r in tf.data.TFRecordDataset(records, compression_type="GZIP")]
    seen["tfrecord_values"] = parsed
    return seen


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
