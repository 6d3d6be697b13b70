"""The TFX stack's candidate moves on the Parquet path, each measured against its alternative on
the same data in one invocation (``make bench-tfx-moves``, after ``make bench`` has written both
TFX paths' 1x runs):

    python -m benchmarks.tfx_moves --parquet-run OUT/bench/tfx/scale-1 \\
        --tfrecord-run OUT/bench/tfx-tfrecord/scale-1

1. **payload codec**: ExampleGen's Parquet payload (the train split) written and read back with
   snappy against no compression: seconds and bytes;
2. **Trainer input**: rows/s of the Trainer's input pipeline alone (no model) — the Parquet
   reader with the Transform layer in the ``tf.data`` map, the same reader without the map (what
   the layer costs), and the tf.Example path's parse of the materialized Transform output;
3. **Evaluator metrics**: TFMA over the eval split through ``serving_raw`` (one model, in-memory
   Beam), with every metric the Evaluator used to compute against only the blessing's.

Prints one table and one JSON line; each row's ratio is measured in this run.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def _one(pattern: str) -> list[str]:
    found = sorted(glob.glob(pattern))
    if not found:
        sys.exit(f"tfx_moves: nothing matches {pattern}: run `make bench` for both TFX paths first")
    return found


def codec(run: Path, tmp: Path) -> dict:
    import pyarrow.parquet as pq

    files = _one(f"{run}/tfx/pipeline_root/ingest/examples/*/Split-train/*.parquet")
    table = pq.read_table(files[0]) if len(files) == 1 else None
    if table is None:
        import pyarrow as pa

        table = pa.concat_tables([pq.read_table(f) for f in files])
    out = {}
    for name in ("snappy", "none"):
        path = tmp / f"payload-{name}.parquet"
        t0 = time.perf_counter()
        pq.write_table(table, path, compression=name, row_group_size=65536,
                       use_compliant_nested_type=False)
        write = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(3):
            pq.read_table(path)
        out[name] = {"write_s": round(write, 3), "read_s": round((time.perf_counter() - t0) / 3, 3),
                     "mib": round(path.stat().st_size / 2**20, 1)}
    out["rows"] = table.num_rows
    return out


def _rows_per_s(ds, batches: int, batch: int) -> float:
    it = iter(ds)
    next(it)  # tracing and the first read are start-up, not throughput
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return round(batches * batch / (time.perf_counter() - t0), 1)


def trainer_input(parquet_run: Path, tfrecord_run: Path, batch: int, batches: int) -> dict:
    import tensorflow as tf
    import tensorflow_transform as tft

    from components.common.contract import load_contract
    from components.tfx.model import _parquet_batches, input_dataset, parquet_dataset
    from components.tfx.raw_inputs import raw_input_dtype
    from components.tfx.transform import LABEL_KEY

    contract = load_contract()
    columns = {*(c.name for c in contract.features), contract.label.name}
    graph = _one(f"{parquet_run}/tfx/pipeline_root/transform/transform_graph/*")[0]
    payload = [f"{parquet_run}/tfx/pipeline_root/ingest/examples/*/Split-train/*.parquet"]
    tft_output = tft.TFTransformOutput(graph)
    out = {"parquet_with_transform_layer": _rows_per_s(
        parquet_dataset(payload, tft_output, columns, LABEL_KEY, batch, shuffle=True),
        batches, batch)}
    raw_spec = {k: v for k, v in sorted(tft_output.raw_feature_spec().items()) if k in columns}
    from components.tfx.model import _files

    files = _files(payload)
    raw = tf.data.Dataset.from_generator(
        lambda: _parquet_batches(files, raw_spec, batch, True, 0),
        output_signature={n: tf.TensorSpec([batch], tf.dtypes.as_dtype(raw_input_dtype(f)))
                          for n, f in raw_spec.items()}).prefetch(tf.data.AUTOTUNE)
    out["parquet_reader_only"] = _rows_per_s(raw, batches, batch)
    tgraph = _one(f"{tfrecord_run}/tfx/pipeline_root/transform/transform_graph/*")[0]
    transformed = _one(f"{tfrecord_run}/tfx/pipeline_root/transform/transformed_examples/*")[0]
    tout = tft.TFTransformOutput(tgraph)
    out["tfrecord_transformed"] = _rows_per_s(
        input_dataset([f"{transformed}/Split-train/*"], tout.transformed_feature_spec(), LABEL_KEY,
                      batch, shuffle=True), batches, batch)
    return out


def evaluator(run: Path, tmp: Path) -> dict:
    import apache_beam as beam
    import tensorflow_model_analysis as tfma
    from tfx_bsl.tfxio import parquet_tfxio, tensor_adapter

    from components.common.contract import load_contract
    from components.tfx.evaluate import custom_extractors, eval_config
    from components.tfx.schema import contract_to_eval_schema

    contract = load_contract()
    pattern = f"{run}/tfx/pipeline_root/ingest/examples/*/Split-eval/*.parquet"
    _one(pattern)
    model = _one(f"{run}/tfx/pipeline_root/train/model/*/Format-Serving")[-1]
    schema = contract_to_eval_schema(contract)
    out = {}
    for lean in (False, True):
        source = parquet_tfxio.ParquetTFXIO(
            file_pattern=pattern, column_names=[f.name for f in schema.feature], schema=schema,
            telemetry_descriptors=["twinpipe", "bench"])
        config = eval_config(contract, "serving_raw", lean=lean)
        for m in config.metrics_specs[0].metrics:
            m.ClearField("threshold")  # one model here: no baseline to compare with
        shared = tfma.default_eval_shared_model(model, eval_config=config)
        adapter = tensor_adapter.TensorAdapterConfig(source.ArrowSchema(),
                                                     source.TensorRepresentations())
        t0 = time.perf_counter()
        with beam.Pipeline() as p:
            _ = (p | source.BeamSource() | tfma.ExtractEvaluateAndWriteResults(
                eval_shared_model=shared, eval_config=config, tensor_adapter_config=adapter,
                extractors=custom_extractors(shared, config, adapter),
                output_path=str(tmp / f"eval-{lean}")))
        out["blessing_metrics_only" if lean else "all_metrics"] = round(
            time.perf_counter() - t0, 2)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parquet-run", required=True, help="a TFX run on the Parquet path (its --out)")
    p.add_argument("--tfrecord-run", required=True, help="a TFX run on the tf.Example path")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--batches", type=int, default=200)
    args = p.parse_args(argv)
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="tfx-moves-") as tmp:
        doc = {"codec": codec(Path(args.parquet_run), Path(tmp)),
               "trainer_input_rows_per_s": trainer_input(Path(args.parquet_run),
                                                         Path(args.tfrecord_run), args.batch,
                                                         args.batches),
               "evaluator_s": evaluator(Path(args.parquet_run), Path(tmp))}
    c, t, e = doc["codec"], doc["trainer_input_rows_per_s"], doc["evaluator_s"]
    print(f"payload codec ({c['rows']:,} train rows): snappy write {c['snappy']['write_s']} s, read "
          f"{c['snappy']['read_s']} s, {c['snappy']['mib']} MiB; none write {c['none']['write_s']} "
          f"s, read {c['none']['read_s']} s, {c['none']['mib']} MiB "
          f"(read none/snappy {c['none']['read_s'] / c['snappy']['read_s']:.2f}x)")
    print(f"Trainer input rows/s: Parquet + Transform layer {t['parquet_with_transform_layer']:,.0f}"
          f", Parquet reader alone {t['parquet_reader_only']:,.0f}, TFRecord parse "
          f"{t['tfrecord_transformed']:,.0f} (Parquet/TFRecord "
          f"{t['parquet_with_transform_layer'] / t['tfrecord_transformed']:.2f}x)")
    print(f"Evaluator (one model, eval split): all metrics {e['all_metrics']} s, blessing's only "
          f"{e['blessing_metrics_only']} s ({e['all_metrics'] / e['blessing_metrics_only']:.2f}x)")
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
