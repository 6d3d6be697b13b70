"""Compile: each stack's pipeline as a KFP v2 spec for self-hosted Kubeflow or Vertex AI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from components.common import storage
from components.common.alerts import ALERTS_SECRET
from components.common.beam_options import DEFAULT_REGION, DataflowSettings, artifact_bucket, beam_args
from components.common.cluster import vertex_proto
from components.common.config import RunConfig
from components.common.contract import load_contract
from components.common.errors import ContractError, TwinpipeError
from components.common.schedule_spec import GpuSpec, vertex_machine_type
from components.common.spans import parse_months
from components.tfx.export import signature_json
from components.tfx.job import ClusterJob, job_name, manifest
from components.tfx.schema import write_schema


def tfx_train_job(*, target: str, image: str, workers: int, gpu: str = "", gpu_count: int = 1,
                  contract_uri: str = "", project: str | None = None,
                  region: str = "us-central1") -> dict:
    """The TFX Trainer's cluster job config (:class:`components.tfx.launch.ClusterJob`) from the
    compile flags: a Volcano Job on GKE (kfp), CustomJob worker pools on Vertex."""

    job: dict = {"launcher": "vertex" if target == "vertex" else "volcano", "image": image,
                 "replicas": workers, "contract_uri": contract_uri}
    if target == "vertex":
        job.update(project=project or "", region=region)
    if gpu:
        job.update(GpuSpec(gpu, gpu_count).training_pods(target))
        if target == "vertex":  # the machine type Vertex pairs with these GPUs (L4: G2 machines)
            job["machine_type"] = vertex_machine_type(job)
    return job


def compile_tfx(
    *, target: str, out_dir: str, pipeline_root: str, data_root: str, image: str,
    contract_path: str | None, workers: int, months: str, span: str = "latest",
    beam_pipeline_args: list[str] | None = None, gpu: str = "", gpu_count: int = 1,
    contract_uri: str = "", project: str | None = None, region: str = "us-central1",
    landing: str = "",
) -> Path:
    """Writes ``tfx-<target>.json`` (a PipelineJob with the pipeline spec) via KubeflowV2DagRunner,
    and ``tfx-<target>.train-job.yaml``: the training job its Trainer submits (a Volcano Job for
    kfp, a Vertex CustomJob), with the training spec's URI filled in at run time.

    The schema file is written beside it; upload it to ``<data_root>/tfx/schema/``. The baseline
    is looked up in the push destination (no Resolver), so the same spec runs on self-hosted
    KFP v2, whose backend cannot run TFX's Resolver, and on Vertex. ``beam_pipeline_args``
    (``components.common.beam_options.beam_args``; default: the local DirectRunner ones) reach every
    executor; the Beam ones (ExampleGen, StatisticsGen, Transform, Evaluator) run on them.
    ``contract_uri``: the published contract (:func:`publish_contract`) the gate reads at run
    time; the other stages' settings are compiled from the same file.
    """
    from tfx import v1 as tfx

    from pipelines.tfx.local_runner import train_config
    from pipelines.tfx.pipeline import create_pipeline

    contract = load_contract(contract_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_schema(contract, out / "tfx-schema.pbtxt")
    write_schema(contract, out / "tfx-eval-schema.pbtxt", eval_schema=True)
    cfg = RunConfig(workers=workers, months=tuple(parse_months(months) or range(1, 13)))
    tcfg = train_config(cfg, contract, train_rows=0)  # counted by the trainer at run time

    job = tfx_train_job(target=target, image=image, workers=workers, gpu=gpu, gpu_count=gpu_count,
                        contract_uri=contract_uri, project=project, region=region)
    tcfg["cluster_job"] = job
    pipeline = create_pipeline(
        pipeline_name="twinpipe-tfx",
        pipeline_root=pipeline_root,
        spans_dir=f"{data_root}/spans",
        schema_path=f"{data_root}/tfx/schema/schema.pbtxt",
        eval_schema_path=f"{data_root}/tfx/schema/eval_schema.pbtxt",
        push_destination=f"{data_root}/tfx/pushed",
        landing_uri=landing,
        contract=contract,
        train_config=tcfg,
        train_steps=1,
        beam_pipeline_args=list(cfg.beam_args if beam_pipeline_args is None else beam_pipeline_args),
        signature_json=signature_json(contract),
        run_label=f"compiled-{target}",
        latest_span=span == "latest",
        contract_path=contract_uri,
    )
    filename = f"tfx-{target}.json"
    job_doc = manifest(ClusterJob.from_dict(job), job_name("<model run>"))
    (out / f"tfx-{target}.train-job.yaml").write_text(yaml.safe_dump(job_doc, sort_keys=False))
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=str(out),
        output_filename=filename,
    )
    runner.run(pipeline, write_out=True)
    return out / filename


def train_job_spec(*, target: str, image: str, gpu: str = "", gpu_count: int = 0,
                   launcher: str = "torchx", cpu: int = 4, mem_mb: int = 16384,
                   namespace: str = "twinpipe", queue: str = "twinpipe",
                   service_account: str = "twinpipe-runner", env: dict | None = None,
                   project: str = "", region: str = "") -> dict:
    """The torch train task's ``train_job`` parameter: the cluster training job its launcher
    submits (``components.torch.launch.submit_training`` reads exactly these keys).

    * ``launcher``: ``torchx`` (TorchX ``kubernetes`` scheduler, a Volcano Job) or ``trainjob``
      (a Kubeflow Trainer v2 TrainJob) on GKE; ``vertex`` (a Vertex AI CustomJob) for
      ``--target vertex``, which has no Kubernetes API to submit to;
    * ``image``, ``cpu``, ``memMB``: each training pod's image and requests;
    * ``gpu`` (per pod), ``gpu_type`` (the GKE accelerator, e.g. ``nvidia-l4``; on Vertex the
      machine spec's accelerator enum), ``node_selector`` and ``tolerations``: the GPU nodes —
      GPU requests sit on the training pods only, never on the KFP launcher task;
    * ``namespace``, ``queue`` (Volcano), ``service_account``: where and as whom the job runs;
    * ``env``: extra environment of the training pods;
    * ``project``, ``region`` (``--target vertex`` only): where the CustomJob runs.
    """

    job = {"launcher": "vertex" if target == "vertex" else launcher, "image": image,
           "cpu": cpu, "memMB": mem_mb, "gpu": 0, "gpu_type": "", "node_selector": {},
           "tolerations": [], "namespace": namespace, "queue": queue,
           "service_account": service_account, "env": dict(env or {})}
    if target == "vertex":
        job.update(project=project, region=region)
    if gpu:
        job.update(GpuSpec(gpu, gpu_count).training_pods(target))
    return job


def compile_torch(*, target: str, out_dir: str, data_root: str, image: str, workers: int,
                  gpu: str = "", gpu_count: int = 0, span: str = "latest",
                  pipeline_root: str | None = None, contract_uri: str = "",
                  launcher: str = "torchx", project: str = "", region: str = "",
                  landing: str = "") -> Path:
    """Writes ``torch-<target>.yaml`` (KFP v2 IR + kubernetes platform spec; YAML: KFP serialises
    platform-specific features only there).

    Its parameters default to the object-storage URIs under ``data_root`` (the landing folder its
    first step takes new deliveries from, the spans and the
    registry enter the run through importers of those URIs; ``pipeline_root`` is the default
    artifact root), and ``train_job`` to the training job built by :func:`train_job_spec` from
    the compile flags: the GPU request lands on the job's pods, while the KFP train task, which
    only submits that job and waits, stays small (``LauncherResources``: 1 CPU, 2G, retries).
    """
    from kfp import compiler

    from pipelines.torch.pipeline import LauncherResources, create_pipeline

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    job = train_job_spec(target=target, image=image, gpu=gpu, gpu_count=gpu_count,
                         launcher=launcher, project=project, region=region,
                         env={"TWINPIPE_CONTRACT": contract_uri} if contract_uri else None)
    path = out / f"torch-{target}.yaml"
    compiler.Compiler().compile(
        create_pipeline(LauncherResources(), pipeline_root=pipeline_root,
                        alerts_secret=ALERTS_SECRET if target == "kfp" else ""),
        package_path=str(path),
        pipeline_parameters={
            "spans_uri": f"{data_root}/spans",
            "landing_uri": landing,
            "push_destination": f"{data_root}/torch/pushed",
            "contract_path": contract_uri,
            "workers": workers,
            "span": span,
            "train_job": json.dumps(job, sort_keys=True),
        },
    )
    # Components are declared with a default image; point every executor at the one asked for.
    docs = list(yaml.safe_load_all(path.read_text()))
    for executor in docs[0]["deploymentSpec"]["executors"].values():
        if "container" in executor:  # importers run no container of ours
            executor["container"]["image"] = image
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    write_torch_train_job(path)
    return path


#: The train task's run-time arguments of the app, shown as such in the written manifest.
TORCH_APP_ARGS_AT_RUN_TIME = ["--train", "<train_rows artifact URI>",
                              "--out", "<model artifact URI>/train", "<contract features, epochs...>"]


def write_torch_train_job(spec_path: Path) -> Path:
    """Writes ``torch-<target>.train-job.yaml`` beside a compiled torch spec: the job its train
    task submits (``components.torch.job``), built from the spec's own ``train_job`` and ``workers``
    defaults so the file shows what the spec runs. The app's data arguments (artifact URIs) are
    only known at run time and appear as ``<...>`` placeholders; the manifest is validated
    against its CRD (a Vertex CustomJob against the API's message) before it is written.
    """
    from components.torch import job as jobs
    from pipelines import crds

    params = load_compiled(spec_path)[0]["root"]["inputDefinitions"]["parameters"]
    train_job = jobs.parse_train_job(params["train_job"]["defaultValue"])
    manifest = jobs.torch_train_job_manifest(train_job, TORCH_APP_ARGS_AT_RUN_TIME,
                                             int(params["workers"]["defaultValue"]))
    if train_job["launcher"] == "vertex":
        vertex_proto(manifest)  # unknown or mistyped fields raise
    else:
        crds.validate(manifest)
    out = spec_path.with_name(spec_path.name.replace(".yaml", ".train-job.yaml"))
    head = (f"# The training job the train task of {spec_path.name} submits "
            f"(launcher {train_job['launcher']}); <...> values are filled in at run time.\n")
    out.write_text(head + yaml.safe_dump(manifest, sort_keys=False))
    return out


def load_compiled(path: str | Path) -> list[dict]:
    """The documents of a compiled file: [spec] or [spec, platform spec]."""
    text = Path(path).read_text()
    if str(path).endswith(".json"):
        doc = json.loads(text)
        return [doc.get("pipelineSpec", doc)]
    return list(yaml.safe_load_all(text))


def load_pipeline_spec(path: str | Path):
    """The PipelineSpec proto inside a compiled file (PipelineJob JSON, or KFP YAML)."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = load_compiled(path)[0]
    return json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)


def tfx_beam_args(args, data_root: str, image: str) -> list[str]:
    """The TFX spec's Beam options from `twinpipe compile`'s flags (``--beam-runner``, default
    ``dataflow`` for ``--target vertex`` and ``direct`` for ``kfp``; ``--beam-arg`` overrides)."""

    runner = args.beam_runner or ("dataflow" if args.target == "vertex" else "direct")
    if runner != "dataflow":
        return beam_args(runner, args.beam_arg)
    if not args.project:
        why = "" if args.beam_runner else " (the default for --target vertex)"
        raise ContractError(f"--beam-runner dataflow{why} needs --project PROJECT_ID: the TFX "
                            "stack's Beam stages run as Dataflow jobs in that project (or give "
                            "--beam-runner direct to run them inside the pods).")
    return beam_args("dataflow", args.beam_arg, DataflowSettings(
        project=args.project, region=args.region, data_root=data_root, image=image,
        name=args.infra_name, service_account=args.dataflow_service_account,
        network=args.dataflow_network, subnetwork=args.dataflow_subnetwork,
        machine_type=args.dataflow_machine_type, max_workers=args.dataflow_max_workers))


CONTRACTS = "contracts"
PLACEHOLDER_BUCKET = "twinpipe-artifacts"


def publish_contract(contract_path: str, data_root: str, out_dir: str) -> str:
    """Stores the user's contract under ``<data_root>/contracts/<name>-<sha12>.yaml`` (content
    addressed: a changed file is a new URI, a run never sees a contract swapped under it) and
    returns that URI, which every compiled spec references.

    A data root nobody can reach from here (the placeholder bucket, when neither ``--data-root``
    nor ``--project`` is given) gets no upload attempt: the copy is written next to the spec and
    the ``gsutil cp`` that publishes it is printed. The spec still names the URI it will have.
    """

    data = storage.read_bytes(contract_path)
    contract = load_contract(contract_path)  # a bad contract fails here, not on the cluster
    name = f"{contract.name}-{hashlib.sha256(data).hexdigest()[:12]}.yaml"
    uri = storage.join(data_root, CONTRACTS, name)
    if data_root.startswith(f"gs://{PLACEHOLDER_BUCKET}/"):
        local = storage.join(out_dir, CONTRACTS, name)
        storage.write_bytes(local, data)
        print(f"[compile] contract not uploaded ({data_root} is a placeholder; give --data-root "
              f"or --project): publish it with\n  gsutil cp {local} {uri}")
        return uri
    try:
        storage.write_bytes(uri, data)
    except Exception as e:  # noqa: BLE001 — any storage failure is one message to the user
        raise ContractError(
            f"[compile] could not store the contract at {uri}: {type(e).__name__}: {e}. The "
            f"compiled specs would name a contract that is not there; check the data root and "
            f"your credentials (gcloud auth application-default login), or copy it yourself with "
            f"`gsutil cp {contract_path} {uri}`.") from None
    print(f"[compile] contract {contract_path} stored at {uri}")
    return uri


#: The images `twinpipe compile` writes when none is given: names no cluster can pull.
DEFAULT_IMAGES = {"tfx": "twinpipe-tfx:latest", "torch": "twinpipe-torch:latest"}


class UsageError(TwinpipeError):
    """Flags that do not go together (exit 2, as argparse's own usage errors)."""

    exit_code = 2


def stacks_of(args) -> tuple[str, ...]:
    return ("tfx", "torch") if args.stack == "both" else (args.stack,)


def stack_images(args) -> dict[str, str]:
    """Each compiled stack's image: ``--tfx-image`` / ``--torch-image``; ``--image`` only as the
    alias of the one stack's flag (``--stack tfx|torch``), refused with ``--stack both`` (one
    image cannot run both stacks: each image holds one stack's dependencies)."""

    stacks = stacks_of(args)
    image = getattr(args, "image", None)
    if image and len(stacks) > 1:
        raise UsageError("--image is ambiguous with --stack both: the stacks run different images; "
                         "give --tfx-image REGISTRY/twinpipe-tfx:TAG and --torch-image "
                         "REGISTRY/twinpipe-torch:TAG (or --stack tfx|torch with --image).")
    images = {}
    for stack in stacks:
        own = getattr(args, f"{stack}_image", None)
        if image and own and image != own:
            raise UsageError(f"--image {image} and --{stack}-image {own} name different images for "
                             f"the {stack} stack; give one of them.")
        images[stack] = own or image or DEFAULT_IMAGES[stack]
    return images


def compile_roots(args) -> tuple[str, str, str]:
    """(pipeline root, data root, landing URI) from the flags: Terraform's artifact bucket when
    the project is known, else the placeholder bucket."""

    bucket = artifact_bucket(args.infra_name, args.project) if args.project else PLACEHOLDER_BUCKET
    root = args.pipeline_root or f"gs://{bucket}/pipeline_root"
    data = args.data_root or f"gs://{bucket}/data"
    landing = f"{data}/landing" if getattr(args, "landing", None) is None else args.landing
    return root, data, landing


def placeholders(args) -> list[tuple[str, str, str]]:
    """What a compile leaves as a placeholder, as (value, what it is, the flag that replaces it):
    an image without a registry (a cluster cannot pull it), the placeholder bucket, a Vertex
    training job without a project."""

    found = []
    for stack, image in stack_images(args).items():
        if "/" not in image.split("@")[0]:
            found.append((image, f"the {stack} stack's image (no registry)",
                          f"--{stack}-image REGION-docker.pkg.dev/PROJECT/REPO/twinpipe-{stack}:TAG"))
    root, data, _ = compile_roots(args)
    placeholder = f"gs://{PLACEHOLDER_BUCKET}/"
    if data.startswith(placeholder):
        found.append((data, "the data root (spans, landing, contracts, pushed models)",
                      "--data-root gs://BUCKET/data (or --project PROJECT_ID)"))
    if root.startswith(placeholder):
        found.append((root, "the pipeline root (the runs' artifacts)",
                       "--pipeline-root gs://BUCKET/pipeline_root (or --project PROJECT_ID)"))
    if args.target == "vertex" and not args.project:
        found.append(("(none)", "the project of the Vertex training CustomJobs", "--project PROJECT_ID"))
    return found


def placeholder_warning(found: list[tuple[str, str, str]]) -> str:
    """The WARNING block `twinpipe compile` prints on stderr for :func:`placeholders`."""

    if not found:
        return ""
    rule = "=" * 78
    width = max(len(v) for v, _, _ in found)
    lines = [rule, f"WARNING: {len(found)} placeholder(s) in the compiled specs; they cannot run "
                   "on a cluster as they are:"]
    for value, what, flag in found:
        lines.append(f"  {value:<{width}}  {what}")
        lines.append(f"  {'':<{width}}    replace with {flag}")
    lines += ["Terraform gives every value: twinpipe compile ... $(terraform output -raw "
              "compile_flags)", rule]
    return "\n".join(lines) + "\n"


def compile_pipelines(args) -> list[Path]:

    stacks = stacks_of(args)
    images = stack_images(args)  # usage errors first
    root, data, landing = compile_roots(args)
    beam = tfx_beam_args(args, data, images["tfx"]) if "tfx" in stacks else None
    contract_uri = publish_contract(args.contract, data, args.out) if args.contract else ""
    paths = []
    for stack in stacks:
        if stack == "tfx":
            paths.append(compile_tfx(
                target=args.target, out_dir=args.out, pipeline_root=root, data_root=data,
                image=images["tfx"], contract_path=args.contract, workers=args.workers,
                months=args.months, span=args.span, beam_pipeline_args=beam,
                gpu=args.gpu, gpu_count=args.gpu_count, contract_uri=contract_uri,
                project=args.project, region=args.region, landing=landing,
            ))
        else:
            paths.append(compile_torch(
                target=args.target, out_dir=args.out, data_root=data, image=images["torch"],
                workers=args.workers, gpu=args.gpu, gpu_count=args.gpu_count, span=args.span,
                pipeline_root=root, launcher=getattr(args, "launcher", None) or "torchx",
                contract_uri=contract_uri, landing=landing,
                project=args.project or "", region=args.region or DEFAULT_REGION,
            ))
    return paths
