"""docs/deploy-gke.md's offline steps, in its order, as a user runs them: the commands through
`python -m infra.cli` in subprocesses from a folder outside the repository, fed by a sample
`terraform output -json` of a made-up project (terraform-outputs/acme-ml-prod.json): the overlay
from Terraform's outputs, compile with per-stack images for both targets, the schema the TFX
spec reads, the overlay rendered by kustomize and validated (core objects strictly with
kubernetes-validate, the Volcano and KServe resources against their CRDs). Nothing in what it
produces may name the repository's own dev project, and every value comes from the sample."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from infra.deploy import kustomize
from infra.overlay import read_terraform_outputs, write_overlay
from pipelines.compile import load_compiled
from tests.deploy.manifests import validate_manifests

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = Path(__file__).resolve().parent / "terraform-outputs"
SAMPLE = SAMPLES / "acme-ml-prod.json"


def twinpipe(*args: str, cwd: Path, env: dict | None = None,
             timeout: float = 600) -> subprocess.CompletedProcess:
    """`twinpipe ARGS` as a user runs it, from ``cwd`` (the repository on PYTHONPATH only)."""
    base = {k: v for k, v in os.environ.items() if k not in ("STORAGE_EMULATOR_HOST",)}
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "infra.cli", *args], cwd=cwd, text=True,
                          capture_output=True, env={**base, **(env or {})}, timeout=timeout)


@pytest.fixture(scope="module")
def tools() -> Path:
    out = subprocess.run(["bash", "infra/scripts/tools_env.sh"], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def journey(tmp_path_factory):
    """The guide's offline steps 3-5 in order, in a folder outside the repository."""
    work = tmp_path_factory.mktemp("journey")
    tf_json = work / "tf.json"  # step 1: terraform output -json > tf.json
    shutil.copy(SAMPLE, tf_json)
    tf = read_terraform_outputs(tf_json)
    steps = {}
    steps["overlay"] = twinpipe("overlay", "--terraform-output", "tf.json", "--out",
                                "overlays/acme", cwd=work)
    flags = tf["compile_flags"].split()  # $(terraform output -raw compile_flags)
    for target in ("kfp", "vertex"):
        steps[f"compile-{target}"] = twinpipe("compile", "--stack", "both", "--target", target,
                                              "--out", "compiled", *flags, cwd=work)
    return work, tf, steps


def test_each_step_succeeds_without_a_placeholder_warning(journey):
    _, _, steps = journey
    for name, proc in steps.items():
        assert proc.returncode == 0, (name, proc.stdout, proc.stderr)
        assert "WARNING" not in proc.stderr and "Traceback" not in proc.stderr, (name, proc.stderr)


def test_each_compiled_spec_names_its_own_stacks_image_and_the_projects_values(journey):
    work, tf, _ = journey
    compiled = work / "compiled"
    for target in ("kfp", "vertex"):
        for stack, name in (("tfx", f"tfx-{target}.json"), ("torch", f"torch-{target}.yaml")):
            spec = load_compiled(compiled / name)[0]
            images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()
                      if "container" in e}
            assert images == {tf[f"{stack}_image"]}, (name, images)
            job = (compiled / name).with_name(name.rsplit(".", 1)[0] + ".train-job.yaml").read_text()
            assert tf[f"{stack}_image"] in job
            other = "torch" if stack == "tfx" else "tfx"
            assert tf[f"{other}_image"] not in (compiled / name).read_text() + job
    text = "".join(p.read_text() for p in compiled.rglob("*") if p.is_file())
    assert "twinpipe-dev" not in text and "twinpipe-artifacts" not in text
    assert tf["data_root"] in text and tf["pipeline_root"] in text
    assert tf["dataflow_service_account"] in text and "acme-ml-prod" in text
    # step 5's upload: the schema the TFX spec reads at DATA_ROOT/tfx/schema/schema.pbtxt
    assert (compiled / "tfx-schema.pbtxt").stat().st_size > 100
    assert (compiled / "tfx-eval-schema.pbtxt").stat().st_size > 100
    assert f"{tf['data_root']}/tfx/schema/schema.pbtxt" in (compiled / "tfx-kfp.json").read_text()


def test_overlay_renders_validates_and_carries_only_the_projects_values(journey, tools, tmp_path):
    work, tf, _ = journey
    overlay = work / "overlays" / "acme"
    kust = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    assert (overlay / kust["resources"][0]).resolve() == ROOT / "k8s" / "base"
    docs = kustomize(overlay)
    text = yaml.safe_dump_all(docs)
    assert "twinpipe-dev" not in text and "PROJECT_ID" not in text and "gs://BUCKET" not in text
    sa = next(d for d in docs if d["kind"] == "ServiceAccount")
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] == \
        tf["workload_service_account"]
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert secret["stringData"] == {"pubsub": tf["alerts_topic"]}
    quota = next(d for d in docs if d["kind"] == "ResourceQuota")
    queue = next(d for d in docs if d["kind"] == "Queue")
    assert quota["spec"]["hard"]["requests.nvidia.com/gpu"] == str(tf["gpu_limit"])
    assert queue["spec"]["capability"]["nvidia.com/gpu"] == str(tf["gpu_limit"])
    for stack in ("tfx", "torch"):
        isvc = next(d for d in docs if d["metadata"]["name"] == f"flights-{stack}")
        (container,) = isvc["spec"]["predictor"]["containers"]
        assert container["image"] == tf[f"{stack}_image"]
        dest = f"{tf['data_root']}/{stack}/pushed"
        assert container["args"][4] == dest
        assert isvc["metadata"]["annotations"]["twinpipe.io/push-destination"] == dest
        assert isvc["metadata"]["labels"]["twinpipe/env"] == tf["environment"]
    validate_manifests(docs, tools, tmp_path)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_repositorys_overlays_are_the_overlay_of_their_sample_outputs(env, tmp_path):
    """k8s/overlays/{dev,prod} are `twinpipe overlay`'s output for terraform-outputs/<env>.json
    (their header says so): regenerating gives the same overlay."""
    committed = yaml.safe_load((ROOT / "k8s/overlays" / env / "kustomization.yaml").read_text())
    fresh = yaml.safe_load(write_overlay(SAMPLES / f"{env}.json", tmp_path / env).read_text())
    assert committed["resources"] == ["../../base"]
    assert {**committed, "resources": None} == {**fresh, "resources": None}
    head = (ROOT / "k8s/overlays" / env / "kustomization.yaml").read_text().splitlines()[1]
    assert f"--terraform-output tests/deploy/terraform-outputs/{env}.json" in head


def test_terraform_outputs_what_the_overlay_and_compile_read():
    """Each env outputs every key `twinpipe overlay` needs, and compile_flags gives per-stack
    images in the registry: the sample files have the shape `terraform output -json` gives."""
    from infra.overlay import REQUIRED

    for env in ("dev", "prod"):
        tf = (ROOT / "terraform/envs" / env / "main.tf").read_text()
        for key in (*REQUIRED, "environment", "gpu_limit", "compile_flags"):
            assert f'output "{key}"' in tf, (env, key)
    module = (ROOT / "terraform/modules/twinpipe/outputs.tf").read_text()
    flags = module[module.index('output "compile_flags"'):]
    assert "--tfx-image ${module.platform.registry}/twinpipe-tfx:" in flags
    assert "--torch-image ${module.platform.registry}/twinpipe-torch:" in flags
    env_outputs = (ROOT / "terraform/envs/dev/main.tf").read_text()
    for sample in SAMPLES.glob("*.json"):
        doc = json.loads(sample.read_text())
        assert all(set(v) == {"sensitive", "type", "value"} for v in doc.values()), sample
        assert [k for k in doc if f'output "{k}"' not in env_outputs] == [], sample
        assert [k for k in doc["platform"]["value"] if f'output "{k}"' not in module] == [], sample


# --- twinpipe overlay's refusals: one line, exit 1 ---------------------------------------------

def _outputs(tmp_path: Path, **changes) -> Path:
    doc = json.loads(SAMPLE.read_text())
    doc.pop("platform")
    for k, v in changes.items():
        if v is None:
            doc.pop(k)
        else:
            doc[k]["value"] = v
    p = tmp_path / "tf.json"
    p.write_text(json.dumps(doc))
    return p


@pytest.mark.parametrize("changes, message", [
    ({"workload_service_account": None}, "no Terraform output workload_service_account"),
    ({"tfx_image": None, "torch_image": None}, "or give --tfx-image/--torch-image"),
    ({"alerts_topic": "projects/twinpipe-dev/topics/t"}, "is not a topic id of project acme-ml-prod"),
    ({"workload_service_account": "x@twinpipe-dev.iam.gserviceaccount.com"},
     "is not a service account of project acme-ml-prod"),
])
def test_overlay_refuses_incomplete_or_foreign_outputs_in_one_line(changes, message, tmp_path):
    from infra.cli import main

    proc = twinpipe("overlay", "--terraform-output", str(_outputs(tmp_path, **changes)), "--out",
                    str(tmp_path / "o"), cwd=tmp_path)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "kustomization.yaml").exists()
    assert main(["overlay", "--terraform-output", str(tmp_path / "nope.json"), "--out",
                 str(tmp_path / "o")]) == 1


def test_overlay_images_can_be_given_and_the_base_is_found_from_anywhere(tmp_path):
    path = write_overlay(_outputs(tmp_path, tfx_image=None, torch_image=None), tmp_path / "a/b/c",
                         tfx_image="r.example/t/twinpipe-tfx@sha256:" + "0" * 64,
                         torch_image="r.example/t/twinpipe-torch:7")
    docs = kustomize(path.parent)
    images = {d["metadata"]["name"]: d["spec"]["predictor"]["containers"][0]["image"]
              for d in docs if d["kind"] == "InferenceService"}
    assert images == {"flights-tfx": "r.example/t/twinpipe-tfx@sha256:" + "0" * 64,
                      "flights-torch": "r.example/t/twinpipe-torch:7"}


# --- twinpipe deploy without credentials or network: one line, exit 1, in seconds ------------

def _offline_env(tmp_path: Path) -> dict:
    """No credentials anywhere google.auth looks (env, gcloud's config, metadata server)."""
    env = {k: v for k, v in os.environ.items() if k not in (
        "GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", "CLOUDSDK_CONFIG")}
    return {**env, "HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
            "GCE_METADATA_HOST": "127.0.0.1:9", "GCE_METADATA_IP": "127.0.0.1:9",
            "NO_GCE_CHECK": "True", "PYTHONPATH": str(ROOT)}


def _deploy(tmp_path: Path, *args: str, env: dict) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "infra.cli", "deploy", *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    return proc, time.monotonic() - t0


def test_deploy_without_credentials_is_one_line_within_seconds_from_any_folder(tmp_path):
    # the default overlay (k8s/overlays/dev) is not in tmp_path: it is found in the repository
    proc, took = _deploy(tmp_path, "--data-root", "gs://some-bucket/data", env=_offline_env(tmp_path))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "no Google Cloud credentials" in lines[0] and "gs://some-bucket/data/" in lines[0]
    assert "gcloud auth application-default login" in lines[0] and proc.stdout == ""
    assert took < 15, took


def test_deploy_with_credentials_but_no_network_is_one_line_within_seconds(tmp_path):
    """A service-account key whose token exchange cannot succeed (no network here; a made-up key
    where there is one): one line about the token, exit 1."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    sa = tmp_path / "key.json"
    sa.write_text(json.dumps({
        "type": "service_account", "project_id": "acme-ml-prod", "private_key_id": "0",
        "private_key": key, "client_email": "nobody@acme-ml-prod.iam.gserviceaccount.com",
        "client_id": "0", "token_uri": "https://127.0.0.1:9/token"}))
    env = {**_offline_env(tmp_path), "GOOGLE_APPLICATION_CREDENTIALS": str(sa)}
    proc, took = _deploy(tmp_path, "--data-root", "gs://some-bucket/data", env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "could not get an access token" in lines[0] and "Traceback" not in proc.stderr
    assert took < 15, took


def test_deploy_with_an_unreachable_storage_endpoint_and_a_missing_overlay(tmp_path):
    env = {**_offline_env(tmp_path), "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9"}
    proc, took = _deploy(tmp_path, "--overlay", "k8s/overlays/prod", env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "could not reach Cloud Storage" in lines[0]
    assert "gs://twinpipe-prod-twinpipe-prod-artifacts/data/tfx/pushed" in lines[0]
    assert took < 15, took
    proc, _ = _deploy(tmp_path, "--overlay", "k8s/overlays/mine", env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "--overlay k8s/overlays/mine: no kustomization.yaml in" in lines[0]
    assert "twinpipe overlay --terraform-output" in lines[0]
