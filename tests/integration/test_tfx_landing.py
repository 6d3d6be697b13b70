"""The TFX stack's first node is the landing ingest, run by TFX's own LocalDagRunner (SQLite MLMD):

* the ``LandingIngest`` component takes a delivery from a landing folder into the data root's spans
  (ledger ``ledger/tfx/``), and a second run finds nothing new;
* the whole pipeline (``pipelines.tfx.pipeline.create_pipeline``, as compiled) with nothing new in
  the landing folder executes that node only: its ``tfx.dsl.Cond`` keeps ExampleGen, validation,
  training, evaluation and push from running.
"""

import json
from pathlib import Path

import pytest

from components.common.config import RunConfig
from components.common.contract import load_contract
from components.common.sources import load_default_table

pytestmark = pytest.mark.integration


def _local_run(pipeline) -> None:
    from tfx import v1 as tfx

    tfx.orchestration.LocalDagRunner().run(pipeline)


def _executions(metadata: Path) -> dict[str, str]:
    """node id -> last known state, from the run's MLMD."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(metadata)
    store = metadata_store.MetadataStore(config)
    types = {t.id: t.name for t in store.get_execution_types()}
    return {types[e.type_id].rsplit(".", 1)[-1]: metadata_store_pb2.Execution.State.Name(
        e.last_known_state) for e in store.get_executions()}


def _landed(pipeline_root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(pipeline_root.rglob("landing.json"),
                                                      key=lambda p: p.stat().st_mtime)]


def test_landing_ingest_component_takes_a_delivery_once(tmp_path):
    from tfx import v1 as tfx

    from components.tfx.ingest import LandingIngest

    landing, data = tmp_path / "landing", tmp_path / "data"
    landing.mkdir()
    table, _ = load_default_table(load_contract())
    table = table.drop(columns=["__file", "__row"], errors="ignore")
    table[table["month"] == 3].sample(2000, random_state=3).to_parquet(landing / "2013-03.parquet",
                                                                       index=False)

    def pipeline():
        land = LandingIngest(landing_uri=str(landing), data_root=str(data),
                             report_dir=str(tmp_path / "validation")).with_id("land")
        return tfx.dsl.Pipeline(
            pipeline_name="landing", pipeline_root=str(tmp_path / "root"), components=[land],
            metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
                str(tmp_path / "metadata.sqlite")))

    _local_run(pipeline())
    (first,) = _landed(tmp_path / "root")
    assert first["status"] == "new delivery" and first["spans"] == [201303]
    assert [d["name"] for d in first["taken"]] == ["2013-03.parquet"]
    assert (data / "spans" / "span-201303" / "train" / "data.parquet").is_file()
    (record,) = [json.loads(p.read_text()) for p in (data / "ledger" / "tfx").glob("*.json")]
    assert record["state"] == "done" and record["verdict"] == "ingested"

    _local_run(pipeline())
    second = _landed(tmp_path / "root")[-1]
    assert second["status"] == "no new delivery" and second["taken"] == []
    assert second["seen_before"][0]["name"] == "2013-03.parquet"


def test_with_nothing_new_only_the_landing_ingest_runs(tmp_path):
    from tfx import v1 as tfx

    from components.tfx.export import signature_json
    from components.tfx.schema import write_schema
    from pipelines.tfx.local_runner import train_config
    from pipelines.tfx.pipeline import create_pipeline

    contract = load_contract()
    landing, data = tmp_path / "landing", tmp_path / "data"
    landing.mkdir()
    write_schema(contract, tmp_path / "schema.pbtxt")
    write_schema(contract, tmp_path / "eval_schema.pbtxt", eval_schema=True)
    cfg = RunConfig(workers=1, months=(1,))
    root, metadata = tmp_path / "root", tmp_path / "metadata.sqlite"
    pipeline = create_pipeline(
        pipeline_name="twinpipe-tfx", pipeline_root=str(root), spans_dir=str(data / "spans"),
        schema_path=str(tmp_path / "schema.pbtxt"),
        eval_schema_path=str(tmp_path / "eval_schema.pbtxt"), push_destination=str(data / "tfx" / "pushed"),
        contract=contract, train_config=train_config(cfg, contract, train_rows=0), train_steps=1,
        beam_pipeline_args=list(cfg.beam_args),
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(metadata)),
        signature_json=signature_json(contract), latest_span=True, landing_uri=str(landing))
    assert pipeline.components[0].id == "land"
    _local_run(pipeline)
    assert _landed(root)[-1]["status"] == "no new delivery"
    assert _executions(metadata) == {"LandingIngest": "COMPLETE"}
    assert not (data / "spans").exists() and not (data / "tfx" / "pushed").exists()
