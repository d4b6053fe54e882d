"""Choosing between tracked, diff and full snapshots, and refusing what cannot be tracked."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

import vecdr
from vecdr.backends.journal import Journal
from vecdr.errors import CollectionError, SourceError, UsageError
from vecdr.faiss import TrackedIndex
from vecdr.testing.backends import assert_same_rows, faiss_rows

D = 12


def vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)


def tracked_flat(tmp_path: Path, n: int = 300) -> tuple[TrackedIndex, np.ndarray]:
    index = TrackedIndex(faiss.IndexIDMap2(faiss.IndexFlatL2(D)), tmp_path / "journal")
    x = vectors(n, 1)
    index.add_with_ids(x, np.arange(n))
    return index, x


def test_a_change_that_bypassed_the_journal_forces_a_full_comparison(
    repo: vecdr.Repository, tmp_path: Path
) -> None:
    index, x = tracked_flat(tmp_path)
    assert vecdr.snapshot(repo, index).mode == "full"
    index.add_with_ids(vectors(5, 2), np.arange(1000, 1005))  # journaled
    index.index.add_with_ids(vectors(3, 3), np.arange(2000, 2003))  # not journaled
    with pytest.warns(UserWarning, match="journal accounts for 305 rows but the source holds 308"):
        result = vecdr.snapshot(repo, index)
    assert result.mode == "diff" and result.added == 8
    assert_same_rows(faiss_rows(vecdr.restore_index(repo)), faiss_rows(index.index))


def test_a_journal_that_accounts_for_every_row_is_used(repo: vecdr.Repository, tmp_path: Path) -> None:
    index, _ = tracked_flat(tmp_path)
    vecdr.snapshot(repo, index)
    index.upsert(vectors(4, 5), np.arange(4))
    index.remove_ids(np.arange(10, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = vecdr.snapshot(repo, index)
    assert (result.mode, result.changed, result.deleted, result.rows) == ("tracked", 4, 6, 294)
    assert_same_rows(faiss_rows(vecdr.restore_index(repo)), faiss_rows(index.index))


def test_diff_mode_scans_even_with_a_usable_journal(repo: vecdr.Repository, tmp_path: Path) -> None:
    index, _ = tracked_flat(tmp_path)
    vecdr.snapshot(repo, index)
    index.add_with_ids(vectors(2, 7), np.arange(500, 502))
    assert vecdr.snapshot(repo, index, mode="diff").mode == "diff"
    # The scan covered the journal, so it was trimmed: the next snapshot is tracked and empty.
    nothing = vecdr.snapshot(repo, index)
    assert (nothing.mode, nothing.added, nothing.changed, nothing.deleted) == ("tracked", 0, 0, 0)


def test_unknown_mode_is_a_usage_error(repo: vecdr.Repository, tmp_path: Path) -> None:
    index, _ = tracked_flat(tmp_path)
    with pytest.raises(UsageError, match="mode must be one of"):
        vecdr.snapshot(repo, index, mode="incremental")
    assert vecdr.snapshots(repo) == []


def test_an_index_that_cannot_remove_refuses_before_journaling(tmp_path: Path) -> None:
    hnsw = TrackedIndex(faiss.IndexIDMap2(faiss.IndexHNSWFlat(D, 8)), tmp_path / "journal")
    hnsw.add_with_ids(vectors(50, 1), np.arange(50))
    before = Journal(tmp_path / "journal").read()
    with pytest.raises(SourceError, match="cannot remove"):
        hnsw.remove_ids(np.arange(5))
    with pytest.raises(SourceError, match="cannot remove"):
        hnsw.upsert(vectors(2, 2), np.arange(2))
    after = Journal(tmp_path / "journal").read()
    assert len(after.upsert_ids) == len(before.upsert_ids) == 50
    assert len(after.delete_ids) == 0
    assert hnsw.ntotal == 50


def test_as_of_and_a_snapshot_together_are_refused(repo: vecdr.Repository, tmp_path: Path) -> None:
    index, _ = tracked_flat(tmp_path)
    first = vecdr.snapshot(repo, index)
    with pytest.raises(UsageError, match="either"):
        vecdr.restore_index(repo, first.snapshot, as_of="2999-01-01")
    assert vecdr.restore_index(repo, None, as_of="2999-01-01").ntotal == 300


def test_listing_an_unknown_collection_is_an_error(repo: vecdr.Repository, tmp_path: Path) -> None:
    index, _ = tracked_flat(tmp_path)
    vecdr.snapshot(repo, index, collection="products")
    assert [s["collection"] for s in vecdr.snapshots(repo, "products")] == ["products"]
    with pytest.raises(CollectionError, match="no collection 'prods'"):
        vecdr.snapshots(repo, "prods")


def test_embeddings_are_refused_for_a_non_faiss_source(repo: vecdr.Repository, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="FAISS"):
        vecdr.snapshot(repo, f"parquet:{tmp_path / 'x.parquet'}", embeddings=vectors(3, 1))


def test_an_untrained_index_refuses_additions_before_journaling(tmp_path: Path) -> None:
    ivf = TrackedIndex(faiss.index_factory(D, "IVF4,Flat"), tmp_path / "journal")
    with pytest.raises(SourceError, match="not trained"):
        ivf.add_with_ids(vectors(20, 1), np.arange(20))
    assert len(Journal(tmp_path / "journal").read().upsert_ids) == 0


def test_a_damaged_latest_manifest_does_not_stop_new_backups(repo: vecdr.Repository, tmp_path: Path) -> None:
    index, _ = tracked_flat(tmp_path)
    first = vecdr.snapshot(repo, index)
    index.add_with_ids(vectors(5, 9), np.arange(900, 905))
    second = vecdr.snapshot(repo, index)
    manifest = Path(repo.store.local_path(f"manifests/{second.snapshot}.json"))
    manifest.write_bytes(manifest.read_bytes().replace(b'"rows"', b'"rowz"', 1))
    index.add_with_ids(vectors(2, 10), np.arange(950, 952))
    with pytest.warns(UserWarning, match=f"cannot use snapshot {second.snapshot}"):
        third = vecdr.snapshot(repo, index)
    assert third.parent == first.snapshot and third.mode == "diff" and third.added == 7
    assert_same_rows(faiss_rows(vecdr.restore_index(repo, third.snapshot)), faiss_rows(index.index))


def test_a_tracked_snapshot_holds_only_the_changed_rows_of_the_previous_one(
    repo: vecdr.Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    engine = sys.modules["vecdr.engines.snapshot"]
    loaded: list[int] = []
    real = engine.live_rows

    def spy(*args: object, **kwargs: object) -> object:
        rows = real(*args, **kwargs)  # type: ignore[arg-type]
        loaded.append(len(rows))
        return rows

    monkeypatch.setattr(engine, "live_rows", spy)
    index, _ = tracked_flat(tmp_path, n=3000)
    vecdr.snapshot(repo, index)
    index.upsert(vectors(4, 5), np.arange(4))
    index.remove_ids(np.arange(10, 16))
    index.add_with_ids(vectors(2, 6), np.arange(5000, 5002))
    loaded.clear()
    result = vecdr.snapshot(repo, index)
    assert (result.mode, result.changed, result.deleted, result.added) == ("tracked", 4, 6, 2)
    assert max(loaded) == 10  # the 4 overwritten and 6 removed rows, not all 3,000
    assert_same_rows(faiss_rows(vecdr.restore_index(repo)), faiss_rows(index.index))


def test_string_ids_that_are_not_utf8_are_refused_before_anything_is_committed(repo: vecdr.Repository) -> None:
    import pyarrow as pa

    from vecdr.backends.base import Source, SourceInfo
    from vecdr.errors import SchemaError
    from vecdr.format.segment import vectors_to_arrow

    # Arrow does not check the bytes of a string array built from buffers; a source may hand such ids over.
    offsets = pa.py_buffer(np.array([0, 2, 4], np.int32).tobytes())
    ids = pa.StringArray.from_buffers(2, offsets, pa.py_buffer(b"ok\xff\xfe"))

    class RawSource(Source):
        backend = "raw"

        def info(self) -> SourceInfo:
            return SourceInfo("raw", D, "string")

        def ids(self) -> pa.Array:
            return ids

        def scan(self, batch_rows: int) -> Any:
            yield pa.table({"id": ids, "vector": vectors_to_arrow(vectors(2, 1))})

    with pytest.raises(SchemaError, match="not valid UTF-8"):
        vecdr.snapshot(repo, RawSource("raw:"))
    assert repo.commits() == []
