"""Every command that writes, against a read-only repository and a full disk (a real tmpfs).

Each must fail with one typed error line naming the object and the cause (exit 1,
never 70 "unexpected"), leave nothing behind, and succeed once the condition is
gone. Where this sandbox cannot mount a tmpfs, the tests skip.
"""

from __future__ import annotations

import errno
import json
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

import vecdr
from vecdr.cli.main import main
from vecdr.errors import StoreAccessError, StoreFullError
from vecdr.store import LocalStore, RetryingStore
from vecdr.testing.faults import WrappedStore
from vecdr.testing.mounts import fill, remount, tmpfs

D = 8


def write_index(path: Path, n: int, seed: int = 0) -> None:
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(D))
    index.add_with_ids(np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32), np.arange(n))
    faiss.write_index(index, str(path))


def tree(root: Path) -> dict[str, int]:
    """Every file and folder under ``root`` (but the ballast) with its size: what a failed run must not change."""
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1)
            for p in sorted(root.rglob("*")) if p.name != "ballast"}


def cli(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return code, out, err


def plant_stale_lock(repo: Path) -> None:
    (repo / "locks").mkdir(exist_ok=True)
    (repo / "locks" / "shared-deadbeef.json").write_text(json.dumps(
        {"kind": "shared", "holder": "gone:1", "purpose": "test", "created": 0.0, "expires": 1.0}))


@pytest.fixture
def disk(tmp_path: Path) -> Any:
    """A tmpfs holding a repository ``repo`` with snapshots of collections c and d; sources outside it."""
    with tmpfs(tmp_path / "disk", size="4m") as mounted:
        write_index(tmp_path / "live.faiss", 500)
        write_index(tmp_path / "changed.faiss", 600, seed=1)
        assert main(["init", str(mounted / "repo")]) == 0
        for collection in ("c", "d"):
            assert main(["snapshot", str(mounted / "repo"), f"faiss:{tmp_path / 'live.faiss'}", "-c", collection]) == 0
        yield mounted


def commands(disk: Path, src: Path) -> dict[str, list[str]]:
    """Every command that writes to the repository or to a target, by name."""
    repo = disk / "repo"
    return {
        "init": ["init", disk / "new-repo"],
        "snapshot": ["snapshot", repo, f"faiss:{src / 'changed.faiss'}", "-c", "c"],
        "forget": ["forget", repo, "latest", "-c", "d"],
        "prune": ["prune", repo, "--grace", "0h"],
        "compact": ["compact", repo, "-c", "c"],
        "drill": ["drill", repo, "-c", "c"],
        "unlock": ["unlock", repo],
        "restore": ["restore", repo, "latest", f"faiss:{disk / 'out.faiss'}", "-c", "c"],
        "export .npy": ["export", repo, "latest", disk / "out.npy", "-c", "c"],
        "export .parquet": ["export", repo, "latest", disk / "out.parquet", "-c", "c"],
    }


def assert_typed_one_line(code: int, err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert code == 1, err
    assert len(lines) == 1 and lines[0].startswith("vecdr: error: "), err
    assert "unexpected" not in err and "Traceback" not in err and "Errno" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.fault("every writing command on a read-only repository: typed error, nothing changed, then succeeds",
                   store="local")
def test_every_writing_command_on_a_read_only_repository(
    disk: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], cases: Any
) -> None:
    plant_stale_lock(disk / "repo")
    todo = commands(disk, tmp_path)
    cases.plan(len(todo) + 1)
    before = tree(disk)
    remount(disk, read_only=True)
    for name, args in todo.items():
        code, _out, err = cli(capfd, *args)
        assert_typed_one_line(code, err, str(disk), "read-only")
        assert tree(disk) == before, name
        cases.ok()
    # Without recording, a drill only reads: it runs, and says it recorded nothing.
    code, out, err = cli(capfd, "drill", disk / "repo", "-c", "c", "--no-record")
    assert code == 0, err
    assert "recorded as None" not in out and "not recorded" in out
    cases.ok()
    remount(disk, read_only=False)
    for name, args in todo.items():
        code, _out, err = cli(capfd, *args)
        assert code == 0, (name, err)


@pytest.mark.fault("every writing command on a full disk: typed error naming the object, nothing left, then succeeds",
                   store="local")
def test_every_writing_command_on_a_full_disk(
    disk: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], cases: Any
) -> None:
    plant_stale_lock(disk / "repo")
    todo = commands(disk, tmp_path)
    cases.plan(len(todo))
    ballast = fill(disk)
    before = tree(disk)
    for name, args in todo.items():
        if name == "unlock":
            continue  # removing a file needs no space: unlock works on a full disk
        code, _out, err = cli(capfd, *args)
        assert_typed_one_line(code, err, str(disk), "no space left")
        assert tree(disk) == before, name
        cases.ok()
    ballast.unlink()
    for name, args in todo.items():
        code, _out, err = cli(capfd, *args)
        assert code == 0, (name, err)
    cases.ok()  # unlock, which needs no space


@pytest.mark.fault("a snapshot that runs out of space midway: StoreFullError naming the object, no lock or temporary "
                   "left, the next one succeeds", store="local")
def test_a_snapshot_out_of_space_midway(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", size="2m") as disk:
        repo = vecdr.init(disk / "repo")
        index = faiss.IndexIDMap2(faiss.IndexFlatL2(32))
        index.add_with_ids(np.random.default_rng(3).standard_normal((30_000, 32)).astype(np.float32),
                           np.arange(30_000))
        with pytest.raises(StoreFullError, match=rf"writing {disk / 'repo'}/\S+: no space left on the device"):
            vecdr.snapshot(repo, index, collection="big")
        assert list((disk / "repo").rglob(".tmp-*")) == []
        assert list((disk / "repo" / "locks").iterdir()) == []
        assert repo.commits() == []
        vecdr.prune(repo, grace="0h")  # what the failed snapshot finished is nobody's
        small = faiss.IndexIDMap2(faiss.IndexFlatL2(32))
        small.add_with_ids(np.ones((100, 32), np.float32), np.arange(100))
        assert vecdr.snapshot(repo, small, collection="small").rows == 100


class Failing(WrappedStore):
    """Every write fails with one OS error, as a remote filesystem's client reports it."""

    def __init__(self, inner: Any, code: int) -> None:
        super().__init__(inner)
        self.code = code
        self.calls = 0

    def write(self, key: str, data: bytes | memoryview) -> None:
        self.calls += 1
        raise OSError(self.code, "whatever the client says")


@pytest.mark.fault("a store reporting no space or read-only: typed at once, not retried", store="memory")
@pytest.mark.parametrize(("code", "error", "words"), [
    (errno.ENOSPC, StoreFullError, "no space left"), (errno.EDQUOT, StoreFullError, "quota"),
    (errno.EROFS, StoreAccessError, "read-only"), (errno.EACCES, StoreAccessError, "denied"),
])
def test_a_remote_store_types_full_and_read_only_at_once(
    memory_url: str, code: int, error: type[Exception], words: str
) -> None:
    from vecdr.store import open_store

    inner = Failing(open_store(memory_url), code)
    store = RetryingStore(inner, attempts=4, backoff=0)
    started = time.perf_counter()
    with pytest.raises(error, match=words) as failed:
        store.write("segments/ab/x", b"1")
    assert "segments/ab/x" in str(failed.value) and inner.calls == 1
    assert time.perf_counter() - started < 1


@pytest.mark.fault("a local store on a read-only folder: typed error naming the object")
def test_local_store_types_os_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path / "store")
    store.write("a/b", b"1")

    def refuse(*args: Any, **kwargs: Any) -> int:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("vecdr.store.local.os.open", refuse)
    with pytest.raises(StoreAccessError, match=r"writing .*/store/c/d: the file system is read-only"):
        store.write("c/d", b"2")
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["a"]  # the folder made for c/d is gone
