"""Errors the CLI reports as one clear paragraph and a non-zero exit, never a traceback."""


class TwinpipeError(Exception):
    """Base class: its message is shown to the user as is."""

    exit_code = 1


class ContractError(TwinpipeError):
    """The contract file itself is malformed."""


class DataError(TwinpipeError):
    """Input data breaks the contract (names file, column/row, rule, observed value)."""


class StageError(TwinpipeError):
    """A pipeline stage failed; names the stack and stage."""
