"""The module paths that compiled specs and pushed models store stay valid across code moves:
the TFX trainer (``-m`` and ``run_fn``), the Transform's ``preprocessing_fn``, the torch DDP app
under its former path, and ``load_reference``; and models pushed before the layout change
(tests/fixtures/pushed_before_layout: both stacks' push folders, with the probabilities the code
that pushed them gave on 12 rows) still load and score the same with today's code."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.integration.cli import twinpipe_here

ROOT = Path(__file__).resolve().parents[2]
PUSHED = ROOT / "tests" / "fixtures" / "pushed_before_layout"


def test_stored_entry_points_resolve():
    from components.tfx import trainer, transform
    from components.torch import export, train_app
    from components.torch import trainer as torch_trainer

    assert callable(trainer.run_fn) and callable(trainer._main)
    assert callable(transform.preprocessing_fn)
    assert callable(export.load_reference)
    assert train_app.main is torch_trainer.main  # the shim runs the moved app


@pytest.mark.parametrize("module", ["components.torch.train_app", "components.torch.trainer"])
def test_torch_app_runs_under_both_paths(module):
    """``python -m`` of the former and the current path reach the app's own argument parser."""
    proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--train" in proc.stdout


@pytest.mark.parametrize("stack", ["tfx", "torch"])
def test_model_pushed_before_the_move_scores_the_same(stack, tmp_path):
    out = tmp_path / "scored.csv"
    twinpipe_here("predict", "--model", str(PUSHED / stack), "--input", str(PUSHED / "rows.csv"),
                  "--output", str(out))
    got = pd.read_csv(out)["probability"].to_numpy()
    want = pd.read_csv(PUSHED / f"{stack}-expected.csv")["probability"].to_numpy()
    assert len(got) == 12
    assert got == pytest.approx(want, abs=1e-6)


def test_reference_of_a_torch_model_pushed_before_the_move_loads():
    from components.torch.export import load_reference

    model = load_reference(PUSHED / "torch")
    assert not model.training and sum(p.numel() for p in model.parameters()) > 0


def test_predict_follows_a_push_destination(tmp_path):
    """``predict --model`` takes a push destination as ``serve --model`` does: the version its
    current.json names (not the newest folder); a path with no model is one paragraph, exit 1."""
    import json
    import shutil

    from tests.integration.cli import twinpipe

    dest = tmp_path / "pushed"
    shutil.copytree(PUSHED / "torch", dest / "3")
    (dest / "5").mkdir()  # a newer, unfinished version: not what current.json names
    (dest / "current.json").write_text(json.dumps({"version": "3", "uri": str(dest / "3")}))
    out = tmp_path / "scored.csv"
    proc = twinpipe("predict", "--model", str(dest), "--input", str(PUSHED / "rows.csv"),
                         "--output", str(out))
    assert "version 3" in proc.stdout
    want = pd.read_csv(PUSHED / "torch-expected.csv")["probability"].to_numpy()
    assert pd.read_csv(out)["probability"].to_numpy() == pytest.approx(want, abs=1e-6)

    empty = tmp_path / "nothing"
    empty.mkdir()
    bad = twinpipe("predict", "--model", str(empty), "--input", str(PUSHED / "rows.csv"),
                        "--output", str(tmp_path / "x.csv"), check=False)
    assert bad.returncode == 1 and "no pushed model there" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "x.csv").exists()
