"""The PyTorch stack's KFP v2 pipeline: one factory, wiring only.

land (new deliveries taken from the landing folder, screened and published as spans: the shared
ingest, exactly once per delivery) -> ingest (the run's rows) -> validate (GX) -> train (TorchX
dist.ddp, or a cluster training job) -> evaluate
(onnxruntime, blessing rule) -> push (only when blessed; gated inside the component: kfp.local in
kfp 2.13 runs no dsl.Condition).

No parameter is a host path: the spans and the model registry are URIs (a local folder under
kfp.local, ``gs://...`` on a cluster) that enter as artifacts through ``dsl.importer``; every
other hand-over is an artifact under the pipeline root. The same pipeline runs under kfp.local
and on a cluster with ``pipeline_root`` on GCS.
"""


from dataclasses import dataclass

from kfp import dsl

from components.torch import kfp_components as c

PIPELINE_NAME = "twinpipe-torch"


@dataclass(frozen=True)
class LauncherResources:
    """What the train task itself asks of a cluster (ignored by kfp.local). The task only submits
    the training job and waits for it: small, and never a GPU; the job's pods carry the training
    resources (the ``train_job`` parameter)."""

    cpu: str = "1"
    memory: str = "2G"
    retries: int = 2


def create_pipeline(resources: "LauncherResources | None" = None, pipeline_root: str | None = None,
                    alerts_secret: str = ""):
    """The pipeline function; with ``resources`` the train task carries them (for a cluster);
    ``pipeline_root`` is the compiled spec's default artifact root; ``alerts_secret`` (Kubernetes
    targets) is mounted, optionally, into the validate task, whose gate raises the alerts."""

    @dsl.pipeline(name=PIPELINE_NAME, description="twinpipe PyTorch stack",
                  pipeline_root=pipeline_root)
    def torch_pipeline(
        spans_uri: str,
        push_destination: str,
        contract_path: str = "",
        source: str = "",
        workers: int = 2,
        epochs: int = 3,
        batch_size: int = 512,
        learning_rate: float = 2e-3,
        scheduler: str = "local_cwd",
        scheduler_options: str = "",
        fail_once_after_epoch: int = -1,
        run_label: str = "",
        span: str = "all",
        train_job: str = "",
        landing_uri: str = "",
        retrain: bool = False,
    ):
        """``spans_uri``: the spans folder/prefix (its ``CURRENT.json`` generation on gs://);
        ``push_destination``: the model registry root URI, read for the baseline (imported) and
        written by push; ``contract_path``: the contract's URI ('' = the packaged one);
        ``train_job``: the cluster training job as JSON ('' = TorchX ``scheduler`` in the task);
        ``landing_uri``: where deliveries land; the first step takes the new ones into the spans,
        and with none the later steps do nothing ('' = no landing step: the spans are published
        already); ``retrain``: train again on the current spans when nothing new landed."""
        land = c.land(landing_uri=landing_uri, spans_uri=spans_uri, contract_path=contract_path,
                      retrain=retrain, run_label=run_label).set_display_name("land")
        proceed = land.outputs["Output"]
        spans = dsl.importer(artifact_uri=spans_uri, artifact_class=dsl.Dataset,
                             reimport=True).set_display_name("spans")
        baseline = dsl.importer(artifact_uri=push_destination, artifact_class=dsl.Artifact,
                                reimport=True).set_display_name("registry")
        ingest = c.ingest(spans=spans.output, proceed=proceed, span=span).set_display_name("ingest")
        gate = c.validate(
            spans=spans.output, train_rows=ingest.outputs["train_rows"], proceed=proceed,
            eval_rows=ingest.outputs["eval_rows"], contract_path=contract_path, source=source,
            span=span,
        ).set_display_name("validate")
        train = c.train(
            train_rows=ingest.outputs["train_rows"], proceed=proceed,
            gate_passed=gate.outputs["Output"],
            contract_path=contract_path, workers=workers, epochs=epochs, batch_size=batch_size,
            learning_rate=learning_rate, scheduler=scheduler, scheduler_options=scheduler_options,
            fail_once_after_epoch=fail_once_after_epoch, train_job=train_job,
        ).set_display_name("train")
        evaluate = c.evaluate(
            model=train.outputs["model"], eval_rows=ingest.outputs["eval_rows"],
            baseline=baseline.output, proceed=proceed, contract_path=contract_path,
        ).set_display_name("evaluate")
        c.push(
            model=train.outputs["model"], blessing=evaluate.outputs["blessing"],
            push_destination=push_destination, run_label=run_label,
        ).set_display_name("push")
        if resources is not None:
            _apply_resources(train, resources)
        if alerts_secret:
            _mount_alerts_secret(gate, alerts_secret)
            _mount_alerts_secret(land, alerts_secret)
        for task in (land, ingest, gate, train, evaluate):
            task.set_caching_options(False)

    return torch_pipeline


def _apply_resources(task, r: LauncherResources) -> None:
    task.set_cpu_limit(r.cpu).set_memory_limit(r.memory)
    if r.retries:
        task.set_retry(num_retries=r.retries, backoff_duration="60s", backoff_factor=2)


def _mount_alerts_secret(task, secret: str) -> None:
    """The alert sinks from Secret ``secret`` as files (components.common.alerts reads them); an
    optional mount, so a cluster without the Secret runs with the contract's own sinks."""
    from kfp import kubernetes

    from components.common.alerts import SECRET_DIR

    path = f"/var/run/secrets/{secret}"
    kubernetes.use_secret_as_volume(task, secret_name=secret, mount_path=path, optional=True)
    task.set_env_variable(SECRET_DIR, path)
