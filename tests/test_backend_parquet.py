"""Parquet files of embeddings: the conformance suite, then string ids, attribute
columns, column options and malformed inputs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


# -- a file rewritten while a snapshot reads it -------------------------------------------


def version_table(k: int) -> pa.Table:
    """Version ``k`` of a rewritten file: its own row count, ids and vectors, so any mix of two shows."""
    n = 3000 + 250 * (k % 4)
    ids = np.arange(n, dtype=np.int64) * (1 + k % 3) + k
    vectors = np.full((n, 32), k, np.float32) + np.arange(n, dtype=np.float32)[:, None] / n
    return pa.table({"id": ids, "vector": vectors_to_arrow(vectors), "v": pa.array(np.full(n, k, np.int64))})


def digest(table: pa.Table) -> str:
    import hashlib

    table = table.select(["id", "vector", "v"]).sort_by("id")
    h = hashlib.sha256()
    for name in ("id", "v"):
        h.update(table.column(name).to_numpy().tobytes())
    h.update(vectors_from_arrow(table.column("vector"), 32).tobytes())
    return h.hexdigest()


@pytest.mark.fault("parquet source rewritten while a snapshot reads it ({how})", store="local")
@pytest.mark.parametrize("how", ["replaced by rename", "rewritten in place"])
def test_a_file_rewritten_during_snapshots_is_stored_as_one_version_or_refused(
    how: str, repo: vecdr.Repository, tmp_path: Path, cases: Any
) -> None:
    """A writer keeps rewriting the file (to a new name then renamed over it, or truncating and
    writing the same inode) while snapshots run: each one commits exactly one version the writer
    wrote (every version is logged), or is refused with a SourceError saying the file changed."""
    import threading

    path = tmp_path / "rows.parquet"
    written: dict[str, int] = {}  # digest -> version, for every version the writer wrote

    def write(k: int) -> None:
        table = version_table(k)
        written[digest(table)] = k
        if how == "replaced by rename":
            pq.write_table(table, tmp_path / "next.parquet", row_group_size=400)
            os.replace(tmp_path / "next.parquet", path)
        else:
            pq.write_table(table, path, row_group_size=400)  # truncates and rewrites the same inode

    write(0)
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        k = 1
        try:
            while not stop.is_set():
                write(k)
                k += 1
                stop.wait(0.03 * (k % 3))  # bursts and pauses: some snapshots fall between writes
        except BaseException as exc:  # noqa: BLE001  (reported by the test)
            failures.append(exc)

    thread = threading.Thread(target=writer, daemon=True)
    committed, refused = [], 0
    thread.start()
    try:
        while (len(committed) + refused < 12 or len(written) < 12) and len(committed) + refused < 100:
            try:
                committed.append(vecdr.snapshot(repo, f"parquet:{path}", collection="c").snapshot)
            except SourceError as exc:
                assert "changed while the snapshot read it" in str(exc), exc
                refused += 1
                cases.ok()
    finally:
        stop.set()
        thread.join(30)
    assert not failures, failures
    cases.plan(len(committed) + refused + 1)
    final = vecdr.snapshot(repo, f"parquet:{path}", collection="c")  # the writer has stopped: it must succeed
    for i, snapshot in enumerate([*committed, final.snapshot]):
        out = tmp_path / f"restored-{i}.parquet"
        vecdr.restore(repo, f"parquet:{out}", snapshot)
        assert digest(pq.read_table(out)) in written, f"snapshot {snapshot} holds no version the writer wrote"
        cases.ok()
    assert digest(pq.read_table(tmp_path / f"restored-{len(committed)}.parquet")) == digest(pq.read_table(path))
    assert len(written) >= 12
    print(f"{how}: {len(written)} versions written, {len(committed)} snapshots committed, {refused} refused")
