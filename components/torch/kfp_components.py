"""KFP v2 lightweight components of the PyTorch stack: each only calls its stage function.

Tasks exchange data as artifacts, never as host paths: the spans and the model registry come in
as imported artifacts (``dsl.importer`` in the pipeline; a stage reads their ``.uri`` through the
storage layer), rows and models as ``Dataset`` / ``Model`` artifacts under the pipeline root. A
rows artifact holds a rows reference (:mod:`components.common.rows`), not rows: it names the spans'
files (gs:// ones when the spans are on object storage), which validate, train and evaluate read in
place, so no task copies the spans to its disk and a cluster job reads the same files. Each
task's figures (what ``torch/run.json`` is built from) go to its ``record`` artifact, a folder
holding ``<stage>.json``; train and evaluate also log ``Metrics`` (auc, samples/s...), and the
blessing decision is an artifact whose metadata says ``blessed``. The gate report is an artifact
too, so it outlives the validate container.

Imports stay inside the bodies (KFP serialises the function source; heavy imports at module
level would slow every compile). The image carries the twinpipe package, so no pip install runs
at start (``install_kfp_package=False``).
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

IMAGE = "twinpipe-torch:latest"


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def land(landing_uri: str, spans_uri: str, contract_path: str, retrain: bool, run_label: str,
         validation: Output[Artifact], record: Output[Artifact]) -> bool:
    import json
    import os

    from components.torch.ingest import land_stage

    proceed = land_stage(landing_uri, spans_uri, contract_path, retrain, run_label, record.path,
                         validation.path)
    with open(os.path.join(record.path, "land.json")) as f:
        figures = json.load(f)
    record.metadata.update({k: figures[k] for k in ("status", "taken", "seen_before", "spans")
                            if k in figures})
    return proceed


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest(spans: Input[Dataset], proceed: bool, train_rows: Output[Dataset],
           eval_rows: Output[Dataset], record: Output[Artifact], span: str = "all") -> int:
    from components.common.runinfo import record_skip
    from components.torch.ingest import ingest_stage

    if not proceed:
        record_skip(record.path, "ingest")
        return 0
    return ingest_stage(spans.uri, train_rows.path, eval_rows.path, record.path, span=span)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def validate(spans: Input[Dataset], train_rows: Input[Dataset], eval_rows: Input[Dataset],
             proceed: bool, contract_path: str, source: str, validation: Output[Artifact],
             record: Output[Artifact], span: str = "all") -> bool:
    from components.common.runinfo import record_skip
    from components.torch.validate import validate_stage

    if not proceed:
        record_skip(record.path, "validate")
        return False
    return validate_stage(train_rows.path, eval_rows.path, contract_path, source or spans.uri,
                          record.path, spans_dir=spans.uri, span=span,
                          report_dir=validation.path)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train(train_rows: Input[Dataset], proceed: bool, gate_passed: bool, contract_path: str, workers: int,
          epochs: int, batch_size: int, learning_rate: float, scheduler: str,
          scheduler_options: str, fail_once_after_epoch: int, train_job: str,
          model: Output[Model], metrics: Output[Metrics], record: Output[Artifact]) -> float:
    import json
    import os

    from components.common.runinfo import record_skip
    from components.torch.launch import train_stage

    if not proceed:
        record_skip(record.path, "train")
        return 0.0
    if not gate_passed:
        raise RuntimeError("[torch][train] the data gate did not pass")
    # A cluster job's pods get the artifacts' object URIs; TorchX local_cwd reads local paths.
    samples_per_s = train_stage(
        train_rows.uri if train_job else train_rows.path, model.path, contract_path, workers,
        epochs, batch_size, learning_rate, scheduler=scheduler,
        scheduler_options=scheduler_options, fail_once_after_epoch=fail_once_after_epoch,
        record_dir=record.path, train_job=train_job, job_out=f"{model.uri}/train" if train_job else "")
    with open(os.path.join(record.path, "train.json")) as f:
        figures = json.load(f)
    for key in ("samples_per_s", "final_loss", "workers", "steps", "train_wall_s"):
        metrics.log_metric(key, figures[key])
    model.metadata["framework"] = "pytorch"
    model.metadata["formats"] = ["onnx", "torchscript"]
    return samples_per_s


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(model: Input[Model], eval_rows: Input[Dataset], baseline: Input[Artifact],
             proceed: bool, contract_path: str, blessing: Output[Artifact],
             metrics: Output[Metrics], record: Output[Artifact]) -> bool:
    import json

    from components.common.runinfo import record_skip
    from components.torch.evaluate import evaluate_stage

    if not proceed:  # nothing trained: nothing to bless, and push publishes nothing
        with open(blessing.path, "w") as f:
            json.dump({"blessed": False, "reasons": ["no new delivery: nothing trained"]}, f)
        blessing.metadata.update({"blessed": False, "reasons": ["no new delivery"]})
        record_skip(record.path, "evaluate")
        return False
    blessed = evaluate_stage(model.path, eval_rows.path, baseline.uri, contract_path,
                             blessing.path, record.path)
    with open(blessing.path) as f:
        decision = json.load(f)
    for key, value in decision["metrics"].items():
        metrics.log_metric(key, value)
    blessing.metadata.update({"blessed": decision["blessed"], "reasons": decision["reasons"],
                              "auc": decision["auc"], "baseline": decision["baseline"] or "",
                              "baseline_auc": decision["baseline_auc"]})
    return blessed


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def push(model: Input[Model], blessing: Input[Artifact], push_destination: str, run_label: str,
         record: Output[Artifact]) -> str:
    from components.torch.push import push_stage

    return push_stage(model.path, blessing.path, push_destination, run_label, record.path)
