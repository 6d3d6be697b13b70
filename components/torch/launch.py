"""Launching the training app through TorchX: a typed component returning a ``dist.ddp`` AppDef.

TorchX's KFP adapter is KFP v1-only (and deleted upstream), so the KFP v2 train component calls
:func:`run_training`, which submits the AppDef to a TorchX scheduler, streams its logs and waits:
``local_cwd`` here (gloo on CPU), ``kubernetes`` (Volcano) on a cluster (NCCL on GPU).
"""

from __future__ import annotations

import logging
import os
import sys

from torchx import specs
from torchx.components import dist

log = logging.getLogger("twinpipe.torch.train")


def train_appdef(
    *app_args: str,
    workers: int = 1,
    nnodes: int = 1,
    image: str = "twinpipe-torch:latest",
    cpu: int = 2,
    gpu: int = 0,
    memMB: int = 4096,  # noqa: N803 (TorchX's own parameter name)
    max_restarts: int = 3,
    max_retries: int = 0,
    env: dict[str, str] | None = None,
) -> specs.AppDef:
    """``dist.ddp`` for ``components.torch.train_app``, plus torchrun's ``--max_restarts``.

    Args:
        app_args: the training app's own arguments.
        workers: DDP ranks per node (``nproc_per_node``).
        nnodes: nodes (replicas); >1 needs a multi-node scheduler such as kubernetes.
        max_restarts: how often torchrun restarts failed ranks (they resume from the checkpoint).
        max_retries: scheduler-level retries of the whole job.
    """
    app = dist.ddp(
        *app_args, m="components.torch.train_app", image=image, name="twinpipe-train",
        cpu=cpu, gpu=gpu, memMB=memMB, j=f"{nnodes}x{workers}", env=dict(env or {}),
        max_retries=max_retries,
    )
    role = app.roles[0]
    # dist.ddp has no max_restarts; torchrun takes it right after its name.
    role.args = [a.replace("torchrun ", f"torchrun --max_restarts {max_restarts} ", 1) for a in role.args]
    return app


def run_training(app: specs.AppDef, scheduler: str = "local_cwd", cfg: dict | None = None) -> str:
    """Submits ``app``, streams its logs with a ``[torch][train]`` prefix, and waits.

    Returns:
        The final TorchX state name; raises RuntimeError unless it SUCCEEDED.
    """
    from torchx.runner import get_runner
    from torchx.specs.api import AppState

    # local_cwd runs `torchrun` from PATH: make it this interpreter's.
    bindir = os.path.dirname(sys.executable)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    with get_runner() as runner:
        handle = runner.run(app, scheduler=scheduler, cfg=cfg or {})
        log.info("[torch][train] TorchX %s job %s", scheduler, handle)
        role = app.roles[0].name
        try:
            for line in runner.log_lines(handle, role, k=0, should_tail=True):
                sys.stderr.write(f"[torch][train] {line.rstrip()}\n")
        except Exception as e:  # noqa: BLE001 — logs are best effort; the status decides
            log.info("[torch][train] log streaming stopped: %s", e)
        status = runner.wait(handle, wait_interval=1)
    state = status.state if status else AppState.UNKNOWN
    if state != AppState.SUCCEEDED:
        raise RuntimeError(f"[torch][train] TorchX job {handle} ended {state}: {status}")
    return str(state)
