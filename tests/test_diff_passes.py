"""Diff snapshots in id-range passes: the same result as one pass, in memory bounded by the pass.

A source that scans id ranges (``range_scans``) lets a diff compare a large
collection one id range at a time. These tests drive that path through Parquet
sources that declare it (the default ``scan_range`` filters a full scan), with
integer and string ids, and check what one pass would have found.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

import vecdr
from vecdr.backends.parquet import ParquetSource
from vecdr.errors import SourceError
from vecdr.format.segment import vectors_to_arrow
from vecdr.testing.backends import assert_same_rows

D = 4


class RangedSource(ParquetSource):
    """A Parquet source that offers id-range scans (the default, filtering implementation)."""

    range_scans = True
    ranges: list[tuple[Any, Any]]

    def scan_range(self, batch_rows: int, lo: Any, hi: Any) -> Iterator[pa.Table]:
        self.ranges.append((lo, hi))
        return super().scan_range(batch_rows, lo, hi)


def write_rows(path: Path, ids: list[Any], vectors: np.ndarray, kind: pa.DataType | None = None) -> Path:
    pq.write_table(pa.table({"id": pa.array(ids, kind or pa.int64()), "vector": vectors_to_arrow(vectors)}), path)
    return path


def ranged(path: Path) -> RangedSource:
    source = RangedSource(path)
    source.ranges = []
    return source


def vectors_for(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)


def restored_rows(repo: vecdr.Repository, snapshot: str, folder: Path) -> tuple[list[Any], np.ndarray]:
    out = folder / f"{uuid.uuid4().hex}.parquet"
    vecdr.restore(repo, f"parquet:{out}", snapshot)
    table = pq.read_table(out)
    width = table.schema.field("vector").type.list_size
    return table.column("id").to_pylist(), table.column("vector").combine_chunks().flatten().to_numpy().reshape(
        -1, width
    )


def as_model(ids: list[Any], vectors: np.ndarray) -> dict[Any, bytes]:
    return {i: v.tobytes() for i, v in zip(ids, vectors, strict=True)}


string_ids = st.text(alphabet="aAzZ_é✓0", min_size=1, max_size=4)
int_ids = st.integers(-(1 << 40), 1 << 40)


@given(
    kind=st.sampled_from(["int", "str"]),
    data=st.data(),
    pass_rows=st.integers(1, 30),
)
def test_any_split_into_id_ranges_finds_what_one_pass_finds(kind: str, data: st.DataObject, pass_rows: int) -> None:
    strategy, id_kind = (int_ids, pa.int64()) if kind == "int" else (string_ids, pa.string())
    before = data.draw(st.lists(strategy, min_size=1, max_size=80, unique=True), label="before")
    kept = data.draw(st.lists(st.sampled_from(before), unique=True), label="kept")
    fresh = data.draw(st.lists(strategy.filter(lambda i: i not in before), max_size=20, unique=True), label="fresh")
    changed = set(data.draw(st.lists(st.sampled_from(kept), unique=True), label="changed") if kept else [])
    old_vectors = vectors_for(len(before), 1)
    old = dict(zip(before, old_vectors, strict=True))
    after = kept + fresh
    new_vectors = np.concatenate(
        [np.stack([-old[i] if i in changed else old[i] for i in kept] or [np.empty((0, D), np.float32)]).reshape(-1, D),
         vectors_for(len(fresh), 2)]
    )
    folder = Path(f"/tmp/vecdr-passes-{uuid.uuid4().hex}")
    folder.mkdir()
    try:
        passes = vecdr.init(f"memory://passes-{uuid.uuid4().hex}")
        whole = vecdr.init(f"memory://whole-{uuid.uuid4().hex}")
        first = write_rows(folder / "v1.parquet", before, old_vectors, id_kind)
        second = write_rows(folder / "v2.parquet", after, new_vectors, id_kind)
        for repo in (passes, whole):
            vecdr.snapshot(repo, ParquetSource(first), collection="c")
        source = ranged(second)
        split = vecdr.snapshot(passes, source, collection="c", diff_pass_rows=pass_rows)
        one = vecdr.snapshot(whole, ParquetSource(second), collection="c")
        if len(before) > pass_rows:  # else one plain scan
            # Every id falls in exactly one range, and the ranges run in order.
            assert len(source.ranges) > 1
            assert source.ranges[0][0] is None and source.ranges[-1][1] is None
            assert all(a[1] == b[0] for a, b in zip(source.ranges, source.ranges[1:], strict=False))
        else:
            assert source.ranges == []
        assert (split.mode, split.added, split.changed, split.deleted, split.rows) == (
            one.mode, one.added, one.changed, one.deleted, one.rows,
        )
        # Negating a vector flips sign bits: even -0.0 vs 0.0 counts as a change.
        assert split.changed == len(changed)
        assert split.added == len(fresh) and split.deleted == len(before) - len(kept)
        ids, vectors = restored_rows(passes, split.snapshot, folder)
        assert as_model(ids, vectors) == as_model(after, new_vectors)
    finally:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def test_each_pass_holds_about_its_share_of_the_previous_rows(
    tmp_path: Path, repo: vecdr.Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = sys.modules["vecdr.engines.snapshot"]
    loaded: list[int] = []
    real = engine.live_rows

    def spy(*args: Any, **kwargs: Any) -> Any:
        rows = real(*args, **kwargs)
        loaded.append(len(rows))
        return rows

    n = 5000
    ids = np.random.default_rng(3).permutation(np.arange(n, dtype=np.int64) * 7919 - 10**6)
    vectors = vectors_for(n, 4)
    vecdr.snapshot(repo, ParquetSource(write_rows(tmp_path / "v1.parquet", ids.tolist(), vectors)), collection="c")
    vectors[::50] += 1  # 100 changed rows
    monkeypatch.setattr(engine, "live_rows", spy)
    source = ranged(write_rows(tmp_path / "v2.parquet", ids.tolist(), vectors))
    result = vecdr.snapshot(repo, source, collection="c", diff_pass_rows=600)
    assert result.changed == 100 and result.rows == n
    big = [count for count in loaded if count]
    assert len(source.ranges) == 9 and len(big) == 9
    assert sum(big) == n  # every previous row compared exactly once
    assert max(big) <= 700  # about diff_pass_rows each, not the collection
    restored_ids, restored_vectors = restored_rows(repo, result.snapshot, tmp_path)
    assert_same_rows((np.array(restored_ids), restored_vectors), (ids, vectors))


class StraySource(RangedSource):
    """Answers every id-range scan with every row: a range scan that disagrees with vecdr's order."""

    def scan_range(self, batch_rows: int, lo: Any, hi: Any) -> Iterator[pa.Table]:
        return self.scan(batch_rows)


def test_a_range_scan_returning_ids_outside_its_range_is_refused(tmp_path: Path, repo: vecdr.Repository) -> None:
    ids = list(range(100))
    vectors = vectors_for(100, 5)
    first = vecdr.snapshot(repo, ParquetSource(write_rows(tmp_path / "v1.parquet", ids, vectors)), collection="c")
    vectors[0] += 1
    stray = StraySource(write_rows(tmp_path / "v2.parquet", ids, vectors))
    with pytest.raises(SourceError, match="outside|asked for ids from"):
        vecdr.snapshot(repo, stray, collection="c", diff_pass_rows=30)
    assert [s["id"] for s in vecdr.snapshots(repo)] == [first.snapshot]
    again = vecdr.snapshot(repo, ParquetSource(tmp_path / "v2.parquet"), collection="c", diff_pass_rows=30)
    assert (again.changed, again.parent) == (1, first.snapshot)
