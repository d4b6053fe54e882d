"""Parquet files of embeddings: the conformance suite, then string ids, attribute
columns, column options and malformed inputs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import vecdr
from vecdr.backends.base import Target
from vecdr.backends.parquet import ParquetSource, ParquetTarget
from vecdr.errors import SchemaError, SourceError, TargetExistsError
from vecdr.format.segment import vectors_from_arrow, vectors_to_arrow
from vecdr.testing.backends import BackendTests, MakeSource, MakeTarget, Rows, assert_same_rows

D = 8


def write_parquet(path: Path, ids: object, vectors: np.ndarray, **columns: object) -> Path:
    pq.write_table(pa.table({"id": ids, "vector": vectors_to_arrow(vectors), **columns}), path)
    return path


def read_parquet(path: Path) -> Rows:
    table = pq.read_table(path)
    dimension = table.schema.field("vector").type.list_size
    return table.column("id").to_numpy(zero_copy_only=False), vectors_from_arrow(table.column("vector"), dimension)


class TestParquetBackend(BackendTests):
    @pytest.fixture
    def make_source(self, tmp_path_factory: pytest.TempPathFactory) -> MakeSource:
        def make(ids: np.ndarray, vectors: np.ndarray) -> ParquetSource:
            folder = tmp_path_factory.mktemp("src")
            vectors = vectors.reshape(-1, self.dimension)
            return ParquetSource(write_parquet(folder / "rows.parquet", pa.array(ids, pa.int64()), vectors))

        return make

    @pytest.fixture
    def make_target(self) -> MakeTarget:
        def make(folder: Path) -> tuple[Target, Callable[[], Rows]]:
            path = folder / "restored.parquet"
            return ParquetTarget(path), lambda: read_parquet(path)

        return make


class TestParquetBackendByUri(BackendTests):
    """``parquet:PATH?id=…&vector=…`` sources with their own column names; ``parquet:PATH`` targets."""

    dimension = 24
    rows = 700

    @pytest.fixture
    def make_source(self, tmp_path_factory: pytest.TempPathFactory) -> MakeSource:
        def make(ids: np.ndarray, vectors: np.ndarray) -> vecdr.backends.base.Source:
            from vecdr.backends.registry import open_source

            path = tmp_path_factory.mktemp("src") / "rows.parquet"
            vectors = vectors.reshape(-1, self.dimension)
            # Variable-size lists, as most writers produce them; a file without rows
            # has no width to read, so that one states it in its type.
            lists = pa.array(list(vectors), pa.list_(pa.float32())) if len(vectors) else vectors_to_arrow(vectors)
            pq.write_table(pa.table({"key": pa.array(ids, pa.int64()), "emb": lists}), path)
            return open_source(f"parquet:{path}?id=key&vector=emb")

        return make

    @pytest.fixture
    def make_target(self) -> MakeTarget:
        def make(folder: Path) -> tuple[Target, Callable[[], Rows]]:
            from vecdr.backends.registry import open_target

            path = folder / "restored.parquet"
            return open_target(f"parquet:{path}"), lambda: read_parquet(path)

        return make


# -- string ids and attributes ---------------------------------------------------


def test_string_ids_round_trip(repo: vecdr.Repository, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    names = [f"doc-{i}-é✓" for i in rng.permutation(500)]
    vectors = rng.standard_normal((500, D)).astype(np.float32)
    first = vecdr.snapshot(repo, f"parquet:{write_parquet(tmp_path / 'a.parquet', names, vectors)}", collection="docs")
    # Overwrite one id, delete two, add one.
    names2 = names[2:] + ["new-ø"]
    vectors2 = np.concatenate([vectors[2:], rng.standard_normal((1, D)).astype(np.float32)])
    vectors2[0] += 1
    second = vecdr.snapshot(
        repo, f"parquet:{write_parquet(tmp_path / 'b.parquet', names2, vectors2)}", collection="docs"
    )
    assert (second.added, second.changed, second.deleted) == (1, 1, 2)
    vecdr.restore(repo, f"parquet:{tmp_path / 'r2.parquet'}", second.snapshot)
    vecdr.restore(repo, f"parquet:{tmp_path / 'r1.parquet'}", first.snapshot)
    ids2, got2 = read_parquet(tmp_path / "r2.parquet")
    assert pq.read_schema(tmp_path / "r2.parquet").field("id").type == pa.string()
    assert_same_rows((np.array(ids2, dtype=object), got2), (np.array(names2, dtype=object), vectors2))
    ids1, got1 = read_parquet(tmp_path / "r1.parquet")
    assert_same_rows((np.array(ids1, dtype=object), got1), (np.array(names, dtype=object), vectors))


def test_attribute_columns_round_trip_and_count_as_changes(repo: vecdr.Repository, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    n = 300
    ids = np.arange(n, dtype=np.int64) * 11
    vectors = rng.standard_normal((n, D)).astype(np.float32)
    attrs = {
        "title": pa.array([f"title {i}" if i % 7 else None for i in range(n)], pa.string()),
        "year": pa.array(rng.integers(1900, 2030, n), pa.int32()),
        "score": pa.array(rng.random(n), pa.float64()),
    }
    path = write_parquet(tmp_path / "a.parquet", pa.array(ids), vectors, **attrs)
    vecdr.snapshot(repo, f"parquet:{path}", collection="c")

    # Change only attributes of two rows: each is a changed row.
    years = attrs["year"].to_numpy().copy()
    years[5] += 1
    titles = attrs["title"].to_pylist()
    titles[9] = "renamed"
    attrs2 = {**attrs, "year": pa.array(years, pa.int32()), "title": pa.array(titles, pa.string())}
    path2 = write_parquet(tmp_path / "b.parquet", pa.array(ids), vectors, **attrs2)
    second = vecdr.snapshot(repo, f"parquet:{path2}", collection="c")
    assert (second.added, second.changed, second.deleted) == (0, 2, 0)

    out = tmp_path / "restored.parquet"
    vecdr.restore(repo, f"parquet:{out}", second.snapshot)
    table = pq.read_table(out).sort_by("id")
    assert table.column_names == ["id", "vector", "title", "year", "score"]
    expected = pa.table({"id": pa.array(ids), **attrs2}).sort_by("id")
    for name in ("title", "year", "score"):
        assert table.column(name).equals(expected.column(name)), name


def test_changed_attribute_schema_is_refused(repo: vecdr.Repository, tmp_path: Path) -> None:
    vectors = np.ones((10, D), np.float32)
    a = write_parquet(tmp_path / "a.parquet", pa.array(np.arange(10)), vectors, tag=pa.array(["x"] * 10))
    b = write_parquet(tmp_path / "b.parquet", pa.array(np.arange(10)), vectors, tag=pa.array(np.arange(10)))
    vecdr.snapshot(repo, f"parquet:{a}", collection="c")
    before = repo.commits()
    with pytest.raises(SchemaError):
        vecdr.snapshot(repo, f"parquet:{b}", collection="c")
    assert repo.commits() == before


# -- malformed sources -----------------------------------------------------------


def test_vectors_of_differing_lengths_are_refused(repo: vecdr.Repository, tmp_path: Path) -> None:
    path = tmp_path / "ragged.parquet"
    vectors = pa.array([[1.0, 2.0], [3.0, 4.0, 5.0]], pa.list_(pa.float32()))
    pq.write_table(pa.table({"id": pa.array([1, 2], pa.int64()), "vector": vectors}), path)
    with pytest.raises(SchemaError):
        vecdr.snapshot(repo, f"parquet:{path}")
    assert repo.commits() == []


@pytest.mark.parametrize(
    "table",
    [
        pa.table({"id": [1, 2], "embedding": [[1.0], [2.0]]}),  # no vector column
        pa.table({"ident": [1, 2], "vector": pa.array([[1.0], [2.0]], pa.list_(pa.float32()))}),
        pa.table({"id": [1, 2], "vector": pa.array([[1.0], [2.0]], pa.list_(pa.float64()))}),
        pa.table({"id": [1.5, 2.5], "vector": pa.array([[1.0], [2.0]], pa.list_(pa.float32()))}),
    ],
    ids=["no-vector", "no-id", "float64-vectors", "float-ids"],
)
def test_unusable_schemas_are_refused(table: pa.Table, repo: vecdr.Repository, tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    pq.write_table(table, path)
    with pytest.raises(SchemaError):
        vecdr.snapshot(repo, f"parquet:{path}")


def test_a_missing_or_non_parquet_file_is_a_source_error(repo: vecdr.Repository, tmp_path: Path) -> None:
    with pytest.raises(SourceError):
        vecdr.snapshot(repo, f"parquet:{tmp_path / 'absent.parquet'}")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(SourceError):
        vecdr.snapshot(repo, f"parquet:{tmp_path / 'junk.parquet'}")


def test_null_vector_is_refused(repo: vecdr.Repository, tmp_path: Path) -> None:
    path = tmp_path / "nulls.parquet"
    vectors = pa.array([[1.0, 2.0], None], pa.list_(pa.float32()))
    pq.write_table(pa.table({"id": pa.array([1, 2], pa.int64()), "vector": vectors}), path)
    with pytest.raises(SchemaError):
        vecdr.snapshot(repo, f"parquet:{path}")
    assert repo.commits() == []


def test_target_refusal_keeps_the_existing_file(repo: vecdr.Repository, tmp_path: Path) -> None:
    vectors = np.ones((10, D), np.float32)
    snap = vecdr.snapshot(repo, f"parquet:{write_parquet(tmp_path / 'a.parquet', pa.array(np.arange(10)), vectors)}")
    out = tmp_path / "out.parquet"
    out.write_bytes(b"precious")
    with pytest.raises(TargetExistsError):
        vecdr.restore(repo, f"parquet:{out}", snap.snapshot)
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "out.parquet", "repo"]
