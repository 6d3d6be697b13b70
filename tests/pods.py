"""The TFX training job's pods as its launcher would start them: each pod's command and env from a
compiled manifest, ``$(VAR)`` expanded as the kubelet does, with the TF_CONFIG the launcher writes.

Shared by the pods' integration test (tests/integration/test_jobs_tfx_pods.py) and the image check
that runs the same pods inside the built TFX image (tests/images/image_checks.py).
"""

from __future__ import annotations

import json
import re


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
