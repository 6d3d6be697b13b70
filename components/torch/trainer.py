"""The PyTorch stack's training app: DDP under torchrun, free of KFP and TorchX imports.

    torchrun --nproc_per_node 2 -m components.torch.trainer --train SPANS_DIR --out DIR ...

gloo on CPU, NCCL on CUDA, the same code. ``--train`` is any rows source of
:mod:`components.common.rows` (a rows reference, spans, Parquet; local or gs://, read in place).
No rank holds the split: each streams only its equal, contiguous shard of the split's Parquet row
groups (:func:`components.common.rows.shard`), shuffled per epoch within a bounded buffer. The
preprocessing statistics come from one streaming pass, a part of the split per rank, merged
identically on every rank. Checkpoints are written every epoch (atomically, rank 0) and a
restarted job (torchrun ``--max_restarts``) resumes from the last one.
Outputs in ``--out``: ``model.pt`` (state dict), ``preprocessing.json``, ``train_metrics.json``,
``checkpoints/last.pt``. With ``TWINPIPE_REPLICA_REPORT_DIR`` set, every rank also writes its host
and a digest of its final weights there (:mod:`components.common.replicas`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from components.common import fault, rows, storage
from components.common.layout import TRAIN_METRICS_JSON
from components.common.replicas import report_dir, weights_digest, write_replica_report
from components.common.threads import threads_per_worker
from components.torch.model import FlightsNet, Preprocessing, PreprocessingStats

log = logging.getLogger("twinpipe.torch.train")

CHECKPOINT = "checkpoints/last.pt"
MODEL_FILES = ("model.pt", "preprocessing.json", TRAIN_METRICS_JSON)  # what load_model reads
# Rows a rank shuffles together: 2^20 (~64 MB encoded for the flights, ~16 row groups of 64k).
# At 1x and 3x a 2-rank shard fits whole, so its shuffle is a full permutation, as with the rows in
# memory. Measured at 10x (2.6M train rows, 1 epoch, 2 ranks): 2^18 rows -> AUC 0.724 at 528 MiB
# per rank, 2^20 -> 0.728 at 675 MiB, the whole split in memory (before streaming) 0.735 at 2 GiB.
SHUFFLE_ROWS = 1 << 20


def feature_list(text: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``; ``""`` -> ``[]`` (a contract without features of a kind)."""
    return [name.strip() for name in text.split(",") if name.strip()]


def count_rows(path: str, split: str = "train") -> int:
    """The rows of ``split`` at ``path`` (any rows source), from Parquet metadata (no data read)."""
    return rows.count(path, split)


def check_shard(rows: int, world: int) -> None:
    """Every rank needs at least one row: :func:`components.common.rows.shard` gives each of the
    ``world`` ranks ``rows // world`` of them."""
    if rows // max(world, 1) == 0:
        raise ValueError(
            f"[torch][train] {rows} train row(s) for {world} DDP rank(s): every rank needs at "
            f"least one row (each trains on rows // ranks = 0 rows). Train on more rows or with "
            f"fewer workers.")


def shard_batch(shard: int, batch_size: int) -> int:
    """The per-rank batch: ``batch_size``, or the whole shard when the shard is smaller.

    Shards are equal on every rank (the < ``world`` rows left over are dropped), so every rank
    takes the same number of steps (``shard // batch``, at least one): DDP's all-reduce needs each
    rank at every step.
    """
    return max(1, min(batch_size, shard))


def part_stats(groups: list[rows.RowGroup], numeric: list[str], categorical: list[str], rank: int,
               world: int) -> PreprocessingStats:
    """Rank ``rank``'s part of the preprocessing statistics, streamed batch by batch: its range
    of ``shard(equal=False)``, so the parts of all ranks cover every row once (the rows the
    equal training shards drop too)."""
    stats = PreprocessingStats(numeric, categorical)
    for piece in rows.shard(groups, rank, world, equal=False):
        stats.update(rows.read_piece(piece, numeric + categorical).to_pandas())
    return stats


def fit_stats(groups: list[rows.RowGroup], numeric: list[str], categorical: list[str], rank: int,
              world: int, distributed: bool) -> Preprocessing:
    """The preprocessing fitted on the whole train split in one streaming pass, a part per rank
    (:func:`part_stats`); every rank merges all parts in rank order, so all derive the same
    numbers (deterministic), each having read 1/world of the split."""
    stats = part_stats(groups, numeric, categorical, rank, world)
    if not distributed:
        return stats.result()
    parts: list = [None] * world
    dist.all_gather_object(parts, stats)
    merged = PreprocessingStats(numeric, categorical)
    for part in parts:
        merged.merge(part)
    return merged.result()


def shard_batches(pieces: list[rows.Piece], prep: Preprocessing, label: str, batch_size: int,
                  rng: np.random.Generator, device, buffer_rows: int = SHUFFLE_ROWS
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """This rank's shard for one epoch as full batches ``(numeric, categorical, label)``.

    The pieces (row groups) come in an order drawn from ``rng``; their encoded rows fill a
    buffer of about ``buffer_rows`` that is shuffled and cut into batches by tensor slicing (a
    DataLoader collating sample by sample is 3x slower here); the rows left over (< a batch) join
    the next buffer. Exactly ``shard rows // batch_size`` batches: the same on every rank.
    A plain generator rather than an IterableDataset: the rank already knows its shard, and there
    are no DataLoader workers to split it between (the reads are a small part of a step's time).
    """
    columns = prep.numeric + prep.categorical + [label]
    buffer_rows = max(buffer_rows, batch_size)
    held: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    n_held = 0

    def flush():
        nonlocal held, n_held
        num, cat, y = (np.concatenate(parts) for parts in zip(*held, strict=True))
        order = rng.permutation(len(y))
        full = len(y) - len(y) % batch_size
        keep, rest = order[:full], order[full:]
        held, n_held = ([(num[rest], cat[rest], y[rest])] if len(rest) else []), len(rest)
        tensors = [torch.from_numpy(a[keep]).to(device) for a in (num, cat, y)]
        for i in range(0, full, batch_size):
            yield tuple(t[i:i + batch_size] for t in tensors)

    for i in rng.permutation(len(pieces)):
        frame = rows.read_piece(pieces[i], columns).to_pandas()
        num, cat = prep.encode(frame)
        held.append((num, cat, frame[label].to_numpy(dtype=np.float32)))
        n_held += len(frame)
        if n_held >= buffer_rows:
            yield from flush()
    if n_held >= batch_size:
        yield from flush()  # what is left then (< a batch) is dropped


def _peak_rss_mib() -> float:
    """This process's peak resident memory (what bounded streaming keeps small)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def init_process_group(backend: str, rank: int, world: int, timeout_s: int = 180) -> None:
    """Joins the job's process group through a store prefix unique to this restart attempt.

    After a torchrun restart, the single-node rendezvous store still holds the previous attempt's
    process-group keys (peer addresses); a new group under the same prefix can read them and fail
    to connect or hang (seen with gloo). A finite timeout turns any hang into a restartable error.
    """
    from datetime import timedelta

    timeout = timedelta(seconds=timeout_s)
    store, rank, world = next(dist.rendezvous("env://", rank, world, timeout=timeout))
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    store = dist.PrefixStore(f"twinpipe/attempt-{attempt}", store)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout)


def progress(event: str, rank: int, **fields) -> None:
    """A training progress event (:mod:`components.common.fault`: nothing unless the fault
    tolerance test or measurement asked for them), tagged with torchrun's restart attempt."""
    fault.record(event, stack="torch", rank=rank,
                 attempt=int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")), **fields)


def rank_device() -> tuple[int, int, torch.device]:
    """(world size, rank, device) of this process as torchrun started it: its local GPU (made
    current) when there is one, else the CPU; TWINPIPE_THREADS intra-op threads (default: the
    cores shared by the ranks)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = torch.device("cpu")
    if torch.cuda.is_available():
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
        torch.cuda.set_device(device)
    torch.set_num_threads(threads_per_worker(world))
    return world, rank, device


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--train", required=True,
                   help="rows reference, spans folder, folder of parquet files or a file; local "
                   "or gs:// (read in place, streamed)")
    p.add_argument("--out", required=True, help="output folder; local or gs:// (a cluster job's "
                   "pods share no filesystem with the launcher: they get object URIs)")
    p.add_argument("--numeric", required=True, help="comma-separated numeric feature columns")
    p.add_argument("--categorical", required=True, help="comma-separated categorical columns")
    p.add_argument("--label", required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=512, help="per-rank batch size")
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--hidden-units", default="64,32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shuffle-rows", type=int, default=SHUFFLE_ROWS,
                   help="rows a rank shuffles together (its memory for rows; whole row groups "
                   "of the shard, in a per-epoch random order, fill it)")
    p.add_argument("--fail-once-after-epoch", type=int, default=-1,
                   help="testing: crash once after this epoch to exercise restart + resume")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    world, rank, device = rank_device()
    cuda = device.type == "cuda"
    numeric, categorical = feature_list(args.numeric), feature_list(args.categorical)
    if not numeric and not categorical:
        raise ValueError("[torch][train] no feature columns: --numeric and --categorical are "
                         "both empty.")
    # Rows are read in place (gs:// through pyarrow's filesystem); only the output is staged
    # locally when it lives on object storage.
    remote_out = args.out if storage.is_remote(args.out) else None
    scratch = Path(tempfile.mkdtemp(prefix="torch-train-")) if remote_out else None
    # Before joining the group (parquet metadata only): every rank stops the same way, at once.
    groups = rows.row_groups(args.train)
    total = sum(g.rows for g in groups)
    check_shard(total, world)
    distributed = world > 1
    if distributed:
        init_process_group("nccl" if cuda else "gloo", rank, world)
    backend = dist.get_backend() if distributed else "none"
    # On object storage the app works in a local folder and uploads what it keeps (checkpoint
    # after each epoch, so a restarted pod resumes; the model at the end).
    out = scratch / "out" if remote_out else Path(args.out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    tag = f"[torch][train][rank {rank}]"
    if remote_out and storage.exists(storage.join(remote_out, CHECKPOINT)):
        storage.download(storage.join(remote_out, CHECKPOINT), out / CHECKPOINT)

    t_prep = time.perf_counter()
    prep = fit_stats(groups, numeric, categorical, rank, world, distributed)
    prep_s = time.perf_counter() - t_prep
    pieces = rows.shard(groups, rank, world)
    shard = sum(piece.rows for piece in pieces)
    batch_size = shard_batch(shard, args.batch_size)
    steps_per_epoch = shard // batch_size  # from metadata: the same on every rank
    log.info("%s %s: shard of %d rows in %d row group(s) (%d row(s) of %d dropped for equal "
             "shards), %d steps per epoch; preprocessing fitted in %.1f s", tag,
             rows.describe(args.train), shard, len(pieces), total - shard * world, total,
             steps_per_epoch, prep_s)
    if batch_size < args.batch_size:
        log.info("%s shard of %d rows < batch %d: the shard is one batch", tag, shard,
                 args.batch_size)

    torch.manual_seed(args.seed)
    hidden = tuple(int(u) for u in args.hidden_units.split(","))
    model = FlightsNet(prep, hidden).to(device)
    optim = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    start_epoch = 0
    ckpt_path = out / CHECKPOINT
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device)
        model.load_state_dict(ckpt["model"])
        optim.load_state_dict(ckpt["optim"])
        start_epoch = ckpt["epoch"] + 1
        log.info("%s resumed from %s at epoch %d", tag, ckpt_path, start_epoch)
    progress("start", rank, resumed_epoch=start_epoch)
    ddp = DistributedDataParallel(model) if distributed else model
    loss_fn = torch.nn.BCELoss()

    steps, t_first, t0 = 0, None, time.perf_counter()
    loss_value = float("nan")
    loss = None
    for epoch in range(start_epoch, args.epochs):
        ddp.train()
        rng = np.random.default_rng([args.seed, epoch, rank])
        for xn, xc, yy in shard_batches(pieces, prep, args.label, batch_size, rng, device,
                                            args.shuffle_rows):
            optim.zero_grad(set_to_none=True)
            loss = loss_fn(ddp(xn, xc), yy)
            loss.backward()
            optim.step()
            steps += 1
            if t_first is None:
                t_first = time.perf_counter()  # steady-state clock starts after step 1
                progress("step", rank)
        if loss is not None:
            loss_value = float(loss.detach())
        if rank == 0:
            _save_atomic({"epoch": epoch, "model": model.state_dict(), "optim": optim.state_dict()},
                         ckpt_path)
            if remote_out:
                storage.upload(ckpt_path, storage.join(remote_out, CHECKPOINT))
            progress("epoch_end", rank, epoch=epoch)
        log.info("%s epoch %d/%d loss %.4f", tag, epoch + 1, args.epochs, loss_value)
        if epoch == args.fail_once_after_epoch:
            marker = storage.join(args.out, "failed-once")
            fail = not storage.exists(marker)
            if distributed:
                dist.barrier()  # every rank has read the marker before rank 0 writes it
            if fail:
                if rank == 0:
                    storage.write_text(marker, str(epoch))
                log.info("%s failing on purpose after epoch %d (restart test)", tag, epoch + 1)
                sys.exit(3)
    t_end = time.perf_counter()
    global_batch = batch_size * world
    log.info("%s peak RSS %.0f MiB", tag, _peak_rss_mib())
    steady = (steps - 1) * global_batch / (t_end - t_first) if steps > 1 and t_first else 0.0

    if report_dir() is not None:  # every rank, so replicas on different hosts can be compared
        state = model.state_dict()
        write_replica_report(
            "torch", rank, world,
            weights_digest((k, state[k].detach().cpu().numpy()) for k in sorted(state)),
            node_rank=int(os.environ.get("GROUP_RANK", "0")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            master=f"{os.environ.get('MASTER_ADDR', '')}:{os.environ.get('MASTER_PORT', '')}",
            rdzv_run_id=os.environ.get("TORCHELASTIC_RUN_ID", ""), backend=backend, steps=steps)
    if rank == 0:
        torch.save(model.state_dict(), out / "model.pt")
        (out / "preprocessing.json").write_text(prep.to_json())
        metrics = {
            "strategy": "DistributedDataParallel" if distributed else "single-process",
            "backend": backend,
            "device": str(device),
            "workers": world,
            "global_batch": global_batch,
            "epochs": args.epochs,
            "resumed_from_epoch": start_epoch,
            "steps": steps,
            "samples": steps * global_batch,
            "train_wall_s": round(t_end - t0, 3),
            "preprocessing_s": round(prep_s, 3),
            "train_rows": total,
            "shard_rows": shard,
            "steps_per_epoch": steps_per_epoch,
            "samples_per_s": round(steady, 1),
            "final_loss": loss_value,
            "hidden_units": list(hidden),
        }
        (out / TRAIN_METRICS_JSON).write_text(json.dumps(metrics, indent=2))
        if remote_out:
            for name in MODEL_FILES:
                storage.upload(out / name, storage.join(remote_out, name))
        log.info("%s %.0f samples/s (%d workers, %s)", tag, steady, world, backend)
        progress("end", rank)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


def load_model(out_dir: str | Path) -> tuple[FlightsNet, Preprocessing, dict]:
    """The trained module (eval mode), its preprocessing and training metrics."""
    out = Path(out_dir)
    prep = Preprocessing.from_json((out / "preprocessing.json").read_text())
    metrics = json.loads((out / TRAIN_METRICS_JSON).read_text())
    model = FlightsNet(prep, tuple(metrics["hidden_units"]))
    model.load_state_dict(torch.load(out / "model.pt", map_location="cpu"))
    return model.eval(), prep, metrics


if __name__ == "__main__":
    sys.exit(main())
