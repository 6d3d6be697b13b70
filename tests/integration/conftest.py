import json
import time

import pytest

from tests.integration.cli import twinpipe


@pytest.fixture(scope="session")
def both(tmp_path_factory):
    """One `twinpipe run --stack both` on a small sample with 2 workers, report included.

    Read-only for the tests: a test that runs the CLI again or changes files works in its own
    tmp_path (copying what it needs), so no test sees another test's files or depends on order."""
    out = tmp_path_factory.mktemp("both") / "out"
    t0 = time.monotonic()
    proc = twinpipe("run", "--stack", "both", "--months", "1-2", "--sample", "8000", "--workers", "2",
                    "--epochs", "4", "--batch-size", "256", "--out", str(out),
                    # the extras the tests read from this run; fault tolerance and the validation
                    # engines have their own tests (test_fault_tolerance, test_validation_engines)
                    "--measure", "exports,serving_load")
    proc.wall_s = time.monotonic() - t0  # a clock independent of the run's own figures
    runs = {s: json.loads((out / s / "run.json").read_text()) for s in ("tfx", "torch")}
    return out, runs, proc
