"""The backend conformance suite.

Subclass :class:`BackendTests` and provide two fixtures:

``make_source``
    A callable ``(ids, vectors) -> vecdr Source`` holding exactly those rows
    (``ids``: int64 array, ``vectors``: ``(n, d)`` float32 array).
``make_target``
    A callable ``(folder) -> (Target, reader)``: a restore target that lives in
    ``folder`` (the same folder gives the same target location), and ``reader()``,
    which returns ``(ids, vectors)`` of what was restored there.

The suite checks that a full snapshot restores bit for bit, that an incremental
snapshot after updates, inserts and deletes restores exactly the new state while
the older snapshot still restores the old one, and that an existing target is
refused unless ``force`` is given.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import vecdr
from vecdr.backends.base import Source, Target
from vecdr.errors import TargetExistsError

Rows = tuple[np.ndarray, np.ndarray]
MakeSource = Callable[[np.ndarray, np.ndarray], Source]
MakeTarget = Callable[[Path], tuple[Target, Callable[[], Rows]]]


def sorted_rows(ids: Any, vectors: Any) -> Rows:
    """Rows ordered by id, as an int64 id array and a float32 matrix."""
    ids = np.asarray(ids)
    vectors = np.asarray(vectors, dtype=np.float32)
    order = np.argsort(ids, kind="stable")
    return ids[order], vectors[order]


def assert_same_rows(actual: Rows, expected: Rows) -> None:
    """Same id set and, per id, the same vector bit for bit (order does not matter)."""
    a_ids, a_vec = sorted_rows(*actual)
    e_ids, e_vec = sorted_rows(*expected)
    assert len(a_ids) == len(e_ids), f"{len(a_ids)} rows, expected {len(e_ids)}"
    assert len(np.unique(a_ids)) == len(a_ids), "an id appears more than once"
    np.testing.assert_array_equal(a_ids, e_ids)
    assert a_vec.shape == e_vec.shape, f"vectors {a_vec.shape}, expected {e_vec.shape}"
    # Compare bit patterns: -0.0 != 0.0 and NaN payloads count.
    a_bits = np.ascontiguousarray(a_vec).view(np.uint32)
    e_bits = np.ascontiguousarray(e_vec).view(np.uint32)
    if not np.array_equal(a_bits, e_bits):
        bad = np.flatnonzero((a_bits != e_bits).any(axis=1))
        raise AssertionError(
            f"{len(bad)} vectors differ bit for bit, e.g. id {e_ids[bad[0]]}: "
            f"{a_vec[bad[0]][:4]}… vs expected {e_vec[bad[0]][:4]}…"
        )


def make_rows(n: int, dimension: int, seed: int, id_space: int = 1 << 50) -> Rows:
    """``n`` rows with unique, unordered, non-contiguous ids and awkward floats.

    The first rows hold -0.0, subnormals and the float32 extremes, which a lossy
    or sign-dropping path would change.
    """
    rng = np.random.default_rng(seed)
    ids = np.unique(rng.integers(0, id_space, size=n + n // 10 + 8, dtype=np.int64))
    rng.shuffle(ids)
    ids = ids[:n]
    assert len(ids) == n
    vectors = rng.standard_normal((n, dimension)).astype(np.float32)
    specials = [
        np.full(dimension, -0.0, np.float32),
        np.full(dimension, np.finfo(np.float32).smallest_subnormal, np.float32),
        np.full(dimension, -np.finfo(np.float32).smallest_subnormal * 3, np.float32),
        np.full(dimension, np.finfo(np.float32).max, np.float32),
        np.full(dimension, np.finfo(np.float32).min, np.float32),
    ]
    for i, row in enumerate(specials[: max(0, n)]):
        vectors[i] = row
    return ids, vectors


def faiss_rows(index: Any) -> Rows:
    """``(ids, vectors)`` held by a FAISS index, read with faiss alone (not vecdr).

    Handles ``IndexIDMap``/``IndexIDMap2`` over flat storage, bare flat-storage
    indexes (``Flat``, ``HNSW…``: ids are positions) and bare IVF indexes.
    """
    import faiss
    from faiss.contrib.inspect_tools import get_invlist

    # ``original`` owns every sub-index; the downcast wrappers only borrow them, so
    # it must stay referenced until the vectors are copied out.
    original = index
    outer = faiss.downcast_index(original)
    index = outer
    ids: np.ndarray | None = None
    if isinstance(outer, faiss.IndexIDMap2 | faiss.IndexIDMap):
        ids = faiss.vector_to_array(outer.id_map).astype(np.int64)
        index = faiss.downcast_index(outer.index)
    n = index.ntotal
    try:
        ivf = faiss.extract_index_ivf(index)
    except (RuntimeError, AttributeError):
        ivf = None
    if ivf is not None and ids is None:
        parts = [get_invlist(ivf.invlists, i)[0] for i in range(ivf.nlist)]
        ids = np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # ids need not be 0…n-1
        vectors = ivf.reconstruct_batch(ids) if n else np.empty((0, index.d), np.float32)
        return ids, np.asarray(vectors, np.float32)
    vectors = index.reconstruct_n(0, n) if n else np.empty((0, index.d), np.float32)
    del outer, original
    return (ids if ids is not None else np.arange(n, dtype=np.int64)), np.asarray(vectors, np.float32)


class BackendTests:
    """Full and incremental snapshot → restore round trips through one backend."""

    dimension = 16
    rows = 1200
    collection = "conformance"

    @pytest.fixture
    def make_source(self) -> MakeSource:
        raise NotImplementedError("a BackendTests subclass must provide a `make_source` fixture")

    @pytest.fixture
    def make_target(self) -> MakeTarget:
        raise NotImplementedError("a BackendTests subclass must provide a `make_target` fixture")

    @pytest.fixture
    def repo(self, tmp_path: Path) -> vecdr.Repository:
        return vecdr.init(tmp_path / "repo")

    # -- helpers -----------------------------------------------------------------

    def snap(self, repo: vecdr.Repository, make_source: MakeSource, rows: Rows, **options: Any) -> vecdr.SnapshotResult:
        return vecdr.snapshot(repo, make_source(*rows), collection=self.collection, **options)

    def restored(
        self, repo: vecdr.Repository, make_target: MakeTarget, folder: Path, snapshot: str, **options: Any
    ) -> tuple[vecdr.RestoreResult, Rows]:
        target, read = make_target(folder)
        result = vecdr.restore(repo, target, snapshot, collection=self.collection, **options)
        return result, read()

    def changed_rows(self, rows: Rows, seed: int) -> tuple[Rows, dict[str, int]]:
        """A new state: some rows deleted, some overwritten, some inserted."""
        ids, vectors = rows
        n = len(ids)
        rng = np.random.default_rng(seed)
        order = 1 + rng.permutation(n - 1)  # row 0 is always updated, below
        deleted = order[: n // 12]
        updated = np.concatenate([[0], order[n // 12 : n // 12 + n // 8]])
        keep = np.ones(n, dtype=bool)
        keep[deleted] = False
        new_vectors = vectors.copy()
        new_vectors[updated[1:]] = rng.standard_normal((len(updated) - 1, vectors.shape[1]))
        # Negating flips every sign bit: -0.0 becomes 0.0, a change only bits show.
        new_vectors[0] = -vectors[0]
        inserted = n // 6
        fresh = np.setdiff1d(np.unique(rng.integers(0, 1 << 50, size=inserted * 2, dtype=np.int64)), ids)[:inserted]
        fresh = rng.permutation(fresh)
        fresh_vectors = rng.standard_normal((len(fresh), vectors.shape[1])).astype(np.float32)
        new = (
            np.concatenate([ids[keep], fresh]),
            np.concatenate([new_vectors[keep], fresh_vectors]),
        )
        counts = {"added": len(fresh), "changed": len(updated), "deleted": len(deleted)}
        return new, counts

    # -- the suite ---------------------------------------------------------------

    def test_full_round_trip_is_bit_identical(
        self, repo: vecdr.Repository, make_source: MakeSource, make_target: MakeTarget, tmp_path: Path
    ) -> None:
        rows = make_rows(self.rows, self.dimension, seed=1)
        snap = self.snap(repo, make_source, rows)
        assert snap.rows == self.rows
        assert snap.added == self.rows
        assert (snap.changed, snap.deleted) == (0, 0)
        result, restored = self.restored(repo, make_target, tmp_path / "out", snap.snapshot)
        assert result.snapshot == snap.snapshot
        assert result.rows == self.rows
        assert_same_rows(restored, rows)

    def test_incremental_snapshot_restores_new_state_and_old_one_still_restores(
        self, repo: vecdr.Repository, make_source: MakeSource, make_target: MakeTarget, tmp_path: Path
    ) -> None:
        v1 = make_rows(self.rows, self.dimension, seed=2)
        first = self.snap(repo, make_source, v1)
        v2, counts = self.changed_rows(v1, seed=3)
        second = self.snap(repo, make_source, v2)
        assert second.parent == first.snapshot
        assert second.seq > first.seq
        assert second.rows == len(v2[0])
        assert {"added": second.added, "changed": second.changed, "deleted": second.deleted} == counts
        # Only the change is written: far less than the first, full snapshot.
        assert second.bytes_written < first.bytes_written

        _, restored_v2 = self.restored(repo, make_target, tmp_path / "v2", second.snapshot)
        assert_same_rows(restored_v2, v2)
        _, restored_v1 = self.restored(repo, make_target, tmp_path / "v1", first.snapshot)
        assert_same_rows(restored_v1, v1)
        _, restored_latest = self.restored(repo, make_target, tmp_path / "latest", "latest")
        assert_same_rows(restored_latest, v2)

    def test_chain_of_incrementals_each_restores_its_own_state(
        self, repo: vecdr.Repository, make_source: MakeSource, make_target: MakeTarget, tmp_path: Path
    ) -> None:
        states = [make_rows(self.rows // 2, self.dimension, seed=4)]
        for seed in (5, 6, 7):
            states.append(self.changed_rows(states[-1], seed)[0])
        snaps = [self.snap(repo, make_source, rows).snapshot for rows in states]
        for i, (snapshot, rows) in enumerate(zip(snaps, states, strict=True)):
            _, restored = self.restored(repo, make_target, tmp_path / f"s{i}", snapshot)
            assert_same_rows(restored, rows)

    def test_unchanged_source_writes_no_new_segment(
        self, repo: vecdr.Repository, make_source: MakeSource, make_target: MakeTarget, tmp_path: Path
    ) -> None:
        rows = make_rows(self.rows, self.dimension, seed=8)
        self.snap(repo, make_source, rows)
        segments = sorted(repo.store.list("segments"))
        again = self.snap(repo, make_source, rows)
        assert (again.added, again.changed, again.deleted) == (0, 0, 0)
        assert again.rows == self.rows
        assert sorted(repo.store.list("segments")) == segments
        _, restored = self.restored(repo, make_target, tmp_path / "out", again.snapshot)
        assert_same_rows(restored, rows)

    def test_deleting_every_row_restores_an_empty_target(
        self, repo: vecdr.Repository, make_source: MakeSource, make_target: MakeTarget, tmp_path: Path
    ) -> None:
        rows = make_rows(self.rows // 4, self.dimension, seed=9)
        first = self.snap(repo, make_source, rows)
        empty = (np.empty(0, np.int64), np.empty((0, self.dimension), np.float32))
        second = self.snap(repo, make_source, empty)
        assert second.rows == 0
        assert second.deleted == len(rows[0])
        result, restored = self.restored(repo, make_target, tmp_path / "empty", second.snapshot)
        assert result.rows == 0
        assert_same_rows(restored, empty)
        _, restored = self.restored(repo, make_target, tmp_path / "first", first.snapshot)
        assert_same_rows(restored, rows)

    def test_existing_target_is_refused_without_force(
        self, repo: vecdr.Repository, make_source: MakeSource, make_target: MakeTarget, tmp_path: Path
    ) -> None:
        v1 = make_rows(self.rows // 2, self.dimension, seed=10)
        first = self.snap(repo, make_source, v1)
        v2, _ = self.changed_rows(v1, seed=11)
        second = self.snap(repo, make_source, v2)
        folder = tmp_path / "target"
        self.restored(repo, make_target, folder, first.snapshot)

        target, read = make_target(folder)
        assert target.exists()
        with pytest.raises(TargetExistsError) as caught:
            vecdr.restore(repo, target, second.snapshot, collection=self.collection)
        assert isinstance(caught.value, FileExistsError)
        assert_same_rows(read(), v1)  # the refused restore left the target alone

        target, read = make_target(folder)
        result = vecdr.restore(repo, target, second.snapshot, collection=self.collection, force=True)
        assert result.snapshot == second.snapshot
        assert_same_rows(read(), v2)
