"""Submit/schedule against a real kfp.Client pointed at a KFP API stand-in on loopback that records
what it receives, and Vertex PipelineJobs built offline (anonymous credentials)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from google.auth.credentials import AnonymousCredentials

from components.common.errors import ContractError
from infra.deploy import load_spec, submit_kfp, submit_vertex
from tests.integration.cli import twinpipe_here


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled")
    for target in ("kfp", "vertex"):
        twinpipe_here("compile", "--stack", "torch", "--target", target, "--out", str(out))
    return out


class _Recorder(BaseHTTPRequestHandler):
    requests: list = []

    def _reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        self.requests.append(("GET", self.path, None))
        if "healthz" in self.path:
            return self._reply({"multi_user": False})
        return self._reply({"experiments": []})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        self.requests.append(("POST", self.path, body))
        if self.path.endswith("/experiments"):
            return self._reply({"experiment_id": "exp-1", "display_name": body["display_name"]})
        if self.path.endswith("/recurringruns"):
            return self._reply({"recurring_run_id": "rr-1", **body})
        return self._reply({"run_id": "run-1", **body})

    def log_message(self, *args):
        pass


@pytest.fixture()
def kfp_server():
    _Recorder.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", _Recorder.requests
    server.shutdown()


def test_kfp_recurring_run_request_is_what_dry_run_shows(compiled, kfp_server):
    host, received = kfp_server
    spec_path = compiled / "torch-kfp.yaml"
    params = {"workers": 2, "epochs": 3}
    shown = submit_kfp(spec_path, host, params, "twinpipe", "nightly-torch", cron="0 3 * * *",
                       dry_run=True)
    assert received == []  # a dry run sends nothing
    result = submit_kfp(spec_path, host, params, "twinpipe", "nightly-torch", cron="0 3 * * *")
    assert result == {"target": "kfp", "recurring_run_id": "rr-1"}
    posts = {path: body for method, path, body in received if method == "POST"}
    sent = posts["/apis/v2beta1/recurringruns"]
    assert sent["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    # kfp.Client sends the spec with its platform spec (the alerts Secret mount of the validate
    # task); the dry run shows exactly that.
    assert sent["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == \
        load_spec(spec_path)["pipelineInfo"]["name"]
    mounts = sent["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]
    assert mounts["executors"]["exec-validate"]["secretAsVolume"][0]["secretName"] == "twinpipe-alerts"
    assert sent["runtime_config"]["parameters"] == params
    want = shown["request"]
    for key in ("display_name", "trigger", "runtime_config", "mode"):
        assert sent[key] == want[key], key
    assert sent["pipeline_spec"]["pipeline_spec"]["root"] == want["pipeline_spec"]["pipeline_spec"]["root"]
    assert sent["pipeline_spec"]["platform_spec"] == want["pipeline_spec"]["platform_spec"]


def test_kfp_run_and_unknown_parameter(compiled, kfp_server):
    host, received = kfp_server
    r = submit_kfp(compiled / "torch-kfp.yaml", host, {"workers": 1}, "twinpipe", "one-off")
    assert r == {"target": "kfp", "run_id": "run-1"}
    assert any(m == "POST" and p == "/apis/v2beta1/runs" for m, p, _ in received)
    with pytest.raises(ContractError, match="unknown parameter"):
        submit_kfp(compiled / "torch-kfp.yaml", host, {"wrkers": 1}, "twinpipe", "typo")


def test_vertex_schedule_is_built_offline(compiled):
    r = submit_vertex(compiled / "torch-vertex.yaml", "my-proj", "us-central1", "gs://b/root",
                      {"workers": 2}, "nightly-torch", cron="TZ=Europe/Paris 0 3 * * *",
                      service_account="sa@my-proj.iam.gserviceaccount.com", dry_run=True,
                      credentials=AnonymousCredentials())
    sched = r["request"]["pipeline_job_schedule"]
    assert r["request"]["parent"] == "projects/my-proj/locations/us-central1"
    assert sched["cron"] == "TZ=Europe/Paris 0 3 * * *"
    job = sched["create_pipeline_job_request"]["pipeline_job"]
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://b/root"
    assert job["runtimeConfig"]["parameterValues"] == {"workers": 2}
    assert job["serviceAccount"] == "sa@my-proj.iam.gserviceaccount.com"
    with pytest.raises(ContractError, match="unknown parameter"):
        submit_vertex(compiled / "torch-vertex.yaml", "p", "us-central1", "gs://b/root",
                      {"nope": 1}, "x", dry_run=True, credentials=AnonymousCredentials())
