"""Report sections beyond the core ones, one module each, in the order the report shows them.

Each module in :data:`SECTIONS` defines

* ``KEY``: its ``report.json`` key (the HTML anchor is the key with ``-`` for ``_``);
* ``TITLE``: its heading;
* ``collect(runs, data) -> dict | None``: the section's content from the runs
  (``infra.report.load_run`` dicts: ``r["dir"]`` is the run folder, where the section's
  measurement wrote its JSON) and the report data built so far (core keys and every earlier
  section, by key); None when no run has what it needs (the section is then left out);
* ``render(doc) -> str``: the section's HTML body (tables, ``infra.report`` plot helpers), no heading.

A section reads only files; the measurement that writes them is registered in
``infra.measure.EXTRA_MEASUREMENTS``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path

# Module names under infra.sections, in report order (claims last: it reads every other section).
SECTION_NAMES: tuple[str, ...] = ("tuning", "validation_engines", "fault_tolerance", "exports",
                                  "serving_load", "claims")


def sections() -> list:
    return [importlib.import_module(f"infra.sections.{name}") for name in SECTION_NAMES]


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
