import json

import pytest

from tests.integration.cli import twinpipe


@pytest.fixture(scope="session")
def both(tmp_path_factory):
    """One `twinpipe run --stack both` on a small sample with 2 workers, report included."""
    out = tmp_path_factory.mktemp("both") / "out"
    proc = twinpipe("run", "--stack", "both", "--months", "1-2", "--sample", "8000", "--workers", "2",
                    "--epochs", "4", "--batch-size", "256", "--out", str(out))
    runs = {s: json.loads((out / s / "run.json").read_text()) for s in ("tfx", "torch")}
    return out, runs, proc
