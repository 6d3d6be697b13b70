"""Errors the CLI reports as one clear paragraph and a non-zero exit, never a traceback."""


class TwinpipeError(Exception):
    """Base class: its message is shown to the user as is."""

    exit_code = 1


class ContractError(TwinpipeError):
    """The contract file itself is malformed."""


class DataError(TwinpipeError):
    """Input data breaks the contract (names file, column/row, rule, observed value)."""


class GateError(DataError):
    """The data gate stopped the run. ``checks`` are the failed checks (FailedCheck), ``report``
    where the validation report was written, ``source`` the input, ``quarantine`` the files of
    rows kept aside."""

    def __init__(self, message: str, checks: list | None = None, report: str = "",
                 source: str = "", quarantine: list | None = None):
        super().__init__(message)
        self.checks = list(checks or [])
        self.report = report
        self.source = source
        self.quarantine = list(quarantine or [])


class StageError(TwinpipeError):
    """A pipeline stage failed; names the stack and stage."""


ERROR_CHARS = 2000  # converter errors run to pages of MLIR locations; the head says what failed


def short_error(e: BaseException | str) -> str:
    """One exception as a record keeps it (signature.json, exports.json): type, message, at most
    ERROR_CHARS."""
    text = e if isinstance(e, str) else f"{type(e).__name__}: {e}"
    text = text.strip()
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS] + " [...]"
