"""The tuning's rule, without measuring anything: the candidate points per stack, the admissibility of
a point's AUC, the choice among measured points and its reason, and the tuning file (where it
lives, whether it matches a run, the settings it gives each stack)."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

from components.common import storage
from components.common.config import STACK_SETTINGS, STEPS_PER_EXECUTION, RunConfig
from components.common.contract import Contract
from components.common.errors import ContractError
from components.common.layout import TUNING_JSON
from components.common.threads import default_threads, gpu_count

KIND = "twinpipe.tuning/v1"


AUC_TOLERANCE = 0.005  # about one standard error of AUC on the slice's eval rows


# A point replaces the reference only when it is at least this much faster: repeated points on
# this shared 2-core machine differ by a few percent, and some settings cost time the
# steady-state clock does not see (a set thread count starts the TFX Trainer in its own process).
MIN_GAIN = 0.05


SLICE_TRAIN_ROWS = 65_536


SLICE_EVAL_ROWS = 16_384


# Samples every point trains (epochs over the slice, rounded up): 10 executions of 64 steps at
# batch 512, so the steady-state clock (started after the first execution) has 9 to time.
SLICE_SAMPLES = 327_680


BATCH_FACTORS = (1, 2, 4)  # x the default batch size


BEAM_MODES = ("in_memory", "multi_processing")


RULE = (f"shortest estimated train stage on the run's samples (steady-state train samples/s, "
        f"plus a fresh TensorFlow process's start-up for a TFX point that needs its own process) "
        f"whose AUC on the slice's eval rows is at least the reference point's minus "
        f"{AUC_TOLERANCE}, provided it is at least "
        f"{MIN_GAIN:.0%} faster than the reference (else the reference); reference: 1 worker on "
        f"every core with the default batch and learning rate; a batch k x the default trains "
        f"with lr x sqrt(k). Beam mode: the faster of in-memory and multi-processing on the run's "
        f"rows.")


def cores() -> int:
    """The cores the stacks' thread rule divides (they use os.cpu_count())."""
    return os.cpu_count() or 1


def candidates(stack: str, base: RunConfig, n_cores: int | None = None) -> list[dict]:
    """The sweep's points for ``stack``: the reference first (1 worker, every core, the default
    batch), then fewer threads, N = min(cores, 2) workers sharing the cores, (TFX) one step per
    execution, and larger batches. Each point is a full set of settings (:data:`STACK_SETTINGS`)."""

    n = n_cores or cores()
    b, lr = base.batch_size, base.learning_rate

    def point(workers: int, threads: int, factor: int = 1, spe: int = STEPS_PER_EXECUTION) -> dict:
        p = {"workers": workers, "threads": threads, "batch_size": b * factor,
             "learning_rate": float(f"{lr * math.sqrt(factor):.6g}")}
        if stack == "tfx":
            p["steps_per_execution"] = spe
        return p

    points = [point(1, n)]
    gpus = gpu_count()
    if n > 1:
        points.append(point(1, 1))
    # Several workers: one per GPU when there are GPUs (none on a single GPU: two ranks cannot
    # share it), else 2 sharing the cores.
    if gpus > 1:
        points.append(point(gpus, max(1, n // gpus)))
    elif not gpus and n > 1:
        points.append(point(min(n, 2), max(1, n // min(n, 2))))
    if stack == "tfx":
        points.append(point(1, n, spe=1))
    points += [point(1, n, factor=k) for k in BATCH_FACTORS if k != 1]
    return points


def estimated_train_s(point: dict, run_samples: int | None) -> float | None:
    """The point's train-stage seconds on the run: its samples at the point's steady-state speed
    plus the fixed start-up it adds (``fixed_s``: a TFX point that needs its own process pays a
    fresh TensorFlow's start-up, which the in-process reference does not); None without
    ``run_samples``."""
    if not run_samples:
        return None
    return run_samples / point["samples_per_s"] + point.get("fixed_s", 0.0)


def admissible(points: list[dict], tolerance: float = AUC_TOLERANCE,
               reference: int = 0) -> list[int]:
    """The indices of the points whose ``auc`` is >= the reference point's minus ``tolerance``
    (the reference always qualifies)."""
    floor = points[reference]["auc"] - tolerance
    return [i for i, p in enumerate(points) if i == reference or p["auc"] >= floor]


def choose(points: list[dict], tolerance: float = AUC_TOLERANCE, reference: int = 0,
           min_gain: float = MIN_GAIN, run_samples: int | None = None) -> int:
    """The index of the chosen point: among the points whose ``auc`` is >= the reference point's
    minus ``tolerance`` (the reference always qualifies), the one with the shortest
    :func:`estimated_train_s` on the run's samples (without ``run_samples``: the highest
    ``samples_per_s``), when it beats the reference by ``min_gain``; else the reference."""
    ok = admissible(points, tolerance, reference)

    def speed(i):  # higher is better: samples/s, or the run's samples per estimated second
        est = estimated_train_s(points[i], run_samples)
        return points[i]["samples_per_s"] if est is None else run_samples / est

    best = max(ok, key=speed)
    gain = speed(best) / speed(reference) - 1
    return best if gain >= min_gain else reference


def why(points: list[dict], best: int, run_samples: int | None = None) -> str:
    """One sentence: what was chosen over the reference and on what measured grounds."""
    ref, b = points[0], points[best]
    est = {i: estimated_train_s(points[i], run_samples) for i in (0, best)}
    ok = admissible(points)
    refused = [p for i, p in enumerate(points)
               if i not in ok and p["samples_per_s"] > b["samples_per_s"]]
    text = (f"{b['samples_per_s'] / ref['samples_per_s']:.2f}x the reference's samples/s "
            f"({b['samples_per_s']:,.0f} vs {ref['samples_per_s']:,.0f}), AUC {b['auc']:.4f} vs "
            f"{ref['auc']:.4f}" if best else
            f"no admissible point is {MIN_GAIN:.0%} faster than the reference "
            f"({b['samples_per_s']:,.0f} samples/s, AUC {b['auc']:.4f})")
    if est[0] is not None:
        text += (f"; estimated train stage on the run's {run_samples:,} samples "
                 f"{est[best]:.1f} s vs the reference's {est[0]:.1f} s"
                 + (f" ({b['fixed_s']:.1f} s of TensorFlow start-up included)"
                    if b.get("fixed_s") else ""))
    if refused:
        text += (f"; {len(refused)} faster point(s) refused for AUC more than {AUC_TOLERANCE} "
                 f"below the reference's")
    return text


def tuning_path(out_dir: str | Path) -> str:
    """``OUT/tuning.json`` (local or ``gs://``)."""
    return storage.join(str(out_dir), TUNING_JSON)


def load(path: str | Path) -> dict:
    """A tuning.json (local or ``gs://``), or one paragraph saying why it cannot be used."""

    try:
        doc = storage.read_json(str(path))
    except (OSError, ValueError) as e:
        raise ContractError(f"--tuning {path}: cannot read a tuning file there ({e}); run "
                            "`twinpipe tune --out DIR` to make one, or pass --tuning none.") from None
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise ContractError(f"--tuning {path}: not a twinpipe tuning file (kind {KIND!r} "
                            "expected); run `twinpipe tune` to make one.")
    stacks = doc.get("stacks")
    bad = ([] if isinstance(stacks, dict) else ["stacks"]) or [
        f"stacks.{s}.chosen" for s, e in stacks.items()
        if not isinstance(e, dict) or not isinstance(e.get("chosen"), dict)]
    if bad:
        raise ContractError(f"--tuning {path}: a tuning file without {', '.join(bad)}; run "
                            "`twinpipe tune` to make a new one.")
    return doc


def same_file(a: str, b: str) -> bool:
    if storage.is_remote(a) or storage.is_remote(b):
        return a.rstrip("/") == b.rstrip("/")
    return Path(a).resolve() == Path(b).resolve()


def matches(doc: dict, contract: Contract, ingested, stacks: tuple[str, ...]) -> bool:
    """Whether ``doc`` was measured for this run: same cores, contract, rows and spans, and every
    stack of the run swept."""
    return (doc.get("cores") == cores() and doc.get("contract") == contract.name
            and doc.get("rows") == ingested.rows and doc.get("spans") == ingested.span_numbers
            and all(s in doc.get("stacks", {}) for s in stacks))


def settings(doc: dict, stack: str, explicit: set[str]) -> dict:
    """The stack's chosen settings, less what the user set explicitly: an explicit batch size
    drops the tuned learning rate too (it was scaled for the tuned batch), explicit workers the
    tuned threads (they were chosen for the tuned worker count). Threads equal to the stacks' own
    rule (cores // workers) are left to it."""
    chosen = dict(doc["stacks"][stack]["chosen"])
    drop = set(explicit)
    if "batch_size" in explicit:
        drop.add("learning_rate")
    if "workers" in explicit:
        drop.add("threads")
    out = {k: v for k, v in chosen.items() if k in STACK_SETTINGS and k not in drop}
    workers = out.get("workers", 1)
    if out.get("threads") == default_threads(workers, cores()):
        out.pop("threads")
    return out


def apply(cfg: RunConfig, doc: dict, source: str, stacks: tuple[str, ...],
          explicit: set[str]) -> RunConfig:
    """``cfg`` with each stack's tuned settings as its per-stack overrides."""
    per_stack = tuple((s, tuple(sorted(settings(doc, s, explicit).items()))) for s in stacks
                      if s in doc.get("stacks", {}))
    kept = f"; explicit flags kept: {', '.join(sorted(explicit))}" if explicit else ""
    return dataclasses.replace(cfg, per_stack=per_stack,
                               settings_source=f"tuning {source}{kept}")
