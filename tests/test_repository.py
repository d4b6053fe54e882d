"""The repository layer: init/open, snapshot references, the commit protocol under
races and lost replies, and the checks that refuse bad input before anything is
committed."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import vecdr
from vecdr.backends.faiss import FaissTarget
from vecdr.engines import open_snapshot
from vecdr.errors import (
    AmbiguousSnapshotError,
    CollectionError,
    DimensionMismatchError,
    DuplicateIdError,
    NonFiniteVectorError,
    NotARepositoryError,
    RepositoryExistsError,
    SnapshotNotFoundError,
)
from vecdr.format.segment import vectors_from_arrow, vectors_to_arrow
from vecdr.repository import Repository
from vecdr.store import Store, open_store
from vecdr.testing.backends import assert_same_rows, faiss_rows
from vecdr.testing.faults import WrappedStore

D = 8


def flat(n: int, seed: int, d: int = D, start: int = 0) -> tuple[faiss.Index, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.arange(start, start + n, dtype=np.int64) * 7
    vectors = rng.standard_normal((n, d)).astype(np.float32)
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(d))
    index.add_with_ids(vectors, ids)
    return index, ids, vectors


def restored_rows(repo: vecdr.Repository, ref: str, **kw: object) -> tuple[np.ndarray, np.ndarray]:
    return faiss_rows(vecdr.restore_index(repo, ref, **kw))  # type: ignore[arg-type]


def wrapped(repo: vecdr.Repository, store: Store) -> vecdr.Repository:
    return Repository(store, repo.config)


# -- init and open ---------------------------------------------------------------


def test_init_over_an_existing_repository_is_refused(tmp_path: Path) -> None:
    vecdr.init(tmp_path / "repo")
    with pytest.raises(RepositoryExistsError) as caught:
        vecdr.init(tmp_path / "repo")
    assert isinstance(caught.value, FileExistsError)


def test_init_in_memory_over_an_existing_repository_is_refused(memory_url: str) -> None:
    vecdr.init(memory_url)
    with pytest.raises(RepositoryExistsError):
        vecdr.init(memory_url)


def test_init_refuses_a_folder_that_holds_something_else(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "notes.txt").write_text("mine")
    with pytest.raises(RepositoryExistsError):
        vecdr.init(tmp_path / "repo")
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["notes.txt"]


def test_init_then_open(tmp_path: Path) -> None:
    repo = vecdr.init(tmp_path / "repo")
    again = vecdr.open_repository(tmp_path / "repo")
    assert again.config == repo.config
    assert again.config.capabilities.get("atomic_create") is True
    assert again.commits() == []


@pytest.mark.parametrize("where", ["empty-folder", "absent-folder", "file"])
def test_opening_a_non_repository_is_refused(where: str, tmp_path: Path) -> None:
    path = tmp_path / "x"
    if where == "empty-folder":
        path.mkdir()
    elif where == "file":
        path.write_text("hello")
    with pytest.raises(NotARepositoryError) as caught:
        vecdr.open_repository(path)
    assert isinstance(caught.value, FileNotFoundError)


def test_opening_an_empty_memory_location_is_refused(memory_url: str) -> None:
    with pytest.raises(NotARepositoryError):
        vecdr.open_repository(memory_url)


def test_restore_from_an_empty_repository_finds_nothing(repo: vecdr.Repository) -> None:
    with pytest.raises(SnapshotNotFoundError):
        vecdr.restore_index(repo, "latest")


# -- snapshot references ---------------------------------------------------------


@pytest.fixture
def three(repo: vecdr.Repository) -> list[vecdr.SnapshotResult]:
    """Three snapshots of one collection with 100, 200 and 300 rows; two tagged."""
    out = []
    for i, tags in enumerate([("nightly",), (), ("nightly", "release-1")], start=1):
        index, _, _ = flat(100 * i, seed=i)
        out.append(vecdr.snapshot(repo, index, collection="c", tags=tags))
    return out


def test_resolve_by_full_id(repo: vecdr.Repository, three: list[vecdr.SnapshotResult]) -> None:
    for i, snap in enumerate(three, start=1):
        assert vecdr.restore_index(repo, snap.snapshot).ntotal == 100 * i


def test_resolve_latest(repo: vecdr.Repository, three: list[vecdr.SnapshotResult]) -> None:
    assert vecdr.restore_index(repo, "latest").ntotal == 300
    assert vecdr.restore_index(repo, None).ntotal == 300
    assert [s["id"] for s in vecdr.snapshots(repo)] == [s.snapshot for s in three]
    assert [s["seq"] for s in vecdr.snapshots(repo)] == [1, 2, 3]


def test_resolve_by_tag_takes_the_latest_tagged(repo: vecdr.Repository, three: list[vecdr.SnapshotResult]) -> None:
    assert vecdr.restore_index(repo, "nightly").ntotal == 300
    assert vecdr.restore_index(repo, "release-1").ntotal == 300
    with pytest.raises(SnapshotNotFoundError):
        vecdr.restore_index(repo, "no-such-tag")


def test_resolve_by_unique_prefix(repo: vecdr.Repository, three: list[vecdr.SnapshotResult]) -> None:
    for i, snap in enumerate(three, start=1):
        others = [s.snapshot for s in three if s is not snap]
        length = next(k for k in range(8, 33) if not any(o.startswith(snap.snapshot[:k]) for o in others))
        assert vecdr.restore_index(repo, snap.snapshot[:length]).ntotal == 100 * i


def _commit_with_id(repo: vecdr.Repository, template: str, snapshot_id: str) -> vecdr.Repository:
    """Commit a copy of snapshot ``template`` under a chosen id, through the repository API."""
    manifest = open_snapshot(repo, template)
    copy = dataclasses.replace(manifest, snapshot=snapshot_id)
    repo.commit(copy, repo.put_manifest(copy))
    return repo


def test_ambiguous_prefix_is_refused(repo: vecdr.Repository, three: list[vecdr.SnapshotResult]) -> None:
    a = "abcd0" + uuid.uuid4().hex[5:]
    b = "abcd1" + uuid.uuid4().hex[5:]
    _commit_with_id(repo, three[0].snapshot, a)
    _commit_with_id(repo, three[1].snapshot, b)
    with pytest.raises(AmbiguousSnapshotError) as caught:
        vecdr.restore_index(repo, "abcd")
    assert isinstance(caught.value, LookupError)
    with pytest.raises(AmbiguousSnapshotError):
        vecdr.restore(repo, FaissTarget(None), "abcd")
    # One more character makes each unique.
    assert vecdr.restore_index(repo, "abcd0").ntotal == 100
    assert vecdr.restore_index(repo, "abcd1").ntotal == 200


def test_unknown_reference_is_not_found(repo: vecdr.Repository, three: list[vecdr.SnapshotResult]) -> None:
    with pytest.raises(SnapshotNotFoundError):
        vecdr.restore_index(repo, uuid.uuid4().hex)


def test_resolve_as_of(repo: vecdr.Repository, three: list[vecdr.SnapshotResult]) -> None:
    commits = repo.commits()
    times = [datetime.fromisoformat(c.created_at.replace("Z", "+00:00")) for c in commits]
    assert times == sorted(times)
    for i, when in enumerate(times):
        # Exactly at a snapshot's time: that snapshot.
        assert vecdr.restore(repo, FaissTarget(None), None, as_of=when).snapshot == three[i].snapshot
        assert vecdr.restore(repo, FaissTarget(None), None, as_of=commits[i].created_at).snapshot == (three[i].snapshot)
        # Just before it: the one before.
        if i:
            before = when - timedelta(microseconds=1)
            assert vecdr.restore(repo, FaissTarget(None), None, as_of=before).snapshot == three[i - 1].snapshot
    assert vecdr.restore_index(repo, as_of=times[-1] + timedelta(days=1)).ntotal == 300
    with pytest.raises(SnapshotNotFoundError):
        vecdr.restore_index(repo, as_of=times[0] - timedelta(seconds=1))
    with pytest.raises(SnapshotNotFoundError):
        vecdr.restore_index(repo, as_of="not a time")


# -- several collections ---------------------------------------------------------


def test_several_collections_in_one_repository(repo: vecdr.Repository) -> None:
    a, a_ids, a_vec = flat(150, seed=1)
    b, b_ids, b_vec = flat(250, seed=2, d=16)
    vecdr.snapshot(repo, a, collection="a")
    vecdr.snapshot(repo, b, collection="b")
    with pytest.raises(CollectionError) as caught:
        vecdr.restore_index(repo, "latest")
    assert isinstance(caught.value, LookupError)
    assert_same_rows(restored_rows(repo, "latest", collection="a"), (a_ids, a_vec))
    assert_same_rows(restored_rows(repo, "latest", collection="b"), (b_ids, b_vec))
    with pytest.raises(CollectionError):
        vecdr.restore_index(repo, "latest", collection="c")
    assert [s["collection"] for s in vecdr.snapshots(repo, "a")] == ["a"]
    assert [s["collection"] for s in vecdr.snapshots(repo)] == ["a", "b"]


def test_identical_data_in_two_collections_is_stored_once(repo: vecdr.Repository) -> None:
    index, ids, vectors = flat(3000, seed=3)
    vecdr.snapshot(repo, index, collection="first")
    segments = sorted(repo.store.list("segments"))
    artifacts = sorted(repo.store.list("artifacts"))
    assert segments
    second = vecdr.snapshot(repo, index, collection="second")
    assert second.added == 3000  # new to this collection…
    assert sorted(repo.store.list("segments")) == segments  # …but no segment stored twice
    assert sorted(repo.store.list("artifacts")) == artifacts
    manifests = [open_snapshot(repo, "latest", c) for c in ("first", "second")]
    assert [s.object for s in manifests[0].segments] == [s.object for s in manifests[1].segments]
    assert_same_rows(restored_rows(repo, "latest", collection="second"), (ids, vectors))


# -- refusals that leave the repository untouched -------------------------------


def test_dimension_mismatch_with_the_collection(repo: vecdr.Repository) -> None:
    vecdr.snapshot(repo, flat(100, seed=1)[0], collection="c")
    commits = repo.commits()
    manifests = sorted(repo.store.list("manifests"))
    with pytest.raises(DimensionMismatchError) as caught:
        vecdr.snapshot(repo, flat(100, seed=1, d=D * 2)[0], collection="c")
    assert isinstance(caught.value, ValueError)
    assert repo.commits() == commits
    assert sorted(repo.store.list("manifests")) == manifests
    # Another collection may have another dimension.
    vecdr.snapshot(repo, flat(100, seed=1, d=D * 2)[0], collection="wide")


def _parquet(path: Path, ids: list[int], vectors: np.ndarray) -> str:
    pq.write_table(pa.table({"id": pa.array(ids, pa.int64()), "vector": vectors_to_arrow(vectors)}), path)
    return f"parquet:{path}"


def test_duplicate_ids_are_refused_before_anything_is_written(repo: vecdr.Repository, tmp_path: Path) -> None:
    vectors = np.random.default_rng(0).standard_normal((6, D)).astype(np.float32)
    with pytest.raises(DuplicateIdError) as caught:
        vecdr.snapshot(repo, _parquet(tmp_path / "dup.parquet", [1, 2, 3, 4, 2, 5], vectors))
    assert isinstance(caught.value, ValueError)
    assert repo.commits() == []
    assert list(repo.store.list("segments")) == []
    assert list(repo.store.list("manifests")) == []


def test_duplicate_ids_in_an_index_are_refused(repo: vecdr.Repository) -> None:
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(D))
    vectors = np.ones((3, D), np.float32)
    index.add_with_ids(vectors, np.array([5, 6, 5], np.int64))
    with pytest.raises(DuplicateIdError):
        vecdr.snapshot(repo, index)
    assert repo.commits() == []


NAN_BITS = [0x7FC00001, 0xFFC12345, 0x7F800000, 0xFF800000]  # NaNs with payloads, ±Inf


def test_non_finite_vectors_are_refused_unless_allowed(repo: vecdr.Repository, tmp_path: Path) -> None:
    vectors = np.random.default_rng(1).standard_normal((40, D)).astype(np.float32)
    bits = vectors.view(np.uint32)
    for row, pattern in enumerate(NAN_BITS, start=10):
        bits[row, row % D] = pattern
    source = _parquet(tmp_path / "nan.parquet", list(range(40)), vectors)
    with pytest.raises(NonFiniteVectorError) as caught:
        vecdr.snapshot(repo, source)
    assert isinstance(caught.value, ValueError)
    assert repo.commits() == []

    snap = vecdr.snapshot(repo, source, allow_nonfinite=True)
    assert snap.rows == 40
    vecdr.export(repo, snap.snapshot, tmp_path / "out.parquet")
    table = pq.read_table(tmp_path / "out.parquet")
    got = vectors_from_arrow(table.column("vector"), D)
    assert_same_rows((table.column("id").to_numpy(), got), (np.arange(40), vectors))


def test_inf_is_non_finite_too(repo: vecdr.Repository) -> None:
    index, _, vectors = flat(20, seed=4)
    bad = faiss.IndexIDMap2(faiss.IndexFlatL2(D))
    vectors[3, 0] = np.inf
    bad.add_with_ids(vectors, np.arange(20))
    with pytest.raises(NonFiniteVectorError):
        vecdr.snapshot(repo, bad)
    assert repo.commits() == []


# -- the commit protocol ---------------------------------------------------------


class RecordingStore(WrappedStore):
    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.log: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def write(self, key: str, data: bytes) -> None:
        super().write(key, data)
        with self.lock:
            self.log.append(("write", key))

    def create(self, key: str, data: bytes) -> None:
        super().create(key, data)
        with self.lock:
            self.log.append(("create", key))


@pytest.mark.parametrize("incremental", [False, True])
def test_write_order_is_objects_then_manifest_then_commit(incremental: bool, repo: vecdr.Repository) -> None:
    index, ids, _ = flat(2000, seed=5)
    if incremental:
        vecdr.snapshot(repo, index)
        index.remove_ids(ids[:10])
    store = RecordingStore(repo.store)
    vecdr.snapshot(wrapped(repo, store), index, with_index=True)
    # The snapshot's shared lock comes first (maintenance stays out while it writes).
    assert store.log[0][1].startswith("locks/shared-")
    log = [(op, key) for op, key in store.log if not key.startswith("locks/")]
    kinds = [key.split("/", 1)[0] for _, key in log]
    assert kinds[-2:] == ["manifests", "commits"], kinds
    assert log[-1][0] == "create"  # the commit point is create-if-absent
    assert set(kinds[:-2]) <= {"segments", "artifacts"}
    assert "artifacts" in kinds  # the native blob, and deletion vectors when incremental
    # A full snapshot writes segments; one that only deletes rows writes none.
    assert ("segments" in kinds) is (not incremental)


class BarrierStore(WrappedStore):
    """Holds the first commit attempt of each of ``parties`` writers until all arrive."""

    def __init__(self, inner: Store, barrier: threading.Barrier) -> None:
        super().__init__(inner)
        self.barrier = barrier
        self.armed = True

    def create(self, key: str, data: bytes) -> None:
        if key.startswith("commits/") and self.armed:
            self.armed = False
            self.barrier.wait(timeout=30)
        super().create(key, data)


@pytest.mark.parametrize("where", ["local", "memory"])
def test_racing_commits_both_succeed_with_distinct_seqs(where: str, tmp_path: Path, memory_url: str) -> None:
    base = vecdr.init(tmp_path / "repo" if where == "local" else memory_url)
    writers = 3
    barrier = threading.Barrier(writers)
    results: list[vecdr.SnapshotResult | BaseException] = [None] * writers  # type: ignore[list-item]
    data = [flat(100 + i, seed=10 + i) for i in range(writers)]

    def run(i: int) -> None:
        repo = wrapped(base, BarrierStore(open_store(base.url), barrier))
        try:
            results[i] = vecdr.snapshot(repo, data[i][0], collection="shared")
        except BaseException as exc:  # noqa: BLE001 — reported below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    seqs = sorted(r.seq for r in results)  # type: ignore[union-attr]
    assert seqs == [1, 2, 3]
    commits = base.commits()
    assert [c.seq for c in commits] == [1, 2, 3]
    assert sorted(c.snapshot for c in commits) == sorted(r.snapshot for r in results)  # type: ignore[union-attr]
    for i, result in enumerate(results):
        assert_same_rows(restored_rows(base, result.snapshot), data[i][1:])  # type: ignore[union-attr]


def test_many_writers_on_local_disk(tmp_path: Path) -> None:
    base = vecdr.init(tmp_path / "repo")
    data = [flat(50, seed=20 + i, start=1000 * i) for i in range(6)]
    results: list[object] = [None] * 6

    def run(i: int) -> None:
        try:
            results[i] = vecdr.snapshot(vecdr.open_repository(tmp_path / "repo"), data[i][0], collection=f"c{i % 2}")
        except BaseException as exc:  # noqa: BLE001
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(isinstance(r, vecdr.SnapshotResult) for r in results), results
    assert [c.seq for c in base.commits()] == list(range(1, 7))
    assert len({c.snapshot for c in base.commits()}) == 6


class ReplyLostStore(WrappedStore):
    """``create`` of a commit record writes it, then reports a network error ``times`` times."""

    def __init__(self, inner: Store, times: int = 1, write_first: bool = True) -> None:
        super().__init__(inner)
        self.times = times
        self.write_first = write_first
        self.calls = 0

    def create(self, key: str, data: bytes) -> None:
        if key.startswith("commits/") and self.times:
            self.times -= 1
            self.calls += 1
            if self.write_first:
                super().create(key, data)
            raise OSError("connection reset by peer (reply lost)")
        super().create(key, data)


@pytest.mark.fault("outcome-unknown commit (written={write_first})", store="local")
@pytest.mark.parametrize("write_first", [True, False], ids=["written-then-error", "error-unwritten"])
def test_outcome_unknown_commit_is_recognised_not_duplicated(write_first: bool, repo: vecdr.Repository) -> None:
    vecdr.snapshot(repo, flat(30, seed=1)[0])
    store = ReplyLostStore(repo.store, times=2, write_first=write_first)
    index, ids, vectors = flat(60, seed=2)
    result = vecdr.snapshot(wrapped(repo, store), index)
    assert store.calls >= 1
    commits = repo.commits()
    mine = [c for c in commits if c.snapshot == result.snapshot]
    assert len(mine) == 1, [c.key for c in commits]
    assert len(commits) == 2
    assert mine[0].seq == result.seq == 2
    assert sorted(repo.store.list("commits")) == [c.key for c in commits]
    assert_same_rows(restored_rows(repo, "latest"), (ids, vectors))


@pytest.mark.fault("outcome-unknown commit after another writer took the number", store="local")
def test_outcome_unknown_after_another_writer_took_the_number(repo: vecdr.Repository) -> None:
    """Our create fails without writing and, meanwhile, someone else commits that seq."""
    other, _, _ = flat(10, seed=3)

    class Interloper(WrappedStore):
        fired = False

        def create(self, key: str, data: bytes) -> None:
            if key.startswith("commits/") and not self.fired:
                self.fired = True
                vecdr.snapshot(repo, other, collection="other")  # takes this very seq
                raise OSError("timeout")
            super().create(key, data)

    index, ids, vectors = flat(40, seed=4)
    result = vecdr.snapshot(wrapped(repo, Interloper(repo.store)), index, collection="mine")
    commits = repo.commits()
    assert [c.seq for c in commits] == [1, 2]
    assert [c.collection for c in commits] == ["other", "mine"]
    assert result.seq == 2
    assert_same_rows(restored_rows(repo, "latest", collection="mine"), (ids, vectors))


def test_a_manifest_without_a_commit_is_no_snapshot(repo: vecdr.Repository) -> None:
    snap = vecdr.snapshot(repo, flat(20, seed=1)[0])
    manifest = open_snapshot(repo, snap.snapshot)
    orphan = dataclasses.replace(manifest, snapshot=uuid.uuid4().hex)
    repo.put_manifest(orphan)  # written, never committed
    assert [s["id"] for s in vecdr.snapshots(repo)] == [snap.snapshot]
    with pytest.raises(SnapshotNotFoundError):
        vecdr.restore_index(repo, orphan.snapshot)
    report = vecdr.verify(repo)
    assert report.ok
    assert f"manifests/{orphan.snapshot}.json" in report.unreferenced
