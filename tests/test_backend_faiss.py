"""FAISS: the conformance suite, then what only FAISS has: index kinds, lossy
indexes and embeddings, kept trained state, native blobs, search parameters,
tracked mode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import pyarrow.parquet as pq
import pytest

import vecdr
from vecdr.backends.base import Target
from vecdr.backends.faiss import FaissSource, FaissTarget
from vecdr.backends.registry import open_source, open_target
from vecdr.engines import open_snapshot
from vecdr.errors import LossyIndexError, NonFiniteVectorError, SchemaError, SourceError
from vecdr.format.segment import vectors_from_arrow
from vecdr.testing.backends import (
    BackendTests,
    MakeSource,
    MakeTarget,
    Rows,
    assert_same_rows,
    faiss_rows,
    make_rows,
)

D = 16
N = 1000  # ≥ 39 × 16: IVF16 and PQ…x4 train without warnings


def idmap_flat(ids: np.ndarray, vectors: np.ndarray) -> faiss.Index:
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(vectors.shape[1] if vectors.ndim == 2 else D))
    if len(ids):
        index.add_with_ids(vectors, ids)
    return index


def faiss_file_target(folder: Path) -> tuple[Target, Callable[[], Rows]]:
    path = folder / "restored.faiss"
    return FaissTarget(path), lambda: faiss_rows(faiss.read_index(str(path)))


class TestFaissBackend(BackendTests):
    """IndexIDMap2(Flat) objects in, index files out."""

    @pytest.fixture
    def make_source(self) -> MakeSource:
        return lambda ids, vectors: FaissSource(idmap_flat(ids, vectors))

    @pytest.fixture
    def make_target(self) -> MakeTarget:
        return faiss_file_target


class TestFaissBackendByUri(BackendTests):
    """``faiss:PATH`` index files in and out, through the scheme registry."""

    @pytest.fixture
    def make_source(self, tmp_path_factory: pytest.TempPathFactory) -> MakeSource:
        def make(ids: np.ndarray, vectors: np.ndarray) -> vecdr.backends.base.Source:
            path = tmp_path_factory.mktemp("src") / "index.faiss"
            faiss.write_index(idmap_flat(ids, vectors), str(path))
            return open_source(f"faiss:{path}")

        return make

    @pytest.fixture
    def make_target(self) -> MakeTarget:
        def make(folder: Path) -> tuple[Target, Callable[[], Rows]]:
            path = folder / "restored.faiss"
            return open_target(f"faiss:{path}"), lambda: faiss_rows(faiss.read_index(str(path)))

        return make


class TestFaissBackendHNSW(BackendTests):
    """IndexIDMap2(HNSW): the graph is rebuilt, the vectors must still be exact."""

    rows = 600

    @pytest.fixture
    def make_source(self) -> MakeSource:
        def make(ids: np.ndarray, vectors: np.ndarray) -> FaissSource:
            index = faiss.index_factory(D, "IDMap2,HNSW16")
            if len(ids):
                index.add_with_ids(vectors, ids)
            return FaissSource(index)

        return make

    @pytest.fixture
    def make_target(self) -> MakeTarget:
        return faiss_file_target


# -- helpers ---------------------------------------------------------------------


def clean_rows(n: int, seed: int) -> Rows:
    """Rows with -0.0 and subnormals but without float32 extremes (which break k-means)."""
    ids, vectors = make_rows(n, D, seed)
    rng = np.random.default_rng(seed + 1000)
    vectors[3:5] = rng.standard_normal((2, D))
    return ids, vectors


def build(factory: str, ids: np.ndarray, vectors: np.ndarray, with_ids: bool) -> faiss.Index:
    index = faiss.index_factory(D, factory)
    if not index.is_trained:
        index.train(np.random.default_rng(99).standard_normal((N, D)).astype(np.float32))
    if with_ids:
        index.add_with_ids(vectors, ids)
    else:
        index.add(vectors)
    return index


def exported(repo: vecdr.Repository, snapshot: str, path: Path, **kw: object) -> Rows:
    vecdr.export(repo, snapshot, path, **kw)  # type: ignore[arg-type]
    table = pq.read_table(path)
    return table.column("id").to_numpy(), vectors_from_arrow(table.column("vector"), D)


def queries(n: int = 20) -> np.ndarray:
    return np.random.default_rng(7).standard_normal((n, D)).astype(np.float32)


# -- index kinds -----------------------------------------------------------------

LOSSLESS = {
    # factory: whether vectors are added with explicit ids
    "Flat": False,
    "HNSW16": False,
    "IDMap2,HNSW16": True,
    "IDMap,Flat": True,
    "IDMap2,Flat": True,
    "IVF16,Flat": True,
}


@pytest.mark.parametrize("factory", list(LOSSLESS))
def test_lossless_index_is_read_without_embeddings(factory: str, repo: vecdr.Repository, tmp_path: Path) -> None:
    ids, vectors = clean_rows(N, seed=21)
    with_ids = LOSSLESS[factory]
    index = build(factory, ids, vectors, with_ids)
    expected = (ids if with_ids else np.arange(N, dtype=np.int64), vectors)

    snap = vecdr.snapshot(repo, index)
    assert snap.rows == N
    assert_same_rows(exported(repo, snap.snapshot, tmp_path / "rows.parquet"), expected)

    restored = vecdr.restore_index(repo, snap.snapshot)
    assert type(faiss.downcast_index(restored)) is type(faiss.downcast_index(index))
    if with_ids and factory.startswith("IDMap"):
        assert type(faiss.downcast_index(restored.index)) is type(faiss.downcast_index(index.index))
    assert_same_rows(faiss_rows(restored), expected)


def test_plain_flat_keeps_vectors_in_position_order(repo: vecdr.Repository) -> None:
    """Without an id map an id is a position: the restored index must keep the order."""
    _, vectors = clean_rows(N, seed=22)
    index = faiss.IndexFlatIP(D)
    index.add(vectors)
    snap = vecdr.snapshot(repo, index)
    restored = vecdr.restore_index(repo, snap.snapshot)
    assert isinstance(faiss.downcast_index(restored), faiss.IndexFlat)
    assert restored.metric_type == faiss.METRIC_INNER_PRODUCT
    got = restored.reconstruct_n(0, restored.ntotal)
    np.testing.assert_array_equal(got.view(np.uint32), vectors.view(np.uint32))
    q = queries()
    np.testing.assert_array_equal(restored.search(q, 10)[1], index.search(q, 10)[1])


LOSSY = {"IVF16,PQ4x4": False, "PQ4x4": False, "IDMap2,PQ4x4": True, "IVF16,SQ8": False}


@pytest.mark.parametrize("factory", list(LOSSY))
def test_lossy_index_needs_embeddings(factory: str, repo: vecdr.Repository, tmp_path: Path) -> None:
    ids, vectors = clean_rows(N, seed=23)
    with_ids = LOSSY[factory]
    index = build(factory, ids, vectors, with_ids)

    with pytest.raises(LossyIndexError) as caught:
        vecdr.snapshot(repo, index)
    assert isinstance(caught.value, ValueError)
    assert repo.commits() == []

    snap = vecdr.snapshot(repo, index, embeddings=vectors)
    assert snap.rows == N
    expected = (ids if with_ids else np.arange(N, dtype=np.int64), vectors)
    assert_same_rows(exported(repo, snap.snapshot, tmp_path / "rows.parquet"), expected)


def test_lossy_index_embeddings_from_a_file_uri(repo: vecdr.Repository, tmp_path: Path) -> None:
    _, vectors = clean_rows(N, seed=24)
    index = build("IVF16,PQ4x4", np.arange(N), vectors, with_ids=False)
    path = tmp_path / "index.faiss"
    faiss.write_index(index, str(path))
    np.save(tmp_path / "emb.npy", vectors)
    with pytest.raises(LossyIndexError):
        vecdr.snapshot(repo, f"faiss:{path}")
    snap = vecdr.snapshot(repo, f"faiss:{path}?embeddings={tmp_path / 'emb.npy'}")
    assert_same_rows(exported(repo, snap.snapshot, tmp_path / "rows.parquet"), (np.arange(N), vectors))


def test_embeddings_of_the_wrong_shape_are_refused(repo: vecdr.Repository) -> None:
    _, vectors = clean_rows(N, seed=25)
    index = build("IVF16,PQ4x4", np.arange(N), vectors, with_ids=False)
    with pytest.raises(SourceError):
        vecdr.snapshot(repo, index, embeddings=vectors[:-1])
    assert repo.commits() == []


# -- trained state ---------------------------------------------------------------


def _ivfpq(nprobe: int = 4) -> tuple[faiss.Index, np.ndarray]:
    _, vectors = clean_rows(N, seed=26)
    index = build("IVF16,PQ4x4", np.arange(N), vectors, with_ids=False)
    faiss.extract_index_ivf(index).nprobe = nprobe
    return index, vectors


def _assert_same_training(a: faiss.Index, b: faiss.Index) -> None:
    ia, ib = faiss.extract_index_ivf(a), faiss.extract_index_ivf(b)
    ca = ia.quantizer.reconstruct_n(0, ia.nlist)
    cb = ib.quantizer.reconstruct_n(0, ib.nlist)
    np.testing.assert_array_equal(ca.view(np.uint32), cb.view(np.uint32))
    pa_, pb = faiss.downcast_index(ia), faiss.downcast_index(ib)
    np.testing.assert_array_equal(faiss.vector_to_array(pa_.pq.centroids), faiss.vector_to_array(pb.pq.centroids))


def test_trained_state_is_kept_and_restore_does_not_retrain(repo: vecdr.Repository, tmp_path: Path) -> None:
    index, vectors = _ivfpq()
    snap = vecdr.snapshot(repo, index, embeddings=vectors)
    manifest = open_snapshot(repo, snap.snapshot)
    assert "trained" in manifest.artifacts

    path = tmp_path / "restored.faiss"
    result = vecdr.restore(repo, FaissTarget(path), snap.snapshot)
    assert result.native is False
    assert "train" not in result.phases
    restored = faiss.read_index(str(path))
    assert restored.ntotal == N
    _assert_same_training(index, restored)
    # Same codebooks, same vectors: the same answers.
    q = queries()
    d0, i0 = index.search(q, 10)
    d1, i1 = restored.search(q, 10)
    np.testing.assert_array_equal(i1, i0)
    np.testing.assert_allclose(d1, d0, rtol=1e-6)

    in_memory = vecdr.restore_index(repo, snap.snapshot)
    _assert_same_training(index, in_memory)
    np.testing.assert_array_equal(in_memory.search(q, 10)[1], i0)


def test_factory_override_retrains(repo: vecdr.Repository, tmp_path: Path) -> None:
    index, vectors = _ivfpq()
    snap = vecdr.snapshot(repo, index, embeddings=vectors)
    path = tmp_path / "restored.faiss"
    result = vecdr.restore(repo, FaissTarget(path, factory="IVF16,PQ4x4"), snap.snapshot)
    assert "train" in result.phases
    assert result.native is False
    restored = faiss.read_index(str(path))
    assert restored.ntotal == N and restored.is_trained

    other = vecdr.restore_index(repo, snap.snapshot, factory="IVF16,Flat")
    assert isinstance(faiss.downcast_index(other), faiss.IndexIVFFlat)
    assert_same_rows(faiss_rows(other), (np.arange(N), vectors))


class _NoArtifacts(FaissSource):
    """A FAISS source that keeps no trained state, as an older writer would."""

    def artifacts(self, with_index: bool) -> dict[str, tuple[bytes, str]]:
        return {}


def test_without_a_trained_artifact_restore_trains(repo: vecdr.Repository, tmp_path: Path) -> None:
    index, vectors = _ivfpq()
    snap = vecdr.snapshot(repo, _NoArtifacts(index, embeddings=vectors))
    assert "trained" not in open_snapshot(repo, snap.snapshot).artifacts
    path = tmp_path / "restored.faiss"
    result = vecdr.restore(repo, FaissTarget(path), snap.snapshot)
    assert "train" in result.phases
    restored = faiss.read_index(str(path))
    assert restored.is_trained and restored.ntotal == N
    assert isinstance(faiss.downcast_index(restored), faiss.IndexIVFPQ)


@pytest.mark.parametrize("factory", ["Flat", "IDMap2,HNSW16"])
def test_no_trained_artifact_for_indexes_that_need_no_training(factory: str, repo: vecdr.Repository) -> None:
    ids, vectors = clean_rows(300, seed=27)
    snap = vecdr.snapshot(repo, build(factory, ids, vectors, with_ids=factory.startswith("IDMap")))
    assert "trained" not in open_snapshot(repo, snap.snapshot).artifacts


# -- native index blobs ----------------------------------------------------------


@pytest.mark.parametrize("factory", ["IDMap2,HNSW16", "IVF16,PQ4x4"])
def test_with_index_restores_the_native_blob(factory: str, repo: vecdr.Repository, tmp_path: Path) -> None:
    ids, vectors = clean_rows(N, seed=28)
    with_ids = factory.startswith("IDMap")
    index = build(factory, ids, vectors, with_ids)
    snap = vecdr.snapshot(repo, index, with_index=True, embeddings=None if with_ids else vectors)
    assert "native_index" in open_snapshot(repo, snap.snapshot).artifacts

    path = tmp_path / "restored.faiss"
    result = vecdr.restore(repo, FaissTarget(path), snap.snapshot)
    assert result.native is True
    assert result.rows == N
    assert "train" not in result.phases and "add" not in result.phases
    assert path.read_bytes() == bytes(faiss.serialize_index(index))
    q = queries()
    d0, i0 = index.search(q, 10)
    d1, i1 = faiss.read_index(str(path)).search(q, 10)
    np.testing.assert_array_equal(i1, i0)
    np.testing.assert_array_equal(d1, d0)

    in_memory = vecdr.restore_index(repo, snap.snapshot)
    d2, i2 = in_memory.search(q, 10)
    np.testing.assert_array_equal(i2, i0)
    np.testing.assert_array_equal(d2, d0)


@pytest.mark.parametrize("factory", ["Flat", "IDMap2,Flat"])
def test_native_blob_is_ignored_when_the_factory_is_overridden(
    factory: str, repo: vecdr.Repository, tmp_path: Path
) -> None:
    ids, vectors = clean_rows(N, seed=29)
    index = build("IDMap2,HNSW16", ids, vectors, with_ids=True)
    snap = vecdr.snapshot(repo, index, with_index=True)
    result = vecdr.restore(repo, FaissTarget(tmp_path / "r.faiss", factory=factory), snap.snapshot)
    assert result.native is False
    restored = faiss.read_index(str(tmp_path / "r.faiss"))
    outer = faiss.downcast_index(restored)
    assert isinstance(outer, faiss.IndexIDMap2 | faiss.IndexIDMap)  # ids are not positions
    assert isinstance(faiss.downcast_index(outer.index), faiss.IndexFlat)
    assert_same_rows(faiss_rows(restored), (ids, vectors))


def test_native_blob_belongs_to_its_own_snapshot(repo: vecdr.Repository, tmp_path: Path) -> None:
    ids, vectors = clean_rows(N, seed=30)
    index = build("IDMap2,Flat", ids, vectors, with_ids=True)
    first = vecdr.snapshot(repo, index, with_index=True)
    index.remove_ids(ids[:100])
    second = vecdr.snapshot(repo, index)
    assert "native_index" not in open_snapshot(repo, second.snapshot).artifacts
    result = vecdr.restore(repo, FaissTarget(tmp_path / "second.faiss"), second.snapshot)
    assert result.native is False
    assert_same_rows(faiss_rows(faiss.read_index(str(tmp_path / "second.faiss"))), (ids[100:], vectors[100:]))
    result = vecdr.restore(repo, FaissTarget(tmp_path / "first.faiss"), first.snapshot)
    assert result.native is True
    assert faiss.read_index(str(tmp_path / "first.faiss")).ntotal == N


# -- search parameters -----------------------------------------------------------


def _hnsw(index: faiss.Index) -> faiss.IndexHNSW:
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexIDMap2 | faiss.IndexIDMap):
        index = faiss.downcast_index(index.index)
    assert isinstance(index, faiss.IndexHNSW)
    return index


def test_hnsw_search_params_survive(repo: vecdr.Repository, tmp_path: Path) -> None:
    ids, vectors = clean_rows(600, seed=31)
    index = faiss.index_factory(D, "IDMap2,HNSW16")
    _hnsw(index).hnsw.efConstruction = 23
    _hnsw(index).hnsw.efSearch = 77
    index.add_with_ids(vectors, ids)
    snap = vecdr.snapshot(repo, index)
    for restored in (
        vecdr.restore_index(repo, snap.snapshot),
        (
            vecdr.restore(repo, FaissTarget(tmp_path / "r.faiss"), snap.snapshot),
            faiss.read_index(str(tmp_path / "r.faiss")),
        )[1],
    ):
        assert _hnsw(restored).hnsw.efSearch == 77
        assert _hnsw(restored).hnsw.efConstruction == 23
        assert _hnsw(restored).hnsw.nb_neighbors(0) == _hnsw(index).hnsw.nb_neighbors(0)


@pytest.mark.parametrize("factory", ["IVF16,Flat", "IVF16,PQ4x4"])
def test_ivf_nprobe_survives(factory: str, repo: vecdr.Repository, tmp_path: Path) -> None:
    ids, vectors = clean_rows(N, seed=32)
    index = build(factory, ids, vectors, with_ids=True)
    faiss.extract_index_ivf(index).nprobe = 5
    snap = vecdr.snapshot(repo, index, embeddings=None if factory.endswith("Flat") else vectors[np.argsort(ids)])
    restored = vecdr.restore_index(repo, snap.snapshot)
    assert faiss.extract_index_ivf(restored).nprobe == 5
    vecdr.restore(repo, FaissTarget(tmp_path / "r.faiss"), snap.snapshot)
    assert faiss.extract_index_ivf(faiss.read_index(str(tmp_path / "r.faiss"))).nprobe == 5


# -- ids, targets and tracked mode -----------------------------------------------


def test_string_ids_cannot_become_a_faiss_index(repo: vecdr.Repository, tmp_path: Path) -> None:
    import pyarrow as pa

    from vecdr.format.segment import vectors_to_arrow

    vectors = np.random.default_rng(3).standard_normal((50, D)).astype(np.float32)
    path = tmp_path / "strings.parquet"
    pq.write_table(pa.table({"id": [f"doc-{i}" for i in range(50)], "vector": vectors_to_arrow(vectors)}), path)
    snap = vecdr.snapshot(repo, f"parquet:{path}")
    out = tmp_path / "out.faiss"
    with pytest.raises(SchemaError):
        vecdr.restore(repo, f"faiss:{out}", snap.snapshot)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if "out.faiss" in p.name] == []


def test_tracked_index_needs_ids(tmp_path: Path) -> None:
    with pytest.raises(SourceError):
        vecdr.faiss.TrackedIndex(faiss.IndexFlatL2(D), tmp_path / "journal")


def test_tracked_snapshots_record_only_the_changes(repo: vecdr.Repository, tmp_path: Path) -> None:
    ids, vectors = clean_rows(N, seed=33)
    tracked = vecdr.faiss.TrackedIndex(faiss.IndexIDMap2(faiss.IndexFlatL2(D)), tmp_path / "j")
    tracked.add_with_ids(vectors, ids)
    first = vecdr.snapshot(repo, tracked)
    assert first.rows == N

    rng = np.random.default_rng(34)
    new_vectors = rng.standard_normal((50, D)).astype(np.float32)
    tracked.upsert(new_vectors, ids[:50])
    tracked.remove_ids(ids[50:80])
    fresh = np.arange(1 << 40, (1 << 40) + 25, dtype=np.int64)
    fresh_vectors = rng.standard_normal((25, D)).astype(np.float32)
    tracked.add_with_ids(fresh_vectors, fresh)
    second = vecdr.snapshot(repo, tracked)
    assert second.mode == "tracked"
    assert (second.added, second.changed, second.deleted) == (25, 50, 30)

    expected = (
        np.concatenate([ids[:50], ids[80:], fresh]),
        np.concatenate([new_vectors, vectors[80:], fresh_vectors]),
    )
    assert_same_rows(faiss_rows(vecdr.restore_index(repo, second.snapshot)), expected)
    assert_same_rows(faiss_rows(vecdr.restore_index(repo, first.snapshot)), (ids, vectors))


def test_a_failed_tracked_snapshot_loses_no_change(repo: vecdr.Repository, tmp_path: Path) -> None:
    ids, vectors = clean_rows(200, seed=35)
    tracked = vecdr.faiss.TrackedIndex(faiss.IndexIDMap2(faiss.IndexFlatL2(D)), tmp_path / "j")
    tracked.add_with_ids(vectors, ids)
    vecdr.snapshot(repo, tracked)

    changed = vectors[:10] + 1
    tracked.upsert(changed, ids[:10])
    tracked.remove_ids(ids[10:20])
    bad = np.full((1, D), np.nan, np.float32)
    tracked.upsert(bad, ids[20:21])
    commits = repo.commits()
    with pytest.raises(NonFiniteVectorError):
        vecdr.snapshot(repo, tracked)
    assert repo.commits() == commits

    fixed = np.full((1, D), 0.5, np.float32)
    tracked.upsert(fixed, ids[20:21])
    result = vecdr.snapshot(repo, tracked)
    assert result.mode == "tracked"
    assert (result.changed, result.deleted) == (11, 10)
    expected_vectors = np.concatenate([changed, fixed, vectors[21:]])
    expected_ids = np.concatenate([ids[:10], ids[20:]])
    assert_same_rows(faiss_rows(vecdr.restore_index(repo, "latest")), (expected_ids, expected_vectors))


def test_tracked_index_file_with_its_journal(repo: vecdr.Repository, tmp_path: Path) -> None:
    """``faiss:PATH`` picks up ``PATH.journal`` and snapshots in tracked mode."""
    ids, vectors = clean_rows(300, seed=36)
    path = tmp_path / "index.faiss"
    tracked = vecdr.faiss.TrackedIndex(faiss.IndexIDMap2(faiss.IndexFlatL2(D)), f"{path}.journal")
    tracked.add_with_ids(vectors, ids)
    tracked.save(path)
    first = vecdr.snapshot(repo, f"faiss:{path}")
    tracked.remove_ids(ids[:7])
    tracked.save(path)
    second = vecdr.snapshot(repo, f"faiss:{path}")
    assert first.collection == second.collection == "index"
    assert second.mode == "tracked"
    assert second.deleted == 7
    assert_same_rows(faiss_rows(vecdr.restore_index(repo, "latest")), (ids[7:], vectors[7:]))


@pytest.mark.parametrize("id_map", [faiss.IndexIDMap, faiss.IndexIDMap2])
@pytest.mark.parametrize("metric", [faiss.METRIC_L2, faiss.METRIC_INNER_PRODUCT])
def test_a_flat_index_restored_in_place_is_the_index_add_builds(id_map, metric, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((5000, 24)).astype(np.float32)
    ids = rng.permutation(100_000)[:5000].astype(np.int64)
    source = id_map(faiss.IndexFlat(24, metric))
    source.add_with_ids(vectors[:4000], ids[:4000])
    repo = vecdr.init(tmp_path / "repo")
    vecdr.snapshot(repo, source, collection="c")
    # An incremental on top: the restore reads two segments less the deleted rows,
    # each write filling its slice of the storage.
    source.add_with_ids(vectors[4000:], ids[4000:])
    source.remove_ids(ids[:100])
    vecdr.snapshot(repo, source, collection="c")
    restored = vecdr.restore_index(repo)
    assert type(restored) is type(source) and restored.ntotal == 4900
    assert_same_rows(faiss_rows(restored), faiss_rows(source))
    order = faiss.vector_to_array(restored.id_map)
    position = {int(i): k for k, i in enumerate(ids)}
    expected = id_map(faiss.IndexFlat(24, metric))
    expected.add_with_ids(vectors[[position[int(i)] for i in order]], order)
    assert bytes(faiss.serialize_index(restored)) == bytes(faiss.serialize_index(expected))
    assert restored.search(vectors[200:203], 1)[1][:, 0].tolist() == ids[200:203].tolist()


def test_a_flat_index_without_an_id_map_is_restored_in_place_by_id(tmp_path: Path) -> None:
    vectors = np.random.default_rng(8).standard_normal((5000, 24)).astype(np.float32)
    source = faiss.IndexFlatL2(24)
    source.add(vectors[:4000])
    repo = vecdr.init(tmp_path / "repo")
    vecdr.snapshot(repo, source, collection="c")
    source.add(vectors[4000:])  # an incremental: ids 4000… arrive from a second segment
    vecdr.snapshot(repo, source, collection="c")
    restored = vecdr.restore_index(repo)
    assert isinstance(restored, faiss.IndexFlat) and restored.ntotal == 5000
    assert bytes(faiss.serialize_index(restored)) == bytes(faiss.serialize_index(source))


@pytest.mark.parametrize(
    "ids",
    [np.array([0, 1, 1]), np.array([0, 1, 3]), np.array([-1, 0, 1])],
    ids=["repeated", "past-the-end", "negative"],
)
def test_a_flat_index_without_an_id_map_refuses_ids_that_are_not_positions(ids: np.ndarray, tmp_path: Path) -> None:
    import pyarrow as pa

    from vecdr.backends.base import RestoreSpec
    from vecdr.errors import TargetError
    from vecdr.format.segment import vectors_to_arrow

    source = faiss.IndexFlatL2(4)
    source.add(np.zeros((3, 4), np.float32))
    repo = vecdr.init(tmp_path / "repo")
    snap = vecdr.snapshot(repo, source, collection="c", quality_sample=0)
    recorded = open_snapshot(repo, snap.snapshot).index
    spec = RestoreSpec("c", snap.snapshot, 4, "int64", pa.schema([]), recorded, 3)
    target = FaissTarget(None)
    assert target.begin(spec) is False  # rebuilt from rows, not loaded
    rows = pa.table({"id": pa.array(ids, pa.int64()), "vector": vectors_to_arrow(np.ones((3, 4), np.float32))})
    with pytest.raises(TargetError, match="0…n-1"):
        target.write(rows)
        target.finish()


@pytest.mark.fault("manifest declares more rows than memory holds (FAISS target)")
def test_a_restore_too_large_for_memory_is_refused_before_allocating(tmp_path: Path) -> None:
    import pyarrow as pa

    from vecdr.backends.base import RestoreSpec
    from vecdr.errors import TargetError

    spec = RestoreSpec(collection="c", snapshot="s", dimension=128, id_type="int64", attributes=pa.schema([]),
                       index={}, rows=10**12)
    for target in (FaissTarget(), FaissTarget(tmp_path / "x.faiss", factory="HNSW16")):
        with pytest.raises(TargetError, match="GiB free"):
            target.begin(spec)
    assert not (tmp_path / "x.faiss").exists()
