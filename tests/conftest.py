"""Shared fixtures: fresh repositories on local disk and in memory."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

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
