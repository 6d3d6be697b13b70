"""Submit and schedule the compiled pipelines: self-hosted KFP (kfp.Client) or Vertex AI
(aiplatform.PipelineJob / PipelineJobSchedule). ``dry_run`` returns exactly the request body that
would be sent, without sending it."""

from __future__ import annotations

from pathlib import Path

from components.common.errors import ContractError
from infra.compile import load_compiled
from infra.schedule_spec import kfp_cron, vertex_cron


def load_spec(path: str | Path) -> dict:
    """The PipelineSpec of a compiled file (KFP YAML, or a TFX PipelineJob JSON)."""
    if not Path(path).is_file():
        raise ContractError(f"{path}: no compiled pipeline here; run `twinpipe compile` first.")
    return load_compiled(path)[0]


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
        body = (kfp_recurring_body(spec, params, name, "<experiment id of " + experiment + ">", cron)
                if cron else kfp_run_body(spec, params, name, "<experiment id of " + experiment + ">"))
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
