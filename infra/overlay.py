"""A kustomize overlay for one's own project, from Terraform's outputs (``terraform output -json``
in ``terraform/envs/<env>``): the pods' GCP service account (Workload Identity), the alerts
topic, the push destinations under the data root, each stack's image in the registry and the GPU
cap. Nothing in it is typed by hand, so nothing names another project.

The written ``kustomization.yaml`` references the repository's ``k8s/base`` by a path relative to
the overlay folder, wherever that folder is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from components.common.errors import TwinpipeError

#: The repository's kustomize base (found from this file, not from the working directory).
REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "k8s" / "base"

#: The outputs an overlay needs, and what each becomes.
REQUIRED = {
    "project_id": "the project (checked against the service account and topic)",
    "workload_service_account": "the pods' GCP service account (Workload Identity annotation)",
    "alerts_topic": "Secret twinpipe-alerts, key pubsub",
    "data_root": "the InferenceServices' push destinations DATA_ROOT/<stack>/pushed",
    "tfx_image": "the flights-tfx InferenceService's image",
    "torch_image": "the flights-torch InferenceService's image",
}
#: The base's image names, replaced by the registry's (kustomize ``images:``).
BASE_IMAGES = {"tfx": "twinpipe-tfx", "torch": "twinpipe-torch"}

HEADER = ("# Generated from Terraform's outputs (project {project}) by\n"
          "#   twinpipe overlay --terraform-output {source} --out {out}\n"
          "# Regenerate rather than edit. For your own project: `terraform output -json > tf.json`\n"
          "# in terraform/envs/<env>, then twinpipe overlay --terraform-output tf.json --out DIR.\n")


class OverlayError(TwinpipeError):
    """The Terraform outputs cannot make an overlay (missing file, key or bad JSON)."""


def read_terraform_outputs(path: str | Path) -> dict:
    """The values of ``terraform output -json`` (each ``{"value": ...}`` unwrapped); the
    module's outputs under ``platform`` fill in what the environment does not output itself."""

    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise OverlayError(f"--terraform-output {path}: no such file; write it with "
                           "`terraform output -json > tf.json` in terraform/envs/<env>.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OverlayError(f"--terraform-output {path}: not the JSON of `terraform output -json` "
                           f"({type(e).__name__}: {e}).") from None
    if not isinstance(doc, dict):
        raise OverlayError(f"--terraform-output {path}: expected the JSON object of `terraform "
                           "output -json`, got a " + type(doc).__name__ + ".")
    values = {k: (v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in doc.items()}
    nested = values.get("platform")
    if isinstance(nested, dict):
        for k, v in nested.items():
            values.setdefault(k, v)
    return values


def overlay_values(outputs: dict, source: str = "tf.json", tfx_image: str | None = None,
                   torch_image: str | None = None) -> dict:
    """The values an overlay sets, checked: every REQUIRED output present (or the image given),
    the service account and the topic in the project."""

    given = {"tfx_image": tfx_image, "torch_image": torch_image}
    values = {k: given.get(k) or outputs.get(k) for k in REQUIRED}
    if not values["data_root"] and outputs.get("artifact_bucket"):
        values["data_root"] = f"gs://{outputs['artifact_bucket']}/data"
    missing = [k for k, v in values.items() if not v]
    if missing:
        raise OverlayError(f"{source}: no Terraform output {', '.join(missing)} "
                           f"({'; '.join(REQUIRED[k] for k in missing)}). Apply this repository's "
                           "terraform/envs/<env> (it outputs them) and write the file again with "
                           "`terraform output -json > tf.json`"
                           + (", or give --tfx-image/--torch-image" if set(missing) &
                              set(given) else "") + ".")
    project = values["project_id"]
    if not str(values["workload_service_account"]).endswith(f"@{project}.iam.gserviceaccount.com"):
        raise OverlayError(f"{source}: workload_service_account {values['workload_service_account']} "
                           f"is not a service account of project {project}.")
    if not str(values["alerts_topic"]).startswith(f"projects/{project}/topics/"):
        raise OverlayError(f"{source}: alerts_topic {values['alerts_topic']} is not a topic id of "
                           f"project {project} (projects/{project}/topics/NAME).")
    if not str(values["data_root"]).startswith("gs://"):
        raise OverlayError(f"{source}: data_root {values['data_root']} is not a gs:// URI.")
    values["data_root"] = str(values["data_root"]).rstrip("/")
    values["environment"] = str(outputs.get("environment") or outputs.get("name") or project)
    gpus = outputs.get("gpu_limit")
    try:
        values["gpu_limit"] = None if gpus is None else int(gpus)
    except (TypeError, ValueError):
        raise OverlayError(f"{source}: gpu_limit {gpus!r} is not a whole number.") from None
    return values


def _image(ref: str) -> dict:
    """A kustomize ``images:`` entry's new name and tag (or digest) from an image reference."""
    if "@" in ref:
        name, digest = ref.split("@", 1)
        return {"newName": name, "digest": digest}
    name, sep, tag = ref.rpartition(":")
    if sep and "/" not in tag:
        return {"newName": name, "newTag": tag}
    return {"newName": ref}


def _json_patch(kind: str, name: str, ops: list[tuple[str, object]]) -> dict:
    body = [{"op": "replace", "path": path, "value": value} for path, value in ops]
    return {"target": {"kind": kind, "name": name},
            "patch": yaml.safe_dump(body, sort_keys=False, default_flow_style=False).rstrip()}


def kustomization(values: dict, base: str) -> dict:
    """The overlay's kustomization: ``base`` (a path relative to the overlay) with the values."""

    patches = [
        _json_patch("ServiceAccount", "twinpipe-runner", [
            ("/metadata/annotations/iam.gke.io~1gcp-service-account",
             values["workload_service_account"])]),
        _json_patch("Secret", "twinpipe-alerts", [("/stringData/pubsub", values["alerts_topic"])]),
    ]
    if values.get("gpu_limit") is not None:
        gpus = str(values["gpu_limit"])
        patches += [
            _json_patch("ResourceQuota", "twinpipe-compute",
                        [("/spec/hard/requests.nvidia.com~1gpu", gpus)]),
            _json_patch("Queue", "twinpipe", [("/spec/capability/nvidia.com~1gpu", gpus)]),
        ]
    for stack in BASE_IMAGES:
        dest = f"{values['data_root']}/{stack}/pushed"
        patches.append(_json_patch("InferenceService", f"flights-{stack}", [
            ("/metadata/annotations/twinpipe.io~1push-destination", dest),
            ("/spec/predictor/containers/0/args/4", dest)]))
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [base],
        "labels": [{"pairs": {"twinpipe/env": values["environment"]}, "includeSelectors": False}],
        "images": [{"name": BASE_IMAGES[s], **_image(values[f"{s}_image"])} for s in BASE_IMAGES],
        "patches": patches,
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the JSON patches) as literal blocks, as one writes them by hand."""


_Dumper.add_representer(str, lambda d, s: d.represent_scalar(
    "tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


def write_overlay(terraform_output: str | Path, out_dir: str | Path, *,
                  tfx_image: str | None = None, torch_image: str | None = None,
                  base: str | Path = BASE) -> Path:
    """Writes ``out_dir/kustomization.yaml`` from the Terraform outputs; returns its path."""

    values = overlay_values(read_terraform_outputs(terraform_output), str(terraform_output),
                            tfx_image, torch_image)
    base = Path(base).resolve()
    if not (base / "kustomization.yaml").is_file():
        raise OverlayError(f"{base}: no kustomization.yaml; the overlay needs the repository's "
                           "k8s/base.")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OverlayError(f"--out {out_dir}: cannot create the folder ({e.strerror}).") from None
    rel = os.path.relpath(base, out.resolve())
    path = out / "kustomization.yaml"
    head = HEADER.format(source=terraform_output, out=out_dir, project=values["project_id"])
    path.write_text(head + yaml.dump(kustomization(values, rel), Dumper=_Dumper, sort_keys=False,
                                     width=100))
    return path
