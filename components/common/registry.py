"""The push destination as a model registry: versioned folders, atomic pushes, latest lookup.

Layout (a local folder or an object-store prefix, ``gs://bucket/run/torch/pushed``)::

    DEST/
      1732470000123/   a pushed model version (name: milliseconds since epoch, sortable)
        ...model files...
        push.json      what was pushed, when, from which run, with which metrics
      current.json     {"version", "uri"}: the newest complete version, rewritten after each push
                       (what `twinpipe serve` follows: a newer push is loaded without a restart)
      .tmp-*/          local only: in-flight pushes; never visible as versions

A version counts only once its ``push.json`` exists, on both kinds of storage, and every reader
(:func:`versions`, :func:`latest`, the baseline lookup) lists versions by it:

* local folder: the version is filled in a ``.tmp-*`` folder and renamed into place with its
  push.json — one atomic rename; version names are claimed with ``mkdir``;
* object storage has no rename: the version name is claimed by creating ``DEST/<v>/.claim`` with
  the precondition ``ifGenerationMatch=0`` (two pushers never get one name), the model files are
  uploaded into ``DEST/<v>/``, and ``push.json`` is uploaded LAST. A reader that lists while a
  push is in flight sees no push.json there, so no version.

The latest version is the baseline for the next run of the same stack on any orchestrator
(self-hosted KFP v2 cannot run TFX's Resolver, so the baseline is looked up here instead).
Local versions are returned as :class:`~pathlib.Path` (as before), object-store ones as ``gs://``
URL strings (``Path`` would collapse ``gs://`` into ``gs:/``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from components.common import storage
from components.common.layout import CURRENT_JSON

PUSH_RECORD = "push.json"
CURRENT = CURRENT_JSON
CLAIM = ".claim"

Version = Path | str


def _name(v: Version) -> str:
    return storage.basename(v)


def versions(dest: str | Path) -> list[Version]:
    """Complete pushed versions (those with a push.json), oldest first."""
    if storage.is_remote(dest):
        found = {storage.basename(storage.parent(u)) for u in
                 storage.glob(storage.join(dest, "*", PUSH_RECORD))}
        return [storage.join(dest, n) for n in sorted((n for n in found if n.isdigit()), key=int)]
    d = Path(dest)
    if not d.is_dir():
        return []
    return sorted(
        (p for p in d.iterdir() if p.is_dir() and p.name.isdigit() and (p / PUSH_RECORD).exists()),
        key=lambda p: int(p.name),
    )


def latest(dest: str | Path) -> Version | None:
    """The newest pushed version, or None when nothing was pushed yet."""
    v = versions(dest)
    return v[-1] if v else None


def serving_uri(dest: str | Path) -> str | None:
    """The URI a model server loads: the newest complete version (None before the first push).

    Computed from the versions themselves (by push.json), so it is right even while a push is in
    flight; ``DEST/current.json`` holds the same URI for readers that cannot list (``twinpipe
    serve`` polls it)."""
    v = latest(dest)
    return str(v) if v is not None else None


def local_copy(version: Version, workdir: str | Path) -> Path:
    """A local folder holding ``version``'s files: the folder itself when local, else a download
    into ``workdir`` (TensorFlow's and onnxruntime's loaders read local files; TF's own GCS client
    cannot be pointed at an emulator)."""
    if not storage.is_remote(version):
        return Path(version)
    return Path(storage.download(version, Path(workdir) / _name(version)))


def push_atomic(
    dest: str | Path,
    fill: Callable[[Path], None],
    record: dict,
) -> Version:
    """Pushes a new version: ``fill(tmp_dir)`` writes the model files into a local folder, then
    they are published all at once for readers (rename locally; push.json last on object storage).

    Args:
        dest: the push destination (created if missing), a folder or a ``gs://`` prefix.
        fill: writes the version's files into the (local) folder it is given.
        record: metadata stored as push.json (metrics, blessing, run, stack).

    Returns:
        The published version folder (Path) or URL (str).
    """
    if storage.is_remote(dest):
        return _push_remote(str(dest), fill, record)
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
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _point_current(d, final)
    return final


def _push_remote(dest: str, fill: Callable[[Path], None], record: dict) -> str:
    with tempfile.TemporaryDirectory(prefix="twinpipe-push-") as tmp:
        fill(Path(tmp))
        (Path(tmp) / PUSH_RECORD).unlink(missing_ok=True)  # ours goes last, below
        final = _reserve_remote(dest)
        try:
            storage.upload(tmp, final)
            storage.write_json(storage.join(final, PUSH_RECORD),
                               record | {"version": int(_name(final)), "pushed_at": time.time()})
        except BaseException:
            storage.rm(final, recursive=True)
            raise
    _point_current(dest, final)
    return final


def _reserve_remote(dest: str) -> str:
    """A new version name, claimed by a precondition create of ``DEST/<v>/.claim``."""
    names = [int(n) for n in storage.listdir(dest) if n.isdigit()]
    version = max([int(time.time() * 1000), *(n + 1 for n in names)])
    holder = json.dumps({"pid": os.getpid(), "claimed_at": time.time()}).encode()
    while not storage.create_new(storage.join(dest, str(version), CLAIM), holder):
        version += 1
    return storage.join(dest, str(version))


def _point_current(dest: str | Path, version: Version) -> None:
    """Rewrites ``DEST/current.json`` after a version is complete — unless a newer version is
    already complete (a concurrent pusher finished first): the pointer only moves forward."""
    newest = latest(dest)
    if newest is not None and int(_name(newest)) > int(_name(version)):
        version = newest
    storage.write_json(storage.join(dest, CURRENT),
                       {"version": int(_name(version)), "uri": str(version)})


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
    """Removes what killed pushes left: ``.tmp-*`` folders, and version names (claimed, partly
    uploaded) that never got their push.json. Call it while no push into ``dest`` is in flight
    (under the run lock)."""
    if storage.is_remote(dest):
        complete = {_name(v) for v in versions(dest)}
        gone = [storage.join(dest, n) for n in storage.listdir(dest)
                if n.isdigit() and n not in complete]
        for u in gone:
            storage.rm(u, recursive=True)
        return gone
    d = Path(dest)
    if not d.is_dir():
        return []
    gone = [p for p in d.iterdir() if p.is_dir() and (
        p.name.startswith(".tmp-") or (p.name.isdigit() and not (p / PUSH_RECORD).exists()))]
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return [str(p) for p in gone]
