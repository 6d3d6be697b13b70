"""Checks run INSIDE a built image by `make test-images` (infra/scripts/test_images.sh), as the
image's UID, with only loopback networking, the image's own Python and packages, and a folder from
outside mounted at WORK as a pod volume would be. This module comes from the checkout's tests/
(mounted read-only); everything it checks comes from the image.

    python -m tests.images.image_checks STEP [options]

Steps: files, sample, torch-ddp, tfx-pods, tfx-pipeline, serve. Each prints what it found and ends
with one line ``RESULT {json}``; any failed check exits non-zero with the reason.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

IMAGE_UID = 10001
VENV = "/opt/venv/"


def fail(msg: str) -> None:
    print(f"FAILED: {msg}", flush=True)
    sys.exit(1)


def check(cond: bool, msg: str) -> None:
    if not cond:
        fail(msg)


def result(**doc) -> None:
    print("RESULT " + json.dumps(doc, sort_keys=True), flush=True)


def in_image() -> None:
    """The checks must see the image, never the checkout: the image's UID and its installed code."""
    import components

    check(os.getuid() == IMAGE_UID, f"running as uid {os.getuid()}, not the image's {IMAGE_UID}")
    check(components.__file__.startswith(VENV), f"components imported from {components.__file__}")


def owned_by_image_uid(root: Path) -> list[str]:
    """Files under ``root`` not owned by the image's UID (the pod volume's writes)."""
    return [str(p) for p in root.rglob("*") if p.stat().st_uid != IMAGE_UID]


# -- files: what the compiled specs name is in the image -------------------------------------------

def _walk(node, lists: list, strings: list) -> None:
    if isinstance(node, dict):
        for v in node.values():
            _walk(v, lists, strings)
    elif isinstance(node, list):
        if node and all(isinstance(x, str) for x in node):
            lists.append(node)
        for v in node:
            _walk(v, lists, strings)
    elif isinstance(node, str):
        strings.append(node)


def _load_all(path: Path) -> list:
    import yaml

    text = path.read_text()
    if path.suffix == ".json":
        return [json.loads(text)]
    return [d for d in yaml.safe_load_all(text) if d is not None]


def _imports(source: str) -> set[tuple[str, str]]:
    """``(module, name)`` of every ``from module import name`` (name "" for ``import module``) in
    a KFP lightweight component's embedded source."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update((node.module, a.name) for a in node.names if a.name != "*")
        elif isinstance(node, ast.Import):
            found.update((a.name, "") for a in node.names)
    return found


def _spec_names(folder: Path) -> tuple[set[str], set[str], set[tuple[str, str]], int]:
    """(``-m`` modules, executables, embedded components' imports) every compiled spec and
    manifest under ``folder`` names."""
    modules, executables, imports, files = set(), set(), set(), 0
    for path in sorted(folder.rglob("*")):
        if path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
            continue
        files += 1
        lists, strings = [], []
        for doc in _load_all(path):
            _walk(doc, lists, strings)
            # KFP keeps each executor's container in deploymentSpec.executors.*.container
            for container in _containers(doc):
                if container.get("command"):
                    executables.add(container["command"][0])
        for argv in lists:
            modules.update(argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-m")
            # TFX's KFP v2 executors: the executor class each container loads by its path
            imports.update(tuple(argv[i + 1].rsplit(".", 1))
                           for i, a in enumerate(argv[:-1]) if a == "--executor_class_path")
        for doc in _load_all(path):  # the user functions TFX components load by dotted name
            imports.update(tuple(v.rsplit(".", 1)) for v in _named_functions(doc))
        for s in strings:  # shell scripts inside a command (KFP's lightweight components)
            modules.update(re.findall(r"(?:^|\s)-m\s+([A-Za-z_][\w.]*)", s))
            if "\ndef " in s:  # a component's function, which KFP runs from its source
                imports |= _imports(s)
    return modules, executables, imports, files


def _named_functions(node):
    """Dotted names a TFX component's parameters give (run_fn, preprocessing_fn, module_path)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("run_fn", "preprocessing_fn", "module_path") and isinstance(value, dict):
                text = json.dumps(value)
                yield from re.findall(r'"stringValue": "([A-Za-z_][\w.]+)"', text)
            else:
                yield from _named_functions(value)
    elif isinstance(node, list):
        for v in node:
            yield from _named_functions(v)


def _containers(node):
    if isinstance(node, dict):
        if isinstance(node.get("command"), list) and ("image" in node or "imageUri" in node):
            yield node
        for v in node.values():
            yield from _containers(v)
    elif isinstance(node, list):
        for v in node:
            yield from _containers(v)


def step_files(args) -> None:
    import importlib.util

    from components.common.contract import load_contract

    out = Path(args.work) / "compiled"  # `twinpipe compile` output for this image, made outside it
    modules, executables, imports, files = _spec_names(out)
    check(files > 0, f"no compiled spec under {out}")
    import importlib

    broken = []
    for mod, name in sorted(imports):
        try:
            obj = importlib.import_module(mod)
            if name and not hasattr(obj, name):
                importlib.import_module(f"{mod}.{name}")  # a submodule, as `from pkg import mod`
        except ImportError as e:
            broken.append(f"from {mod} import {name or '*'}: {e}")
    check(not broken, f"imports the compiled components run fail in the image: {broken}")
    missing = []
    for mod in sorted(modules):
        spec = importlib.util.find_spec(mod)
        origin = getattr(spec, "origin", None) or ""
        if spec is None or not origin.startswith(VENV):
            missing.append(f"{mod} ({origin or 'not found'})")
    check(not missing, f"modules the specs run are missing from the image: {missing}")
    # also what the manifests run outside the compiled specs: the KServe pods' `twinpipe serve`
    # (k8s/base) and the torch job's torchrun (inside its shell command)
    executables |= {"twinpipe"} | ({"torchrun"} if args.stack == "torch" else set())
    absent = [e for e in sorted(executables) if not (shutil.which(e) or os.access(e, os.X_OK))]
    check(not absent, f"executables the specs run are missing from the image: {absent}")
    contract = load_contract(None)
    serve_py = os.environ.get("TWINPIPE_SERVE_PYTHON", "")
    probe = "from importlib.metadata import version; import kserve; print(version('kserve'))"
    proc = subprocess.run([serve_py, "-c", probe], capture_output=True, text=True)
    check(proc.returncode == 0, f"the serve venv {serve_py!r} cannot import kserve: {proc.stderr[-500:]}")
    import serving.server

    front = Path(serving.server.__file__).with_name("kserve_front.py")
    check(front.is_file(), f"{front} (the serve front) is not in the image")
    boot = Path("/opt/apache/beam/boot")
    beam = "n/a"
    if args.stack == "tfx":
        elf = boot.is_file() and boot.read_bytes()[:4] == b"\x7fELF"
        beam = "sdk" if elf else "none"
        check(beam == args.beam_boot, f"label io.twinpipe.beam-boot={args.beam_boot} but "
                                      f"{boot} is {'the Beam launcher' if elf else 'the stub'}")
    print(f"{files} compiled files; modules: {', '.join(sorted(modules))}; "
          f"{len(imports)} imports and class/function paths of the components' code resolve")
    print(f"executables: {', '.join(sorted(executables))}; contract {contract.name}; "
          f"serve venv {serve_py} (kserve {proc.stdout.strip()}); Beam boot: {beam}")
    result(step="files", compiled_files=files, modules=sorted(modules), imports=len(imports),
           executables=sorted(executables), contract=contract.name, beam_boot=beam)


# -- sample: a small real table in the contract's shape --------------------------------------------

def step_sample(args) -> None:
    """January rows through the shared ingest into spans; the train split as the app's input."""
    import pyarrow.parquet as pq

    from components.common.contract import load_contract
    from components.common.ingest import ingest
    from components.common.spans import read_spans

    contract = load_contract(None)
    out = Path(args.work) / "data"
    ingest(contract, out / "spans", months=[1], sample=args.rows, seed=0)
    train = read_spans(out / "spans", "train")
    pq.write_table(train, out / "train.parquet")
    print(f"{train.num_rows} train rows of {args.rows} January rows -> {out / 'train.parquet'}")
    result(step="sample", rows=train.num_rows)


# -- torch-ddp: the DDP app under torchrun, two ranks, into the pod volume ------------------------

def step_torch_ddp(args) -> None:
    from components.common.contract import load_contract
    from components.torch.job import torchrun_command
    from components.torch.launch import train_app_args

    contract = load_contract(None)
    work = Path(args.work)
    out = work / "torch-model"
    app = train_app_args(contract, str(work / "data" / "train.parquet"), str(out), epochs=2,
                         batch_size=256, learning_rate=1e-3)
    cmd = torchrun_command(1, 2, app, rdzv_endpoint="localhost:29500")
    print("$ " + " ".join(cmd), flush=True)
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    secs = time.monotonic() - start
    check(proc.returncode == 0,
          f"torchrun exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    metrics = json.loads((out / "train_metrics.json").read_text())
    for name in ("model.pt", "preprocessing.json"):
        check((out / name).is_file(), f"{out / name} was not written")
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir()) if (out / "checkpoints").is_dir() else []
    check(ckpts, f"no checkpoint under {out / 'checkpoints'}")
    check(metrics.get("workers") == 2, f"train_metrics.json says workers={metrics.get('workers')}")
    check(metrics.get("backend") == "gloo", f"train_metrics.json says backend={metrics.get('backend')}")
    foreign = owned_by_image_uid(out)
    check(not foreign, f"files in the pod volume not owned by uid {IMAGE_UID}: {foreign[:5]}")
    rate = metrics.get("samples_per_s") or metrics.get("throughput")
    print(f"2 ranks ({metrics['backend']}) in {secs:.1f} s; {rate} samples/s; checkpoints {ckpts}; "
          f"all files owned by uid {IMAGE_UID}")
    result(step="torch-ddp", seconds=round(secs, 1), workers=metrics["workers"],
           backend=metrics["backend"], samples_per_s=rate, checkpoints=ckpts,
           files=sorted(p.name for p in out.iterdir()))


# -- tfx-pods: the TFX trainer module's cluster entry point, two pods -----------------------------

def step_tfx_pods(args) -> None:
    from components.common import storage
    from components.tfx import job as tfx_job
    from serving.server import free_port
    from tests.pods import small_transformed_span, tfx_pods, train_spec

    work = Path(args.work) / "tfx-pods"
    work.mkdir(parents=True, exist_ok=True)
    contract, transform_output, train_files = small_transformed_span(work)
    run_dir = str(work / "model_run")
    spec = train_spec(contract, transform_output, train_files, str(work / "serving"), run_dir)
    spec_uri = storage.join(run_dir, "train-spec.json")
    storage.write_json(spec_uri, spec)  # what Trainer.run_fn writes before it submits the job
    job = tfx_job.ClusterJob(launcher="volcano", image=args.image, replicas=2,
                             contract_uri=str(work / "c.yaml"))
    body = tfx_job.manifest(job, tfx_job.job_name(run_dir), spec_uri)
    pods = tfx_pods(body, "volcano", [free_port(), free_port()])
    print("$ " + " ".join(pods[0][0]), flush=True)
    start = time.monotonic()
    procs = [subprocess.Popen(cmd, env={**os.environ, **env, "TWINPIPE_THREADS": "1"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for cmd, env in pods]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    secs = time.monotonic() - start
    check([p.returncode for p in procs] == [0, 0],
          "the pods exited " + str([p.returncode for p in procs]) + ":\n"
          + "\n".join(o[-2000:] for o in outputs))
    metrics = storage.read_json(storage.join(run_dir, "train_metrics.json"))
    check(metrics.get("strategy") == "MultiWorkerMirroredStrategy", f"strategy {metrics.get('strategy')}")
    check(metrics.get("workers") == 2, f"workers {metrics.get('workers')}")
    check((work / "serving" / "saved_model.pb").is_file(), "the chief wrote no serving model")
    foreign = owned_by_image_uid(work)
    check(not foreign, f"files in the pod volume not owned by uid {IMAGE_UID}: {foreign[:5]}")
    print(f"2 pods ({metrics['strategy']}, {metrics['workers']} workers) trained in {secs:.1f} s; "
          f"serving model at {work / 'serving'}")
    result(step="tfx-pods", seconds=round(secs, 1), strategy=metrics["strategy"],
           workers=metrics["workers"], command=pods[0][0])


# -- tfx-pipeline: the TFX pipeline on a small sample ---------------------------------------------

def step_tfx_pipeline(args) -> None:
    out = Path(args.work) / "tfx-run"
    cmd = ["twinpipe", "run", "--stack", "tfx", "--months", "1", "--sample", "3000", "--epochs", "1",
           "--batch-size", "64", "--workers", "1", "--no-scaling-probe", "--measure", "none",
           "--out", str(out)]
    print("$ " + " ".join(cmd), flush=True)
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    secs = time.monotonic() - start
    check(proc.returncode == 0, f"twinpipe run exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    pushed = out / "tfx" / "pushed"
    current = json.loads((pushed / "current.json").read_text())
    runs = sorted(out.rglob("run.json"))
    check(runs, f"no run.json under {out}")
    foreign = owned_by_image_uid(out)
    check(not foreign, f"files in the pod volume not owned by uid {IMAGE_UID}: {foreign[:5]}")
    print(f"pipeline in {secs:.1f} s; pushed version {current.get('version')} -> {pushed}")
    result(step="tfx-pipeline", seconds=round(secs, 1), pushed=current.get("version"))


# -- serve: `twinpipe serve` answers V2 ready and infer = `twinpipe predict` -----------------------

def _get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def step_serve(args) -> None:
    import numpy as np
    import pandas as pd

    from serving.server import free_port, post_json, v2_request

    work = Path(args.work)
    model, stack = args.model, args.stack
    scored = work / f"{stack}-predict-{args.tag}.csv"
    proc = subprocess.run(["twinpipe", "predict", "--model", model, "--input", args.csv,
                           "--output", str(scored)], capture_output=True, text=True)
    check(proc.returncode == 0, f"twinpipe predict exited {proc.returncode}: {proc.stderr[-2000:]}")
    expected = pd.read_csv(scored)["probability"].to_numpy(np.float32)
    port = free_port()
    cmd = ["twinpipe", "serve", "--stack", stack, "--model", model, "--port", str(port),
           "--host", "127.0.0.1", "--poll-s", "0"]
    print("$ " + " ".join(cmd), flush=True)
    start = time.monotonic()
    log_path = Path("/tmp") / f"serve-{stack}-{args.tag}.log"
    log = open(log_path, "w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        ready = None
        while time.monotonic() - start < 180:
            if server.poll() is not None:
                fail(f"twinpipe serve exited {server.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if _get(port, "/v2/health/ready") == 200 and _get(port, f"/v2/models/{stack}/ready") == 200:
                    ready = time.monotonic() - start
                    break
            except OSError:
                pass
            time.sleep(0.3)
        if ready is None:
            fail(f"twinpipe serve was not ready within 180 s:\n{log_path.read_text()[-3000:]}")
        table = pd.read_csv(args.csv)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        status, answer = post_json(conn, f"/v2/models/{stack}/infer", v2_request(table))
        conn.close()
        check(status == 200, f"infer answered {status}: {answer}")
        (out,) = answer["outputs"]
        got = np.asarray(out["data"], np.float32).reshape(-1)
        check(got.shape == expected.shape, f"infer gave {got.shape} scores for {expected.shape} rows")
        np.testing.assert_array_equal(got, expected)
        if args.expected:
            ref = pd.read_csv(args.expected)["probability"].to_numpy(np.float32)
            np.testing.assert_allclose(got, ref, atol=1e-6)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            fail("twinpipe serve did not stop within 30 s of SIGTERM")
        log.close()
    with socket.socket() as s:  # the port is free again: nothing left holding it
        s.bind(("127.0.0.1", port))
    print(f"ready in {ready:.1f} s; V2 infer of {len(got)} rows = twinpipe predict "
          f"(first {got[:3].round(6).tolist()}){' = the fixture' if args.expected else ''}; "
          f"stopped on SIGTERM (exit {server.returncode})")
    result(step=f"serve-{stack}-{args.tag}", ready_seconds=round(ready, 1), rows=len(got),
           first=[float(x) for x in got[:3]], exit=server.returncode)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="image_checks")
    p.add_argument("step", choices=["files", "sample", "torch-ddp", "tfx-pods", "tfx-pipeline", "serve"])
    p.add_argument("--work", default="/tmp/w")
    p.add_argument("--stack", choices=["tfx", "torch"])
    p.add_argument("--image", default="")
    p.add_argument("--beam-boot", default="")
    p.add_argument("--rows", type=int, default=4000)
    p.add_argument("--model", default="")
    p.add_argument("--tag", default="fixture")
    p.add_argument("--expected", default="")
    p.add_argument("--csv", default="", help="serve: the raw rows to score")
    args = p.parse_args(argv)
    in_image()
    {"files": step_files, "sample": step_sample, "torch-ddp": step_torch_ddp,
     "tfx-pods": step_tfx_pods, "tfx-pipeline": step_tfx_pipeline, "serve": step_serve}[args.step](args)


if __name__ == "__main__":
    main()
