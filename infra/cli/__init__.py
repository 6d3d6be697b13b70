"""The `twinpipe` command line: ``main`` runs the command the flags name (:mod:`infra.cli.parser`,
:mod:`infra.cli.commands`) and turns every error into one paragraph and an exit code."""

from __future__ import annotations

import logging
import os
import sys

from components.common.errors import TwinpipeError
from infra import progress
from infra.cli.parser import build_parser

__all__ = ["build_parser", "main"]

INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug (data and usage errors exit 1 and 2)


def _env_for_stacks(verbose: bool) -> None:
    # TF 2.16 ships Keras 3; TFX 1.16 needs tf.keras 2 (the tf-keras package). Must be set before
    # TensorFlow is first imported, so the CLI sets it on entry (not at import time).
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    # TensorFlow's C++ log (XLA's "Unable to register cuFFT factory" lines on a CPU machine) is
    # noise to a user: errors reach the user as twinpipe's own messages; -v shows it again.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if verbose else "3"


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("twinpipe").setLevel(logging.INFO)

    progress.install(logging.getLogger("twinpipe"))
    if not verbose:
        import warnings

        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::UserWarning")
        for noisy in ("absl", "apache_beam", "tensorflow", "root"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:

    args = build_parser().parse_args(argv)
    _env_for_stacks(args.verbose)
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except TwinpipeError as e:
        print(f"twinpipe: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("twinpipe: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 — a bug: one paragraph here, the traceback in a file
        import tempfile
        import traceback

        fd, path = tempfile.mkstemp(prefix="twinpipe-crash-", suffix=".log")
        with os.fdopen(fd, "w") as f:
            traceback.print_exc(file=f)
        print(f"twinpipe: internal error in `twinpipe {args.command}`: {type(e).__name__}: {e}. "
              f"This is a bug in twinpipe, not in your data; the traceback is in {path}.",
              file=sys.stderr)
        return INTERNAL_ERROR
