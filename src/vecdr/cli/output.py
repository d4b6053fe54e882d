"""What the CLI shows: progress bars on a terminal, JSON documents, one-line errors.

Names come from the repository and the command line (collections, tags, paths, URIs,
messages that quote them) and are shown literally: control characters (newlines, ANSI
escapes, bidirectional overrides) as Python escapes (:func:`shown`), and in rich tables
with their markup escaped too (:func:`cell`), so ``[bold red]x[/]`` prints as typed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from vecdr.errors import StoreError, UsageError
from vecdr.progress import NullReporter
from vecdr.store.secrets import scrub

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
        self.task = self.progress.add_task(cell(phase), total=total)

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


def shown(text: object) -> str:
    """``text`` as a terminal can show it: every non-printable character escaped as ``repr`` would."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)


def cell(text: object) -> str:
    """``text`` for a rich table or title: :func:`shown`, and its markup escaped."""
    return escape(shown(text))


def one_line(text: str) -> str:
    return shown(" ".join(str(text).split()))


def warn(message: str) -> None:
    print(f"vecdr: warning: {one_line(scrub(message))}", file=sys.stderr)


def error(message: str) -> None:
    # The last line of defence: no credential a library quoted reaches the terminal.
    print(f"vecdr: error: {one_line(scrub(message))}", file=sys.stderr)


def emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def check_writable(path: str, option: str) -> None:
    """Refuse, before any work, a file that cannot be written: no folder to hold it, or a folder itself."""
    where = Path(path)
    if not path.strip() or where.is_dir():
        raise UsageError(f"{option} {path!r} is a folder, not a file")
    if not where.parent.is_dir():
        raise UsageError(f"{option} {path!r}: the folder {str(where.parent)!r} does not exist")
    if not os.access(where.parent, os.W_OK):
        raise UsageError(f"{option} {path!r}: the folder {str(where.parent)!r} is not writable")


def write_text(path: str, text: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.2f}s"
    if value < 7200:
        return f"{value / 60:.1f}m"
    return f"{value / 3600:.1f}h"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _verdict(passed: bool | None) -> str:
    return {True: "pass", False: "FAIL", None: "-"}[passed]


def drill_rows(result: Any) -> list[tuple[str, str, str, str]]:
    """(check, measured, target, verdict) rows of a drill."""
    targets = {c.name: c for c in result.checks}

    def row(name: str, measured: str, fmt: Any) -> tuple[str, str, str, str]:
        check = targets.get(name)
        target = "-" if check is None or check.target is None else fmt(check.target)
        return (name.replace("_", " "), measured, target, _verdict(check.passed if check else None))

    phases = ", ".join(f"{k} {_seconds(v)}" for k, v in result.rto_phases.items())
    rows = [
        row("rto_seconds", f"{_seconds(result.rto_seconds)} ({phases})", _seconds),
        row("rpo_seconds", _seconds(result.rpo_seconds), _seconds),
        row("rows", f"{result.rows_restored if result.rows_restored is not None else '-'}", str),
        row("recall_ratio", f"{_share(result.recall_ratio)} (recall@{result.k} {_share(result.recall)} vs live "
            f"{_share(result.source_recall)}, {result.queries} queries)", _share),
    ]
    return rows


def print_drill(result: Any) -> None:
    from rich.table import Table

    table = Table(title=cell(f"drill of {result.collection!r}, snapshot {result.snapshot[:12]} -> {result.target}"))
    for column in ("check", "measured", "target", "result"):
        table.add_column(column)
    for r in drill_rows(result):
        table.add_row(*map(cell, r))
    stdout.print(table)
    recorded = f"recorded as {result.history_key}" if result.history_key else "not recorded (--no-record)"
    stdout.print(cell(f"{'PASSED' if result.passed else 'FAILED'}; {recorded}"))


def drill_markdown(result: Any) -> str:
    lines = [
        f"# DR drill: {shown(result.collection)}",
        "",
        f"- started: {result.started_at}",
        f"- snapshot: `{result.snapshot}`",
        f"- scratch target: `{shown(result.target)}` (dropped afterwards)",
        f"- result: **{'PASSED' if result.passed else 'FAILED'}**",
        "",
        "| check | measured | target | result |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in drill_rows(result)]
    lines += ["", "Restore phases (seconds): " + ", ".join(f"{k} {v:.3f}" for k, v in result.restore_phases.items())]
    return "\n".join(lines) + "\n"


def print_drills(history: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table()
    for column in ("started", "collection", "snapshot", "RTO", "RPO", "rows", "recall ratio", "result"):
        table.add_column(column)
    for d in history:
        table.add_row(cell(d.get("started_at")), cell(d.get("collection")), cell(str(d.get("snapshot", ""))[:12]),
                      _seconds(d.get("rto_seconds")), _seconds(d.get("rpo_seconds")), cell(d.get("rows_restored")),
                      _share(d.get("recall_ratio")), _verdict(d.get("passed")))
    stdout.print(table if history else "no drills yet")


def print_status(rows: list[Any]) -> None:
    from rich.table import Table

    table = Table()
    for column in ("collection", "snapshots", "newest", "age", "pending", "RPO", "RPO target", "RTO target",
                   "last drill RTO", "last drill"):
        table.add_column(column)
    for r in rows:
        table.add_row(cell(r.collection), str(r.snapshots), cell((r.latest or "-")[:12]),
                      _seconds(r.snapshot_age_seconds),
                      "-" if r.pending_changes is None else f"{r.pending_changes:,}",
                      f"{_seconds(r.rpo_seconds)} {_verdict(r.rpo_met)}", _seconds(r.rpo_target_seconds),
                      _seconds(r.rto_target_seconds), _seconds(r.last_drill_rto_seconds),
                      _verdict(r.last_drill_passed))
    stdout.print(table if rows else "no collections")


def print_recovery(result: Any) -> None:
    from rich.table import Table

    table = Table(title=cell(f"recovery: {'PASSED' if result.passed else 'FAILED'} in {_seconds(result.seconds)}"))
    for column in ("priority", "collection", "target", "rows", "restore", "RTO", "RTO target", "result"):
        table.add_column(column)
    for c in result.collections:
        table.add_row(str(c.priority), cell(c.collection), cell(c.target), "-" if c.rows is None else f"{c.rows:,}",
                      _seconds(c.restore_seconds), _seconds(c.rto_seconds), _seconds(c.rto_target_seconds),
                      _verdict(c.passed) if c.error is None else cell(f"FAIL: {one_line(c.error)}"))
    stdout.print(table)
