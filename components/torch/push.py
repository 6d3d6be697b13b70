"""The PyTorch stack's push stage: a blessed model's export published atomically to the registry."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from components.common import registry
from components.common.runinfo import record_stage

log = logging.getLogger("twinpipe.torch")


def push_stage(model_dir: str, blessing_path: str, push_destination: str, run_label: str = "",
               record_dir: str = "") -> str:
    """Publishes the serving folder as a new version, atomically, only when blessed."""
    t0 = time.time()
    blessing = json.loads(Path(blessing_path).read_text())
    pushed_path = ""
    if blessing["blessed"]:
        serving = Path(model_dir) / "serving"
        version = registry.push_atomic(
            push_destination,
            lambda tmp: shutil.copytree(serving, tmp, dirs_exist_ok=True),
            {"stack": "torch", "run": run_label, "auc": blessing["auc"]},
        )
        pushed_path = str(version)
        log.info("[torch][push] pushed %s", version)
    else:
        log.info("[torch][push] model not blessed: not pushed (%s)", "; ".join(blessing["reasons"]))
    record_stage(record_dir, "push", {"wall_s": round(time.time() - t0, 3), "pushed": bool(pushed_path),
                                "pushed_path": pushed_path or None})
    return pushed_path
