"""Writers racing for the commit point: every one commits, under its own number, and restores.

Each writer has its own repository object and its own filesystem client (as
separate processes would), so a client-side cache of one writer cannot hide what
another just wrote. Every round starts the writers at one barrier.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

import vecdr
from vecdr.testing.backends import assert_same_rows, faiss_rows

D = 8
WRITERS = 8
VECDR = shutil.which("vecdr", path=str(Path(sys.executable).parent)) or shutil.which("vecdr")


def index_of(seed: int, n: int = 100) -> faiss.Index:
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(D))
    vectors = np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)
    index.add_with_ids(vectors, np.arange(seed * 1000, seed * 1000 + n))
    return index


def race(url: str, options: dict[str, Any], rounds: int) -> None:
    """``rounds`` rounds of WRITERS snapshots at once into one collection, then check them all."""
    vecdr.init(url, options)
    written: dict[str, faiss.Index] = {}
    seqs: list[int] = []
    errors: list[BaseException] = []
    for round_ in range(rounds):
        indexes = [index_of(round_ * WRITERS + i) for i in range(WRITERS)]
        barrier = threading.Barrier(WRITERS)
        lock = threading.Lock()

        def writer(i: int, indexes: list[faiss.Index] = indexes, barrier: threading.Barrier = barrier,
                   lock: threading.Lock = lock) -> None:
            try:
                repo = vecdr.open_repository(url, options)
                barrier.wait(timeout=60)
                result = vecdr.snapshot(repo, indexes[i], collection="shared")
                with lock:
                    written[result.snapshot] = indexes[i]
                    seqs.append(result.seq)
            except BaseException as exc:  # noqa: BLE001 — reported below, with every other writer's
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
    assert sorted(seqs) == list(range(1, rounds * WRITERS + 1))
    repo = vecdr.open_repository(url, options)
    assert sorted(c.seq for c in repo.commits()) == sorted(seqs)
    for snapshot, index in written.items():
        restored = vecdr.restore_index(repo, snapshot, collection="shared")
        assert_same_rows(faiss_rows(restored), faiss_rows(index))


@pytest.mark.fault("concurrent writers: one commit each, distinct contiguous numbers, all restore", store="s3")
def test_concurrent_writers_on_s3_each_with_its_own_client(s3: Any, s3_url: str) -> None:
    # skip_instance_cache: a filesystem object of its own per writer, as a process has.
    race(s3_url, s3.storage_options(skip_instance_cache=True), rounds=3)


@pytest.mark.fault("concurrent writers: one commit each, distinct contiguous numbers, all restore", store="local")
def test_concurrent_writers_on_local_disk(tmp_path: Path) -> None:
    race(str(tmp_path / "repo"), {}, rounds=3)


@pytest.mark.fault("concurrent writers: one commit each, distinct contiguous numbers, all restore", store="memory")
def test_concurrent_writers_in_memory(memory_url: str) -> None:
    race(memory_url, {}, rounds=3)


@pytest.mark.fault("a listing cached before another writer's commit hides nothing", store="s3")
def test_a_filesystem_with_its_listing_cache_on_still_sees_other_writers(s3: Any, s3_url: str) -> None:
    import s3fs

    from vecdr.store import FsspecStore, open_store

    opts = s3.storage_options()
    fs = s3fs.S3FileSystem(key=opts["key"], secret=opts["secret"], skip_instance_cache=True,
                           client_kwargs={"endpoint_url": opts["endpoint_url"], "region_name": opts["region"]})
    assert fs.dircache.use_listings_cache
    mine = FsspecStore(fs, s3_url.removeprefix("s3://"), s3_url)
    other = open_store(s3_url, s3.storage_options(skip_instance_cache=True))
    mine.create("commits/1.json", b"one")
    assert list(mine.list("commits")) == ["commits/1.json"]  # now cached by s3fs
    other.create("commits/2.json", b"two")
    with pytest.raises(FileExistsError):
        mine.create("commits/2.json", b"lost the race")
    assert mine.read("commits/2.json") == b"two"
    assert mine.exists("commits/2.json") and mine.size("commits/2.json") == 3
    assert sorted(mine.list("commits")) == ["commits/1.json", "commits/2.json"]


@pytest.mark.slow
@pytest.mark.fault("concurrent writer processes all commit and restore", store="s3")
def test_concurrent_writer_processes_on_s3(s3: Any, s3_url: str, tmp_path: Path) -> None:
    vecdr.init(s3_url, s3.storage_options())
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VECDR_"))}, **s3.env()}
    written = {}
    for round_ in range(2):
        procs = []
        for i in range(WRITERS):
            path = tmp_path / f"r{round_}-w{i}.faiss"
            index = index_of(round_ * WRITERS + i)
            faiss.write_index(index, str(path))
            written[path.name] = index
            procs.append(subprocess.Popen(
                [VECDR, "snapshot", s3_url, f"faiss:{path}", "-c", "shared",
                 "--tag", path.stem.replace("-", "x")],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ))
        for proc in procs:
            _out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
    repo = vecdr.open_repository(s3_url, s3.storage_options())
    commits = repo.commits()
    assert sorted(c.seq for c in commits) == list(range(1, 2 * WRITERS + 1))
    for commit in commits:
        (tag,) = commit.tags
        restored = vecdr.restore_index(repo, commit.snapshot, collection="shared")
        assert_same_rows(faiss_rows(restored), faiss_rows(written[tag.replace("x", "-") + ".faiss"]))
