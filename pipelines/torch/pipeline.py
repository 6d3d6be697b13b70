"""The PyTorch stack's KFP v2 pipeline: one factory, wiring only.

ingest -> validate (GX) -> train (TorchX dist.ddp) -> evaluate (onnxruntime, blessing rule)
-> push (only when blessed; gated inside the component: kfp.local in kfp 2.13 runs no
dsl.Condition).
"""


from dataclasses import dataclass

from kfp import dsl

from components.torch import kfp_components as c

PIPELINE_NAME = "twinpipe-torch"


@dataclass(frozen=True)
class TrainResources:
    """What the train task asks of a cluster (ignored by kfp.local)."""

    cpu: str = "4"
    memory: str = "16G"
    accelerator: str = ""            # e.g. "nvidia.com/gpu"
    accelerator_count: int = 0
    node_selector: "tuple[str, str] | None" = None   # e.g. ("cloud.google.com/gke-accelerator", "nvidia-l4")
    toleration: "tuple[str, str] | None" = None      # e.g. ("nvidia.com/gpu", "NoSchedule")
    retries: int = 2


def create_pipeline(resources: "TrainResources | None" = None):
    """The pipeline function; with ``resources`` the train task carries them (for a cluster)."""

    @dsl.pipeline(name=PIPELINE_NAME, description="twinpipe PyTorch stack")
    def torch_pipeline(
        spans_dir: str,
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
        record_dir: str = "",
        span: str = "all",
        report_dir: str = "",
    ):
        ingest = c.ingest(spans_dir=spans_dir, record_dir=record_dir, span=span).set_display_name("ingest")
        gate = c.validate(
            train_rows=ingest.outputs["train_rows"], eval_rows=ingest.outputs["eval_rows"],
            contract_path=contract_path, source=source, record_dir=record_dir,
            spans_dir=spans_dir, span=span, report_dir=report_dir,
        ).set_display_name("validate")
        train = c.train(
            train_rows=ingest.outputs["train_rows"], gate_passed=gate.output,
            contract_path=contract_path, workers=workers, epochs=epochs, batch_size=batch_size,
            learning_rate=learning_rate, scheduler=scheduler, scheduler_options=scheduler_options,
            fail_once_after_epoch=fail_once_after_epoch, record_dir=record_dir,
        ).set_display_name("train")
        evaluate = c.evaluate(
            model=train.outputs["model"], eval_rows=ingest.outputs["eval_rows"],
            push_destination=push_destination, contract_path=contract_path, record_dir=record_dir,
        ).set_display_name("evaluate")
        c.push(
            model=train.outputs["model"], blessing=evaluate.outputs["blessing"],
            push_destination=push_destination, run_label=run_label, record_dir=record_dir,
        ).set_display_name("push")
        if resources is not None:
            _apply_resources(train, resources)
        for task in (ingest, gate, train, evaluate):
            task.set_caching_options(False)

    return torch_pipeline


def _apply_resources(task, r: TrainResources) -> None:
    from kfp import kubernetes

    task.set_cpu_limit(r.cpu).set_memory_limit(r.memory)
    if r.accelerator and r.accelerator_count:
        task.set_accelerator_type(r.accelerator).set_accelerator_limit(r.accelerator_count)
    if r.node_selector:
        kubernetes.add_node_selector(task, label_key=r.node_selector[0], label_value=r.node_selector[1])
    if r.toleration:
        kubernetes.add_toleration(task, key=r.toleration[0], operator="Exists", effect=r.toleration[1])
    if r.retries:
        task.set_retry(num_retries=r.retries, backoff_duration="60s", backoff_factor=2)
