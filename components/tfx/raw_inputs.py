"""One definition of the TFX stack's raw inputs as 1-D tensors (one value per row, NaN / "" for a
missing value) and of how they become what ``tf.io.parse_example`` would have given the Transform
layer. The ``serving_raw`` signature and the Trainer's Parquet input pipeline both use it, so
serving and training agree on what "missing" means.
"""

from __future__ import annotations


def is_varlen(feature) -> bool:
    """A VarLen raw feature: nullable in the contract (the Transform gets a SparseTensor)."""
    import tensorflow as tf

    return isinstance(feature, tf.io.VarLenFeature)


def raw_input_dtype(feature) -> str:
    """The 1-D tensor's dtype for one raw feature spec (tf.io FixedLen/VarLenFeature).

    A missing value (a VarLen feature) is NaN for floats and ``""`` for strings (the Transform's
    own default for an absent string); a nullable int arrives as float64 with NaN, since int64 has
    no missing value."""
    import tensorflow as tf

    if feature.dtype == tf.string:
        return "string"
    if feature.dtype == tf.int64:
        return "float64" if is_varlen(feature) else "int64"
    return "float32"


def as_parsed(feature, x):
    """A 1-D raw tensor as ``parse_example`` gives it: a required feature [N, 1], a nullable one a
    SparseTensor [N, 1] holding only the present values (NaN / "" = absent)."""
    import tensorflow as tf

    if not is_varlen(feature):
        return tf.expand_dims(x, 1)
    present = (tf.strings.length(x) > 0 if x.dtype == tf.string
               else tf.logical_not(tf.math.is_nan(x)))
    rows = tf.where(present)
    values = tf.boolean_mask(x, present)
    if feature.dtype == tf.int64:
        values = tf.cast(values, tf.int64)
    return tf.SparseTensor(tf.concat([rows, tf.zeros_like(rows)], axis=1), values,
                           tf.stack([tf.shape(x, out_type=tf.int64)[0], 1]))
