import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from components.common.contract import load_contract
from components.common.metrics import binary_metrics
from components.torch.job import train_appdef
from components.torch.model import FlightsNet, fit_preprocessing
from components.torch.validate import expectations

CONTRACT = load_contract()


@pytest.fixture()
def frame():
    rng = np.random.default_rng(0)
    n = 200
    return pd.DataFrame({
        "distance": rng.integers(100, 3000, n).astype(float),
        "temp": np.where(rng.random(n) < 0.2, np.nan, rng.normal(50, 10, n)),
        "carrier": rng.choice(["UA", "AA", "DL"], n, p=[0.6, 0.3, 0.1]),
    })


def test_preprocessing_is_fitted_on_the_rows_given(frame):
    prep = fit_preprocessing(frame, ["distance", "temp"], ["carrier"])
    assert prep.means[1] == pytest.approx(frame.temp.mean())  # NaN ignored
    assert prep.vocabularies["carrier"] == ["UA", "AA", "DL"]  # frequency order
    num, cat = prep.encode(pd.DataFrame({"distance": [1.0], "temp": [np.nan], "carrier": ["ZZ"]}))
    assert np.isnan(num[0, 1]) and cat[0, 0] == prep.oov_index("carrier") == 3


def test_model_imputes_missing_with_the_train_mean(frame):
    prep = fit_preprocessing(frame, ["distance", "temp"], ["carrier"])
    model = FlightsNet(prep).eval()
    cat = torch.zeros(1, 1, dtype=torch.long)
    missing = model(torch.tensor([[1000.0, float("nan")]]), cat)
    at_mean = model(torch.tensor([[1000.0, prep.means[1]]]), cat)
    assert torch.allclose(missing, at_mean) and 0 < float(missing) < 1


def test_train_appdef_is_dist_ddp_with_restarts():
    app = train_appdef("--epochs", "2", workers=2, max_restarts=3, image="img")
    role = app.roles[0]
    cmd = role.args[-1]
    assert role.entrypoint == "bash" and role.image == "img"
    assert cmd.startswith("torchrun --max_restarts 3 ")
    assert "--nproc_per_node 2" in cmd and "-m components.torch.trainer --epochs 2" in cmd


def test_gx_suite_comes_from_the_contract():
    suite = expectations(CONTRACT)
    by_type = {}
    for e in suite:
        by_type.setdefault(type(e).__name__, []).append(e.column)
    assert set(by_type["ExpectColumnToExist"]) == set(CONTRACT.column_names) | {"delayed"}
    ranged = {c.name for c in CONTRACT.columns if c.numeric and c.max is not None}
    assert set(by_type["ExpectColumnValuesToBeBetween"]) == ranged
    assert {"carrier", "origin", "dest", "delayed"} == set(by_type["ExpectColumnValuesToBeInSet"])
    nullable = {c.name for c in CONTRACT.columns if c.nullable}
    assert not nullable & set(by_type["ExpectColumnValuesToNotBeNull"])


def test_binary_metrics():
    m = binary_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    assert m["auc"] == pytest.approx(0.75) and m["binary_accuracy"] == pytest.approx(0.75)
    assert m["example_count"] == 4 and m["binary_crossentropy"] > 0


def test_kfp_ingest_component_writes_references_to_the_spans_read_in_place(tmp_path):
    """Ingest copies no rows: each Dataset artifact is a rows reference naming the resolved spans
    generation's Parquet files, with counts from metadata; validate and evaluate read through it."""
    from kfp import dsl

    from components.common import rows
    from components.common.ingest import ingest
    from components.common.sources import load_default_table
    from components.torch.kfp_components import ingest as ingest_component

    table, _ = load_default_table(CONTRACT)
    src = tmp_path / "in.parquet"
    table[table.month == 1].head(1500).to_parquet(src)
    res = ingest(CONTRACT, tmp_path / "spans", input_path=src)
    train = dsl.Dataset(uri=str(tmp_path / "train_rows"))
    ev = dsl.Dataset(uri=str(tmp_path / "eval_rows"))
    record = dsl.Artifact(uri=str(tmp_path / "record"))
    n = ingest_component.python_func(
        spans=dsl.Dataset(uri=str(tmp_path / "spans")), proceed=True, train_rows=train,
        eval_rows=ev, record=record,
    )
    assert n == res.rows
    assert json.loads((tmp_path / "record" / "ingest.json").read_text())["rows"] == res.rows
    generation = (tmp_path / "spans").resolve()  # the symlink's target: one generation per run
    for path, split, expected in ((train.path, "train", res.spans[0].train_rows),
                                  (ev.path, "eval", res.spans[0].eval_rows)):
        ref = rows.read_ref(path)
        assert ref is not None and ref["spans_dir"] == str(generation) and ref["split"] == split
        assert ref["files"] == [str(p) for p in sorted(generation.glob(f"span-*/{split}/*.parquet"))]
        assert Path(path).stat().st_size < 4096  # a reference, not a copy of the rows
        assert rows.count(path) == ref["rows"] == expected == len(rows.read(path))


def test_validate_and_evaluate_stream_the_references(tmp_path):
    """validate_stage and evaluate_stage on ingest's references: the GX checkpoint evaluates every
    expectation on both splits, and evaluate scores exactly the referenced eval rows (count and
    key digest those of the spans' eval files), candidate and baseline alike."""
    import shutil

    from components.common import registry, rows
    from components.common.ingest import ingest
    from components.common.rowdigest import frame_digest
    from components.torch.evaluate import evaluate_stage
    from components.torch.export import export, signature_doc
    from components.torch.ingest import ingest_stage
    from components.torch.validate import validate_stage

    res = ingest(CONTRACT, tmp_path / "spans", months=[1, 2], sample=2000)
    train, ev = str(tmp_path / "train_rows"), str(tmp_path / "eval_rows")
    ingest_stage(str(tmp_path / "spans"), train, ev, str(tmp_path / "rec"))
    assert validate_stage(train, ev, "", "test", str(tmp_path / "rec"),
                          spans_dir=str(tmp_path / "spans"))
    rec = json.loads((tmp_path / "rec" / "validate.json").read_text())
    assert rec["passed"] and rec["gx_passed"] and rec["expectations_evaluated"] == 2 * len(
        expectations(CONTRACT))

    # A model from the train rows (untrained weights: evaluate's plumbing is under test here).
    frame = rows.read(train)
    prep = fit_preprocessing(frame, [c.name for c in CONTRACT.numeric_features],
                             [c.name for c in CONTRACT.categorical_features])
    model_dir = tmp_path / "model"
    export(FlightsNet(prep), prep, model_dir / "serving", signature_doc(prep, "flights", 1, "P"))
    pushed = tmp_path / "pushed"
    registry.push_atomic(str(pushed), lambda t: shutil.copytree(model_dir / "serving", t,
                                                                dirs_exist_ok=True), {})
    evaluate_stage(str(model_dir), ev, str(pushed), "", str(tmp_path / "blessing.json"),
                   str(tmp_path / "rec"))
    fig = json.loads((tmp_path / "rec" / "evaluate.json").read_text())
    eval_rows = rows.read(tmp_path / "spans", "eval")
    assert fig["eval_rows"] == fig["eval_rows_hashed"] == sum(s.eval_rows for s in res.spans)
    assert fig["eval_rows_sha256"] == frame_digest(eval_rows, CONTRACT.split.key).sha256
    assert fig["baseline_auc"] == pytest.approx(fig["auc"])  # the same weights, the same rows


def test_select_spans_all_or_newest(tmp_path):
    from components.common.errors import DataError
    from components.common.spans import select_spans

    for s in (201301, 201312, 201302):
        (tmp_path / f"span-{s}").mkdir()
    assert select_spans(str(tmp_path)) == [201301, 201302, 201312]
    assert select_spans(str(tmp_path), "latest") == [201312]
    with pytest.raises(DataError, match="expected 'all' or 'latest'"):
        select_spans(str(tmp_path), "newest")
    with pytest.raises(DataError, match="no span-"):
        select_spans(str(tmp_path / "empty"))


def test_contract_uri_on_object_storage_is_read_or_refused_in_one_paragraph(gcs_bucket, tmp_path):
    """The stages' contract_path may be gs://: read through the storage layer, with load_contract's
    own checks; a missing or broken one is a ContractError naming the URI, not a traceback."""
    from components.common import storage
    from components.common.contract import load_contract as _contract
    from components.common.errors import ContractError

    text = (Path(__file__).resolve().parents[2] / "components/common/flights.yaml").read_text()
    storage.write_text(f"{gcs_bucket}/c/flights.yaml", text.replace("lower_bound: 0.60", "lower_bound: 0.1"))
    assert _contract(f"{gcs_bucket}/c/flights.yaml").blessing.lower_bound == 0.1
    with pytest.raises(ContractError, match=f"{gcs_bucket}/c/missing.yaml does not exist"):
        _contract(f"{gcs_bucket}/c/missing.yaml")
    storage.write_text(f"{gcs_bucket}/c/broken.yaml", "columns: [")
    with pytest.raises(ContractError, match=f"contract {gcs_bucket}/c/broken.yaml is not valid YAML"):
        _contract(f"{gcs_bucket}/c/broken.yaml")


def test_a_cluster_train_job_refuses_host_paths(tmp_path):
    """Training pods share no filesystem with the launcher task: with train_job set, the rows and
    the output must be object URIs, else one paragraph before anything is submitted."""
    from components.common.errors import ContractError
    from components.torch.launch import train_stage

    with pytest.raises(ContractError, match="needs object URIs"):
        train_stage(str(tmp_path / "train_rows"), str(tmp_path / "model"), "", workers=1, epochs=1,
                    batch_size=8, learning_rate=1e-3, train_job='{"launcher": "torchx"}',
                    job_out=str(tmp_path / "model" / "train"))
