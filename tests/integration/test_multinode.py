"""Multi-node training across two hosts: network namespaces joined by a veth pair (tests/netns.py).

* torch: the TorchX ``dist.ddp`` AppDef the stack launches (``train_appdef(..., nnodes=2)``),
  its role resolved per replica as TorchX's kubernetes scheduler resolves it (the rank-0 host
  hosts the c10d rendezvous on ``localhost``, the other dials rank 0's address), one torchrun per
  host, gloo over the veth interface, running ``components.torch.trainer``.
* TF: ``python -m components.tfx.trainer SPEC`` (the cluster entry point of the Keras trainer) on
  each host with a two-host TF_CONFIG: ``MultiWorkerMirroredStrategy`` over gRPC between hosts.

Both check that every replica ends with bitwise-identical weights, from the per-replica reports
(``TWINPIPE_REPLICA_REPORT_DIR``, components/common/replicas.py), and print the evidence:
endpoint, each rank's host and address, world size, weight digests, time taken (``pytest -s``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.netns import Host, NetnsUnavailable, run_on_hosts, two_hosts

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NUMERIC, CATEGORICAL = ["distance", "hour"], ["carrier", "origin"]
RUN_TIMEOUT_S = 150


@pytest.fixture
def hosts():
    """Two hosts for one test; namespaces, veth and hosts files are removed afterwards."""
    try:
        with two_hosts() as pair:
            yield pair
    except NetnsUnavailable as e:
        pytest.fail(f"multi-node test needs Linux network namespaces (root + iproute2), as CI has: "
                    f"{e}", pytrace=False)


@pytest.fixture(scope="module")
def spans(tmp_path_factory):
    """A small real span (January 2013, 600 sampled rows) under a contract whose features are the
    four above (fewer TF Transform analyzers: the TF test's preparation stays short)."""
    from components.common.contract import DEFAULT_CONTRACT, load_contract
    from components.common.ingest import ingest

    base = tmp_path_factory.mktemp("multinode-data")
    doc = yaml.safe_load((ROOT / "components" / "common" / DEFAULT_CONTRACT).read_text())
    for name, spec in doc["columns"].items():
        spec["feature"] = bool(spec.get("feature")) and name in NUMERIC + CATEGORICAL
    (base / "contract.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    contract = load_contract(base / "contract.yaml")
    assert sorted(c.name for c in contract.features) == sorted(NUMERIC + CATEGORICAL)
    result = ingest(contract, base / "spans", months=[1], sample=600)
    return contract, base / "spans", result.spans[0].train_rows


def _env(host: Host, **extra: str) -> dict[str, str]:
    """The environment of a process on ``host``: this checkout first on the import path, the
    venv's tools (torchrun) on PATH, collectives bound to the host's veth interface."""
    env = dict(os.environ)
    env.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        GLOO_SOCKET_IFNAME=host.ifname, TP_SOCKET_IFNAME=host.ifname,
        TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore",
        **extra,
    )
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(proxy, None)  # gRPC would send the peers' connections to a proxy
    return env


def _check_finished(finished, what: str) -> None:
    bad = [f for f in finished if f.returncode != 0]
    if bad:
        detail = "\n".join(f"--- {f.host.hostname} ({f.host.addr}) exit {f.returncode}:\n"
                           f"{f.output[-3000:]}" for f in finished)
        pytest.fail(f"{what} failed on {', '.join(f.host.hostname for f in bad)}:\n{detail}",
                    pytrace=False)


def _reports(folder: Path, stack: str, world: int) -> list[dict]:
    paths = sorted(folder.glob(f"{stack}-rank-*.json"))
    assert [p.name for p in paths] == [f"{stack}-rank-{r}.json" for r in range(world)]
    return [json.loads(p.read_text()) for p in paths]


def _evidence(title: str, endpoint: str, hosts, reports: list[dict], wall_s: float) -> None:
    links = ", ".join(f"{h.netns} {h.ifname} {h.addr}/30" for h in hosts)
    print(f"\n[multinode][{title}] endpoint {endpoint}, world size {reports[0]['world_size']}, "
          f"{wall_s:.1f} s; hosts: {links}")
    for r in reports:
        where = (f"node {r['node_rank']}, master {r['master']}" if "master" in r
                 else f"task worker:{r['task']['index']}")
        print(f"[multinode][{title}] rank {r['rank']} on {r['hostname']} ({r['addr']}; {where}): "
              f"weights sha256 {r['weights_sha256']} after {r['steps']} steps")


# --- torch: torchrun --nnodes 2, c10d rendezvous, DDP over gloo ----------------------------------

def _replica_command(app, replica: int, rank0_addr: str, app_id: str) -> tuple[list[str], dict]:
    """Replica ``replica`` of the AppDef's role, resolved the way TorchX's kubernetes scheduler
    resolves it (torchx.schedulers.kubernetes_scheduler.app_to_resource): replica 0 reads rank 0's
    host from TORCHX_RANK0_HOST=localhost (it hosts the rendezvous store), the others from
    Volcano's VC_<ROLE>_0_HOSTS, here rank 0's address."""
    from torchx.specs import macros

    role = app.roles[0]
    rank0_env = "TORCHX_RANK0_HOST" if replica == 0 else _volcano_rank0_env(role)
    resolved = macros.Values(img_root="", app_id=app_id, replica_id=str(replica),
                             rank0_env=rank0_env).apply(role)
    env = dict(resolved.env, **{rank0_env: "localhost" if replica == 0 else rank0_addr})
    return [resolved.entrypoint, *resolved.args], env


def _volcano_rank0_env(role) -> str:
    """Volcano's variable holding rank 0's host for ``role`` (named after the app's module)."""
    from torchx.util.strings import normalize_str

    return f"VC_{normalize_str(role.name)}_0_HOSTS".upper()


def test_torch_ddp_two_hosts_c10d_rendezvous_identical_weights(hosts, spans, tmp_path):
    from components.torch.job import train_appdef

    contract, spans_dir, train_rows = spans
    out, reports_dir = tmp_path / "model", tmp_path / "replicas"
    app_args = ["--train", str(spans_dir), "--out", str(out), "--numeric", ",".join(NUMERIC),
                "--categorical", ",".join(CATEGORICAL), "--label", contract.label.name,
                "--epochs", "2", "--batch-size", "64", "--learning-rate", "0.01"]
    app = train_appdef(*app_args, workers=1, nnodes=2, max_restarts=0)
    role = app.roles[0]
    assert role.num_replicas == 2
    port = role.port_map["c10d"]
    jobs = []
    for i, host in enumerate(hosts):
        argv, role_env = _replica_command(app, i, hosts[0].addr, app_id=f"twinpipe-{hosts[0].netns}")
        jobs.append((host, argv, _env(host, **role_env, TWINPIPE_REPLICA_REPORT_DIR=str(reports_dir))))
    # what each torchrun dials once bash expands the endpoint: replica 0 hosts the rendezvous
    # store on localhost, replica 1 reaches it at rank 0's address, across the veth link
    for (_, argv, env), expected in zip(jobs, ["localhost", hosts[0].addr], strict=True):
        rank0_env = next(k for k in ("TORCHX_RANK0_HOST", _volcano_rank0_env(role)) if k in env)
        assert f"--rdzv_endpoint ${{{rank0_env}:=localhost}}:{port}" in argv[-1]
        assert env[rank0_env] == expected
        assert "--nnodes 2 --nproc_per_node 1" in argv[-1]

    t0 = time.monotonic()
    finished = run_on_hosts(jobs, tmp_path / "logs", RUN_TIMEOUT_S, cwd=ROOT)
    wall = time.monotonic() - t0
    _check_finished(finished, "torchrun --nnodes 2")

    reports = _reports(reports_dir, "torch", 2)
    _evidence("torch", f"c10d {hosts[0].addr}:{port}", hosts, reports, wall)
    # each rank ran on its own host, on a different network stack
    assert {(r["hostname"], r["addr"]) for r in reports} == {(h.hostname, h.addr) for h in hosts}
    assert all(r["world_size"] == 2 and r["backend"] == "gloo" for r in reports)
    assert sorted(r["node_rank"] for r in reports) == [0, 1]
    # the ranks found each other through the rendezvous: one master address, rank 0's host
    masters = {r["master"] for r in reports}
    assert len(masters) == 1
    rank0 = next(r for r in reports if r["rank"] == 0)
    assert masters.pop().split(":")[0] == rank0["hostname"]
    steps = 2 * ((train_rows // 2) // 64)
    assert all(r["steps"] == steps > 0 for r in reports)
    # DDP: all-reduced gradients on both hosts -> bitwise-identical weights
    assert reports[0]["weights_sha256"] == reports[1]["weights_sha256"], reports
    metrics = json.loads((out / "train_metrics.json").read_text())
    assert metrics["workers"] == 2 and metrics["strategy"] == "DistributedDataParallel"


# --- TF: MultiWorkerMirroredStrategy with a two-host TF_CONFIG ------------------------------------

TF_PORT = 2222  # each host has its own network stack: no clash with anything else on the machine


def test_tf_multi_worker_two_hosts_identical_weights(hosts, spans, tmp_path):
    from tests.tft_data import tfx_transform

    contract, spans_dir, train_rows = spans
    transform_output, train_files = tfx_transform(contract, spans_dir, tmp_path)
    reports_dir = tmp_path / "replicas"
    (tmp_path / "scratch").mkdir()
    spec = {"train_files": [train_files], "eval_files": [], "transform_output": transform_output,
            "serving_model_dir": str(tmp_path / "serving"), "model_run_dir": str(tmp_path / "run"),
            "scratch_dir": str(tmp_path / "scratch"),
            "config": {"numeric": NUMERIC, "categorical": CATEGORICAL, "label": contract.label.name,
                       "workers": 2, "batch_size": 64, "epochs": 2, "learning_rate": 1e-2,
                       "hidden_units": [16, 8], "train_rows": train_rows}}
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    cluster = {"worker": [f"{h.addr}:{TF_PORT}" for h in hosts]}
    jobs = []
    for i, host in enumerate(hosts):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        jobs.append((host, [sys.executable, "-m", "components.tfx.trainer", str(spec_path)],
                     _env(host, TF_CONFIG=tf_config, TWINPIPE_THREADS="1",
                          TWINPIPE_REPLICA_REPORT_DIR=str(reports_dir))))

    t0 = time.monotonic()
    finished = run_on_hosts(jobs, tmp_path / "logs", RUN_TIMEOUT_S, cwd=ROOT)
    wall = time.monotonic() - t0
    _check_finished(finished, "MultiWorkerMirroredStrategy on two hosts")

    reports = _reports(reports_dir, "tfx", 2)
    _evidence("tfx", f"TF_CONFIG workers {cluster['worker']}", hosts, reports, wall)
    assert {(r["hostname"], r["addr"]) for r in reports} == {(h.hostname, h.addr) for h in hosts}
    for r in reports:
        assert r["strategy"] == "MultiWorkerMirroredStrategy" and r["world_size"] == 2
        assert r["cluster"] == cluster and r["task"]["index"] == r["rank"]
        assert r["addr"] == hosts[r["rank"]].addr  # worker i runs where TF_CONFIG says it does
    global_batch = 64 * 2
    assert all(r["steps"] == 2 * max(1, -(-train_rows // global_batch)) for r in reports)
    assert reports[0]["weights_sha256"] == reports[1]["weights_sha256"], reports
    metrics = json.loads((tmp_path / "run" / "train_metrics.json").read_text())
    assert metrics["workers"] == 2 and metrics["replicas"] == 2
    assert (tmp_path / "serving" / "saved_model.pb").is_file()  # the chief saved the model
