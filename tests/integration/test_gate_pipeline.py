"""The data gate end to end: corrupted copies of a month through `twinpipe run --input` stop both
stacks before training with one message, alert every configured sink (loopback HTTP webhook and
Slack receiver, loopback SMTP server, the run's file), quarantine what they must and leave the
pushed models untouched; `twinpipe validate` alone exits 0 / 1."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from components.common.contract import load_contract
from components.common.sources import load_default_table
from tests.integration.cli import twinpipe
from tests.receivers import HttpReceiver, SmtpReceiver, subject


@pytest.fixture(scope="module")
def months():
    """Real January + February 2013 rows (6,000) in the contract's input shape."""
    table, _ = load_default_table(load_contract())
    return table[table["month"].isin([1, 2])].sample(6000, random_state=1).sort_index()


def _digest(folder) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()


def _bad_run(both, tmp_path, frame, name):
    """Runs both stacks on ``frame`` with the pushed models of an earlier good run in place."""
    good_out, _, _ = both
    out = tmp_path / "out"
    for stack in ("tfx", "torch"):
        shutil.copytree(good_out / stack / "pushed", out / stack / "pushed")
    before = {s: _digest(out / s / "pushed") for s in ("tfx", "torch")}
    src = tmp_path / name
    src.mkdir()
    frame.to_csv(src / "2013-01-02.csv", index=False)
    with HttpReceiver() as http, SmtpReceiver() as smtp:
        (tmp_path / "hook").write_text(f"{http.url}/hook")  # webhook URLs are secrets: files
        (tmp_path / "slack").write_text(f"{http.url}/slack")
        proc = twinpipe("run", "--input", str(src), "--months", "1-2", "--out", str(out),
                        "--alert-webhook-file", str(tmp_path / "hook"),
                        "--alert-slack-file", str(tmp_path / "slack"),
                        "--alert-smtp", smtp.url(), check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    for s in ("tfx", "torch"):  # the previously pushed model stays in place, byte for byte
        assert _digest(out / s / "pushed") == before[s]
    return out, proc, http, smtp


def _error_line(proc) -> str:
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("twinpipe: error:")]
    return line


def _stopped_at_validate(out):
    for s in ("tfx", "torch"):
        run = json.loads((out / s / "run.json").read_text())
        assert run["failed_stage"] == "validate" and run["stages"]["validate"]["passed"] is False
        assert run["stages"]["push"]["pushed"] is False
    tfx = json.loads((out / "tfx" / "run.json").read_text())
    assert tfx["stages"]["train"]["nodes"] == []  # Transform and Trainer never started
    assert not (out / "torch" / "stages" / "train.json").exists()


def test_text_in_a_numeric_column_stops_both_stacks(both, months, tmp_path):
    bad = months.copy().astype({"distance": object})
    feb = bad.index[bad["month"] == 2][::10]
    bad.loc[feb, "distance"] = "far"
    out, proc, http, smtp = _bad_run(both, tmp_path, bad, "text")
    line = _error_line(proc)
    assert line.startswith("twinpipe: error: [tfx][validate] and [torch][validate] stopped the run "
                           "before training: data gate:")
    assert "span 201302: malformed on column 'distance'" in line and "'far' is not a number" in line
    assert "2013-01-02.csv, line " in line  # file and line of an example
    _stopped_at_validate(out)
    # both stacks reached the same verdict and each alerted every sink
    gates = {s: json.loads((out / s / "validation" / "gate.json").read_text()) for s in ("tfx", "torch")}
    assert [(c["check"], c["column"], c["span"], c["policy"]) for c in gates["tfx"]["checks"]] == \
        [(c["check"], c["column"], c["span"], c["policy"]) for c in gates["torch"]["checks"]]
    hooks = [body for path, body in http.received if path == "/hook"]
    assert sorted(h["stack"] for h in hooks) == ["tfx", "torch"]
    for h in hooks:
        assert h["severity"] == "error" and h["span"] == "201302"
        (check,) = h["checks"]
        assert check["check"] == "malformed" and check["column"] == "distance"
        assert "quarantined" in check["observed"] and check["examples"]
        assert h["report"].endswith("validation/gate.json")
    engine = {h["stack"]: h["engine_report"] for h in hooks}
    assert "anomalies" in engine["tfx"] and engine["torch"].endswith("gx_result.json")
    slack = [body for path, body in http.received if path == "/slack"]
    assert len(slack) == 2 and all("distance" in s["text"] for s in slack)
    assert sorted(subject(m) for m in smtp.inbox) == [
        f"twinpipe data gate: 1 check failed — twinpipe-{s} / {s} span 201302" for s in ("tfx", "torch")]
    for s in ("tfx", "torch"):
        (local,) = (out / s / "validation" / "alerts.jsonl").read_text().splitlines()
        assert json.loads(local)["stack"] == s
    # the bad rows are kept, with their reason, and nowhere else
    import pandas as pd

    q = pd.read_parquet(out / "spans" / "span-201302" / "quarantine" / "data.parquet")
    assert len(q) == len(feb) and (q["distance"] == "far").all()
    assert q["reason"].str.contains("is not a number").all()
    manifest = json.loads((out / "spans" / "manifest.json").read_text())
    assert manifest["quarantined_rows"] == len(feb)


def test_a_shifted_distribution_stops_both_stacks(both, months, tmp_path):
    bad = months.copy()
    feb = bad["month"] == 2
    bad.loc[feb, "distance"] = (bad.loc[feb, "distance"] * 1.5).round().clip(upper=6000)
    out, proc, http, _ = _bad_run(both, tmp_path, bad, "shift")
    line = _error_line(proc)
    assert "[tfx][validate] and [torch][validate] stopped the run before training" in line
    assert "span 201302: drift on column 'distance': observed JS" in line and "vs span 201301" in line
    _stopped_at_validate(out)
    assert sorted(b["stack"] for p, b in http.received if p == "/hook") == ["tfx", "torch"]


def test_a_dropped_column_stops_both_stacks_at_ingest(both, months, tmp_path):
    out, proc, http, smtp = _bad_run(both, tmp_path, months.drop(columns=["dep_delay"], errors="ignore")
                                     .rename(columns={"distance": "miles"}), "renamed")
    line = _error_line(proc)
    assert line.startswith("twinpipe: error: [ingest] the data gate stopped tfx and torch before "
                           "training: data gate:")
    assert "schema on column 'distance': observed column missing" in line and "miles — renamed?" in line
    assert not (out / "tfx" / "run.json").exists() and not (out / "torch" / "run.json").exists()
    (hook,) = [b for p, b in http.received if p == "/hook"]
    assert hook["stack"] == "ingest" and hook["checks"][0]["column"] == "distance"
    assert len(smtp.inbox) == 1


def test_validate_command_exit_codes_and_alert(months, tmp_path):
    good = tmp_path / "good.csv"
    months.to_csv(good, index=False)
    ok = twinpipe("validate", str(good), "--out", str(tmp_path / "v1"))
    assert "passes the contract 'flights'" in ok.stdout and "0 quarantined" in ok.stdout
    bad = months.copy().astype({"carrier": object})
    bad.loc[bad.index[::20], "carrier"] = "ZZ"
    src = tmp_path / "bad.csv"
    bad.to_csv(src, index=False)
    hook = tmp_path / "hook"
    with HttpReceiver() as http:
        hook.write_text(f"{http.url}/hook")
        proc = twinpipe("validate", str(src), "--out", str(tmp_path / "v2"), "--alert-webhook-file",
                        str(hook), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    line = _error_line(proc)
    assert "bad.csv" in line and "unseen on column 'carrier'" in line and "'ZZ'" in line
    assert "quarantined" in line and "Report:" in line
    (body,) = [b for p, b in http.received if p == "/hook"]
    assert body["stack"] == "gate" and {c["check"] for c in body["checks"]} == {"unseen"}
    # a few bad rows: quarantined, a warning printed once, and the gate passes; no alert under the
    # default alerts.on: fail, a warning alert with alerts.on: warn
    few = months.copy().astype({"carrier": object})
    few.loc[few.index[::1000], "carrier"] = "ZZ"
    few.to_csv(src, index=False)
    flights = Path(load_contract().path).read_text()
    on_warn = tmp_path / "on-warn.yaml"
    on_warn.write_text(flights.replace("\nalerts: {}\n", "\nalerts: {on: warn}\n"))
    assert load_contract(on_warn).alert_on == "warn"
    for contract, out, alerted in ((None, "v3", False), (on_warn, "v4", True)):
        with HttpReceiver() as http:
            hook.write_text(f"{http.url}/hook")
            warn = twinpipe("validate", str(src), "--out", str(tmp_path / out),
                            "--alert-webhook-file", str(hook),
                            *(("--contract", str(contract)) if contract else ()))
        assert "6 quarantined" in warn.stdout
        assert (warn.stdout + warn.stderr).count("warning: span 201301") == 1, warn.stderr
        bodies = [b for p, b in http.received if p == "/hook"]
        assert len(bodies) == int(alerted), (contract, bodies)
        if alerted:
            assert bodies[0]["severity"] == "warning" and bodies[0]["checks"][0]["policy"] == "warn"
