"""The push destination as a model registry: versioned folders, atomic pushes, latest lookup.

Layout::

    DEST/
      1732470000123/   a pushed model version (name: milliseconds since epoch, sortable)
        ...model files...
        push.json      what was pushed, when, from which run, with which metrics
      .tmp-*/          in-flight pushes; never visible as versions

A version exists only once its folder was renamed into place with its push.json, so readers never
see half a push; version names are claimed with ``mkdir``, so concurrent pushers cannot collide.
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
        final = _reserve(d)
        version = int(final.name)
        (tmp / PUSH_RECORD).write_text(
            json.dumps(record | {"version": version, "pushed_at": time.time()}, indent=2)
        )
        os.rename(tmp, final)  # atomic on one filesystem: replaces the empty reserved folder
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _reserve(d: Path) -> Path:
    """A new version name, claimed with ``mkdir`` (atomic, fails if it exists): two pushers in the
    same millisecond get different names. The empty folder is no version (no push.json)."""
    newest = max((int(p.name) for p in d.iterdir() if p.name.isdigit()), default=0)
    version = max(int(time.time() * 1000), newest + 1)
    while True:
        try:
            (d / str(version)).mkdir()
            return d / str(version)
        except FileExistsError:
            version += 1


def remove_leftovers(dest: str | Path) -> list[str]:
    """Removes ``.tmp-*`` folders of pushes that were killed, and reserved names that never got
    their push.json. Call it while no push into ``dest`` is in flight (under the run lock)."""
    d = Path(dest)
    if not d.is_dir():
        return []
    gone = [p for p in d.iterdir() if p.is_dir() and (
        p.name.startswith(".tmp-") or (p.name.isdigit() and not (p / PUSH_RECORD).exists()))]
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return [str(p) for p in gone]
