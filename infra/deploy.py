"""Submit and schedule the compiled pipelines: self-hosted KFP (kfp.Client) or Vertex AI
(aiplatform.PipelineJob / PipelineJobSchedule). ``dry_run`` returns exactly the request body that
would be sent, without sending it."""

from __future__ import annotations

from pathlib import Path

from components.common import registry, storage
from components.common.errors import ContractError
from components.common.schedule_spec import kfp_cron, vertex_cron
from pipelines.compile import load_compiled


def load_spec(path: str | Path) -> dict:
    """The PipelineSpec of a compiled file (KFP YAML, or a TFX PipelineJob JSON)."""
    if not Path(path).is_file():
        raise ContractError(f"{path}: no compiled pipeline here; run `twinpipe compile` first.")
    return load_compiled(path)[0]


def kfp_package(path: str | Path) -> dict:
    """What the KFP v2 API receives as ``pipeline_spec`` for a compiled file, as ``kfp.Client``
    sends it: the spec alone, or ``{pipeline_spec, platform_spec}`` when the file carries a
    Kubernetes platform spec (the torch spec's alerts Secret mount)."""
    docs = load_compiled(path)
    platform = {k: v for doc in docs[1:] for k, v in doc.items()}
    return {"pipeline_spec": docs[0], "platform_spec": platform} if platform else docs[0]


def check_params(spec: dict, params: dict) -> dict:
    known = set(spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {}))
    unknown = sorted(set(params) - known)
    if unknown:
        raise ContractError(f"pipeline {spec['pipelineInfo']['name']}: unknown parameter(s) "
                            f"{unknown}; it takes {sorted(known)}.")
    return params


def kfp_run_body(spec: dict, params: dict, name: str, experiment_id: str) -> dict:
    return {"display_name": name, "experiment_id": experiment_id, "pipeline_spec": spec,
            "runtime_config": {"parameters": params}}


def kfp_recurring_body(spec: dict, params: dict, name: str, experiment_id: str, cron: str) -> dict:
    return {"display_name": name, "experiment_id": experiment_id, "pipeline_spec": spec,
            "runtime_config": {"parameters": params}, "mode": "ENABLE", "max_concurrency": "1",
            "trigger": {"cron_schedule": {"cron": kfp_cron(cron)}}, "no_catchup": True}


def submit_kfp(path, host: str, params: dict, experiment: str, name: str,
               cron: str | None = None, dry_run: bool = False) -> dict:
    """A run (or, with ``cron``, a recurring run) on a KFP v2 API server."""
    spec = load_spec(path)
    check_params(spec, params)
    if dry_run:
        package = kfp_package(path)
        body = (kfp_recurring_body(package, params, name, "<experiment id of " + experiment + ">", cron)
                if cron else kfp_run_body(package, params, name, "<experiment id of " + experiment + ">"))
        return {"target": "kfp", "host": host, "dry_run": True, "request": body}
    import kfp

    client = kfp.Client(host=host)
    exp = client.create_experiment(experiment)
    if cron:
        job = client.create_recurring_run(
            experiment_id=exp.experiment_id, job_name=name, cron_expression=kfp_cron(cron),
            pipeline_package_path=str(path), params=params, no_catchup=True, max_concurrency=1)
        return {"target": "kfp", "recurring_run_id": job.recurring_run_id}
    run = client.create_run_from_pipeline_package(
        str(path), arguments=params, run_name=name, experiment_name=experiment)
    return {"target": "kfp", "run_id": run.run_id}


def vertex_job(path, project: str, region: str, pipeline_root: str, params: dict, name: str,
               credentials=None):
    """The aiplatform.PipelineJob (built offline; nothing is sent until submit/create_schedule)."""
    from google.cloud import aiplatform

    check_params(load_spec(path), params)
    return aiplatform.PipelineJob(
        display_name=name, template_path=str(path), pipeline_root=pipeline_root,
        parameter_values=params, project=project, location=region, credentials=credentials,
        enable_caching=False)


def submit_vertex(path, project: str, region: str, pipeline_root: str, params: dict, name: str,
                  cron: str | None = None, service_account: str | None = None,
                  dry_run: bool = False, credentials=None) -> dict:
    from google.protobuf import json_format

    job = vertex_job(path, project, region, pipeline_root, params, name, credentials)
    if dry_run:
        body = json_format.MessageToDict(job._gca_resource._pb)
        if service_account:
            body["serviceAccount"] = service_account
        request = ({"parent": f"projects/{project}/locations/{region}",
                    "pipeline_job_schedule": {"display_name": name, "cron": vertex_cron(cron),
                                              "create_pipeline_job_request": {"pipeline_job": body},
                                              "max_concurrent_run_count": 1}}
                   if cron else {"parent": f"projects/{project}/locations/{region}",
                                 "pipeline_job": body})
        return {"target": "vertex", "dry_run": True, "request": request}
    if cron:
        schedule = job.create_schedule(display_name=name, cron=vertex_cron(cron),
                                       max_concurrent_run_count=1, service_account=service_account)
        return {"target": "vertex", "schedule": schedule.resource_name}
    job.submit(service_account=service_account)
    return {"target": "vertex", "pipeline_job": job.resource_name}


#: Where an InferenceService's model is pushed (k8s/base/inferenceservices.yaml; overlays set it).
PUSH_DESTINATION = "twinpipe.io/push-destination"
SERVED_VERSION = "twinpipe.io/served-version"


def kustomize(overlay: str | Path) -> list[dict]:
    """The manifests of a kustomize overlay (``kubectl kustomize``, offline)."""
    import subprocess

    import yaml

    proc = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ContractError(f"kubectl kustomize {overlay} failed: {proc.stderr.strip()}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def serving_manifests(docs: list[dict], data_root: str | None = None) -> list[dict]:
    """``docs`` with each InferenceService's server (``twinpipe serve``, its predictor container)
    pointed at its push destination, checked to hold a complete version.

    The server follows ``DEST/current.json`` itself (a newer push is loaded without a restart), so
    it gets the destination, not a version; the newest complete version at deploy time
    (:func:`components.common.registry.serving_uri`, by push.json) is recorded as the
    ``twinpipe.io/served-version`` annotation. ``data_root`` (``--data-root``) replaces the
    overlay's bucket: the destination is then ``<data_root>/<stack>/pushed``.
    """
    import copy


    out = []
    for doc in docs:
        if doc.get("kind") != "InferenceService":
            out.append(doc)
            continue
        doc = copy.deepcopy(doc)
        meta = doc["metadata"]
        stack = meta.get("labels", {}).get("twinpipe/stack", "")
        dest = (storage.join(data_root, stack, "pushed") if data_root
                else meta.get("annotations", {}).get(PUSH_DESTINATION))
        if not dest:
            raise ContractError(f"InferenceService {meta['name']}: no {PUSH_DESTINATION} "
                                "annotation and no --data-root: where its models are pushed is "
                                "unknown.")
        uri = registry.serving_uri(dest)
        if uri is None:
            raise ContractError(f"InferenceService {meta['name']}: nothing pushed to {dest} yet "
                                "(no version with a push.json); run a pipeline whose model is "
                                "blessed and pushed, then deploy again.")
        meta.setdefault("annotations", {}).update(
            {PUSH_DESTINATION: dest, SERVED_VERSION: storage.basename(uri)})
        _set_flag(_serve_container(doc), "--model", dest)
        out.append(doc)
    return out


def _serve_container(isvc: dict) -> dict:
    """The predictor container that runs ``twinpipe serve`` (k8s/base/inferenceservices.yaml)."""
    for c in isvc["spec"]["predictor"].get("containers") or []:
        if c.get("args", [])[:1] == ["serve"]:
            return c
    raise ContractError(f"InferenceService {isvc['metadata']['name']}: no predictor container "
                        "running `twinpipe serve`.")


def _set_flag(container: dict, flag: str, value: str) -> None:
    args = container.setdefault("args", [])
    if flag in args[:-1]:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]


def deploy_serving(overlay: str | Path, data_root: str | None = None, apply: bool = False) -> str:
    """The overlay's manifests with the served versions resolved, as YAML; with ``apply`` also
    ``kubectl apply``-ed (needs a cluster; exercised only there)."""
    import subprocess

    import yaml

    text = yaml.safe_dump_all(serving_manifests(kustomize(overlay), data_root), sort_keys=False)
    if apply:
        proc = subprocess.run(["kubectl", "apply", "-f", "-"], input=text, capture_output=True,
                              text=True)
        if proc.returncode != 0:
            raise ContractError(f"kubectl apply failed: {proc.stderr.strip()}")
    return text
