"""The PyTorch stack end to end with kfp.local + TorchX (2 DDP ranks), next to the TFX stack."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.common import registry, rows
from components.common.config import STAGES
from tests.integration.cli import twinpipe, twinpipe_here

pytestmark = pytest.mark.integration


def test_torch_run_json_has_the_tfx_shape_and_pushes(both):
    out, runs, _ = both
    torch_run, tfx_run = runs["torch"], runs["tfx"]
    assert set(torch_run["stages"]) == set(tfx_run["stages"]) == set(STAGES)
    st = torch_run["stages"]
    assert torch_run["failed_stage"] is None
    assert st["ingest"]["rows"] == tfx_run["stages"]["ingest"]["rows"]
    assert st["validate"]["passed"] is True and st["validate"]["expectations_evaluated"] > 100
    tr = st["train"]
    assert tr["workers"] == 2 and tr["backend"] == "gloo"
    assert tr["strategy"] == "DistributedDataParallel" and tr["samples_per_s"] > 0
    ev = st["evaluate"]
    assert ev["eval_rows"] == tfx_run["stages"]["evaluate"]["eval_rows"]
    assert 0.55 < ev["auc"] <= 1 and ev["baseline"] is None
    assert ev["blessed"] is True and st["push"]["pushed"] is True
    pushed = Path(st["push"]["pushed_path"])
    assert {"model.onnx", "model.torchscript.pt", "signature.json"} <= {p.name for p in pushed.iterdir()}
    assert registry.versions(out / "torch" / "pushed") == [pushed]


def _tfx_rows(out: Path, split: str) -> pd.DataFrame:
    """The key columns of the rows in the TFX ExampleGen's split (either payload format)."""
    import tensorflow as tf

    keys = ["year", "month", "day", "sched_dep_time", "carrier", "flight", "origin", "dest"]
    split_dir = out / "tfx" / "pipeline_root" / "ingest"
    if parquet := sorted(split_dir.glob(f"examples/*/Split-{split}/*.parquet")):
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table = pa.concat_tables([pq.read_table(f, columns=keys) for f in parquet])
        # the payload keeps strings as Parquet BYTE_ARRAY (binary), as tf.Example bytes_list does
        decode = lambda v: v.decode() if isinstance(v, bytes) else v  # noqa: E731
        return pd.DataFrame({k: [decode(v) for v in pc.list_element(table.column(k), 0).to_pylist()]
                             for k in keys})
    files = sorted(split_dir.glob(f"examples/*/Split-{split}/*.gz"))
    rows = []
    for rec in tf.data.TFRecordDataset([str(f) for f in files], compression_type="GZIP"):
        ex = tf.train.Example.FromString(rec.numpy()).features.feature
        rows.append(tuple(
            ex[k].int64_list.value[0] if ex[k].int64_list.value else ex[k].bytes_list.value[0].decode()
            for k in keys))
    return pd.DataFrame(rows, columns=keys)


def test_both_stacks_see_identical_train_and_eval_rows(both):
    out, _, _ = both
    keys = ["year", "month", "day", "sched_dep_time", "carrier", "flight", "origin", "dest"]
    torch_root = out / "torch" / "pipeline_root"
    for split, artifact in (("train", "train_rows"), ("eval", "eval_rows")):
        # ingest's artifact is a rows reference to the spans, read in place
        (ref,) = [p for p in torch_root.rglob(artifact) if p.is_file()]
        torch_rows = rows.read(ref, split)[keys]
        tfx_rows = _tfx_rows(out, split)
        assert len(torch_rows) == len(tfx_rows) > 0
        as_set = lambda df: set(map(tuple, df.astype(str).to_numpy()))  # noqa: E731
        assert as_set(torch_rows) == as_set(tfx_rows), split


def test_onnx_matches_torchscript_on_eval_rows(both):
    import onnxruntime as ort
    import torch

    from components.torch.export import encode_with_signature

    out, runs, _ = both
    pushed = Path(runs["torch"]["stages"]["push"]["pushed_path"])
    sig = json.loads((pushed / "signature.json").read_text())
    assert sig["inputs"]["numeric"]["columns"][0] == "sched_dep_time"
    assert set(sig["vocabularies"]) == {"carrier", "origin", "dest"}
    assert sig["oov_index"]["origin"] == len(sig["vocabularies"]["origin"])
    rows = pd.concat(pd.read_parquet(p) for p in sorted((out / "spans").glob("span-*/eval/*.parquet")))
    numeric, cats = encode_with_signature(sig, rows)
    assert np.isnan(numeric).any()  # real missing weather values go through the graph
    session = ort.InferenceSession(str(pushed / "model.onnx"))
    onnx_p = session.run(["probability"], {"numeric": numeric, "categorical": cats})[0]
    script = torch.jit.load(str(pushed / "model.torchscript.pt"))
    with torch.no_grad():
        torch_p = script(torch.from_numpy(numeric), torch.from_numpy(cats)).numpy()
    assert onnx_p.shape == (len(rows),) and onnx_p.dtype == np.float32
    np.testing.assert_allclose(onnx_p, torch_p, rtol=1e-4, atol=1e-5)


def test_predict_with_the_torch_pushed_model(both, tmp_path):
    from sklearn.metrics import roc_auc_score

    out, runs, _ = both
    rows = pd.concat(pd.read_parquet(p) for p in sorted((out / "spans").glob("span-*/eval/*.parquet")))
    src, dst = tmp_path / "rows.csv", tmp_path / "scored.csv"
    rows.drop(columns=["delayed"]).to_csv(src, index=False)
    twinpipe("predict", "--model", runs["torch"]["stages"]["push"]["pushed_path"],
             "--input", str(src), "--output", str(dst))
    scored = pd.read_csv(dst)
    auc = roc_auc_score(rows["delayed"], scored["probability"])
    assert auc == pytest.approx(runs["torch"]["stages"]["evaluate"]["auc"], abs=1e-6)


def test_bad_data_stops_the_torch_stack_at_the_gx_gate(both, tmp_path):
    """In its own out folder (the session run's pushed model copied in), not the shared one."""
    good, _, _ = both
    rows = pd.concat(pd.read_parquet(p) for p in sorted((good / "spans").glob("span-*/*/*.parquet")))
    rows = rows.drop(columns=["delayed", "reason"], errors="ignore").reset_index(drop=True)
    rows.loc[::50, "distance"] = 99_999
    bad = tmp_path / "bad.csv"
    rows.to_csv(bad, index=False)
    out = tmp_path / "out"
    shutil.copytree(good / "torch" / "pushed", out / "torch" / "pushed")
    before = registry.versions(out / "torch" / "pushed")
    assert len(before) == 1
    proc = twinpipe("run", "--stack", "torch", "--input", str(bad), "--months", "1-2",
                    "--out", str(out), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "[torch][validate]" in proc.stderr and "'distance'" in proc.stderr and "bad.csv" in proc.stderr
    summary = json.loads((out / "torch" / "run.json").read_text())
    assert summary["failed_stage"] == "validate" and summary["stages"]["validate"]["passed"] is False
    assert "train" not in {p.stem for p in (out / "torch" / "stages").glob("*.json")}
    assert registry.versions(out / "torch" / "pushed") == before


def test_train_restarts_and_resumes_from_checkpoint(both, tmp_path):
    from components.torch.launch import train_stage

    out, _, _ = both
    train_file = next((out / "torch" / "pipeline_root").rglob("train_rows"))
    train_stage(str(train_file), str(tmp_path / "model"), "", workers=2, epochs=2,
                batch_size=256, learning_rate=2e-3, fail_once_after_epoch=0,
                record_dir=str(tmp_path / "rec"))
    metrics = json.loads((tmp_path / "rec" / "train.json").read_text())
    assert (tmp_path / "model" / "train" / "failed-once").exists()  # it really crashed once
    assert metrics["resumed_from_epoch"] == 1  # and torchrun's restart resumed after epoch 1
    assert (tmp_path / "model" / "serving" / "model.onnx").exists()


def test_compiled_torch_spec_puts_the_gpu_on_the_training_job_not_the_launcher(tmp_path):
    from pipelines.compile import load_compiled, load_pipeline_spec

    twinpipe_here("compile", "--stack", "torch", "--target", "kfp", "--out", str(tmp_path),
                  "--gpu", "nvidia-l4", "--gpu-count", "2", "--image", "reg/twinpipe-torch:1",
                  "--data-root", "gs://b/data", "--pipeline-root", "gs://b/root")
    path = tmp_path / "torch-kfp.yaml"
    spec = load_pipeline_spec(path)
    tasks = spec.root.dag.tasks
    assert set(STAGES) <= set(tasks)
    # the landing ingest's answer (no new delivery: nothing to train), the rows, the gate
    assert set(tasks["train"].dependent_tasks) == {"land", "ingest", "validate"}
    assert set(tasks["push"].dependent_tasks) == {"train", "evaluate"}
    assert tasks["train"].retry_policy.max_retry_count == 2
    # spans and baseline come in through importers of the data root's URIs, not host paths
    imported = {t: tasks[t].inputs.parameters["uri"].component_input_parameter
                for t in tasks if t not in (*STAGES, "land")}
    assert sorted(imported.values()) == ["push_destination", "spans_uri"]
    by_param = {v: k for k, v in imported.items()}
    assert set(tasks["ingest"].dependent_tasks) == {by_param["spans_uri"], "land"}
    assert by_param["push_destination"] in tasks["evaluate"].dependent_tasks
    train = spec.deployment_spec["executors"]["exec-train"]["container"]
    assert train["image"] == "reg/twinpipe-torch:1"
    assert "accelerator" not in train["resources"]
    assert train["resources"]["resourceCpuLimit"] == "1"
    # no node selector / toleration on any KFP task: the only platform setting is the alerts
    # Secret mounted where the gates raise alerts (the landing ingest, validate)
    (platform,) = load_compiled(path)[1:]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert sorted(executors) == ["exec-land", "exec-validate"]
    assert all(list(e) == ["secretAsVolume"] for e in executors.values())
    params = spec.root.input_definitions.parameters
    job = json.loads(params["train_job"].default_value.string_value)
    assert job["gpu"] == 2 and job["image"] == "reg/twinpipe-torch:1"
    assert job["node_selector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert job["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert spec.default_pipeline_root == "gs://b/root"
    assert all(not p.default_value.string_value.startswith("/") for p in params.values())
