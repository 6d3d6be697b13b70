"""Publishing spans atomically: a span folder replaced in one rename, the generations a killed run
left behind found and removed."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from components.common import storage
from components.common.spans import HISTORY, resolve_spans

log = logging.getLogger("twinpipe.ingest")


def _generations(spans_dir: Path) -> Path:
    return spans_dir.parent / f".{spans_dir.name}"


def stale_generations(names: list[str], current: str | None) -> list[str]:
    """The ``gen-*`` names to remove when ``current`` is published: all but ``current`` and the
    newest generation published before it — newer ones are leftovers of a killed ingest. The one
    before is kept because a run reads the spans in place (:mod:`components.common.rows`
    references name a generation) and must survive one publish made while it reads. Names sort by
    their ``time_ns`` stamp."""
    gens = sorted(n for n in names if n.startswith("gen-"))
    if current is None:
        return gens
    keep = {current, *[n for n in gens if n < current][-1:]}
    return [n for n in gens if n not in keep]


def remove_leftovers(spans_dir: str | Path) -> list[str]:
    """Removes what a killed ingest left: unpublished generations, generations older than the one
    before the current one, temporary links, and the ``.span-*`` folders of the older in-place
    layout. Call it holding the run lock."""
    spans_dir = Path(spans_dir)
    current = spans_dir.resolve().name if spans_dir.is_symlink() else None
    gone = []
    root = _generations(spans_dir)
    names = [p.name for p in root.glob("gen-*")]
    stale = [root / n for n in stale_generations(names, current)]
    for p in stale + list(spans_dir.parent.glob(f".{spans_dir.name}.link-*")):
        if p.is_symlink() or p.is_file():
            p.unlink(missing_ok=True)
        else:
            shutil.rmtree(p, ignore_errors=True)
        gone.append(str(p))
    if spans_dir.is_dir() and not spans_dir.is_symlink():
        for p in spans_dir.glob(".span-*"):
            shutil.rmtree(p, ignore_errors=True)
            gone.append(str(p))
    if gone:
        log.info("[ingest] removed leftovers and old generations: %s", ", ".join(gone))
    return gone


def publish_spans(spans_dir: str | Path, fill) -> Path:
    """Writes a new generation of the spans folder with ``fill(folder)`` and publishes it with one
    atomic rename of the ``spans_dir`` symlink: readers see the old spans or the new ones, never a
    mix, and a failure inside ``fill`` leaves the old ones untouched. Afterwards generations older
    than the one just replaced are removed (:func:`stale_generations`: a run still reading the
    replaced one keeps its files); a real folder from the older in-place layout is replaced the
    same way and removed."""
    spans_dir = Path(spans_dir)
    spans_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(spans_dir)
    root = _generations(spans_dir)
    root.mkdir(exist_ok=True)
    gen = Path(tempfile.mkdtemp(prefix=f"gen-{time.time_ns()}-", dir=root))
    try:
        fill(gen)
        link = spans_dir.parent / f".{spans_dir.name}.link-{gen.name}"
        os.symlink(os.path.relpath(gen, spans_dir.parent), link)
        if spans_dir.is_dir() and not spans_dir.is_symlink():  # the older in-place layout
            os.rename(spans_dir, root / f"old-{time.time_ns()}")
        os.replace(link, spans_dir)
    except BaseException:
        shutil.rmtree(gen, ignore_errors=True)
        raise
    stale = set(stale_generations([p.name for p in root.iterdir()], gen.name))
    for old in root.iterdir():
        if old.name in stale or not old.name.startswith("gen-"):
            shutil.rmtree(old, ignore_errors=True)
    return gen


# Object storage has no symlink: a published generation is the prefix ``SPANS_POINTER`` names.
SPANS_POINTER = "CURRENT.json"


def stage_history(spans_url: str, local_spans: str | Path) -> None:
    """Downloads the ``history/`` of the current generation under ``spans_url`` (an object-store
    prefix) into ``local_spans/history``: the drift references, key hashes and verdicts an ingest
    on local scratch is judged against before :func:`publish_remote` uploads its generation."""
    current = resolve_spans(spans_url)
    if current != spans_url and storage.isdir(storage.join(current, HISTORY)):
        storage.download(storage.join(current, HISTORY), Path(local_spans) / HISTORY)


def publish_remote(local_spans: str | Path, spans_url: str) -> str | None:
    """Uploads the generation ``local_spans`` links to as ``spans_url/gen-<ns>``, then writes
    ``spans_url/CURRENT.json`` (one object, written last) to switch readers to it; generations older
    than the one it replaced are removed afterwards (:func:`stale_generations`: a pipeline still
    reading the replaced one in place keeps it). Returns the new generation's URL, or None when
    ingest never wrote spans there."""
    local = Path(local_spans)
    if not local.is_symlink() and not (local / "history").exists():
        return None
    gen = f"gen-{time.time_ns()}"
    storage.upload(local.resolve(), storage.join(spans_url, gen))
    storage.write_json(storage.join(spans_url, SPANS_POINTER),
                       {"generation": gen, "published_at": time.time()})
    for name in stale_generations(storage.listdir(spans_url), gen):
        storage.rm(storage.join(spans_url, name), recursive=True)
    return storage.join(spans_url, gen)
