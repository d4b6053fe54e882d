"""Deletion files: one per snapshot, holding every deletion vector it changed."""

from __future__ import annotations

import threading
import time

import faiss
import numpy as np
import pytest

import vecdr
from vecdr.engines import open_snapshot
from vecdr.errors import IntegrityError
from vecdr.format.objects import ObjectRef
from vecdr.repository.cache import ObjectCache
from vecdr.testing.backends import assert_same_rows, faiss_rows

D = 8


def index_with(ids: np.ndarray) -> faiss.Index:
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(D))
    index.add_with_ids(np.random.default_rng(int(ids[0])).standard_normal((len(ids), D)).astype(np.float32), ids)
    return index


def test_a_snapshot_writes_one_deletion_file_for_every_segment_it_touches(repo: vecdr.Repository) -> None:
    index = index_with(np.arange(100))
    vecdr.snapshot(repo, index)
    index.add_with_ids(np.ones((50, D), np.float32), np.arange(100, 150))
    second = vecdr.snapshot(repo, index)
    assert len(open_snapshot(repo, second.snapshot).segments) == 2

    index.remove_ids(np.array([3, 4, 120]))  # rows of both segments
    third = vecdr.snapshot(repo, index)
    m3 = open_snapshot(repo, third.snapshot)
    first_dels, second_dels = (entry.deletions for entry in m3.segments)
    assert first_dels is not None and second_dels is not None
    assert first_dels.object == second_dels.object  # one file, two ranges
    assert first_dels.offset + first_dels.length <= second_dels.offset
    assert [entry.live for entry in m3.segments] == [98, 49]
    kinds = [key.split(".", 1)[1] for key in repo.store.list("artifacts")]
    assert sorted(k for k in kinds if k != "quality.parquet") == ["del", "hashes.parquet", "hashes.parquet"]

    index.remove_ids(np.array([7]))  # only the first segment
    fourth = vecdr.snapshot(repo, index)
    a, b = open_snapshot(repo, fourth.snapshot).segments
    assert a.deletions is not None and a.deletions.object != first_dels.object and a.live == 97
    assert b.deletions == second_dels  # untouched: still the range of the third snapshot's file

    for result, expected in [(third, 147), (fourth, 146)]:
        restored = vecdr.restore_index(repo, result.snapshot)
        assert restored.ntotal == expected
    assert_same_rows(faiss_rows(vecdr.restore_index(repo, fourth.snapshot)), faiss_rows(index))
    report = vecdr.verify(repo, read_data=True)
    assert report.ok and not report.unreferenced


def test_verify_checks_each_vector_of_a_shared_deletion_file(repo: vecdr.Repository) -> None:
    index = index_with(np.arange(100))
    vecdr.snapshot(repo, index)
    index.add_with_ids(np.ones((50, D), np.float32), np.arange(100, 150))
    vecdr.snapshot(repo, index)
    index.remove_ids(np.array([3, 120]))
    result = vecdr.snapshot(repo, index)
    dels = open_snapshot(repo, result.snapshot).segments[1].deletions
    assert dels is not None
    path = repo.store.local_path(dels.key)
    assert path is not None
    data = bytearray(open(path, "rb").read())
    data[dels.offset + dels.length - 1] ^= 0x01  # inside the second vector only
    with open(path, "wb") as f:
        f.write(data)
    report = vecdr.verify(repo, read_data=True)
    assert [p.object for p in report.errors] == [dels.key]
    with pytest.raises(IntegrityError, match=dels.key):
        vecdr.restore_index(repo, result.snapshot)


# -- the cache that serves a deletion file to every reader ---------------------------


def ref(name: str, size: int) -> ObjectRef:
    return ObjectRef(f"artifacts/{name}", name * 8, size)


def test_concurrent_readers_share_one_load() -> None:
    cache = ObjectCache()
    loads = []
    gate = threading.Event()

    def load(r: ObjectRef) -> bytes:
        loads.append(r.key)
        gate.wait(5)
        return b"x" * r.size

    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(ref("a", 3), load))) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    gate.set()
    for t in threads:
        t.join()
    assert loads == ["artifacts/a"] and results == [b"xxx"] * 6


def test_a_failed_load_is_tried_again_and_the_budget_evicts_the_oldest() -> None:
    cache = ObjectCache(budget=10)
    calls: list[str] = []

    def flaky(r: ObjectRef) -> bytes:
        calls.append(r.key)
        if len(calls) == 1:
            raise IntegrityError("first read corrupted")
        return b"y" * r.size

    with pytest.raises(IntegrityError):
        cache.get(ref("a", 4), flaky)
    assert cache.get(ref("a", 4), flaky) == b"yyyy"
    cache.get(ref("b", 4), flaky)
    cache.get(ref("a", 4), flaky)  # served from memory, and now the most recent
    cache.get(ref("c", 4), flaky)  # 12 bytes: "b" goes
    cache.get(ref("a", 4), flaky)
    cache.get(ref("b", 4), flaky)
    assert calls == ["artifacts/a", "artifacts/a", "artifacts/b", "artifacts/c", "artifacts/b"]
