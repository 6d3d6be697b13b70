"""The PyTorch stack's scaling probe: timed DDP steps at fixed threads per rank, run by torchrun
like the training app (:mod:`components.torch.trainer`, whose data and model code it uses).

    torchrun --nproc_per_node N -m components.torch.scaling_probe --train ROWS --out probe.json ...

Each rank pins its intra-op threads (``TWINPIPE_THREADS``, :mod:`components.common.threads`),
holds its shard's first rows in memory, already encoded (so the steps time the training step,
not the Parquet reads), and for each per-rank batch in ``--batches`` runs two timed loops:

* ``fused``: the training step as the app runs it (DDP, whose gradient all-reduce overlaps the
  backward pass): samples/s and mean step time;
* ``split``: the same step un-overlapped, on the bare module: forward + backward, then one
  all-reduce of the flattened gradients (the collective, flatten and copy back included), then
  the optimizer step, each timed; compute = forward + backward + optimizer step, comm = the
  all-reduce. The all-reduce also holds the wait for the slowest rank (load imbalance shows as
  comm).

Rank 0 writes the means to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from components.common import rows
from components.torch.model import FlightsNet
from components.torch.trainer import feature_list, fit_stats, init_process_group, rank_device

log = logging.getLogger("twinpipe.torch.scaling")

# Rows a rank keeps in memory for the probe: enough distinct batches at the flights' batch sizes.
PROBE_ROWS = 1 << 16


def shard_tensors(train: str, numeric: list[str], categorical: list[str], label: str, rank: int,
                  world: int, distributed: bool, device, max_rows: int = PROBE_ROWS):
    """This rank's shard (its first ``max_rows`` rows), encoded as in training: the model's
    preprocessing is fitted on the whole split as the app does (:func:`fit_stats`)."""
    groups = rows.row_groups(train)
    prep = fit_stats(groups, numeric, categorical, rank, world, distributed)
    parts, n = [], 0
    for piece in rows.shard(groups, rank, world):
        frame = rows.read_piece(piece, numeric + categorical + [label]).to_pandas()
        num, cat = prep.encode(frame)
        parts.append((num, cat, frame[label].to_numpy(dtype=np.float32)))
        n += len(frame)
        if n >= max_rows:
            break
    num, cat, y = (np.concatenate(p)[:max_rows] for p in zip(*parts, strict=True))
    return prep, [torch.from_numpy(a).to(device) for a in (num, cat, y)]


class Batches:
    """Batch ``i`` of ``size`` rows from the held tensors, cycling (views, no copies); a shard
    smaller than a batch is repeated up to one."""

    def __init__(self, tensors: list[torch.Tensor], size: int):
        n = len(tensors[0])
        if n < size:
            reps = -(-size // n)
            tensors = [t.repeat(reps, *([1] * (t.dim() - 1))) for t in tensors]
            n = len(tensors[0])
        self.tensors, self.size, self.slots = tensors, size, max(1, n // size)

    def __call__(self, i: int):
        start = (i % self.slots) * self.size
        return tuple(t[start:start + self.size] for t in self.tensors)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _slowest(seconds: float, distributed: bool, device) -> float:
    """The largest of every rank's ``seconds`` (the job's pace is its slowest rank's); the tensor
    on the rank's device (NCCL reduces only CUDA tensors)."""
    if not distributed:
        return seconds
    t = torch.tensor([seconds], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def _mean_over_ranks(values: list[float], distributed: bool, device) -> list[float]:
    if not distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / dist.get_world_size()).tolist()


def fused(net, optim, batches: Batches, steps: int, warmup: int, device, distributed: bool
          ) -> dict:
    """The training step as the app runs it; samples/s over ``steps`` after ``warmup``."""
    loss_fn = torch.nn.BCELoss()

    def step(i):
        xn, xc, yy = batches(i)
        optim.zero_grad(set_to_none=True)
        loss_fn(net(xn, xc), yy).backward()
        optim.step()

    for i in range(warmup):
        step(i)
    _sync(device)
    if distributed:
        dist.barrier()
    t0 = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    _sync(device)
    wall = _slowest(time.perf_counter() - t0, distributed, device)
    world = dist.get_world_size() if distributed else 1
    return {"steps": steps, "samples_per_s": round(steps * batches.size * world / wall, 1),
            "step_ms": round(1000 * wall / steps, 4)}


def split(model, optim, batches: Batches, steps: int, warmup: int, device, distributed: bool
          ) -> dict:
    """The step un-overlapped on the bare module: compute, then one all-reduce of the flattened
    gradients, then the optimizer step; the mean of each part and of the whole step (which also
    holds zeroing the gradients and fetching the batch), averaged over the ranks."""
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    loss_fn = torch.nn.BCELoss()
    params = [p for p in model.parameters() if p.requires_grad]
    world = dist.get_world_size() if distributed else 1
    totals = np.zeros(3)  # step, compute, comm

    def step(i) -> np.ndarray:
        t0 = time.perf_counter()
        xn, xc, yy = batches(i)
        optim.zero_grad(set_to_none=False)
        t1 = time.perf_counter()
        loss_fn(model(xn, xc), yy).backward()
        _sync(device)
        t2 = time.perf_counter()
        if distributed:
            grads = [p.grad for p in params]
            flat = _flatten_dense_tensors(grads)
            dist.all_reduce(flat)
            flat /= world
            for g, reduced in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
                g.copy_(reduced)
            _sync(device)
        t3 = time.perf_counter()
        optim.step()
        _sync(device)
        t4 = time.perf_counter()
        return np.array([t4 - t0, (t2 - t1) + (t4 - t3), t3 - t2])

    for i in range(warmup):
        step(i)
    if distributed:
        dist.barrier()
    for i in range(warmup, warmup + steps):
        totals += step(i)
    step_ms, compute_ms, comm_ms = _mean_over_ranks(list(1000 * totals / steps), distributed,
                                                    device)
    return {"steps": steps, "step_ms": round(step_ms, 4), "compute_ms": round(compute_ms, 4),
            "comm_ms": round(comm_ms, 4)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--train", required=True, help="rows source of the train split (as the app)")
    p.add_argument("--out", required=True, help="the JSON file rank 0 writes")
    p.add_argument("--numeric", required=True)
    p.add_argument("--categorical", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--batches", required=True, help="comma-separated per-rank batch sizes")
    p.add_argument("--steps", type=int, default=200, help="timed steps per loop")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--hidden-units", default="64,32")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    world, rank, device = rank_device()
    cuda = device.type == "cuda"
    distributed = world > 1
    if distributed:
        init_process_group("nccl" if cuda else "gloo", rank, world)
    tag = f"[torch][scaling][rank {rank}]"
    numeric, categorical = feature_list(args.numeric), feature_list(args.categorical)
    prep, tensors = shard_tensors(args.train, numeric, categorical, args.label, rank, world,
                                  distributed, device)
    hidden = tuple(int(u) for u in args.hidden_units.split(","))
    phases = []
    for size in (int(b) for b in args.batches.split(",")):
        torch.manual_seed(0)
        model = FlightsNet(prep, hidden).to(device)
        batches = Batches(tensors, size)
        net = DistributedDataParallel(model) if distributed else model
        optim = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
        phase = {"per_worker_batch": size, "global_batch": size * world,
                 **fused(net, optim, batches, args.steps, args.warmup, device, distributed)}
        phase["split"] = split(model, optim, batches, args.steps, args.warmup, device, distributed)
        phases.append(phase)
        log.info("%s batch %d per rank: %.0f samples/s, step %.3f ms (un-overlapped: compute "
                 "%.3f + all-reduce %.3f ms)", tag, size, phase["samples_per_s"],
                 phase["step_ms"], phase["split"]["compute_ms"], phase["split"]["comm_ms"])
    if rank == 0:
        doc = {"workers": world, "threads": torch.get_num_threads(), "device": str(device),
               "backend": dist.get_backend() if distributed else "none",
               "held_rows_per_worker": len(tensors[0]), "phases": phases}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(doc, indent=2))
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
