"""The Transform component's executor with a fixed TFT batch size.

TFX's Transform executor hands TF Transform no desired batch size (``_GetDesiredBatchSize``
returns None for tf.Examples), so TFT batches adaptively from 1 row up to 1,000: its analyzers and
the transform graph then run once per small batch, a TF call and Arrow-to-tensor conversion each.
A fixed batch of :data:`TRANSFORM_BATCH_SIZE` rows runs that overhead ~8x less often on the
flights' ~20 narrow features (a few MiB of tensors per batch, per worker).
"""

from __future__ import annotations

from tfx.components.transform import executor as transform_executor

TRANSFORM_BATCH_SIZE = 8192


class BatchedTransformExecutor(transform_executor.Executor):
    """TFX's Transform executor; only the batch size it gives TFT differs."""

    def _GetDesiredBatchSize(self, data_format, schema):  # noqa: N802 (TFX API)
        # TFX's own answer first: 1 for SequenceExamples decoded as raw records.
        return super()._GetDesiredBatchSize(data_format, schema) or TRANSFORM_BATCH_SIZE
