"""Rows references (components/common/rows.py) over real spans: what a run reads in place stays
readable through one later publish, and what cannot be read any more is one DataError naming the
file — never a pyarrow traceback."""

import os

import pytest

from components.common import rows
from components.common.contract import load_contract
from components.common.errors import DataError
from components.common.ingest import ingest
from components.common.publish import stale_generations

CONTRACT = load_contract()


def test_stale_generations_keep_the_current_and_the_one_it_replaced():
    names = ["gen-100-a", "gen-200-b", "gen-300-c", "gen-400-d", "history", "CURRENT.json"]
    # gen-400 is newer than the current one: a killed ingest's leftover
    assert stale_generations(names, "gen-300-c") == ["gen-100-a", "gen-400-d"]
    assert stale_generations(names, "gen-100-a") == ["gen-200-b", "gen-300-c", "gen-400-d"]
    assert stale_generations(names, None) == ["gen-100-a", "gen-200-b", "gen-300-c", "gen-400-d"]


def test_a_reference_survives_one_publish_and_fails_clearly_after_two(tmp_path):
    spans = tmp_path / "spans"
    ingest(CONTRACT, spans, months=[1], sample=400)
    ref = tmp_path / "train.json"
    doc = rows.write_ref(ref, spans, "train")
    assert doc["spans_dir"] == str(spans.resolve()) and rows.count(ref) == doc["rows"] > 0
    ingest(CONTRACT, spans, months=[1], sample=400, seed=1)  # a publish while the run reads
    assert sum(b.num_rows for b in rows.batches(ref)) == doc["rows"]
    ingest(CONTRACT, spans, months=[1], sample=400, seed=2)  # a second one: the files are gone
    with pytest.raises(DataError, match=r"no longer exists.*rerun from ingest \(rule: volume\)"):
        list(rows.batches(ref))


def test_a_broken_reference_is_a_data_error(tmp_path):
    bad = tmp_path / "train.json"
    bad.write_text('{"kind": "twinpipe.rows-ref/v1", "files": [')
    with pytest.raises(DataError, match=r"train.json: not a rows reference.*line 1, column"):
        rows.count(bad)


def test_a_split_reference_lives_for_its_block_and_head_reads_the_first_rows(tmp_path):
    spans = tmp_path / "spans"
    ingest(CONTRACT, spans, months=[1], sample=400)
    with rows.split_ref(spans, "eval") as ref:
        whole = rows.read(ref, "eval")
        first = rows.head(ref, "eval", 7, columns=["origin", "distance"])
        every = rows.head(ref, "eval", 10 * len(whole))
    assert not os.path.exists(ref)  # the temporary reference is gone
    assert list(first.columns) == ["origin", "distance"] and len(first) == 7
    assert first.equals(whole[["origin", "distance"]].head(7))
    assert len(every) == len(whole) > 7  # asking for more than there is gives all of it
