"""Hardening: no silent loss (windows, missing markers, date spans), the label feed check, drift
with a persisted reference, atomic spans, one run per --out, collision-free pushes, contract and
flag errors — each on real 2013 rows, through the real code paths (ingest, gate, CLI, processes)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pandas as pd
import pytest
import yaml

from components.common import registry
from components.common.contract import load_contract
from components.common.errors import ContractError, DataError
from components.common.gate import check_spans
from components.common.ingest import ingest
from components.common.publish import publish_spans
from components.common.sources import load_default_table
from components.common.spans import parse_spans, span_history
from infra.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = load_contract()


@pytest.fixture(scope="module")
def flights():
    table, _ = load_default_table(CONTRACT)
    return table


def _sample(flights, months, n=1500, seed=0):
    return pd.concat([flights[flights.month == m].sample(n, random_state=seed + m) for m in months])


def _cli(*args) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse
            code = e.code
    return code, err.getvalue() + out.getvalue()


def _contract_file(tmp_path, **changes) -> Path:
    doc = yaml.safe_load(Path(CONTRACT.path).read_text())
    for key, value in changes.items():
        node = doc
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


# --- no silent loss ---------------------------------------------------------------------------

def test_every_month_present_by_default_and_windows_are_counted(flights, tmp_path):
    src = tmp_path / "in.csv"
    rows = _sample(flights, (1, 2, 7), n=400)
    rows.to_csv(src, index=False)
    res = ingest(CONTRACT, tmp_path / "spans", input_path=src)
    assert res.span_numbers == [201301, 201302, 201307] and res.outside_window_rows == 0
    res = ingest(CONTRACT, tmp_path / "spans", input_path=src, months=[2])
    assert res.span_numbers == [201302] and res.outside_window_rows == 800
    manifest = json.loads((tmp_path / "spans" / "manifest.json").read_text())
    assert manifest["outside_window_rows"] == 800
    # every input row is accounted for: written, excluded, quarantined or outside the window
    assert manifest["input_rows"] == (manifest["rows"] + manifest["excluded_rows"]
                                      + manifest["quarantined_rows"] + manifest["outside_window_rows"])
    res = ingest(CONTRACT, tmp_path / "spans", input_path=src, sample=100)
    manifest = json.loads((tmp_path / "spans" / "manifest.json").read_text())
    assert res.sampled_out_rows == 1100 and manifest["input_rows"] == (
        manifest["rows"] + manifest["excluded_rows"] + manifest["quarantined_rows"]
        + manifest["sampled_out_rows"])


def test_spans_window_is_year_aware(flights, tmp_path):
    a = flights[flights.month == 12].sample(300, random_state=1).assign(year=2012)
    b = flights[flights.month == 1].sample(300, random_state=2)
    c = flights[flights.month == 12].sample(300, random_state=3)
    src = tmp_path / "in.csv"
    pd.concat([a, b, c]).to_csv(src, index=False)
    assert parse_spans("201211-201302") == [201211, 201212, 201301, 201302]
    res = ingest(CONTRACT, tmp_path / "spans", input_path=src, spans=parse_spans("201212-201301"))
    assert res.span_numbers == [201212, 201301] and res.outside_window_rows == 300
    res = ingest(CONTRACT, tmp_path / "spans", input_path=src, months=[12])
    assert res.span_numbers == [201212, 201312]  # a month number means that month in any year
    with pytest.raises(DataError, match="201313"):
        parse_spans("201301-201313")


def test_only_declared_missing_markers_become_nulls(flights, tmp_path):
    """pyarrow/pandas would turn "NA", "NULL", "nan" into nulls; only the contract's markers do."""
    path = _contract_file(tmp_path, missing_values=[""])
    doc = yaml.safe_load(path.read_text())
    doc["columns"]["carrier"]["vocabulary"] += ["NA", "NULL", "nan"]
    path.write_text(yaml.safe_dump(doc))
    contract = load_contract(path)
    rows = _sample(flights, (1,), n=300).astype({"carrier": object})
    rows.iloc[:3, rows.columns.get_loc("carrier")] = ["NA", "NULL", "nan"]
    rows["dewp"] = rows["dewp"].astype(object)
    rows.iloc[10, rows.columns.get_loc("dewp")] = "nan"   # not a declared marker: not a number
    src = tmp_path / "in.csv"
    rows.to_csv(src, index=False)
    res = ingest(contract, tmp_path / "spans", input_path=src)
    kept = pd.concat(pd.read_parquet(p) for p in (tmp_path / "spans").glob("span-*/*/data.parquet")
                     if "quarantine" not in str(p))
    assert {"NA", "NULL", "nan"} <= set(kept["carrier"])
    q = pd.read_parquet(tmp_path / "spans" / "span-201301" / "quarantine" / "data.parquet")
    assert res.quarantined_rows == 1 and q["rule"].tolist() == ["malformed"]
    assert "'dewp': value 'nan' is not a number" in q["reason"].iloc[0]


def test_spans_from_a_date_column(flights, tmp_path):
    path = _contract_file(tmp_path, **{"span": {"date_column": "time_hour"}})
    doc = yaml.safe_load(path.read_text())
    doc["columns"]["time_hour"] = {"type": "string"}
    path.write_text(yaml.safe_dump(doc))
    contract = load_contract(path)
    rows = _sample(flights, (3, 4), n=400)
    rows = rows.assign(time_hour=pd.to_datetime(dict(year=rows.year, month=rows.month, day=rows.day))
                       .dt.strftime("%Y-%m-%dT%H:00:00Z"))
    rows.iloc[5, rows.columns.get_loc("time_hour")] = "someday"
    src = tmp_path / "in.csv"
    rows.to_csv(src, index=False)
    res = ingest(contract, tmp_path / "spans", input_path=src)
    assert res.span_numbers == [201303, 201304]
    q = pd.read_parquet(tmp_path / "spans" / "quarantine" / "data.parquet")  # no span: no date
    assert len(q) == 1 and "'someday' is not a date" in q["reason"].iloc[0]


def test_a_folder_mixing_csv_and_parquet(flights, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    _sample(flights, (1,), n=300).to_csv(d / "jan.csv", index=False)
    _sample(flights, (2,), n=300).to_parquet(d / "feb.parquet", index=False)
    (d / ".partial.csv").write_text("a half-uploaded hidden file")  # hidden files are skipped
    res = ingest(CONTRACT, tmp_path / "spans", input_path=d)
    assert res.span_numbers == [201301, 201302] and res.quarantined_rows == 0
    assert res.rows + res.excluded_rows == 600


@pytest.mark.parametrize("kind", ["fifo", "unreadable"])
def test_an_unreadable_input_is_a_data_error_not_a_hang(tmp_path, kind):
    path = tmp_path / "in.csv"
    if kind == "fifo":
        os.mkfifo(path)  # opening it would block forever
    else:
        path.write_text("year,month\n2013,1\n")
        path.chmod(0)
        if os.geteuid() == 0:  # root reads anything: a folder named like a file instead
            path.unlink()
            path.mkdir()
            (path / "notes.txt").write_text("x")
    t0 = time.monotonic()
    code, said = _cli("validate", str(path), "--out", str(tmp_path / "out"))
    assert code == 1 and time.monotonic() - t0 < 30 and str(path) in said, said
    assert ("readable on table" in said or "volume on table" in said) and "Traceback" not in said
    assert (tmp_path / "out" / "validation" / "alerts.jsonl").exists()


# --- label feed and drift reference ------------------------------------------------------------

def test_label_missing_fails_the_gate(flights, tmp_path):
    rows = _sample(flights, (1, 2), n=1500)
    feb = rows.index[rows.month == 2]
    rows.loc[feb[: int(len(feb) * 0.3)], "arr_delay"] = None
    src = tmp_path / "in.csv"
    rows.to_csv(src, index=False)
    ingest(CONTRACT, tmp_path / "spans", input_path=src)
    report = check_spans(CONTRACT, tmp_path / "spans")
    found = [c for c in report.failed if c.check == "label_missing"]
    assert [(c.span, c.column) for c in found] == [("201302", "arr_delay")]
    assert "have no label" in found[0].observed
    assert report.figures["201301"]["label_missing_rate"] < 0.1


def test_drift_reference_reaches_outside_the_window_and_across_runs(flights, tmp_path):
    year = _sample(flights, (1, 2, 3), n=2000)
    src = tmp_path / "year.csv"
    year.to_csv(src, index=False)
    # One run, window March only: February (outside the window) is still the reference.
    ingest(CONTRACT, tmp_path / "spans", input_path=src, months=[3])
    assert set(span_history(tmp_path / "spans")) == {201301, 201302, 201303}
    assert check_spans(CONTRACT, tmp_path / "spans").figures["201303"]["previous_span"] == 201302
    # A later single-span delivery (April, shifted distances) into the same folder: compared with
    # March from the history, and fails.
    april = _sample(flights, (4,), n=2000)
    april["distance"] = (april["distance"] * 1.5).clip(upper=5999).round().astype(int)
    src2 = tmp_path / "april.csv"
    april.to_csv(src2, index=False)
    ingest(CONTRACT, tmp_path / "spans", input_path=src2)
    report = check_spans(CONTRACT, tmp_path / "spans", [201304])
    assert report.figures["201304"]["previous_span"] == 201303
    assert ("drift", "distance") in {(c.check, c.column) for c in report.failed}


# --- nothing half-written, no overlap ----------------------------------------------------------

def test_a_failed_publish_leaves_the_previous_spans(flights, tmp_path):
    src = tmp_path / "in.csv"
    _sample(flights, (1,), n=300).to_csv(src, index=False)
    ingest(CONTRACT, tmp_path / "spans", input_path=src)
    before = sorted(str(p.relative_to(tmp_path / "spans")) for p in (tmp_path / "spans").rglob("*"))

    def broken(gen: Path) -> None:
        (gen / "span-209901").mkdir()
        raise OSError("disk full")

    with pytest.raises(OSError):
        publish_spans(tmp_path / "spans", broken)
    after = sorted(str(p.relative_to(tmp_path / "spans")) for p in (tmp_path / "spans").rglob("*"))
    assert after == before and len(list((tmp_path / ".spans").iterdir())) == 1


def test_a_killed_ingest_leaves_nothing_the_next_run_keeps(flights, tmp_path):
    src = tmp_path / "in.csv"
    _sample(flights, (1,), n=300).to_csv(src, index=False)
    ingest(CONTRACT, tmp_path / "spans", input_path=src)
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from components.common.ingest import publish_spans
        def slow(gen):
            (gen / "span-209901").mkdir()
            print("writing", flush=True)
            time.sleep(60)
        publish_spans({str(tmp_path / 'spans')!r}, slow)
        """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    child.send_signal(signal.SIGKILL)
    child.wait()
    first = (tmp_path / "spans").resolve()
    killed = {p for p in (tmp_path / ".spans").iterdir()} - {first}
    assert len(killed) == 1  # the killed run's generation
    assert not (tmp_path / "spans" / "span-209901").exists()  # never visible to readers
    ingest(CONTRACT, tmp_path / "spans", input_path=src)
    # the killed generation is gone; the one just replaced stays for runs still reading it
    assert set((tmp_path / ".spans").iterdir()) == {(tmp_path / "spans").resolve(), first}
    ingest(CONTRACT, tmp_path / "spans", input_path=src)
    assert first not in set((tmp_path / ".spans").iterdir())  # two publishes later: removed
    assert len(list((tmp_path / ".spans").iterdir())) == 2
    assert [p.name for p in (tmp_path / "spans").glob("span-*")] == ["span-201301"]


def test_one_run_per_out_and_a_dead_holder_is_taken_over(flights, tmp_path):
    src = tmp_path / "in.csv"
    _sample(flights, (1,), n=300).to_csv(src, index=False)
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from components.common.runlock import RunLock
        with RunLock({str(out)!r}, "run"):
            print("holding", flush=True)
            time.sleep(60)
        """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        t0 = time.monotonic()
        code, said = _cli("validate", str(src), "--out", str(out))
        assert code == 1 and time.monotonic() - t0 < 10
        assert f"pid {holder.pid}" in said and "in use by another twinpipe run" in said
        assert not (out / "spans").exists()  # stopped before writing anything
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    code, said = _cli("validate", str(src), "--out", str(out))
    assert code == 0, said
    assert (out / "spans" / "span-201301").is_dir()
    assert (out / ".twinpipe.lock").read_text() == ""  # released


def test_concurrent_pushes_never_collide(tmp_path):
    dest = tmp_path / "pushed"
    script = textwrap.dedent(f"""
        import sys, time
        from components.common import registry
        start = float(sys.argv[1])
        while time.time() < start:
            pass
        v = registry.push_atomic({str(dest)!r}, lambda d: (d / "model.bin").write_text(sys.argv[2]),
                                 {{"who": sys.argv[2]}})
        print(v.name)
        """)
    start = time.time() + 3
    procs = [subprocess.Popen([sys.executable, "-c", script, str(start), str(i)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True) for i in range(6)]
    names = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(names)) == 6
    versions = registry.versions(dest)
    assert sorted(v.name for v in versions) == sorted(names)
    assert sorted(json.loads((v / "push.json").read_text())["who"] for v in versions) == \
        [str(i) for i in range(6)]
    assert sorted((v / "model.bin").read_text() for v in versions) == [str(i) for i in range(6)]


def test_leftovers_of_a_killed_push_are_removed(tmp_path):
    dest = tmp_path / "pushed"
    good = registry.push_atomic(dest, lambda d: (d / "m").write_text("x"), {})
    (dest / ".tmp-killed").mkdir()
    (dest / ".tmp-killed" / "half").write_text("x")
    (dest / "99999999999999").mkdir()  # a reserved name whose push never finished
    gone = registry.remove_leftovers(dest)
    assert len(gone) == 2 and sorted(p.name for p in dest.iterdir()) == [good.name, "current.json"]


# --- contract and flag errors ------------------------------------------------------------------

@pytest.mark.parametrize("change, says", [
    ({"label.name": None}, "required key 'label.name' is missing"),
    ({"label.threshold": "soon"}, "key 'label.threshold' must be a number, got 'soon'"),
    ({"split.key": "year"}, "key 'split.key' must be a list"),
    ({"span.month_column": None}, "required key 'span.month_column' is missing"),
    ({"validation.max_label_missing_rate": 2}, "validation.max_label_missing_rate must lie in [0, 1]"),
    ({"blessing": None}, "required key 'blessing' is missing"),
    ({"columns.distance": "int"}, "key 'columns.distance' must be a mapping"),
])
def test_contract_errors_name_file_and_key(tmp_path, change, says):
    path = _contract_file(tmp_path, **change)
    with pytest.raises(ContractError) as e:
        load_contract(path)
    assert str(path) in str(e.value) and says in str(e.value)
    code, said = _cli("validate", str(path), "--contract", str(path), "--out", str(tmp_path / "o"))
    assert code == 1 and says in said and "Traceback" not in said


@pytest.mark.parametrize("flag, value", [("--batch-size", "0"), ("--workers", "0"),
                                         ("--epochs", "-1"), ("--scale", "x"),
                                         ("--learning-rate", "nan"), ("--sample", "0")])
def test_numeric_flags_are_range_checked(flag, value):
    code, said = _cli("run", flag, value, "--out", "/nonexistent/never-written")
    assert code == 2 and flag in said and ("out of range" in said or "not a" in said), said


def test_contract_without_input_is_a_clear_usage_error(tmp_path):
    code, said = _cli("run", "--contract", CONTRACT.path, "--out", str(tmp_path / "o"))
    assert code == 1 and "--input" in said and not (tmp_path / "o").exists()
    assert os.linesep not in said.strip()
