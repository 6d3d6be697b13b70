"""The torch train app on small data, run for real (in-process, or under torchrun with 2 ranks):
shards smaller than the batch, fewer rows than ranks, and only numeric or only categorical
features through training and the ONNX / TorchScript export."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from components.torch.export import OnnxScorer, export, predict_onnx, signature_doc
from components.torch.trainer import load_model, main

ROOT = Path(__file__).resolve().parents[2]
NUMERIC, CATEGORICAL = ["distance", "temp"], ["carrier", "origin"]


def _rows(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    distance = rng.integers(100, 3000, n).astype(float)
    carrier = rng.choice(["UA", "AA", "DL"], n, p=[0.6, 0.3, 0.1])
    return pd.DataFrame({
        "distance": distance,
        "temp": np.where(rng.random(n) < 0.2, np.nan, rng.normal(50, 10, n)),
        "carrier": carrier,
        "origin": rng.choice(["EWR", "JFK", "LGA"], n),
        "delayed": ((distance > 1500) ^ (carrier == "DL") ^ (rng.random(n) < 0.1)).astype(np.int64),
    })


def _app_args(train: Path, out: Path, numeric, categorical, **opts) -> list[str]:
    args = ["--train", str(train), "--out", str(out), "--numeric", ",".join(numeric),
            "--categorical", ",".join(categorical), "--label", "delayed"]
    for k, v in {"epochs": 2, "batch-size": 512, **opts}.items():
        args += [f"--{k}", str(v)]
    return args


def _torchrun(nproc: int, args: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           str(nproc), "-m", "components.torch.trainer", *args]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


# --- torch: shards smaller than the batch, and too few rows for the ranks -------------------------

def test_two_ranks_with_shards_smaller_than_the_batch_train(tmp_path):
    train = tmp_path / "train.parquet"
    _rows(41).to_parquet(train)  # 2 ranks: 20 rows each (one dropped), batch 512
    proc = _torchrun(2, _app_args(train, tmp_path / "out", NUMERIC, CATEGORICAL, epochs=3))
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "out" / "train_metrics.json").read_text())
    assert (tmp_path / "out" / "model.pt").is_file()
    assert metrics["workers"] == 2 and metrics["backend"] == "gloo"
    assert metrics["global_batch"] == 40  # each rank's whole shard is its one batch ...
    assert metrics["steps"] == 3          # ... one step per epoch on both ranks
    assert np.isfinite(metrics["final_loss"])


def test_fewer_train_rows_than_ranks_stop_with_a_clear_message(tmp_path, monkeypatch):
    """Rank 0 of 2 as torchrun starts it: it stops before joining the process group."""
    train = tmp_path / "train.parquet"
    _rows(1).to_parquet(train)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ValueError, match=r"1 train row\(s\) for 2 DDP rank\(s\)"):
        main(_app_args(train, tmp_path / "out", NUMERIC, CATEGORICAL))
    assert not (tmp_path / "out" / "model.pt").exists()


def test_train_stage_refuses_too_few_rows_before_launching(tmp_path):
    from components.torch.launch import train_stage

    train = tmp_path / "train.parquet"
    _rows(3).to_parquet(train)
    with pytest.raises(ValueError, match=r"3 train row\(s\) for 4 DDP rank\(s\)"):
        train_stage(str(train), str(tmp_path / "model"), "", workers=4, epochs=1, batch_size=8,
                    learning_rate=1e-3)
    assert not (tmp_path / "model" / "torchx_logs").exists()  # nothing was launched


# --- torch: a contract with only numeric or only categorical features ----------------------------

@pytest.mark.parametrize("numeric, categorical", [(NUMERIC, []), ([], CATEGORICAL)],
                         ids=["no-categorical", "no-numeric"])
def test_one_kind_of_features_trains_and_exports(tmp_path, numeric, categorical):
    rows = _rows(300)
    train = tmp_path / "train.parquet"
    rows.to_parquet(train)
    out = tmp_path / "out"
    assert main(_app_args(train, out, numeric, categorical, epochs=2, **{"batch-size": 64})) == 0
    model, prep, metrics = load_model(out)
    assert (prep.numeric, prep.categorical) == (numeric, categorical)
    assert metrics["steps"] == 2 * (300 // 64)

    serving = tmp_path / "serving"
    export(model, prep, serving, signature_doc(prep, "c", 1, "P(delayed)"))
    eval_rows = _rows(50, seed=1)
    scorer = OnnxScorer(serving)
    # the ONNX graph keeps both inputs signature.json declares, the empty one too
    assert [i.name for i in scorer.session.get_inputs()] == ["numeric", "categorical"]
    num, cat = scorer.encode(eval_rows)
    assert num.shape == (50, len(numeric)) and cat.shape == (50, len(categorical))
    with torch.no_grad():
        eager = model(torch.from_numpy(num), torch.from_numpy(cat)).numpy()
        script = torch.jit.load(str(serving / "model.torchscript.pt"))
        scripted = script(torch.from_numpy(num), torch.from_numpy(cat)).numpy()
    onnx_p = predict_onnx(serving, eval_rows)
    assert onnx_p.shape == (50,) and ((onnx_p > 0) & (onnx_p < 1)).all()
    assert eager.std() > 0  # the rows do not all score the same
    np.testing.assert_allclose(onnx_p, eager, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(scripted, eager, rtol=1e-5, atol=1e-7)


def test_no_features_at_all_is_refused(tmp_path):
    train = tmp_path / "train.parquet"
    _rows(10).to_parquet(train)
    with pytest.raises(ValueError, match="no feature columns"):
        main(_app_args(train, tmp_path / "out", [], []))


# --- object URIs: what a cluster job's pods get for --train and --out ---------------------------

def test_train_app_reads_and_writes_gs_uris(gcs_bucket, tmp_path, monkeypatch):
    """In-process, 1 rank, against the emulator: the rows are read from gs://, the model files and
    the epoch checkpoint land in the bucket, and a second run resumes from that checkpoint."""
    from components.common import storage

    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    train = f"{gcs_bucket}/root/train_rows"
    with storage.open(train, "wb") as f:
        _rows(300).to_parquet(f)
    out = f"{gcs_bucket}/root/model/train"
    assert main(_app_args(train, out, NUMERIC, CATEGORICAL, epochs=1)) == 0
    assert set(storage.listdir(out)) == {"checkpoints", "model.pt", "preprocessing.json",
                                         "train_metrics.json"}
    metrics = storage.read_json(f"{out}/train_metrics.json")
    assert metrics["steps"] == 1 and metrics["resumed_from_epoch"] == 0
    local = storage.download(out, tmp_path / "model")
    model, prep, _ = load_model(local)
    assert prep.numeric == NUMERIC
    # A restarted pod on another node: nothing local, the bucket's checkpoint says epoch 1 is done.
    assert main(_app_args(train, out, NUMERIC, CATEGORICAL, epochs=2)) == 0
    assert storage.read_json(f"{out}/train_metrics.json")["resumed_from_epoch"] == 1
    assert not list(Path.cwd().glob("gs:*"))
