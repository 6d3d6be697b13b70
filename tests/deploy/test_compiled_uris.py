"""The compiled TFX IR names one consistent set of object-storage locations.

On a cluster nothing but the bucket is shared between pods, so every location the TFX spec carries
(pipeline root, spans, schema, gate reports, push destination, contract) must be a ``gs://`` URL
under the roots given to ``twinpipe compile`` — never a path of the machine that compiled it, and
never a ``gs:/`` collapsed by ``pathlib``. Checked per target on the compiled file itself: the
task parameters each stage reads, and then every string in the whole document.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.integration.cli import ROOT, twinpipe_here

DATA, PIPELINE_ROOT = "gs://tp-bucket/data", "gs://tp-bucket/root"
TARGETS = ("kfp", "vertex")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled-uris")
    for target in TARGETS:
        twinpipe_here("compile", "--stack", "tfx", "--target", target, "--out", str(out),
                      "--data-root", DATA, "--pipeline-root", PIPELINE_ROOT, "--project", "my-proj",
                      "--image", "REG/twinpipe-tfx:1")
    return out


def _params(doc: dict) -> dict[str, dict[str, str]]:
    """{task: {parameter: constant string}} of the pipeline's root DAG."""
    out: dict[str, dict[str, str]] = {}
    for task, spec in doc["pipelineSpec"]["root"]["dag"]["tasks"].items():
        for name, value in spec.get("inputs", {}).get("parameters", {}).items():
            const = value.get("runtimeValue", {}).get("constantValue", {})
            if "stringValue" in const:
                out.setdefault(task, {})[name] = const["stringValue"]
    return out


def _strings(value) -> list[str]:
    """Every string in a JSON document, descending into strings that are JSON themselves (TFX
    serialises configs such as the Trainer's custom_config as JSON text)."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, str):
        if value[:1] in "{[":
            try:
                return [value, *_strings(json.loads(value))]
            except ValueError:
                pass
        return [value]
    return []


@pytest.mark.parametrize("target", TARGETS)
def test_stage_locations_are_under_the_given_roots(compiled, target):
    doc = json.loads((compiled / f"tfx-{target}.json").read_text())
    assert doc["runtimeConfig"]["gcsOutputDirectory"] == PIPELINE_ROOT
    p = _params(doc)
    assert p["ingest"]["input_base"] == f"{DATA}/spans"
    assert p["schema"]["schema_file"] == f"{DATA}/tfx/schema/schema.pbtxt"
    gate = p["validate_gate"]
    assert gate["spans_dir"] == f"{DATA}/spans"
    assert gate["report_dir"].startswith(f"{PIPELINE_ROOT}/")  # gate.json + alerts file
    # The user's contract, when one was given, is read from the data root (the packaged one
    # otherwise: empty).
    assert gate.get("contract_path", "") == "" or gate["contract_path"].startswith(f"{DATA}/")
    assert p["baseline"]["push_destination"] == p["push"]["push_destination"] == f"{DATA}/tfx/pushed"


@pytest.mark.parametrize("target", TARGETS)
def test_no_local_path_or_collapsed_url_anywhere(compiled, target):
    text = (compiled / f"tfx-{target}.json").read_text()
    strings = _strings(json.loads(text))
    for local in (str(compiled), str(ROOT), "/tmp/"):
        assert not [s for s in strings if local in s], f"{local} in the compiled {target} spec"
    assert not [s for s in strings if re.search(r"gs:/(?!/)", s)]  # pathlib's gs:/bucket
    urls = {u for s in strings for u in re.findall(r"gs://[^\s\"',]+", s)}
    # Every bucket location is under the given roots, except Dataflow's temp and staging areas
    # (Vertex runs the Beam stages on Dataflow), which sit in the data root's bucket.
    dataflow = {u for u in urls if u.startswith("gs://tp-bucket/dataflow/")}
    assert urls - dataflow and all(u == DATA or u.startswith((f"{DATA}/", f"{PIPELINE_ROOT}"))
                                   for u in urls - dataflow), sorted(urls)
    assert f"{DATA}/landing" in urls  # where the first node takes deliveries from
    assert (target == "vertex") == bool(dataflow)
