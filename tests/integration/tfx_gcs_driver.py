"""Run inside the TF/GCS sandbox (tests/gcs_tf.py): the TFX pipeline with its roots on ``gs://``.

``python -m tests.integration.tfx_gcs_driver gs://BUCKET/PREFIX WORKDIR`` ingests a small sample
locally (WORKDIR), uploads the spans and the schema under PREFIX, then runs the same
``create_pipeline`` that ``twinpipe run --stack tfx`` runs, with LocalDagRunner and every root on
the bucket: pipeline root (every artifact), spans, schema, gate reports, push destination. Only
MLMD stays local (SQLite in WORKDIR), as on a cluster, where it is a database service. TFX and TF
reach the bucket through TF's own GCS client (routed to the emulator by the sandbox), twinpipe's
Python stages through gcsfs. Prints one JSON line: each node's MLMD state and, when the run
failed, the error.
"""

from __future__ import annotations

import json
import math
import sys
import traceback
from pathlib import Path


def main(prefix: str, workdir: Path) -> dict:
    import yaml
    from tfx import v1 as tfx

    from components.common import storage
    from components.common.config import RunConfig
    from components.common.contract import DEFAULT_CONTRACT, load_contract
    from components.common.ingest import ingest
    from components.tfx.export import signature_json
    from components.tfx.schema import write_schema
    from pipelines.tfx.local_runner import PIPELINE_NAME, _run_executions, train_config
    from pipelines.tfx.pipeline import create_pipeline

    root = Path(__file__).resolve().parents[2]
    doc = yaml.safe_load((root / "components" / "common" / DEFAULT_CONTRACT).read_text())
    doc["blessing"] = {"metric": "auc", "lower_bound": 0.0, "max_regression": 1.0}
    (workdir / "contract.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    contract = load_contract(workdir / "contract.yaml")
    ingested = ingest(contract, workdir / "spans", months=[1], sample=1500)
    storage.upload(Path(workdir / "spans").resolve(), f"{prefix}/spans")
    write_schema(contract, workdir / "schema.pbtxt")
    storage.upload(workdir / "schema.pbtxt", f"{prefix}/schema/schema.pbtxt")
    write_schema(contract, workdir / "eval_schema.pbtxt", eval_schema=True)
    storage.upload(workdir / "eval_schema.pbtxt", f"{prefix}/schema/eval_schema.pbtxt")

    cfg = RunConfig(out_dir=str(workdir), epochs=1, batch_size=256)
    train_rows = sum(s.train_rows for s in ingested.spans)
    metadata = workdir / "metadata.sqlite"
    pipeline = create_pipeline(
        pipeline_name=PIPELINE_NAME,
        pipeline_root=f"{prefix}/root",
        spans_dir=f"{prefix}/spans",
        schema_path=f"{prefix}/schema/schema.pbtxt",
        eval_schema_path=f"{prefix}/schema/eval_schema.pbtxt",
        push_destination=f"{prefix}/pushed",
        contract=contract,
        train_config=train_config(cfg, contract, train_rows),
        train_steps=cfg.epochs * math.ceil(train_rows / cfg.batch_size),
        # The emulator takes no credentials; without --no_auth Beam's GCS client first looks for
        # Application Default Credentials, retrying with backoff in every Beam stage.
        beam_pipeline_args=[*cfg.beam_args, "--no_auth"],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(metadata)),
        signature_json=signature_json(contract),
        run_label="tfx-on-gcs",
        report_dir=f"{prefix}/validation",
        contract_path=str(workdir / "contract.yaml"),
    )
    result: dict = {"error": None}
    try:
        tfx.orchestration.LocalDagRunner().run(pipeline)
    except Exception as e:  # noqa: BLE001 — reported to the test, which names where it broke
        result["error"] = f"{type(e).__name__}: {e}"
        result["traceback"] = traceback.format_exc()[-6000:]
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2

    conn = metadata_store_pb2.ConnectionConfig()
    conn.sqlite.filename_uri = str(metadata)
    store = mlmd.MetadataStore(conn)
    result["nodes"] = {n: metadata_store_pb2.Execution.State.Name(e.last_known_state)
                       for n, e in _run_executions(store, PIPELINE_NAME).items()}
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], Path(sys.argv[2]))))
