"""Live progress on a terminal: one rich progress line per stack and stage (spinner + elapsed
time), fed by the ``[stack][stage] ... running`` / ``... finished`` log lines both runners emit.
Off a terminal (CI logs, pipes) the plain log lines are the progress."""

from __future__ import annotations

import logging
import re
import sys

_RUNNING = re.compile(r"^\[(\w+)\]\[(\w+)\](?: (\S+))? running$")
_DONE = re.compile(r"^\[(\w+)\]\[(\w+)\](?: (\S+))? (?:finished|success|succeeded|failure|failed)")


class RichStageHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                 TimeElapsedColumn(), console=Console(stderr=True))
        self.tasks: dict[tuple, int] = {}
        self.progress.start()

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if m := _RUNNING.match(msg):
            key = m.groups()
            label = f"[bold]{key[0]}[/bold] {key[1]}" + (f" · {key[2]}" if key[2] else "")
            self.tasks[key] = self.progress.add_task(label, total=1)
        elif (m := _DONE.match(msg)) and m.groups() in self.tasks:
            self.progress.update(self.tasks.pop(m.groups()), completed=1)
        else:
            self.progress.console.print(msg, markup=False, highlight=False)

    def close(self) -> None:
        self.progress.stop()
        super().close()


def install(logger: logging.Logger) -> RichStageHandler | None:
    """Replaces plain progress lines with a live display when stderr is a terminal."""
    if not sys.stderr.isatty():
        return None
    handler = RichStageHandler()
    logger.addHandler(handler)
    logger.propagate = False
    return handler
