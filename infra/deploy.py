"""Submit and schedule the compiled pipelines: self-hosted KFP (kfp.Client) or Vertex AI
(aiplatform.PipelineJob / PipelineJobSchedule). ``dry_run`` returns exactly the request body that
would be sent, without sending it."""

from __future__ import annotations

from pathlib import Path

from components.common import registry, storage
from components.common.errors import ContractError, TwinpipeError
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


#: The repository (found from this file): `twinpipe deploy` resolves a relative --overlay there
#: when the working directory does not hold it, so it runs from any folder.
REPO = Path(__file__).resolve().parents[1]

#: How long `twinpipe deploy` waits for Cloud Storage before it gives up (credentials + one read).
PROBE_S = 8.0


class DeployError(TwinpipeError):
    """`twinpipe deploy` cannot reach what it deploys from: credentials, network, the overlay."""


def resolve_overlay(overlay: str | Path) -> Path:
    """``overlay`` as given when that folder exists (relative to the working directory), else,
    for a relative path, the same path in the repository; one line naming both when neither
    holds a kustomization."""

    given = Path(overlay)
    candidates = [given] if given.is_absolute() else [given, REPO / given]
    for c in candidates:
        if (c / "kustomization.yaml").is_file():
            return c
    where = " or ".join(str(c.resolve()) for c in candidates)
    raise DeployError(f"--overlay {overlay}: no kustomization.yaml in {where}; write one for your "
                      "project with `twinpipe overlay --terraform-output tf.json --out DIR`.")


def kustomize(overlay: str | Path) -> list[dict]:
    """The manifests of a kustomize overlay (``kubectl kustomize``, offline)."""
    import shutil
    import subprocess

    import yaml

    if not shutil.which("kubectl"):
        raise DeployError("kubectl is not installed (it renders the kustomize overlay); install "
                          "it, e.g. `gcloud components install kubectl`.")
    proc = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ContractError(f"kubectl kustomize {overlay} failed: {proc.stderr.strip()}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 300 else text[:300] + " [...]"


def _probe(url: str) -> None:
    """One list request on ``url``'s bucket and prefix, without retries: raises DeployError for
    missing credentials, an unreachable endpoint, a missing bucket or a refused read."""
    import os
    from urllib.parse import quote

    import google.auth
    import requests
    from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError

    bucket, _, prefix = url.split("://", 1)[1].partition("/")
    emulator = os.environ.get("STORAGE_EMULATOR_HOST", "")
    if emulator and emulator != "default":
        endpoint = emulator if "://" in emulator else f"http://{emulator}"
        session = requests.Session()
    else:
        endpoint = "https://storage.googleapis.com"
        try:
            creds, _ = google.auth.default(
                scopes=["https://www.googleapis.com/auth/devstorage.read_only"])
        except DefaultCredentialsError:
            raise DeployError(f"no Google Cloud credentials to read {url}: run `gcloud auth "
                              "application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS to "
                              "a key file), then deploy again.") from None
        from google.auth.transport.requests import AuthorizedSession

        session = AuthorizedSession(creds)
    try:
        r = session.get(f"{endpoint}/storage/v1/b/{quote(bucket, safe='')}/o",
                        params={"prefix": prefix.rstrip("/") + "/", "maxResults": "1"},
                        timeout=(PROBE_S / 2, PROBE_S / 2))
    except GoogleAuthError as e:
        raise DeployError(f"could not get an access token to read {url}: {_one_line(e)}; check "
                          "`gcloud auth application-default login` and the network.") from None
    except requests.RequestException as e:
        raise DeployError(f"could not reach Cloud Storage ({endpoint}) to read {url}: "
                          f"{type(e).__name__}; check the network (proxy, DNS, firewall).") from None
    if r.status_code == 404:
        raise DeployError(f"bucket gs://{bucket} does not exist (read for {url}); check --data-root "
                          "or the overlay's push destinations (terraform output data_root).")
    if r.status_code in (401, 403):
        raise DeployError(f"the credentials may not list {url} (HTTP {r.status_code}); grant them "
                          f"roles/storage.objectViewer on gs://{bucket}.")
    if r.status_code >= 400:
        raise DeployError(f"Cloud Storage answered HTTP {r.status_code} to a list of {url}.")


def check_storage(urls: list[str], timeout_s: float = PROBE_S) -> None:
    """A bounded check, before anything else reads them, that ``urls`` (gs://) can be read: one
    request each, no retries, at most about ``timeout_s`` in all (the storage layer's own client
    retries for a minute before it reports a missing network)."""
    import threading

    remote = [u for u in dict.fromkeys(urls) if storage.is_remote(u)]
    if not remote:
        return
    failure: list[BaseException] = []

    def run() -> None:
        try:
            for url in remote:
                _probe(url)
        except BaseException as e:  # noqa: BLE001 — handed to the caller's thread
            failure.append(e)

    t = threading.Thread(target=run, name="twinpipe-deploy-probe", daemon=True)
    t.start()
    t.join(timeout_s + 1.0)
    if t.is_alive():
        raise DeployError(f"no answer from Cloud Storage for {remote[0]} within {timeout_s + 1:.0f} "
                          "s: check the network (proxy, DNS, firewall) and your credentials.")
    if failure:
        e = failure[0]
        if isinstance(e, TwinpipeError):
            raise e
        raise DeployError(f"could not read {remote[0]}: {type(e).__name__}: {_one_line(e)}.")


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
        try:
            uri = registry.serving_uri(dest)
        except (OSError, TimeoutError) as e:  # after check_storage: a refused or lost read
            raise DeployError(f"InferenceService {meta['name']}: could not read {dest}: "
                              f"{type(e).__name__}: {_one_line(e)}.") from None
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


def push_destinations(docs: list[dict], data_root: str | None = None) -> list[str]:
    """Where the InferenceServices of ``docs`` are served from (as :func:`serving_manifests`)."""
    out = []
    for doc in docs:
        if doc.get("kind") == "InferenceService":
            meta = doc["metadata"]
            stack = meta.get("labels", {}).get("twinpipe/stack", "")
            dest = (storage.join(data_root, stack, "pushed") if data_root
                    else meta.get("annotations", {}).get(PUSH_DESTINATION))
            if dest:
                out.append(dest)
    return out


def deploy_serving(overlay: str | Path, data_root: str | None = None, apply: bool = False) -> str:
    """The overlay's manifests with the served versions resolved, as YAML; with ``apply`` also
    ``kubectl apply``-ed (needs a cluster; exercised only there).

    A relative ``overlay`` missing from the working directory is looked up in the repository.
    Cloud Storage is checked first, bounded (:func:`check_storage`): missing credentials or no
    network are one line within seconds, not a minute of retries."""
    import subprocess

    import yaml

    docs = kustomize(resolve_overlay(overlay))
    check_storage(push_destinations(docs, data_root))
    text = yaml.safe_dump_all(serving_manifests(docs, data_root), sort_keys=False)
    if apply:
        proc = subprocess.run(["kubectl", "apply", "-f", "-"], input=text, capture_output=True,
                              text=True)
        if proc.returncode != 0:
            raise ContractError(f"kubectl apply failed: {proc.stderr.strip()}")
    return text
