"""The PyTorch stack's training app: DDP under torchrun, free of KFP and TorchX imports.

    torchrun --nproc_per_node 2 -m components.torch.train_app --train SPANS_DIR --out DIR ...

gloo on CPU, NCCL on CUDA, the same code. Rank 0 fits the preprocessing on the train split and
every rank derives the same result (deterministic), checkpoints are written every epoch
(atomically, rank 0) and a restarted job (torchrun ``--max_restarts``) resumes from the last one.
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
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import TensorDataset
from torch.utils.data.distributed import DistributedSampler

from components.common import storage
from components.common.ingest import read_spans
from components.common.replicas import report_dir, weights_digest, write_replica_report
from components.torch.model import FlightsNet, Preprocessing, fit_preprocessing

log = logging.getLogger("twinpipe.torch.train")

CHECKPOINT = "checkpoints/last.pt"
MODEL_FILES = ("model.pt", "preprocessing.json", "train_metrics.json")  # what load_model reads


def read_split(path: str, split: str):
    """One split's rows through a pyarrow dataset scan.

    ``path`` is a spans folder (``span-*/<split>/*.parquet``), a folder of parquet files or a file.
    """
    p = Path(path)
    if p.is_dir() and any(p.glob(f"span-*/{split}/*.parquet")):
        return read_spans(p, split).to_pandas()
    files = [str(p)] if p.is_file() else sorted(str(f) for f in p.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no {split} parquet files under {path}")
    return ds.dataset(files, format="parquet").to_table().to_pandas()


def _local_input(path: str, scratch: Path | None) -> str:
    """``path`` itself, or for an object URI a local copy of it (file or prefix) under
    ``scratch``: pyarrow's dataset scan and the row count then read local files on every rank."""
    if not storage.is_remote(path):
        return path
    return storage.download(path, scratch / "train" / storage.basename(path))


def feature_list(text: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``; ``""`` -> ``[]`` (a contract without features of a kind)."""
    return [name.strip() for name in text.split(",") if name.strip()]


def count_rows(path: str, split: str = "train") -> int:
    """The rows :func:`read_split` would read, from parquet metadata (no data read)."""
    p = Path(path)
    if p.is_dir() and any(p.glob(f"span-*/{split}/*.parquet")):
        files = sorted(str(f) for f in p.glob(f"span-*/{split}/*.parquet"))
    else:
        files = [str(p)] if p.is_file() else sorted(str(f) for f in p.glob("*.parquet"))
    return ds.dataset(files, format="parquet").count_rows() if files else 0


def check_shard(rows: int, world: int) -> None:
    """Every rank needs at least one row: DistributedSampler(drop_last=True) gives each of the
    ``world`` ranks ``rows // world`` of them."""
    if rows // max(world, 1) == 0:
        raise ValueError(
            f"[torch][train] {rows} train row(s) for {world} DDP rank(s): every rank needs at "
            f"least one row (each trains on rows // ranks = 0 rows). Train on more rows or with "
            f"fewer workers.")


def shard_batch(shard: int, batch_size: int) -> int:
    """The per-rank batch: ``batch_size``, or the whole shard when the shard is smaller.

    Shards are equal on every rank (drop_last=True), so every rank takes the same number of
    steps (``shard // batch``, at least one): DDP's all-reduce needs each rank at every step.
    """
    return max(1, min(batch_size, shard))


def _batches(tensors, sampler, batch_size: int, device):
    """Full batches of this rank's shard for the sampler's current epoch."""
    idx = torch.tensor(list(iter(sampler)), dtype=torch.long, device=device)
    for i in range(0, len(idx) - batch_size + 1, batch_size):
        b = idx[i:i + batch_size]
        yield tuple(t[b] for t in tensors)


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--train", required=True,
                   help="spans folder, folder of parquet files or a file; local or gs://")
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
    p.add_argument("--fail-once-after-epoch", type=int, default=-1,
                   help="testing: crash once after this epoch to exercise restart + resume")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(world, 1)))
    numeric, categorical = feature_list(args.numeric), feature_list(args.categorical)
    if not numeric and not categorical:
        raise ValueError("[torch][train] no feature columns: --numeric and --categorical are "
                         "both empty.")
    remote = storage.is_remote(args.train) or storage.is_remote(args.out)
    scratch = Path(tempfile.mkdtemp(prefix="torch-train-")) if remote else None
    train_path = _local_input(args.train, scratch)
    # Before joining the group (parquet metadata only): every rank stops the same way, at once.
    check_shard(count_rows(train_path), world)
    distributed = world > 1
    if distributed:
        init_process_group("nccl" if cuda else "gloo", rank, world)
    backend = dist.get_backend() if distributed else "none"
    # On object storage the app works in a local folder and uploads what it keeps (checkpoint
    # after each epoch, so a restarted pod resumes; the model at the end).
    remote_out = args.out if storage.is_remote(args.out) else None
    out = scratch / "out" if remote_out else Path(args.out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    tag = f"[torch][train][rank {rank}]"
    if remote_out and storage.exists(storage.join(remote_out, CHECKPOINT)):
        storage.download(storage.join(remote_out, CHECKPOINT), out / CHECKPOINT)

    train = read_split(train_path, "train")
    prep = fit_preprocessing(train, numeric, categorical)
    x_num, x_cat = prep.encode(train)
    y = train[args.label].to_numpy(dtype=np.float32)
    # The whole split is a few MB: keep it as tensors on the device and slice batches out of them
    # with this rank's shuffled shard of indices (DistributedSampler). A DataLoader would index and
    # collate sample by sample in Python: 3x fewer samples/s on CPU for this small model.
    tensors = [torch.from_numpy(a).to(device) for a in (x_num, x_cat, y)]
    sampler = DistributedSampler(TensorDataset(*tensors), num_replicas=world, rank=rank,
                                 shuffle=True, seed=args.seed, drop_last=True)
    batch_size = shard_batch(len(sampler), args.batch_size)
    if batch_size < args.batch_size:
        log.info("%s shard of %d rows < batch %d: the shard is one batch", tag, len(sampler),
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
    ddp = DistributedDataParallel(model) if distributed else model
    loss_fn = torch.nn.BCELoss()

    steps, t_first, t0 = 0, None, time.perf_counter()
    loss_value = float("nan")
    loss = None
    for epoch in range(start_epoch, args.epochs):
        sampler.set_epoch(epoch)
        ddp.train()
        for xn, xc, yy in _batches(tensors, sampler, batch_size, device):
            optim.zero_grad(set_to_none=True)
            loss = loss_fn(ddp(xn, xc), yy)
            loss.backward()
            optim.step()
            steps += 1
            if t_first is None:
                t_first = time.perf_counter()  # steady-state clock starts after step 1
        if loss is not None:
            loss_value = float(loss.detach())
        if rank == 0:
            _save_atomic({"epoch": epoch, "model": model.state_dict(), "optim": optim.state_dict()},
                         ckpt_path)
            if remote_out:
                storage.upload(ckpt_path, storage.join(remote_out, CHECKPOINT))
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
    steady = (steps - 1) * global_batch / (t_end - t_first) if steps > 1 and t_first else 0.0

    if report_dir() is not None:  # every rank, so replicas on different hosts can be compared
        state = model.state_dict()
        write_replica_report(
            "torch", rank, world,
            weights_digest((k, state[k].detach().cpu().numpy()) for k in sorted(state)),
            node_rank=int(os.environ.get("GROUP_RANK", "0")), local_rank=local_rank,
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
            "samples_per_s": round(steady, 1),
            "final_loss": loss_value,
            "hidden_units": list(hidden),
        }
        (out / "train_metrics.json").write_text(json.dumps(metrics, indent=2))
        if remote_out:
            for name in MODEL_FILES:
                storage.upload(out / name, storage.join(remote_out, name))
        log.info("%s %.0f samples/s (%d workers, %s)", tag, steady, world, backend)
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
    metrics = json.loads((out / "train_metrics.json").read_text())
    model = FlightsNet(prep, tuple(metrics["hidden_units"]))
    model.load_state_dict(torch.load(out / "model.pt", map_location="cpu"))
    return model.eval(), prep, metrics


if __name__ == "__main__":
    sys.exit(main())
