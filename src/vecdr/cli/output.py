"""What the CLI shows: progress bars on a terminal, JSON documents, one-line errors."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from vecdr.progress import NullReporter

stderr = Console(stderr=True, highlight=False)
stdout = Console(highlight=False)


class RichReporter:
    """Progress bars on stderr; used only when stderr is a terminal and --json is off."""

    def __init__(self) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=stderr,
            transient=True,
        )
        self.task: Any = None

    def start(self, phase: str, total: int | None = None, unit: str = "rows") -> None:
        if self.task is None:
            self.progress.start()
        else:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(phase, total=total)

    def advance(self, amount: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, amount)

    def finish(self) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.progress.stop()
            self.task = None

    def warn(self, message: str) -> None:
        warn(message)


class QuietReporter(NullReporter):
    """No progress; warnings still reach stderr as one line each."""

    def warn(self, message: str) -> None:
        warn(message)


def reporter(as_json: bool) -> RichReporter | QuietReporter:
    return RichReporter() if not as_json and sys.stderr.isatty() else QuietReporter()


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def warn(message: str) -> None:
    print(f"vecdr: warning: {one_line(message)}", file=sys.stderr)


def error(message: str) -> None:
    print(f"vecdr: error: {one_line(message)}", file=sys.stderr)


def emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
