"""Training scaling at fixed threads per worker: the probe behind ``OUT/<stack>/scaling.json`` and
the report's Training scaling section.

Efficiency compares N workers with one worker at the same threads per worker T::

    efficiency = samples/s(N workers x T threads) / (N x samples/s(1 worker x T threads))

N is the GPU count when the machine has GPUs, else 2; T is 1 on CPU (the cores // N on a GPU
machine, to feed each device). Three points, all from the stack's probe (its own launcher and
training code, steps timed on batches held in memory; :mod:`components.tfx.scaling_probe`,
:mod:`components.torch.scaling_probe`):

* ``baseline``: 1 worker, the run's per-worker batch B;
* ``weak``: N workers, B each (constant per-worker batch; the global batch grows to N x B);
* ``strong``: N workers, B / N each (constant global batch B).

For each point the probe also runs the step un-overlapped and times its parts: compute (forward,
backward, optimizer update) and the gradient all-reduce (the collective, which also holds the wait
for the slowest worker). The run's own train stage (its workers, cores / workers threads each) is
kept beside them for reference, not used in the efficiencies.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from comparison.plots import COLORS, grouped_bars, png, series
from comparison.sections import STACK_NAMES, img, num, table
from components.common import storage
from components.common.layout import SCALING_JSON
from components.common.threads import gpu_count, threads_per_worker

log = logging.getLogger("twinpipe.measure")

KEY = "scaling"
# Timed steps per loop (after the warm-up): enough for a stable mean at ~1-20 ms a step, few
# enough that the probe stays a fixed cost whatever the run's size.
PROBE_STEPS = 192
PROBE_WARMUP = 16

# How each stack's compute/communication split is measured, and its caveat (the report shows it).
SPLIT_METHOD = {
    "tfx": "Keras' train function for samples/s; for the split, the step as three tf.functions "
           "called in turn under the strategy (gradients, made dense as torch's are; the replica "
           "context's all_reduce of them; the optimizer update without aggregation), timed from "
           "Python. In training the "
           "optimizer runs the all-reduce inside one step function (steps_per_execution steps a "
           "call), so the split step also pays two Python round trips the real step does not.",
    "torch": "DDP for samples/s; for the split, the bare module: forward + backward, one gloo/NCCL "
             "all_reduce of the flattened gradients (flatten and copy back included), optimizer "
             "step, each timed. DDP overlaps its bucketed all-reduce with the backward pass, so "
             "in training part of the communication is hidden; the split shows its full cost.",
}
CAVEAT = ("The all-reduce time holds the wait for the slowest worker (load imbalance shows as "
          "communication). 'other' is the rest of the un-overlapped step: fetching the batch and "
          "zeroing the gradients, plus, for TF, the calls' Python overhead.")


def layout(gpus: int, cores: int) -> dict:
    """The probe's N workers x T threads: N = GPUs when there are GPUs, else 2; T = 1 on CPU."""
    if gpus:
        return {"workers": gpus, "threads_per_worker": max(1, cores // gpus), "gpus": gpus,
                "cores": cores, "why": f"{gpus} GPU(s): one worker per GPU"}
    return {"workers": 2, "threads_per_worker": 1, "gpus": 0, "cores": cores,
            "why": "CPU: 2 workers, 1 intra-op thread each"}


def _ratio(point: dict, base: dict, n: int) -> dict:
    speedup = point["samples_per_s"] / base["samples_per_s"]
    return {"workers": n, "per_worker_batch": point["per_worker_batch"],
            "global_batch": point["global_batch"], "speedup": round(speedup, 3),
            "efficiency": round(speedup / n, 3)}


def _point(kind: str, workers: int, threads: int, phase: dict) -> dict:
    split = phase["split"]
    return {"workers": workers, "threads": threads, "scaling": kind,
            "per_worker_batch": phase["per_worker_batch"], "global_batch": phase["global_batch"],
            "samples_per_s": phase["samples_per_s"], "step_ms": phase["step_ms"],
            "steps": phase["steps"], "source": "probe",
            "split": {**split, "other_ms": round(max(0.0, split["step_ms"] - split["compute_ms"]
                                                     - split["comm_ms"]), 4)}}


def scaling_doc(stack: str, lay: dict, batch: int, one: dict, many: dict | None,
                pipeline_train: dict) -> dict:
    """``scaling.json`` from the probe's 1-worker and N-worker results (``many`` None when
    N is 1: one GPU, nothing to scale to)."""
    n = lay["workers"]
    # threads: what each worker's framework reported running with (the pin, checked)
    base = _point("baseline", 1, one["threads"], one["phases"][0])
    points = [base]
    doc = {"stack": stack, "layout": lay, "per_worker_batch": batch}
    if many is not None:
        by_batch = {p["per_worker_batch"]: p for p in many["phases"]}
        strong_batch = max(1, batch // n)
        points += [_point("weak", n, many["threads"], by_batch[batch]),
                   _point("strong", n, many["threads"], by_batch[strong_batch])]
        doc["weak"] = _ratio(points[1], base, n)
        doc["strong"] = _ratio(points[2], base, n)
        # The headline figures: N workers against one at the same threads and per-worker batch.
        doc["speedup"], doc["efficiency"] = doc["weak"]["speedup"], doc["weak"]["efficiency"]
    else:
        doc.update(speedup=None, efficiency=None, skipped=f"{n} worker(s): nothing to scale to")
    doc.update(points=points, split_method=SPLIT_METHOD[stack], caveat=CAVEAT,
               pipeline_train=pipeline_train, probe_steps=PROBE_STEPS)
    return doc


def scaling(stack: str, cfg, contract, ingested, summary: dict, out_dir: Path,
            gpus: int | None = None) -> dict:
    """Runs the stack's probe at 1 and N workers and writes ``<stack>/scaling.json``."""

    if stack == "tfx":
        from pipelines.tfx.local_runner import probe_scaling
    else:
        from pipelines.torch.local_runner import probe_scaling
    if gpus is None:
        gpus = gpu_count()
    lay = layout(gpus, os.cpu_count() or 1)
    n, t, batch = lay["workers"], lay["threads_per_worker"], cfg.batch_size
    t0 = time.time()
    log.info("[%s][scaling] probe: 1 and %d worker(s) x %d thread(s), batch %d per worker "
             "(weak) and %d (strong)", stack, n, t, batch, max(1, batch // n))
    one = probe_scaling(cfg, contract, ingested, summary, 1, t, [batch], PROBE_STEPS, PROBE_WARMUP)
    many = None
    if n > 1:
        batches = sorted({batch, max(1, batch // n)}, reverse=True)
        many = probe_scaling(cfg, contract, ingested, summary, n, t, batches, PROBE_STEPS,
                             PROBE_WARMUP)
    tr = summary["stages"]["train"]
    pipeline_train = {"workers": cfg.workers, "threads": threads_per_worker(cfg.workers, cfg.threads),
                      "samples_per_s": tr.get("samples_per_s"),
                      "global_batch": tr.get("global_batch"), "source": "pipeline train stage"}
    doc = scaling_doc(stack, lay, batch, one, many, pipeline_train)
    doc["probe_wall_s"] = round(time.time() - t0, 1)
    storage.write_json(out_dir / stack / SCALING_JSON, doc)
    if "weak" in doc:
        log.info("[%s][scaling] %d workers x %d thread(s): weak %.2fx (efficiency %.0f%%), strong "
                 "%.2fx (%.0f%%), probe %.0f s", stack, n, t, doc["weak"]["speedup"],
                 100 * doc["weak"]["efficiency"], doc["strong"]["speedup"],
                 100 * doc["strong"]["efficiency"], doc["probe_wall_s"])
    return doc


# --- report -------------------------------------------------------------------------------------

def sentence(stack_name: str, sc: dict) -> str | None:
    """The summary's line on one stack's scaling (None without multi-worker points)."""
    if "weak" not in sc:
        return None
    lay, weak, strong = sc["layout"], sc["weak"], sc["strong"]
    n, t = lay["workers"], lay["threads_per_worker"]
    weak_point = next(p for p in sc["points"] if p["scaling"] == "weak")
    w = weak_point["split"]
    share = w["comm_ms"] / w["step_ms"] if w["step_ms"] else 0.0
    return (f"{stack_name}: at {t} thread(s) per worker, {n} workers trained at "
            f"{weak['speedup']:.2f}x the samples/s of 1 worker with the same per-worker batch "
            f"(weak-scaling efficiency {weak['efficiency']:.0%}) and at {strong['speedup']:.2f}x "
            f"with the global batch split between them (strong {strong['efficiency']:.0%}); "
            f"un-overlapped, a step of {n} workers spends {w['compute_ms']:.2f} ms computing and "
            f"{w['comm_ms']:.2f} ms in the gradient all-reduce ({share:.0%} of the step), "
            f"against {weak_point['step_ms']:.2f} ms for the step as trained.")


def _label(p: dict) -> str:
    return f"{p['workers']}x{p['threads']} {p['scaling']}"


def _split_bars(series: list[tuple[str, str, dict]]) -> str:
    """Stacked bars of the un-overlapped step (compute, all-reduce, other) per stack and point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, parts = [], []
    for label, stack, sc in series:
        for p in sc["points"]:
            # the stack's short name on one run (a run's series label is long)
            short = stack if label == STACK_NAMES.get(stack) else label
            labels.append(f"{short}\n{_label(p)}")
            parts.append((stack, p["split"]))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(labels)), 3.4))
    x = range(len(labels))
    compute = [s["compute_ms"] for _, s in parts]
    comm = [s["comm_ms"] for _, s in parts]
    other = [s["other_ms"] for _, s in parts]
    ax.bar(x, compute, color=[COLORS.get(st, "#555") for st, _ in parts],
           label="compute (stack colour)")
    ax.bar(x, comm, bottom=compute, color="#5f6368", label="all-reduce")
    ax.bar(x, other, bottom=[a + b for a, b in zip(compute, comm, strict=True)], color="#dadce0",
           label="other")
    ax.set_xticks(list(x), labels, fontsize=7)
    ax.set_ylabel("ms per step")
    ax.set_title("Un-overlapped training step: compute vs gradient all-reduce", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return png(fig)


def render(runs: list[dict]) -> str:
    """The Training scaling section's body (tables and plots) for the runs' scaling.json."""
    import html

    found = [(label, stack, r["stacks"][stack].get("scaling")) for label, r, stack in series(runs)]
    shown = [(label, stack, sc) for label, stack, sc in found if sc and "layout" in sc]
    parts = ["<p>Efficiency = samples/s(N workers × T threads) / (N × samples/s(1 worker × T "
             "threads)), every point from the stack's probe at the same threads per worker: "
             "<b>weak</b> scaling keeps the per-worker batch (the global batch grows N×), "
             "<b>strong</b> scaling splits the run's batch between the N workers. Steps are timed "
             "on batches held in memory after a warm-up; the run's own train stage is shown for "
             "reference.</p>"]
    rows = []
    for label, _, sc in shown:
        eff = {"baseline": "1.00x / 100%"}
        for kind in ("weak", "strong"):
            if kind in sc:
                eff[kind] = f"{sc[kind]['speedup']:.2f}x / {sc[kind]['efficiency']:.0%}"
        for p in sc["points"]:
            s = p["split"]
            rows.append([label, p["workers"], p["threads"], p["scaling"], p["per_worker_batch"],
                         p["global_batch"], num(p["samples_per_s"], 0), num(p["step_ms"], 3),
                         *(num(s[k], 3) for k in ("step_ms", "compute_ms", "comm_ms", "other_ms")),
                         eff.get(p["scaling"], "–")])
        pt = sc.get("pipeline_train") or {}
        rows.append([label, pt.get("workers"), pt.get("threads"), "pipeline train stage", "",
                     pt.get("global_batch"), num(pt.get("samples_per_s"), 0), *[""] * 6])
    for label, _, sc in found:
        if not sc or "layout" not in sc:
            rows.append([label, "–", "–", "no fixed-thread probe in this run", *["–"] * 9])
    parts.append(table(["stack", "workers", "threads / worker", "point", "batch / worker",
                         "global batch", "samples/s", "step ms", "un-overlapped step ms",
                         "compute ms", "all-reduce ms", "other ms", "speedup / efficiency"], rows))
    if shown:
        kinds = ["baseline", "weak", "strong"]

        def value(r, stack, kind):
            sc = r["stacks"][stack].get("scaling") or {}
            return next((p["samples_per_s"] for p in sc.get("points", [])
                         if p.get("scaling") == kind), None)

        parts.append("<div class='row'>"
                     + img(grouped_bars(runs, kinds, value, "Training samples/s at fixed threads "
                                          "per worker", "samples/s", fmt="%.0f"), "scaling")
                     + img(_split_bars(shown), "compute vs all-reduce") + "</div>")
        methods = {stack: sc["split_method"] for _, stack, sc in shown}
        parts.append("<p>How the split was measured: " + " ".join(
            f"<b>{html.escape(STACK_NAMES[s])}</b>: {html.escape(m)}" for s, m in methods.items())
            + f" {html.escape(shown[0][2]['caveat'])}</p>")
    return "".join(parts)
