"""What every report section is made of: the stacks' names, the run files a measurement wrote,
HTML tables and images, number formats.

A report section is a module in :data:`comparison.report.SECTIONS` (registered there by a plain
import). It defines

* ``KEY``: its ``report.json`` key (the HTML anchor is the key with ``-`` for ``_``);
* ``TITLE``: its heading;
* ``collect(runs, data) -> dict | None``: the section's content from the runs
  (:func:`comparison.report.load_run` dicts: ``r["dir"]`` is the run folder, where the section's
  measurement wrote its JSON) and the report data built so far (core keys and every earlier
  section, by key); None when no run has what it needs (the section is then left out);
* ``render(doc) -> str``: the section's HTML body (helpers here and in :mod:`comparison.plots`),
  no heading.

A section reads only files; the measurement that writes them, in the same module or folder, is
registered in :data:`comparison.measure.EXTRA_MEASUREMENTS`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from pathlib import Path

# The stacks' names in sections' sentences and table headers.
SHORT_NAMES = {"tfx": "TFX", "torch": "PyTorch"}


def stack_files(runs: list[dict], name: str) -> Iterator[tuple[dict, str, dict]]:
    """(run, stack, document) for every run's ``<stack>/<name>`` JSON that exists, in run and
    stack order: what a per-stack measurement wrote."""
    for r in runs:
        for stack in r["stacks"]:
            path = Path(r["dir"]) / stack / name
            if path.is_file():
                yield r, stack, json.loads(path.read_text())


def anchor(key: str) -> str:
    return key.replace("_", "-")


STACKS = ("tfx", "torch")


STACK_NAMES = {"tfx": "TFX (TensorFlow)", "torch": "PyTorch (KFP + TorchX)",
               "tfx-tfrecord": "TFX on tf.Example (TFRecord path)"}


def num(x, digits=1, unit=""):
    if x is None:
        return "–"
    if isinstance(x, float) and digits is not None:
        return f"{x:,.{digits}f}{unit}"
    return f"{x:,}{unit}" if isinstance(x, int) else f"{x}{unit}"


def yes(flag: bool | None) -> str:
    return "not recorded" if flag is None else str(flag)


def ratio(a, b):
    return a / b if a and b else None


def table(headers, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'
