"""`make images && make test-images` as a test: both images build (Docker, or podman on a
debootstrap base) and their entry points answer as the image's UID on loopback.

Slow: about 15 minutes cold on 2 cores (build and checks), so `make test` leaves it out; CI runs
`make test-images` itself when its time allows (docs/images.md gives the figures).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.images]
ROOT = Path(__file__).resolve().parents[2]


def test_images_build_and_their_entry_points_answer(tmp_path):
    if os.geteuid() != 0 and not shutil.which("docker"):
        pytest.skip("building without Docker needs root (podman --isolation chroot, unshare)")
    env = {**os.environ, "OUT": str(tmp_path)}
    proc = subprocess.run(["make", "test-images", f"OUT={tmp_path}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((tmp_path / "test-images" / "report.json").read_text())
    assert report["passed"]
    steps = {(s["stack"], s["step"]): s for s in report["steps"]}
    assert steps[("torch", "torch-ddp")]["result"]["workers"] == 2
    assert steps[("tfx", "tfx-pods")]["result"]["strategy"] == "MultiWorkerMirroredStrategy"
    for stack in ("tfx", "torch"):
        sizes = json.loads((tmp_path / "images" / f"{stack}.json").read_text())
        assert sizes["size_mb"] > 0 and "COPY" in sizes["layers"][0]["created_by"]  # the code, last
