"""Rendered manifests checked the way a cluster would take them: core kinds by
kubernetes-validate (strict), custom resources against their upstream CRDs."""

import subprocess
from pathlib import Path

import yaml

from pipelines import crds


def validate_manifests(docs: list[dict], tools: Path, tmp_path: Path) -> None:
    custom = set(crds.kinds())
    core = [d for d in docs if (d["apiVersion"], d["kind"]) not in custom]
    f = tmp_path / "core.yaml"
    f.write_text(yaml.safe_dump_all(core))
    proc = subprocess.run([str(tools / "kubernetes-validate"), "--strict", "--quiet", str(f)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checked = [d for d in docs if (d["apiVersion"], d["kind"]) in custom]
    assert {d["kind"] for d in checked} >= {"Queue", "InferenceService"}
    for d in checked:
        crds.validate(d)
