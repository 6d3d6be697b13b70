"""KFP v2 lightweight components of the PyTorch stack: each only calls its stage function.

Imports stay inside the bodies (KFP serialises the function source; heavy imports at module
level would slow every compile). The image carries the twinpipe package, so no pip install runs
at start (``install_kfp_package=False``).
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

IMAGE = "twinpipe-torch:latest"


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest(spans_dir: str, record_dir: str, train_rows: Output[Dataset],
           eval_rows: Output[Dataset], span: str = "all") -> int:
    from components.torch.stages import ingest_stage

    return ingest_stage(spans_dir, train_rows.path, eval_rows.path, record_dir, span=span)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def validate(train_rows: Input[Dataset], eval_rows: Input[Dataset], contract_path: str,
             source: str, record_dir: str, spans_dir: str, span: str = "all",
             report_dir: str = "") -> bool:
    from components.torch.stages import validate_stage

    return validate_stage(train_rows.path, eval_rows.path, contract_path, source, record_dir,
                          spans_dir=spans_dir, span=span, report_dir=report_dir)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train(train_rows: Input[Dataset], gate_passed: bool, contract_path: str, workers: int,
          epochs: int, batch_size: int, learning_rate: float, scheduler: str,
          scheduler_options: str, fail_once_after_epoch: int, record_dir: str,
          model: Output[Model]) -> float:
    from components.torch.stages import train_stage

    if not gate_passed:
        raise RuntimeError("[torch][train] the data gate did not pass")
    return train_stage(train_rows.path, model.path, contract_path, workers, epochs, batch_size,
                       learning_rate, scheduler=scheduler, scheduler_options=scheduler_options,
                       fail_once_after_epoch=fail_once_after_epoch, record_dir=record_dir)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(model: Input[Model], eval_rows: Input[Dataset], push_destination: str,
             contract_path: str, record_dir: str, blessing: Output[Artifact]) -> bool:
    from components.torch.stages import evaluate_stage

    return evaluate_stage(model.path, eval_rows.path, push_destination, contract_path,
                          blessing.path, record_dir)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def push(model: Input[Model], blessing: Input[Artifact], push_destination: str, run_label: str,
         record_dir: str) -> str:
    from components.torch.stages import push_stage

    return push_stage(model.path, blessing.path, push_destination, run_label, record_dir)
