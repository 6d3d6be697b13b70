"""The TFX training job's pods as its launcher would start them: each pod's command and env from a
compiled manifest, ``$(VAR)`` expanded as the kubelet does, with the TF_CONFIG the launcher writes;
and the small transformed span and training spec they train on.

Shared by the pods' integration test (tests/integration/test_jobs_tfx_pods.py) and the image check
that runs the same pods inside the built TFX image (tests/images/image_checks.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

#: The features of the small span the pods train on.
FEATURES = ("carrier", "origin")


def small_transformed_span(base: Path, features: tuple[str, ...] = FEATURES):
    """Transform output of a small real span (400 January rows, only ``features`` as features),
    made in ``base``: (contract, transform output folder, transformed train files)."""
    import yaml

    import components.common
    from components.common.contract import DEFAULT_CONTRACT, load_contract
    from components.common.ingest import ingest
    from components.common.sources import load_default_table
    from tests.tft_data import tfx_transform

    packaged = Path(components.common.__file__).parent / DEFAULT_CONTRACT
    doc = yaml.safe_load(packaged.read_text())
    for name, spec in doc["columns"].items():
        spec["feature"] = bool(spec.get("feature")) and name in features
    (base / "c.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    contract = load_contract(base / "c.yaml")
    table, _ = load_default_table(contract)
    table[table["month"] == 1].sample(400, random_state=0).to_parquet(base / "in.parquet")
    ingest(contract, base / "spans", input_path=base / "in.parquet")
    transform_output, train_files = tfx_transform(contract, base / "spans", base)
    return contract, transform_output, train_files


def train_spec(contract, transform_output: str, train_files: str, serving_model_dir: str,
               model_run_dir: str, features: tuple[str, ...] = FEATURES, **extra) -> dict:
    """The training spec Trainer.run_fn writes for the job's pods: two workers, one small epoch."""
    return {"train_files": [train_files], "eval_files": [], "transform_output": transform_output,
            "serving_model_dir": serving_model_dir, "model_run_dir": model_run_dir, **extra,
            "config": {"numeric": [], "categorical": list(features), "label": contract.label.name,
                       "workers": 2, "batch_size": 64, "epochs": 1, "learning_rate": 1e-2,
                       "hidden_units": [8]}}


def expand(arg: str, env: dict[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion of container args from the container's env."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


def tfx_pods(body: dict, launcher: str, ports: list[int]) -> list[tuple[list[str], dict[str, str]]]:
    """(command, env) of every pod the launcher would start, TF_CONFIG included: Volcano's
    ``tensorflow`` plugin (worker tasks only) or Vertex (a chief pool + a worker pool)."""
    hosts = [f"localhost:{p}" for p in ports]
    pods = []
    if launcher == "volcano":
        (task,) = body["spec"]["tasks"]
        (container,) = task["template"]["spec"]["containers"]
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}  # refs: no Secret here
        for i in range(task["replicas"]):
            tf_config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}}
            pods.append(([expand(a, env) for a in container["command"]],
                         {**env, "TF_CONFIG": json.dumps(tf_config)}))
    else:
        chief_pool, worker_pool = body["jobSpec"]["workerPoolSpecs"]
        cluster = {"chief": hosts[:1], "worker": hosts[1:]}
        roles = [("chief", 0)] + [("worker", i) for i in range(int(worker_pool["replicaCount"]))]
        for (kind, index), pool in zip(roles, [chief_pool] + [worker_pool] * (len(roles) - 1),
                                       strict=True):
            env = {e["name"]: e["value"] for e in pool["containerSpec"]["env"]}
            tf_config = {"cluster": cluster, "task": {"type": kind, "index": index}}
            pods.append((list(pool["containerSpec"]["command"]),
                         {**env, "TF_CONFIG": json.dumps(tf_config)}))
    return pods
