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
