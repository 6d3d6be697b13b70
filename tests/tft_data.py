"""TF Transform output for trainer tests, made the way the pipeline's Transform component makes it.

Shared by the unit test of the Keras trainer and the multi-host integration test: both train
``components.tfx.trainer`` on real transformed examples without running the whole TFX pipeline.
"""

from pathlib import Path


def tfx_transform(contract, spans_dir: Path, out: Path) -> tuple[str, str]:
    """TF Transform with the pipeline's preprocessing_fn over the train split, as the Transform
    component runs it (analyzers on train): (transform output folder, transformed train files)."""
    import functools

    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
    from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder
    from tfx_bsl.public import tfxio

    from components.common.spans import read_spans
    from components.tfx.ingest import table_to_examples
    from components.tfx.schema import contract_to_schema
    from components.tfx.transform import preprocessing_fn

    schema = contract_to_schema(contract)
    config = {"numeric": [c.name for c in contract.numeric_features],
              "categorical": [c.name for c in contract.categorical_features],
              "label": contract.label.name}
    examples = table_to_examples(read_spans(spans_dir, "train"))
    record = tfxio.TFExampleBeamRecord(physical_format="inmem", telemetry_descriptors=["test"],
                                       schema=schema)
    transform_output = str(out / "transform")
    with beam.Pipeline() as p, tft_beam.Context(temp_dir=str(out / "tft-tmp")):
        raw = p | beam.Create(examples) | record.BeamSource()
        (transformed, _), transform_fn = (raw, record.TensorAdapterConfig()) | \
            tft_beam.AnalyzeAndTransformDataset(functools.partial(preprocessing_fn, custom_config=config),
                                                output_record_batches=True)
        _ = transform_fn | tft_beam.WriteTransformFn(transform_output)
        _ = (transformed
             | beam.FlatMap(lambda batch: RecordBatchToExamplesEncoder().encode(batch[0]))
             | beam.io.WriteToTFRecord(str(out / "transformed" / "train"), file_name_suffix=".gz"))
    metadata_io.write_metadata(dataset_metadata.DatasetMetadata(schema), f"{transform_output}/metadata")
    return transform_output, str(out / "transformed" / "train*")
