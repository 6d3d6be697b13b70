"""The memory-capped run harness (tests/cgroup.py) on a real cgroup: a process allocating well
above the cap is OOM-killed, one well below it finishes, and the cgroup is removed afterwards."""

import sys

import pytest

from tests import cgroup

pytestmark = pytest.mark.skipif(cgroup.unavailable_reason() is not None,
                                reason=cgroup.unavailable_reason() or "")

CAP = 160 * cgroup.MiB


def _allocate(mib: int) -> list[str]:
    # bytes * n writes every page (a zero-filled bytearray could stay unbacked)
    return [sys.executable, "-c", f"b = b'x' * ({mib} << 20); print(len(b))"]


def _capped_groups() -> set:
    return {p.name for p in cgroup._own_cgroup().iterdir() if p.name.startswith("twinpipe-cap-")}


def test_allocation_above_the_cap_is_oom_killed():
    before = _capped_groups()
    r = cgroup.run_capped(_allocate(600), CAP, timeout=60, capture_output=True)
    assert r.returncode != 0 and r.oom_killed, r
    assert CAP - 8 * cgroup.MiB <= r.max_usage_bytes <= CAP  # it reached the cap
    assert _capped_groups() == before  # removed afterwards


def test_allocation_below_the_cap_succeeds_with_its_peak():
    r = cgroup.run_capped(_allocate(60), CAP, timeout=60, capture_output=True)
    assert r.returncode == 0 and not r.oom_killed, r
    # the 60 MiB string plus the interpreter, and nowhere near the cap
    assert 60 * cgroup.MiB < r.max_usage_bytes < CAP


def test_command_joins_the_cgroup_before_it_runs():
    """What the command sees in /proc/self/cgroup is the capped cgroup, not ours."""
    r = cgroup.run_capped(["sh", "-c", "grep -q twinpipe-cap- /proc/self/cgroup"], CAP, timeout=30)
    assert r.returncode == 0
