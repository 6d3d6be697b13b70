"""TF Transform preprocessing: analyzers run on the train split only (Transform splits_config).

Numeric features: missing values imputed with the train mean, then z-scored with the train
mean/variance. Categorical features: vocabulary from the train split, one OOV bucket.
The feature lists arrive through Transform's ``custom_config`` (built from the contract).
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

LABEL_KEY = "label"


def _as_float(x):
    if isinstance(x, tf.SparseTensor):
        return tf.SparseTensor(x.indices, tf.cast(x.values, tf.float32), x.dense_shape)
    return tf.cast(x, tf.float32)


def _dense(x, default):
    """[batch] dense tensor from a dense [batch, 1] or sparse [batch, <=1] input."""
    if isinstance(x, tf.SparseTensor):
        x = tft.sparse_tensor_to_dense_with_shape(x, [None, 1], default_value=default)
    return tf.squeeze(x, axis=1)


def preprocessing_fn(inputs, custom_config):
    """Raw contract features -> model inputs (names kept) + ``label``."""
    out = {}
    for name in custom_config["numeric"]:
        x = _as_float(inputs[name])
        mean, var = tft.mean(x), tft.var(x)
        dense = _dense(x, mean)
        out[name] = (dense - mean) / tf.sqrt(var + 1e-9)
    for name in custom_config["categorical"]:
        x = _dense(inputs[name], "")
        out[name] = tft.compute_and_apply_vocabulary(x, num_oov_buckets=1, vocab_filename=name)
    out[LABEL_KEY] = tf.cast(_dense(inputs[custom_config["label"]], 0), tf.float32)
    return out
