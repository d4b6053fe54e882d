"""Shared fixtures: fresh repositories on local disk and in memory."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import fsspec
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import vecdr

# Snapshots run thread pools and touch disk: per-example timings vary too much for
# hypothesis' default deadline on a 2-core machine.
settings.register_profile("vecdr", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile("vecdr")

# The data here is tiny: one OpenMP thread avoids spinning threads fighting over
# two cores (and whatever else runs beside the suite).
faiss.omp_set_num_threads(1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A real PostgreSQL 16 with pgvector (pgserver), shared by the session."""
    pytest.importorskip("pgserver", reason="the pgvector extra is not installed")
    from vecdr.testing.postgres import start

    folder = tempfile.mkdtemp(prefix="vecdr-pg-")  # short: the socket lives here
    server = start(folder)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3() -> Iterator[Any]:
    """A real S3 endpoint (moto's server on 127.0.0.1, in a child process), shared by the session."""
    pytest.importorskip("moto", reason="moto[server] is not installed")
    pytest.importorskip("s3fs", reason="the s3 extra is not installed")
    from vecdr.testing.s3 import start

    server = start()
    yield server
    server.stop()


@pytest.fixture
def s3_url(s3: Any) -> str:
    """``s3://BUCKET/backups`` in a fresh bucket of the session's server."""
    return f"s3://{s3.make_bucket()}/backups"


@pytest.fixture
def pg(postgres: Any) -> Any:
    """A fresh database (with pgvector) on the session's server; ``pg.uri(table)`` names a table in it."""
    from vecdr.testing.postgres import LocalPostgres

    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres.create_database(name)

    class Database(LocalPostgres):
        def dsn(self, db: str = name) -> str:
            return super().dsn(db)

        def uri(self, table: str, db: str = name, **options: str) -> str:
            return super().uri(table, db, **options)

        def connect(self, db: str = name, autocommit: bool = True) -> Any:
            return super().connect(db, autocommit)

    return Database(postgres.folder, postgres.server)


def _drop_memory(url: str) -> None:
    fs = fsspec.filesystem("memory")
    path = "/" + url.removeprefix("memory://").strip("/")
    if fs.exists(path):
        fs.rm(path, recursive=True)


@pytest.fixture
def memory_url() -> Iterator[str]:
    """A ``memory://`` URL no other test uses, emptied afterwards."""
    url = f"memory://vecdr-test-{uuid.uuid4().hex}"
    yield url
    _drop_memory(url)


@pytest.fixture
def repo(tmp_path: Path) -> vecdr.Repository:
    """An empty repository on local disk."""
    return vecdr.init(tmp_path / "repo")


@pytest.fixture
def memory_repo(memory_url: str) -> vecdr.Repository:
    """An empty repository in memory."""
    return vecdr.init(memory_url)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240607)


# -- the reliability report (`make reliability`) ----------------------------------------------
#
# Tests of a promise in docs/reliability.md carry ``@pytest.mark.fault("what goes wrong",
# store=...)``; tests that try many cases in a loop count them with the ``cases`` fixture.
# ``--reliability=PATH`` prints a table (fault, store, cases, survived) and writes it to PATH.


class Cases:
    """How many cases a fault test plans and how many it has survived so far."""

    def __init__(self) -> None:
        self.planned: int | None = None
        self.survived = 0

    def plan(self, n: int) -> None:
        self.planned = n

    def ok(self) -> None:
        self.survived += 1


@pytest.fixture
def cases(request: pytest.FixtureRequest) -> Cases:
    counter = Cases()
    request.node.vecdr_cases = counter
    return counter


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reliability", metavar="PATH", default=None,
                     help="print the fault matrix of the tests marked `fault` and write it to PATH (Markdown)")


_fault_rows: dict[tuple[str, str], list[int]] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("fault")
    if marker is None or report.when != "call" or report.skipped:
        return
    params = getattr(getattr(item, "callspec", None), "params", {})
    fault = marker.args[0].format(**params)
    store = marker.kwargs.get("store") or params.get("fresh") or params.get("damaged") or "local"
    counter: Cases | None = getattr(item, "vecdr_cases", None)
    if counter is None or counter.survived == 0 and counter.planned is None:
        planned, survived = 1, int(report.passed)
    else:
        planned = counter.planned or counter.survived + (0 if report.passed else 1)
        survived = counter.survived if not report.passed else planned
    row = _fault_rows.setdefault((fault, store), [0, 0])
    row[0] += planned
    row[1] += survived


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    path = config.getoption("--reliability")
    if not path or not _fault_rows:
        return
    lines = ["| fault | store | cases | survived |", "|---|---|---|---|"]
    for (fault, store), (planned, survived) in sorted(_fault_rows.items()):
        lines.append(f"| {fault} | {store} | {planned} | {survived} |")
    total = [sum(r[0] for r in _fault_rows.values()), sum(r[1] for r in _fault_rows.values())]
    lines.append(f"| **all** | | **{total[0]}** | **{total[1]}** |")
    text = "\n".join(lines) + "\n"
    Path(path).write_text(text)
    terminalreporter.write_line("")
    for line in lines:
        terminalreporter.write_line(line)


_exit_status = 0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave with the session's status and without interpreter teardown.

    Arrow's native thread pools can abort a process during interpreter exit after
    all work has succeeded (a known teardown race); the report is complete here.
    """
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status)
