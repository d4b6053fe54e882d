"""Restore and export replace only files: a device, a pipe or a folder at the target's
name is refused even with --force, and a target the system will not let vecdr write
(a pseudo file system) is a typed error."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import faiss
import numpy as np
import pytest

import vecdr
from test_cli import fails, run
from vecdr.errors import TargetExistsError, TargetWriteError


@pytest.fixture
def snapped(repo: vecdr.Repository) -> vecdr.Repository:
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(4))
    index.add_with_ids(np.random.default_rng(1).standard_normal((20, 4)).astype(np.float32), np.arange(20))
    vecdr.snapshot(repo, index, collection="c")
    return repo


@pytest.mark.fault("restore or export --force onto a pipe or device")
def test_a_pipe_is_never_replaced_even_with_force(snapped: vecdr.Repository, tmp_path: Path) -> None:
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for call in (lambda: vecdr.restore(snapped, f"faiss:{pipe}", force=True),
                 lambda: vecdr.restore(snapped, f"parquet:{pipe}", force=True),
                 lambda: vecdr.export(snapped, "latest", pipe, force=True)):
        with pytest.raises(TargetExistsError, match="not a regular file"):
            call()
        assert stat.S_ISFIFO(os.lstat(pipe).st_mode)
    fails(run("restore", str(snapped.url), "latest", f"faiss:{pipe}", "--force"), "not a regular file")
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "repo") == ["pipe"]  # no temporaries left


@pytest.mark.fault("restore --force into a pseudo file system")
def test_a_target_the_system_will_not_write_is_a_typed_error(snapped: vecdr.Repository) -> None:
    with pytest.raises(TargetWriteError, match="/proc/version"):
        vecdr.restore(snapped, "faiss:/proc/version", force=True)
    proc = run("restore", str(snapped.url), "latest", "faiss:/proc/version", "--force")
    fails(proc, "/proc/version")
    assert proc.returncode == 1
