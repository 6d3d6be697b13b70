"""pipelines.crds: manifests against the upstream CRDs' openAPIV3Schema, strictly (unknown fields fail)."""

import copy

import pytest
import yaml

from pipelines import crds


def _volcano_job() -> dict:
    return {
        "apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
        "metadata": {"name": "train", "namespace": "twinpipe"},
        "spec": {"schedulerName": "volcano", "queue": "twinpipe", "minAvailable": 1, "tasks": [{
            "name": "worker", "replicas": 1,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{
                "name": "main", "image": "twinpipe-torch:latest",
                "env": [{"name": "A", "value": "1"}],
                "resources": {"limits": {"cpu": "2", "memory": "4096M", "nvidia.com/gpu": 1}},
            }]}},
        }]},
    }


def test_valid_manifests_pass():
    crds.validate(_volcano_job())
    # The upstream runtime object is valid against its own CRD.
    runtime = yaml.safe_load((crds.crd_dir() / "kubeflow-trainer-runtime-torch_distributed.yaml")
                             .read_text())
    crds.validate(runtime)


@pytest.mark.parametrize(("edit", "path", "what"), [
    (lambda j: j["spec"].update(minAvailable="one"), r"\$\.spec\.minAvailable", "not of type"),
    (lambda j: j["spec"]["tasks"][0]["template"]["spec"].update(nodeSelectr={"a": "b"}),
     r"\$\.spec\.tasks\[0\]\.template\.spec", "nodeSelectr"),
    (lambda j: j["spec"]["tasks"][0]["template"]["spec"]["containers"][0].pop("name"),
     r"\$\.spec\.tasks\[0\]\.template\.spec\.containers\[0\]", "'name' is a required property"),
    (lambda j: j["spec"]["tasks"][0]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "A", "value": "2"}), r"containers\[0\]\.env", "duplicate entry"),
    (lambda j: j["metadata"].update(nmae="x"), r"\$\.metadata", "nmae"),
    (lambda j: j["spec"]["tasks"][0]["template"]["spec"]["containers"][0]["resources"]["limits"]
     .update(cpu=[2]), r"resources\.limits\.cpu", "is not valid under any of the given schemas"),
])
def test_broken_manifests_fail_naming_the_path(edit, path, what):
    job = copy.deepcopy(_volcano_job())
    edit(job)
    with pytest.raises(crds.CrdError, match=rf"(?s)'train'.*{path}.*{what}"):
        crds.validate(job)


def test_preserve_unknown_fields_is_honoured():
    # The InferenceService status is x-kubernetes-preserve-unknown-fields: extras are kept there.
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "m"},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "pytorch"},
                                             "storageUri": "gs://b/m"}}},
            "status": {"anything": {"goes": 1}}}
    crds.validate(isvc)
    isvc["spec"]["predictor"]["anything"] = 1
    with pytest.raises(crds.CrdError, match=r"\$\.spec\.predictor.*anything"):
        crds.validate(isvc)


def test_unknown_kind_is_one_paragraph():
    with pytest.raises(crds.CrdError, match="no CRD for apiVersion 'batch/v1' kind 'Job'.*known:"):
        crds.validate({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"}})
