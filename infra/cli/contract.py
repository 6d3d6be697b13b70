"""`twinpipe contract init` and `twinpipe contract check`: a starting contract from a sample of the
user's table, and a contract checked whole and against data without training."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from components.common.config import RunConfig
from components.common.contract import Contract, load_contract
from components.common.contract_init import draft
from components.common.errors import ContractError
from pipelines import workflow

EXAMPLES = """examples:
  # a table with a date column and a yes/no label column
  twinpipe contract init --input data/customers.csv --label churned --positive yes \\
      --out customers.yaml
  # a numeric label: 1 when total_minutes >= 30; spans from year and month columns
  twinpipe contract init --input orders/ --label total_minutes --threshold 30 \\
      --year-column year --month-column month --out orders.yaml
  # the contract checked whole, then the data gate on the table, without training
  twinpipe contract check customers.yaml --input data/customers.csv
"""


def cmd_contract_init(args) -> int:
    """Writes a starting contract inferred from ``--input`` to ``--out``."""
    out = Path(args.out)
    if out.exists() and not args.force:
        raise ContractError(f"contract init: {out} exists; pass --force to overwrite it, or "
                            "--out another path.")
    text = draft(args.input, args.label, positive=args.positive, threshold=args.threshold,
                 name=args.name, date_column=args.date_column, year_column=args.year_column,
                 month_column=args.month_column, out=out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    contract = load_contract(out)  # what was written loads: a bug of init otherwise
    print(f"wrote {out}: {_describe(contract)}")
    print(f"next: read it, then `twinpipe contract check {out} --input {args.input}`")
    return 0


def cmd_contract_check(args) -> int:
    """The contract checked whole (every problem at once), then the data gate on ``--input``
    (:func:`pipelines.workflow.validate`, as `twinpipe validate`): exit 0 when both pass."""
    contract = load_contract(args.contract)
    print(f"contract {args.contract}: valid; {_describe(contract)}")
    if args.input is None:
        return 0
    cfg = RunConfig(out_dir=args.out, input_path=args.input, contract_path=args.contract)
    found = workflow.validate(cfg)
    ingested = found.ingested
    print(f"data {args.input}: passes the gate: {ingested.rows} rows in {len(ingested.spans)} "
          f"span(s), {ingested.quarantined_rows} quarantined, {len(found.warnings)} warning(s). "
          f"Report: {found.gate_json}")
    for w in found.warnings:
        print(f"  warning: {w}")
    sys.stdout.flush()
    return 0


def _describe(c: Contract) -> str:
    span = (f"date column {c.date_column}" if c.date_column
            else f"year/month columns {c.year_column}/{c.month_column}")
    return (f"'{c.name}', {len(c.columns)} columns ({len(c.numeric_features)} numeric and "
            f"{len(c.categorical_features)} categorical features), label '{c.label.name}' = "
            f"{c.label.meaning}, monthly spans from {span}, split key "
            f"[{', '.join(c.split.key)}], blessing {c.blessing.metric} >= "
            f"{c.blessing.lower_bound:g}")


def add_contract_parser(sub) -> None:
    """The `contract` command and its `init` and `check` subcommands."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("contract", help="write a starting contract from a sample, or check one",
                       description="Write a starting data contract from a sample of your table "
                                   "(init), or check a contract whole and against data (check).",
                       epilog=EXAMPLES, formatter_class=fmt)
    csub = p.add_subparsers(dest="contract_command", metavar="{init,check}", required=True)

    i = csub.add_parser("init", help="a starting contract inferred from a sample of the table",
                        description="Infers types, ranges, vocabularies, nulls, the span, a split "
                                    "key and gate limits calibrated on the sample;\nthe written "
                                    "file loads and passes the data gate on the same data.",
                        epilog=EXAMPLES, formatter_class=fmt)
    i.add_argument("--input", required=True, metavar="DATA",
                   help="a CSV/Parquet file or a folder of them (required)")
    i.add_argument("--label", required=True, metavar="COL",
                   help="the column the binary label comes from (required)")
    rule = i.add_mutually_exclusive_group()
    rule.add_argument("--positive", action="append", metavar="VALUE", default=None,
                      help="a value of the label column that means 1; repeatable (default: "
                           "guessed for a two-valued column such as yes/no, else required)")
    rule.add_argument("--threshold", type=float, metavar="X", default=None,
                      help="label = 1 when the (numeric) label column >= X (default: none)")
    i.add_argument("--out", default="contract.yaml", metavar="PATH",
                   help="where the contract is written (default: contract.yaml)")
    i.add_argument("--force", action="store_true",
                   help="overwrite --out when it exists (default: refuse)")
    i.add_argument("--name", default=None,
                   help="the contract's name (default: the input's file or folder name)")
    i.add_argument("--date-column", default=None, metavar="COL",
                   help="monthly spans from this date/timestamp column (default: found in the "
                        "sample)")
    i.add_argument("--year-column", default=None, metavar="COL",
                   help="monthly spans from this year column, with --month-column (default: a "
                        "column named year)")
    i.add_argument("--month-column", default=None, metavar="COL",
                   help="the month column (1-12), with --year-column (default: a column named "
                        "month)")
    i.set_defaults(func=cmd_contract_init)

    c = csub.add_parser("check", help="check a contract whole, and the data gate on --input",
                        description="Loads the contract (every problem reported at once, each "
                                    "naming the file and dotted key),\nthen runs the data gate on "
                                    "--input without training. Exit 0 when both pass, 1 "
                                    "otherwise.",
                        epilog=EXAMPLES, formatter_class=fmt)
    c.add_argument("contract", metavar="CONTRACT", help="the contract YAML (a path or gs:// URI)")
    c.add_argument("--input", default=None, metavar="DATA",
                   help="a CSV/Parquet file or folder to run the data gate on (default: none, "
                        "the contract alone is checked)")
    c.add_argument("--out", default="out/contract-check", metavar="OUT",
                   help="where spans, quarantine and the gate report go (default: "
                        "out/contract-check)")
    c.set_defaults(func=cmd_contract_check)
