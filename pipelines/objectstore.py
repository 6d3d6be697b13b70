"""``twinpipe run --out gs://BUCKET/PREFIX``: which bytes live on the object store, which on scratch.

Both stacks' orchestrators work on local files: TFX's LocalDagRunner keeps its pipeline root and
MLMD (SQLite) on a filesystem, and TensorFlow's own C++ GCS client (``tf.io.gfile``, used by every
TFX component for its artifacts) has its endpoint built in and cannot be pointed at an emulator
(tests/gcs_tf.py reaches it only by routing TF's fixed endpoints to the emulator inside a network
namespace; there the TFX pipeline runs with every root on the bucket, as it does on a cluster).
So a local run into ``gs://`` works like this — every object-store access going through
:mod:`components.common.storage`:

=======================================  ===========================================================
on the object store (``OUT = gs://...``)  how it gets there
=======================================  ===========================================================
``OUT/.twinpipe.lock``                   the run lock object (``ifGenerationMatch=0``), whole run
``OUT/<stack>/pushed/<v>/`` + push.json  written DIRECTLY by the push stages (registry on GCS:
``OUT/<stack>/pushed/current.json``      files, then push.json last, then the serving pointer); the
                                         baseline lookup lists versions there and downloads the
                                         newest one for TFMA / onnxruntime
``OUT/spans/gen-*/`` + ``CURRENT.json``  the run's spans (train/eval/excluded Parquet, quarantine,
                                         ``history/`` profiles), uploaded after ingest as a new
                                         generation; ``spans/CURRENT.json`` (written last) names
                                         it — object storage has no symlink, readers resolve the
                                         spans with :func:`components.common.spans.resolve_spans`
``OUT/validation/``, ``OUT/<stack>/``    gate reports (gate.json), the alerts file, stage records,
``validation/``, ``run.json``, report    run.json and the report (HTML + JSON), uploaded when the
                                         run ends — also when a gate or a stage stopped it
=======================================  ===========================================================

On local scratch (a temporary folder, removed at the end): the TFX pipeline root and MLMD, the
kfp.local pipeline root (with the torch stack's rows references, which name the spans' files),
and the spans the stages read (what ingest wrote, read there in place; Beam's Parquet reader reads
them locally). Drift needs the previous spans' profiles: ``history/`` of the current
generation is downloaded before ingest. ``--input gs://...`` is downloaded to scratch first.
Paths inside uploaded JSON documents that point into scratch are rewritten to their ``OUT`` URL.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

from components.common import storage
from components.common.errors import GateError, TwinpipeError
from components.common.publish import publish_remote, stage_history

log = logging.getLogger("twinpipe")

# What is not uploaded: orchestrator internals, and pushed/ (the pushes already went to OUT).
_INTERNAL = ("pipeline_root", "metadata.sqlite", "pushed", "spans", ".spans", "input",
             ".twinpipe.lock", ".measured-model")


class ObjectStoreRun:
    """The scratch mirror of one run into ``out_url``; see the module docstring."""

    def __init__(self, out_url: str):
        self.out = out_url.rstrip("/")
        self.work = Path(tempfile.mkdtemp(prefix="twinpipe-run-"))

    def local(self, cfg):
        """The RunConfig the stacks run with: scratch out_dir, pushes to the object store, a
        downloaded ``--input``; the previous spans' profiles staged for drift."""
        import dataclasses

        input_path = cfg.input_path
        if input_path and storage.is_remote(input_path):
            target = self.work / "input" / storage.basename(input_path)
            log.info("[ingest] downloading %s", input_path)
            input_path = storage.download(input_path, target)
        self._stage_history()
        return dataclasses.replace(cfg, out_dir=str(self.work), input_path=input_path,
                                   push_root=self.out)

    def _stage_history(self) -> None:
        stage_history(storage.join(self.out, "spans"), self.work / "spans")

    def url(self, path: str | Path) -> str:
        """The OUT URL of a scratch path (unchanged when it is not under scratch)."""
        p = str(path)
        root = str(self.work)
        return self.out + p[len(root):] if p.startswith(root) else p

    def rewrite(self, text: str) -> str:
        return text.replace(str(self.work.resolve()), self.out).replace(str(self.work), self.out)

    def publish(self) -> None:
        """Uploads the run's outputs (spans as a new generation, then everything else)."""
        t0 = time.time()
        self._publish_spans()
        n = 0
        for f in sorted(self.work.rglob("*")):
            rel = f.relative_to(self.work)
            if not f.is_file() or f.is_symlink() or any(part in _INTERNAL for part in rel.parts):
                continue
            dest = storage.join(self.out, *rel.parts)
            if f.suffix in (".json", ".html", ".jsonl", ".log"):
                storage.write_text(dest, self.rewrite(f.read_text(errors="replace")))
            else:
                storage.upload(f, dest)
            n += 1
        log.info("[run] uploaded %d files to %s in %.1fs", n, self.out, time.time() - t0)

    def _publish_spans(self) -> None:
        """``spans/gen-*`` uploaded whole, then ``spans/CURRENT.json`` switches readers to it
        (:func:`components.common.publish.publish_remote`)."""
        publish_remote(self.work / "spans", storage.join(self.out, "spans"))

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def remap_error(e: BaseException, run: ObjectStoreRun) -> BaseException:
    """The same error with scratch paths replaced by their OUT URLs (scratch is deleted)."""

    if isinstance(e, GateError):
        new = GateError(run.rewrite(str(e)), e.checks, run.rewrite(str(e.report)),
                        source=e.source, quarantine=[run.rewrite(str(q)) for q in e.quarantine])
        return new
    if isinstance(e, TwinpipeError):
        new = type(e).__new__(type(e))
        new.args = (run.rewrite(str(e)),)
        new.__dict__.update(e.__dict__)
        return new
    return e

