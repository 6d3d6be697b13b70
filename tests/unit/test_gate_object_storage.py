"""The data gate over spans on object storage: the same verdict as over the same spans locally.

On a cluster the TFX ValidateGate and the torch validate task get ``gs://BUCKET/.../spans``; every
read (span listing, Parquet splits, quarantine summaries, drift history) and the report write go
through components.common.storage. Checked against the GCS emulator (tests/gcs_emulator.py).
"""

from __future__ import annotations

from components.common import storage
from components.common.contract import load_contract
from components.common.gate import check_spans, enforce, load_report
from components.common.ingest import ingest
from components.common.spans import read_spans, span_history, span_numbers


def test_gate_on_gs_spans_matches_local(tmp_path, gcs_bucket):
    contract = load_contract()
    ingest(contract, tmp_path / "spans", months=[1, 2], sample=1200)
    spans = f"{gcs_bucket}/data/spans"
    storage.upload((tmp_path / "spans").resolve(), spans)
    assert not storage.isdir(f"{gcs_bucket}/data/spans/.span-201301")

    assert span_numbers(spans) == span_numbers(tmp_path / "spans") == [201301, 201302]
    assert set(span_history(spans)) == set(span_history(tmp_path / "spans"))
    assert (read_spans(spans, "eval", [201302]).num_rows
            == read_spans(tmp_path / "spans", "eval", [201302]).num_rows > 0)

    local = check_spans(contract, tmp_path / "spans", source="flights")
    remote = check_spans(contract, spans, source="flights")
    assert remote.spans == local.spans == [201301, 201302]
    assert remote.checks == local.checks
    assert remote.figures == local.figures and remote.figures["201302"]["previous_span"] == 201301

    reports = f"{gcs_bucket}/validation"
    enforce(remote, contract=contract, stack="tfx", pipeline="twinpipe-tfx", report_dir=reports)
    assert load_report(f"{reports}/gate.json").figures == remote.figures
    assert not (tmp_path / "gs:").exists()
