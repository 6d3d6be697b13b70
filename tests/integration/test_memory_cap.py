"""Issue 13, bounded memory: the torch stack at a scale whose naive in-memory version needs more
than a cap finishes under that cap (a fresh memory cgroup, tests/cgroup.py, as a pod's memory
limit would be), at a CI-sized scale (2 cores, a few minutes).

Calibration, torch stack before streaming (main at c64aecd), `--months 1-12 --workers 2 --epochs 1
--no-report`, on the 2-core / 24 GiB machine, peak = the cgroup's max_usage_in_bytes (resident +
page cache of the whole tree; the run.json tree-RSS sum counts the DDP ranks' shared pages twice):

    scale 3: 982,174 rows,   peak 2,249 MiB, 67 s  (run.json train stage 2,586 MiB)
    scale 5: 1,636,886 rows, peak 2,572 MiB, 83 s  (run.json train stage 2,992 MiB)
    scale 10: 3,273,671 rows, peak 4,287 MiB, 142 s (run.json train stage 4,513 MiB)

so about 0.5 KiB per row on ~1.75 GiB of fixed cost (interpreters, torch in two ranks). The
streaming stack (issue 13), same command and measure: scale 10 peaks at 1,628 MiB in 89 s (per
stage, run.json: validate 1,501, train 2,038 MiB tree-RSS). CAP_MIB sits between the two, ~930 MiB
above the streaming peak and ~1.7 GiB below the naive one.
"""

import json

import pytest

from tests import cgroup
from tests.integration.cli import ROOT, twinpipe_command

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(cgroup.unavailable_reason() is not None, reason=cgroup.unavailable_reason() or ""),
]

SCALE = 10
# naive (in-memory) torch stack at SCALE, cgroup max_usage, MiB: the cap must be below it
NAIVE_PEAK_MIB = 4287
# streaming torch stack at SCALE, cgroup max_usage, MiB (measured 2026-11-30): the cap must hold it
STREAMING_PEAK_MIB = 1628
CAP_MIB = 2560
TIMEOUT_S = 600


def test_torch_stack_streams_under_a_memory_cap(tmp_path):
    assert STREAMING_PEAK_MIB < CAP_MIB < NAIVE_PEAK_MIB, "a cap the naive stack would exceed"
    out = tmp_path / "out"
    cmd, env = twinpipe_command("run", "--stack", "torch", "--months", "1-12", "--scale", str(SCALE),
                                "--workers", "2", "--epochs", "1", "--no-report", "--out", str(out))
    log = tmp_path / "run.log"
    with open(log, "w") as f:
        r = cgroup.run_capped(cmd, CAP_MIB * cgroup.MiB, timeout=TIMEOUT_S, cwd=ROOT, env=env,
                              stdout=f, stderr=f)
    tail = log.read_text()[-3000:]
    assert not r.timed_out, f"over {TIMEOUT_S} s under the cap:\n{tail}"
    assert not r.oom_killed, f"OOM-killed at {r.max_usage_mib:.0f} MiB (cap {CAP_MIB} MiB):\n{tail}"
    assert r.returncode == 0, f"exit {r.returncode}:\n{tail}"
    run = json.loads((out / "torch" / "run.json").read_text())
    assert run["failed_stage"] is None
    assert run["stages"]["ingest"]["rows"] > 300_000 * SCALE  # the scaled data, not a sample
    assert run["stages"]["push"].get("pushed")
