"""The push destination as a model registry: versioned folders, atomic pushes, latest lookup.

Layout::

    DEST/
      1732470000123/   a pushed model version (name: milliseconds since epoch, sortable)
        ...model files...
        push.json      what was pushed, when, from which run, with which metrics
      .tmp-*/          in-flight pushes; never visible as versions

A version exists only once its folder was renamed into place, so readers never see half a push.
The latest version is the baseline for the next run of the same stack on any orchestrator
(self-hosted KFP v2 cannot run TFX's Resolver, so the baseline is looked up here instead).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PUSH_RECORD = "push.json"


def versions(dest: str | Path) -> list[Path]:
    """Pushed versions, oldest first."""
    d = Path(dest)
    if not d.is_dir():
        return []
    return sorted(
        (p for p in d.iterdir() if p.is_dir() and p.name.isdigit() and (p / PUSH_RECORD).exists()),
        key=lambda p: int(p.name),
    )


def latest(dest: str | Path) -> Path | None:
    """The newest pushed version, or None when nothing was pushed yet."""
    v = versions(dest)
    return v[-1] if v else None


def push_atomic(
    dest: str | Path,
    fill: Callable[[Path], None],
    record: dict,
) -> Path:
    """Pushes a new version: ``fill(tmp_dir)`` writes the model files, then one rename publishes.

    Args:
        dest: the push destination (created if missing).
        fill: writes the version's files into the folder it is given.
        record: metadata stored as push.json (metrics, blessing, run, stack).

    Returns:
        The published version folder.
    """
    d = Path(dest)
    d.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=d))
    try:
        fill(tmp)
        version = max(int(time.time() * 1000), int(latest(d).name) + 1 if latest(d) else 0)
        (tmp / PUSH_RECORD).write_text(
            json.dumps(record | {"version": version, "pushed_at": time.time()}, indent=2)
        )
        final = d / str(version)
        os.rename(tmp, final)  # atomic on one filesystem; fails if the name exists
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
