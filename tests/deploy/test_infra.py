"""Offline checks of everything under terraform/, k8s/ and infra/docker/ with the real tools:
terraform fmt, kubectl kustomize, kubernetes-validate (strict; the Volcano and KServe custom
resources against their upstream CRDs' openAPIV3Schema through pipelines.crds), and checkov with
zero failed checks (every skip carries its reason in the code)."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from infra.deploy import kustomize
from pipelines import crds
from tests.deploy.manifests import validate_manifests

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("dev", "prod")


@pytest.fixture(scope="session")
def tools() -> Path:
    out = subprocess.run(["bash", "infra/scripts/tools_env.sh"], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1])


def _checkov(tools: Path, *args: str) -> list[dict]:
    proc = subprocess.run([str(tools / "checkov"), *args, "--skip-download", "-o", "json", "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    doc = json.loads(proc.stdout)
    reports = doc if isinstance(doc, list) else [doc]
    for r in reports:
        failed = [(c["check_id"], c["resource"], c["file_path"]) for c in r["results"]["failed_checks"]]
        assert failed == [], failed
        for c in r["results"].get("skipped_checks", []):
            assert len((c.get("check_result") or {}).get("suppress_comment", "")) > 20, c["check_id"]
    return reports


def _build(overlay: str) -> list[dict]:
    return kustomize(ROOT / "k8s" / "overlays" / overlay)


def test_terraform_is_formatted():
    assert shutil.which("terraform"), "terraform is not installed"
    proc = subprocess.run(["terraform", "fmt", "-check", "-recursive", "terraform"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"not formatted: {proc.stdout}"


def test_terraform_checkov_has_no_failed_checks(tools):
    (report,) = _checkov(tools, "-d", "terraform", "--framework", "terraform")
    assert report["summary"]["passed"] > 90 and report["summary"]["resource_count"] > 40


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kustomize_builds_and_core_objects_validate_strictly(overlay, tools, tmp_path):
    docs = _build(overlay)
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "Queue", "Role", "RoleBinding", "PriorityClass", "ResourceQuota",
            "LimitRange", "NetworkPolicy", "ServiceAccount", "InferenceService"} <= kinds
    ns = next(d for d in docs if d["kind"] == "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    sa = next(d for d in docs if d["kind"] == "ServiceAccount")
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].startswith(f"twinpipe-{overlay}-")
    binding = next(d for d in docs if d["kind"] == "RoleBinding")
    runner = {"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": "kubeflow"}
    assert runner in binding["subjects"]
    validate_manifests(docs, tools, tmp_path)


def test_custom_resources_reject_unknown_fields():
    isvc = next(d for d in _build("dev") if d["kind"] == "InferenceService")
    isvc["spec"]["predictor"]["containers"][0]["imagePullPolcy"] = "typo"
    with pytest.raises(crds.CrdError, match=r"spec\.predictor\.containers\[0\].*imagePullPolcy"):
        crds.validate(isvc)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manifests_checkov_has_no_failed_checks(overlay, tools, tmp_path):
    (tmp_path / "manifests.yaml").write_text(yaml.safe_dump_all(_build(overlay)))
    _checkov(tools, "-d", str(tmp_path), "--framework", "kubernetes")


def test_dockerfiles_checkov_and_shape(tools):
    _checkov(tools, "-d", "infra/docker", "--framework", "dockerfile")
    for stack in ("tfx", "torch"):
        text = (ROOT / "infra/docker" / f"Dockerfile.{stack}").read_text()
        assert text.count("\nFROM ") + text.startswith("FROM ") >= 2  # multi-stage
        final = text.split("\nFROM ")[-1]
        assert "USER 10001" in final and "build-essential" not in final
        assert "requirements/lock.txt" in text and "--no-deps --require-hashes" in text
        # the code is the last layer: a code change rebuilds only it, never the venv below
        assert final.rstrip().splitlines()[-1] == "COPY --from=app /opt/app/ /"


def _deps_stage(text: str) -> str:
    start = text.index("FROM ${BASE_IMAGE} AS deps")
    end = min(i for i in (text.find("\n# ---- ", start), text.find("\nFROM ", start)) if i > 0)
    return text[start:end]


def test_dockerfiles_share_their_deps_stage_and_install_hashed_locks():
    """Both images' deps layers are built from one text, so they are built once and shared; every
    lock they install pins each package with its sha256 hashes."""
    tfx, torch = ((ROOT / "infra/docker" / f"Dockerfile.{s}").read_text() for s in ("tfx", "torch"))
    assert _deps_stage(tfx) == _deps_stage(torch)
    for name in ("lock.txt", "tfx-nodeps.txt", "serve.lock.txt"):
        assert f"requirements/{name}" in _deps_stage(tfx)
        text = (ROOT / "requirements" / name).read_text()
        pins = re.findall(r"^([A-Za-z0-9][\w.-]*==\S+)((?: \\\n\s+--hash=sha256:[0-9a-f]{64})*)", text, re.M)
        assert pins, name
        unhashed = [pin for pin, hashes in pins if not hashes]
        assert not unhashed, f"{name}: pins without a hash: {unhashed[:5]}"
