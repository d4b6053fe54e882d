"""The Milvus backend against a real Milvus Lite: a database file opened in this process,
and a ``milvus-lite server`` the ``vecdr`` commands reach too."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="the milvus extra is not installed")
pytest.importorskip("milvus_lite", reason="the milvus extra is not installed")

from pymilvus import DataType, MilvusClient  # noqa: E402

import vecdr  # noqa: E402
from test_cli import fails, run  # noqa: E402  (the console script, as tests/test_cli.py runs it)
from vecdr.backends.milvus import MilvusSource, MilvusTarget  # noqa: E402
from vecdr.testing.backends import BackendTests, MakeSource, MakeTarget, Rows, make_rows  # noqa: E402

# -- shared Milvus ------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Milvus Lite database for the module, opened in this process (``milvus:PATH.db``)."""
    path = str(tmp_path_factory.mktemp("milvus") / "vecdr.db")
    yield path
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(path)


@pytest.fixture(scope="module")
def lite_client(lite_db: str) -> MilvusClient:
    return MilvusClient(lite_db)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One ``milvus-lite server`` for the module (``milvus://127.0.0.1:PORT``)."""
    from vecdr.testing.milvus import start

    running = start(tmp_path_factory.mktemp("milvus-server") / "data")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def server_client(server: Any) -> MilvusClient:
    return server.client()


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def create_plain(client: MilvusClient, name: str, dimension: int, index: str = "FLAT", pk: str = "INT64") -> None:
    """A collection of (pk, vector) with one vector index."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    if pk == "INT64":
        schema.add_field("pk", DataType.INT64, is_primary=True)
    else:
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=128)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=dimension)
    params = client.prepare_index_params()
    params.add_index("embedding", index_type=index, metric_type="L2")
    client.create_collection(name, schema=schema, index_params=params)


def insert_rows(client: MilvusClient, name: str, ids: np.ndarray, vectors: np.ndarray, **extra: Any) -> None:
    rows = [{"pk": i, "embedding": v} for i, v in zip(ids.tolist(), vectors.tolist(), strict=True)]
    for start in range(0, len(rows), 1000):
        client.insert(name, rows[start : start + 1000], **extra)


def read_rows(client: MilvusClient, name: str, vector: str = "embedding") -> Rows:
    """(ids, vectors) of a collection, read with pymilvus alone (not vecdr)."""
    client.load_collection(name)
    it = client.query_iterator(name, batch_size=1000, output_fields=["pk", vector])
    ids: list[int] = []
    vectors: list[list[float]] = []
    while page := it.next():
        ids += [row["pk"] for row in page]
        vectors += [row[vector] for row in page]
    it.close()
    d = client.describe_collection(name)
    dim = next(f["params"]["dim"] for f in d["fields"] if f["name"] == vector)
    return np.asarray(ids, np.int64), np.asarray(vectors, np.float32).reshape(-1, dim)


def run_all(calls: list[tuple[str, ...]]) -> list[Any]:
    """Several ``vecdr`` commands at once: each mostly waits on its imports and on Milvus."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        return list(pool.map(lambda args: run(*args), calls))


def folder_collection(folder: Path) -> str:
    return "t_" + hashlib.sha1(str(folder).encode()).hexdigest()[:12]


# -- the conformance suite ------------------------------------------------------------


class TestMilvusLiteFile(BackendTests):
    """``milvus:PATH.db``: Milvus Lite in this process."""

    @pytest.fixture
    def make_source(self, lite_db: str, lite_client: MilvusClient) -> MakeSource:
        def make(ids: np.ndarray, vectors: np.ndarray) -> MilvusSource:
            name = unique("src")
            create_plain(lite_client, name, vectors.shape[1])
            insert_rows(lite_client, name, ids, vectors)
            return MilvusSource(lite_db, collection=name)

        return make

    @pytest.fixture
    def make_target(self, lite_db: str, lite_client: MilvusClient) -> MakeTarget:
        def make(folder: Path) -> tuple[MilvusTarget, Callable[[], Rows]]:
            name = folder_collection(folder)
            return MilvusTarget(lite_db, collection=name), lambda: read_rows(lite_client, name)

        return make


@pytest.mark.slow  # the same suite as above through another transport; the server path is tested below too
@pytest.mark.filterwarnings("ignore:.*returned no read timestamp")
class TestMilvusServer(BackendTests):
    """``milvus://host:port``: a Milvus Lite server in another process."""

    @pytest.fixture
    def make_source(self, server: Any, server_client: MilvusClient) -> MakeSource:
        def make(ids: np.ndarray, vectors: np.ndarray) -> MilvusSource:
            name = unique("src")
            create_plain(server_client, name, vectors.shape[1])
            insert_rows(server_client, name, ids, vectors)
            return vecdr.backends.registry.open_source(server.uri(name))  # type: ignore[return-value]

        return make

    @pytest.fixture
    def make_target(self, server: Any, server_client: MilvusClient) -> MakeTarget:
        def make(folder: Path) -> tuple[MilvusTarget, Callable[[], Rows]]:
            name = folder_collection(folder)
            target = vecdr.backends.registry.open_target(server.uri(name))
            return target, lambda: read_rows(server_client, name)  # type: ignore[return-value]

        return make



# -- schema round trips ---------------------------------------------------------------


def create_rich(client: MilvusClient, name: str, auto_id: bool = True) -> None:
    """Every supported field type, nullable and not, a default, the dynamic field,
    two vector fields, partitions and indexes with parameters."""
    s = MilvusClient.create_schema(auto_id=auto_id, enable_dynamic_field=True, description="every type")
    s.add_field("pk", DataType.INT64, is_primary=True)
    s.add_field("emb", DataType.FLOAT_VECTOR, dim=4)
    s.add_field("emb2", DataType.FLOAT_VECTOR, dim=3, description="a second vector")
    s.add_field("b", DataType.BOOL, nullable=True)
    s.add_field("i8", DataType.INT8, nullable=True)
    s.add_field("i16", DataType.INT16)
    s.add_field("i32", DataType.INT32, default_value=7)
    s.add_field("i64", DataType.INT64, nullable=True)
    s.add_field("f", DataType.FLOAT, nullable=True)
    s.add_field("d", DataType.DOUBLE)
    s.add_field("s", DataType.VARCHAR, max_length=20, nullable=True)
    s.add_field("j", DataType.JSON, nullable=True)
    s.add_field("arr", DataType.ARRAY, element_type=DataType.INT64, max_capacity=5, nullable=True)
    s.add_field("sarr", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=5, max_length=10)
    s.add_field("ts", DataType.TIMESTAMPTZ, nullable=True)
    s.add_field("geo", DataType.GEOMETRY, nullable=True)
    p = client.prepare_index_params()
    # Nested "params": the form Milvus Lite keeps (it ignores flat keys).
    p.add_index("emb", index_type="HNSW", metric_type="COSINE", params={"params": {"M": 8, "efConstruction": 64}})
    p.add_index("emb2", index_type="FLAT", metric_type="L2")
    p.add_index("s", index_type="INVERTED")
    client.create_collection(name, schema=s, index_params=p)
    client.create_partition(name, "p1")
    client.create_partition(name, "empty")
    rng = np.random.default_rng(5)
    rows = []
    for i in range(60):
        rows.append({
            "emb": rng.standard_normal(4).tolist(), "emb2": rng.standard_normal(3).tolist(),
            "b": None if i % 4 == 0 else bool(i % 2), "i8": None if i % 5 == 0 else i - 30, "i16": -i,
            **({} if i % 3 else {"i32": i}), "i64": None if i % 2 else i * 10**12, "f": None if i % 6 == 0 else i / 4,
            "d": i / 3, "s": None if i % 7 == 0 else f"s\"{i}\\é", "j": None if i % 8 == 0 else {"k": i, "l": [i]},
            "arr": None if i % 9 == 0 else list(range(i % 5)), "sarr": [f"x{i}"] * (i % 3),
            "ts": None if i % 10 == 0 else f"2024-01-{1 + i % 28:02d}T03:04:05Z",
            "geo": None if i % 11 == 0 else f"POINT ({i} {i + 1})",
            **({"extra": i, "tag": f"t{i}"} if i % 4 == 1 else {}),
        })  # fmt: skip
    rows[0]["emb"] = [-0.0, 1e-45, 1e18, -1.5]  # sign, subnormal and extreme bits must survive
    client.insert(name, rows[:30])
    client.insert(name, rows[30:], partition_name="p1")
    client.delete(name, filter="i16 in [-3, -40]")  # 58 rows, auto ids up to 60


def describe_plain(client: MilvusClient, name: str) -> dict[str, Any]:
    """What should survive a restore: schema, partitions, indexes (names of the collection aside)."""
    d = client.describe_collection(name)
    fields = [{k: str(v) for k, v in f.items() if k != "field_id"} for f in d["fields"]]
    indexes = {}
    for index in client.list_indexes(name):
        desc = client.describe_index(name, index)
        indexes[desc["field_name"]] = {k: desc.get(k) for k in ("index_type", "metric_type", "params")}
    keep = ("auto_id", "description", "enable_dynamic_field", "num_partitions", "consistency_level_name")
    return {
        "fields": fields,
        **{k: d.get(k) for k in keep},
        "partitions": sorted(client.list_partitions(name)),
        "indexes": indexes,
    }


def all_rows(client: MilvusClient, name: str) -> dict[str, list[dict[str, Any]]]:
    """Every row with every field, by partition, ordered by primary key."""
    client.load_collection(name)
    out = {}
    for partition in client.list_partitions(name):
        rows = client.query(name, filter="", output_fields=["*"], partition_names=[partition], limit=16384)
        out[partition] = sorted((dict(r) for r in rows), key=lambda r: r["pk"])
    return out


def test_schema_and_rows_round_trip_every_type(repo: vecdr.Repository, lite_db: str, lite_client: MilvusClient) -> None:
    name = unique("rich")
    create_rich(lite_client, name)
    snap = vecdr.snapshot(repo, f"milvus:{lite_db}?collection={name}")
    assert snap.rows == 58
    manifest = vecdr.engines.open_snapshot(repo)
    recorded = manifest.index
    assert recorded["engine"] == "milvus" and recorded["vector"] == "emb" and recorded["auto_id"] is True
    assert sorted(recorded["partitions"]) == ["_default", "empty", "p1"]
    assert recorded["portable"] == {"kind": "hnsw", "metric": "cosine", "m": 8, "ef_construction": 64}
    indexes = {i["field"]: i["index_type"] for i in recorded["indexes"]}
    assert indexes == {"emb": "HNSW", "emb2": "FLAT", "s": "INVERTED"}
    names = manifest.attributes.names
    assert names[:2] == ["emb2", "b"] and names[-2:] == ["$meta", "$partition"]
    assert str(manifest.attributes.field("emb2").type) == "fixed_size_list<element: float not null>[3]"

    restored = unique("rich_copy")
    with pytest.warns(UserWarning, match="auto_id keys up to .* may reuse a restored id"):
        vecdr.restore(repo, f"milvus:{lite_db}?collection={restored}", "latest")
    assert describe_plain(lite_client, restored) == describe_plain(lite_client, name)
    assert all_rows(lite_client, restored) == all_rows(lite_client, name)
    bits = np.asarray(lite_client.get(restored, ids=[all_rows(lite_client, name)["_default"][0]["pk"]])[0]["emb"],
                      np.float32).view(np.uint32)  # fmt: skip
    assert bits.tolist() == np.asarray([-0.0, 1e-45, 1e18, -1.5], np.float32).view(np.uint32).tolist()
    # Nothing left over: no staging collection.
    assert not [c for c in lite_client.list_collections() if "_vecdr_" in c]


def test_varchar_keys_page_in_order_with_awkward_strings(
    repo: vecdr.Repository, lite_db: str, lite_client: MilvusClient
) -> None:
    name = unique("strs")
    create_plain(lite_client, name, 3, pk="VARCHAR")
    keys = [f'k"{i:03d}\\x' for i in range(40)] + ["é", "", "a b", "'single'"]
    vectors = np.arange(len(keys) * 3, dtype=np.float32).reshape(-1, 3)
    lite_client.insert(name, [{"pk": k, "embedding": v} for k, v in zip(keys, vectors.tolist(), strict=True)])
    source = MilvusSource(lite_db, collection=name)
    try:
        assert source.info().id_type == "string"
        pages = list(source.scan(7))  # pages of 7 rows: the cursor crosses quotes and backslashes
        assert {len(p) for p in pages[:-1]} == {7}
        got = [k for p in pages for k in p.column("id").to_pylist()]
        assert sorted(got) == sorted(keys) and len(got) == len(keys)
        assert sorted(source.ids().to_pylist()) == sorted(keys)
    finally:
        source.close()
    vecdr.snapshot(repo, f"milvus:{lite_db}?collection={name}")
    restored = unique("strs_copy")
    vecdr.restore(repo, f"milvus:{lite_db}?collection={restored}", "latest")
    assert describe_plain(lite_client, restored) == describe_plain(lite_client, name)
    assert all_rows(lite_client, restored) == all_rows(lite_client, name)


def test_vector_option_picks_the_vector_and_keeps_the_other(
    repo: vecdr.Repository, lite_db: str, lite_client: MilvusClient
) -> None:
    name = unique("two")
    create_rich(lite_client, name)
    snap = vecdr.snapshot(repo, f"milvus:{lite_db}?collection={name}&vector=emb2", collection="two")
    manifest = vecdr.engines.open_snapshot(repo, snap.snapshot)
    assert manifest.dimension == 3 and manifest.index["vector"] == "emb2"
    assert str(manifest.attributes.field("emb").type) == "fixed_size_list<element: float not null>[4]"
    restored = unique("two_copy")
    with pytest.warns(UserWarning, match="auto_id keys up to"):  # 58 rows, ids up to 60
        vecdr.restore(repo, f"milvus:{lite_db}?collection={restored}", snap.snapshot)
    assert all_rows(lite_client, restored) == all_rows(lite_client, name)
    with pytest.raises(vecdr.errors.NotFoundInBackendError, match="no field 'nope'"):
        MilvusSource(lite_db, collection=name, vector="nope")
    with pytest.raises(vecdr.errors.SchemaError, match="not a FLOAT_VECTOR"):
        MilvusSource(lite_db, collection=name, vector="d")


def test_partition_key_collection_round_trip(repo: vecdr.Repository, lite_db: str, lite_client: MilvusClient) -> None:
    name = unique("pkey")
    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    s.add_field("pk", DataType.INT64, is_primary=True)
    s.add_field("tenant", DataType.VARCHAR, max_length=16, is_partition_key=True)
    s.add_field("embedding", DataType.FLOAT_VECTOR, dim=4)
    p = lite_client.prepare_index_params()
    p.add_index("embedding", index_type="FLAT", metric_type="IP")
    lite_client.create_collection(name, schema=s, index_params=p, num_partitions=4)
    rng = np.random.default_rng(1)
    lite_client.insert(name, [{"pk": i, "tenant": f"t{i % 3}", "embedding": rng.standard_normal(4).tolist()}
                              for i in range(50)])  # fmt: skip
    snap = vecdr.snapshot(repo, f"milvus:{lite_db}?collection={name}")
    manifest = vecdr.engines.open_snapshot(repo, snap.snapshot)
    assert manifest.index["partition_key"] == "tenant"
    assert manifest.index["num_partitions"] == lite_client.describe_collection(name)["num_partitions"]
    assert "$partition" not in manifest.attributes.names  # the key decides the partition
    restored = unique("pkey_copy")
    vecdr.restore(repo, f"milvus:{lite_db}?collection={restored}", snap.snapshot)
    assert describe_plain(lite_client, restored) == describe_plain(lite_client, name)
    assert all_rows(lite_client, restored) == all_rows(lite_client, name)


# -- incremental snapshots and the point in time --------------------------------------


def test_diff_snapshot_after_changes_restores_both_states(
    repo: vecdr.Repository, lite_db: str, lite_client: MilvusClient
) -> None:
    name = unique("inc")
    create_plain(lite_client, name, 8)
    lite_client.create_partition(name, "p1")
    rng = np.random.default_rng(2)
    ids, vectors = np.arange(400, dtype=np.int64), rng.standard_normal((400, 8)).astype(np.float32)
    insert_rows(lite_client, name, ids[:300], vectors[:300])
    insert_rows(lite_client, name, ids[300:], vectors[300:], partition_name="p1")
    uri = f"milvus:{lite_db}?collection={name}"
    first = vecdr.snapshot(repo, uri)
    before = all_rows(lite_client, name)

    changed = rng.standard_normal((10, 8)).astype(np.float32)
    lite_client.upsert(name, [{"pk": i, "embedding": v} for i, v in zip(range(10), changed.tolist(), strict=True)])
    lite_client.delete(name, ids=list(range(10, 20)))
    insert_rows(lite_client, name, np.arange(1000, 1005), rng.standard_normal((5, 8)).astype(np.float32))
    lite_client.delete(name, ids=[20])  # moves to another partition, vector unchanged
    insert_rows(lite_client, name, ids[20:21], vectors[20:21], partition_name="p1")
    after = all_rows(lite_client, name)

    second = vecdr.snapshot(repo, uri)
    assert (second.mode, second.added, second.changed, second.deleted) == ("diff", 5, 11, 10)
    assert second.bytes_written < first.bytes_written / 3
    for snapshot, state in ((second.snapshot, after), (first.snapshot, before)):
        restored = unique("inc_copy")
        vecdr.restore(repo, f"milvus:{lite_db}?collection={restored}", snapshot)
        assert all_rows(lite_client, restored) == state


def test_a_lite_file_cannot_be_written_by_another_process_during_a_snapshot(
    repo: vecdr.Repository, lite_db: str, lite_client: MilvusClient
) -> None:
    """Milvus Lite keeps no MVCC versions; a snapshot of a Milvus Lite file is one point in
    time because the process reading it holds the database, and no other process can open
    it to write meanwhile."""
    name = unique("locked")
    create_plain(lite_client, name, 4)
    insert_rows(lite_client, name, np.arange(50), np.ones((50, 4), np.float32))
    source = MilvusSource(lite_db, collection=name)
    try:
        pages = source.scan(20)
        next(pages)  # mid-snapshot
        proc = run("snapshot", str(repo.url), f"milvus:{lite_db}?collection={name}")
        fails(proc, "another process has the database open")
        assert sum(len(p) for p in pages) == 30
    finally:
        source.close()


def test_a_server_without_mvcc_is_snapshotted_with_a_warning(repo: vecdr.Repository, server: Any,
                                                             server_client: MilvusClient) -> None:  # fmt: skip
    name = unique("nomvcc")
    create_plain(server_client, name, 4)
    insert_rows(server_client, name, np.arange(30), np.ones((30, 4), np.float32))
    proc = run("snapshot", str(repo.url), server.uri(name), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rows"] == 30
    assert "returned no read timestamp (Milvus Lite keeps no MVCC versions)" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# -- across engines --------------------------------------------------------------------


def create_pg_compatible(client: MilvusClient, name: str) -> None:
    """Attributes every engine can hold: scalars, JSON, a second vector, the dynamic field."""
    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
    s.add_field("pk", DataType.INT64, is_primary=True)
    s.add_field("embedding", DataType.FLOAT_VECTOR, dim=6)
    s.add_field("title", DataType.VARCHAR, max_length=32, nullable=True)
    s.add_field("score", DataType.FLOAT)
    s.add_field("n", DataType.INT32, nullable=True)
    s.add_field("ok", DataType.BOOL)
    s.add_field("meta", DataType.JSON, nullable=True)
    p = client.prepare_index_params()
    p.add_index("embedding", index_type="HNSW", metric_type="L2", params={"params": {"M": 12, "efConstruction": 48}})
    client.create_collection(name, schema=s, index_params=p)
    client.create_partition(name, "p1")
    rng = np.random.default_rng(9)
    rows = [{"pk": i * 7, "embedding": rng.standard_normal(6).tolist(), "title": None if i % 5 == 0 else f"t{i}",
             "score": i / 8, "n": None if i % 3 == 0 else i, "ok": i % 2 == 0,
             "meta": None if i % 4 == 0 else {"i": i}, **({"dyn": i} if i % 6 == 0 else {})}
            for i in range(120)]  # fmt: skip
    client.insert(name, rows[:80])
    client.insert(name, rows[80:], partition_name="p1")


def test_a_milvus_snapshot_restores_into_faiss_and_pgvector_and_back(
    repo: vecdr.Repository, lite_db: str, lite_client: MilvusClient, pg: Any, tmp_path: Path
) -> None:
    import faiss

    from vecdr.testing.backends import assert_same_rows, faiss_rows

    name = unique("xeng")
    create_pg_compatible(lite_client, name)
    rows = read_rows(lite_client, name)
    vecdr.snapshot(repo, f"milvus:{lite_db}?collection={name}", collection="m")

    vecdr.restore(repo, f"faiss:{tmp_path / 'm.faiss'}", "latest", collection="m")
    index = faiss.read_index(str(tmp_path / "m.faiss"))
    assert_same_rows(faiss_rows(index), rows)
    assert faiss.downcast_index(faiss.downcast_index(index).index).hnsw.nb_neighbors(1) == 12

    vecdr.restore(repo, pg.uri("items"), "latest", collection="m")
    with pg.connect() as conn:
        got = conn.execute('SELECT id, title, score, n, ok, meta, "$partition" FROM items ORDER BY id').fetchall()
        indexdef = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexdef LIKE '%hnsw%'").fetchone()[0]
    assert len(got) == 120 and got[1] == (7, "t1", 0.125, 1, False, '{"i": 1}', "_default")
    assert got[0][1:4] == (None, 0.0, None) and got[-1][-1] == "p1"
    assert "m='12'" in indexdef and "ef_construction='48'" in indexdef

    # ... and from PostgreSQL back into Milvus: partitions and the dynamic field come back too.
    vecdr.snapshot(repo, pg.uri("items"), collection="pg")
    back = unique("back")
    vecdr.restore(repo, f"milvus:{lite_db}?collection={back}&id=pk&vector=embedding", "latest", collection="pg")
    assert sorted(lite_client.list_partitions(back)) == ["_default", "p1"]
    original, returned = all_rows(lite_client, name), all_rows(lite_client, back)
    assert [r["pk"] for r in returned["p1"]] == [r["pk"] for r in original["p1"]]
    first = returned["_default"][1]
    # JSON travels through PostgreSQL as text, and comes back as a VARCHAR.
    assert {k: first[k] for k in ("pk", "title", "n", "ok", "meta")} == {
        "pk": 7, "title": "t1", "n": 1, "ok": False, "meta": '{"i": 1}'}  # fmt: skip
    assert returned["_default"][0]["dyn"] == 0  # the dynamic field's keys


def test_faiss_and_pgvector_snapshots_restore_into_milvus(
    repo: vecdr.Repository, lite_db: str, lite_client: MilvusClient, pg: Any, tmp_path: Path
) -> None:
    import faiss

    from vecdr.testing.backends import assert_same_rows, make_rows

    ids, vectors = make_rows(500, 12, seed=3)
    index = faiss.IndexIDMap2(faiss.IndexHNSWFlat(12, 16))
    index.add_with_ids(vectors, ids)
    faiss.write_index(index, str(tmp_path / "f.faiss"))
    vecdr.snapshot(repo, f"faiss:{tmp_path / 'f.faiss'}", collection="f")
    name = unique("from_faiss")
    vecdr.restore(repo, f"milvus:{lite_db}?collection={name}", "latest", collection="f")
    d = lite_client.describe_collection(name)
    assert [(f["name"], DataType(f["type"]).name) for f in d["fields"]] == [("id", "INT64"),
                                                                           ("vector", "FLOAT_VECTOR")]  # fmt: skip
    desc = lite_client.describe_index(name, "vector")
    assert (desc["index_type"], desc["metric_type"], desc["params"]) == ("HNSW", "L2", {"M": 16, "efConstruction": 40})
    got = lite_client.query(name, filter="", output_fields=["id", "vector"], limit=16384)
    assert_same_rows(([r["id"] for r in got], [r["vector"] for r in got]), (ids, vectors))

    with pg.connect() as conn:
        conn.execute("CREATE TABLE docs (id bigint PRIMARY KEY, embedding vector(3) NOT NULL, "
                     "name text, rank integer NOT NULL, weight real, flag boolean, extra jsonb)")  # fmt: skip
        conn.execute("INSERT INTO docs SELECT i, ARRAY[i, -i, 0.5]::vector, CASE WHEN i % 4 = 0 THEN NULL "
                     "ELSE 'n' || i END, i * 2, i / 3.0, i % 2 = 0, jsonb_build_object('i', i) "
                     "FROM generate_series(1, 40) i")  # fmt: skip
        conn.execute("CREATE INDEX ON docs USING hnsw (embedding vector_cosine_ops) WITH (m = 8, ef_construction = 32)")
    vecdr.snapshot(repo, pg.uri("docs"), collection="docs")
    name = unique("from_pg")
    vecdr.restore(repo, f"milvus:{lite_db}?collection={name}", "latest", collection="docs")
    d = lite_client.describe_collection(name)
    types = {f["name"]: (DataType(f["type"]).name, f.get("nullable", False)) for f in d["fields"]}
    assert types == {"id": ("INT64", False), "vector": ("FLOAT_VECTOR", False), "name": ("VARCHAR", True),
                     "rank": ("INT32", False), "weight": ("FLOAT", True), "flag": ("BOOL", True),
                     "extra": ("JSON", True)}  # fmt: skip
    desc = lite_client.describe_index(name, "vector")
    assert (desc["index_type"], desc["metric_type"]) == ("HNSW", "COSINE")
    assert desc["params"] == {"M": 8, "efConstruction": 32}
    got = {r["id"]: r for r in lite_client.query(name, filter="", output_fields=["*"], limit=100)}
    assert len(got) == 40 and got[4]["name"] is None and got[3]["name"] == "n3" and got[3]["extra"] == {"i": 3}
    assert (got[3]["rank"], got[3]["flag"], got[3]["vector"]) == (6, False, [3.0, -3.0, 0.5])


def test_string_primary_keys_restore_where_the_target_allows(
    repo: vecdr.Repository, lite_db: str, lite_client: MilvusClient, pg: Any, tmp_path: Path
) -> None:
    name = unique("strpk")
    create_plain(lite_client, name, 4, pk="VARCHAR")
    lite_client.insert(name, [{"pk": f"doc-{i}", "embedding": [i, 0, 0, 1]} for i in range(20)])
    vecdr.snapshot(repo, f"milvus:{lite_db}?collection={name}", collection="s")
    vecdr.restore(repo, pg.uri("strs"), "latest", collection="s")
    with pg.connect() as conn:
        assert conn.execute("SELECT count(*), min(id) FROM strs").fetchone() == (20, "doc-0")
    with pytest.raises(vecdr.errors.SchemaError, match="FAISS ids are integers"):
        vecdr.restore(repo, f"faiss:{tmp_path / 's.faiss'}", "latest", collection="s")
    fails(run("restore", str(repo.url), "latest", f"faiss:{tmp_path / 's.faiss'}", "-c", "s"),
          "FAISS ids are integers")  # fmt: skip
    assert not (tmp_path / "s.faiss").exists()


# -- bad input -------------------------------------------------------------------------


def closed_port() -> int:
    from vecdr.testing.milvus import free_port

    return free_port()


@pytest.fixture
def bad(tmp_path: Path, server: Any, server_client: MilvusClient) -> dict[str, tuple[str, type[Exception], str]]:
    """Each bad source: its URI, the error it is, and what the message says."""
    name = unique("sparse")
    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    s.add_field("pk", DataType.INT64, is_primary=True)
    s.add_field("embedding", DataType.FLOAT_VECTOR, dim=4)
    s.add_field("words", DataType.SPARSE_FLOAT_VECTOR)
    p = server_client.prepare_index_params()
    p.add_index("embedding", index_type="FLAT", metric_type="L2")
    p.add_index("words", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    server_client.create_collection(name, schema=s, index_params=p)
    (tmp_path / "file.db").write_text("not a database")
    (tmp_path / "folder.db").mkdir()
    (tmp_path / "folder.db" / "notes.txt").write_text("mine")
    errors = vecdr.errors
    return {
        "unreachable": (f"milvus://127.0.0.1:{closed_port()}?collection=c", errors.BackendConnectionError,
                        "cannot connect to milvus://127.0.0.1:"),
        "missing collection": (server.uri("nope"), errors.NotFoundInBackendError, "no collection 'nope'"),
        "unsupported field": (server.uri(name), errors.SchemaError,
                              "'words' of collection"),
        "a file, not a database": (f"milvus:{tmp_path / 'file.db'}?collection=c", errors.BackendConnectionError,
                                   "is not a Milvus Lite database (a file"),
        "a folder, not a database": (f"milvus:{tmp_path / 'folder.db'}?collection=c",
                                     errors.BackendConnectionError, "is not a Milvus Lite database (a folder"),
        "no database": (f"milvus:{tmp_path / 'none.db'}?collection=c", errors.NotFoundInBackendError,
                        "no Milvus Lite database at"),
        "no collection named": (f"milvus:{tmp_path / 'x.db'}", errors.UsageError, "needs the collection"),
        "not a .db path": (f"milvus:{tmp_path / 'x.sqlite'}?collection=c", errors.UsageError, "ending in .db"),
    }  # fmt: skip


def test_bad_sources_are_typed_errors_and_one_line_cli_errors(
    repo: vecdr.Repository, bad: dict[str, tuple[str, type[Exception], str]], tmp_path: Path
) -> None:
    for case, (uri, error, needle) in bad.items():
        with pytest.raises(error, match=None) as caught:
            vecdr.snapshot(repo, uri)
        assert needle in str(caught.value), (case, str(caught.value))
        assert "\n" not in str(caught.value)
    with pytest.raises(vecdr.errors.SchemaError) as caught:
        vecdr.snapshot(repo, bad["unsupported field"][0])
    assert "SPARSE_FLOAT_VECTOR" in str(caught.value) and "not yet supported" in str(caught.value)
    procs = run_all([("snapshot", str(repo.url), uri) for uri, _, _ in bad.values()])
    for proc, (_, _, needle) in zip(procs, bad.values(), strict=True):
        fails(proc, needle)
    # Nothing was made where nothing was asked: no database at the missing path, none in the folder.
    assert not (tmp_path / "none.db").exists()
    assert sorted(p.name for p in (tmp_path / "folder.db").iterdir()) == ["notes.txt"]


def test_a_dimension_mismatch_is_a_typed_error(
    repo: vecdr.Repository, server: Any, server_client: MilvusClient
) -> None:
    narrow, wide = unique("d4"), unique("d8")
    create_plain(server_client, narrow, 4)
    create_plain(server_client, wide, 8)
    insert_rows(server_client, narrow, np.arange(5), np.ones((5, 4), np.float32))
    insert_rows(server_client, wide, np.arange(5), np.ones((5, 8), np.float32))
    with pytest.warns(UserWarning):
        vecdr.snapshot(repo, server.uri(narrow), collection="c")
    with pytest.raises(vecdr.errors.DimensionMismatchError, match="holds 4-dimensional vectors"):
        vecdr.snapshot(repo, server.uri(wide), collection="c")
    fails(run("snapshot", str(repo.url), server.uri(wide), "-c", "c"), "holds 4-dimensional vectors")


def test_bad_targets_are_typed_errors(repo: vecdr.Repository, server: Any, server_client: MilvusClient,
                                      tmp_path: Path) -> None:  # fmt: skip
    name = unique("tsrc")
    create_plain(server_client, name, 4)
    insert_rows(server_client, name, np.arange(5), np.ones((5, 4), np.float32))
    with pytest.warns(UserWarning):
        vecdr.snapshot(repo, server.uri(name))
    (tmp_path / "file.db").write_text("not a database")
    cases = {
        f"milvus://127.0.0.1:{closed_port()}?collection=c": (vecdr.errors.BackendConnectionError, "cannot connect"),
        server.uri(name): (vecdr.errors.TargetExistsError, "already exists"),
        server.uri("bad-name"): (vecdr.errors.UsageError, "not a valid Milvus collection name"),
        f"milvus:{tmp_path / 'file.db'}?collection=c": (vecdr.errors.BackendConnectionError, "not a Milvus Lite"),
        f"milvus:{tmp_path / 'no' / 'x.db'}?collection=c": (vecdr.errors.NotFoundInBackendError, "does not exist"),
        server.uri("ok") + "&bogus=1": (vecdr.errors.UsageError, "take no option bogus"),
    }
    for uri, (error, needle) in cases.items():
        with pytest.raises(error, match=needle):
            vecdr.restore(repo, uri, "latest")
    for proc, (_, needle) in zip(run_all([("restore", str(repo.url), "latest", uri) for uri in cases]),
                                 cases.values(), strict=True):  # fmt: skip
        fails(proc, needle)
    assert not server_client.has_collection("ok")


def test_a_failed_restore_drops_what_it_made_and_keeps_the_old_collection(
    repo: vecdr.Repository, server: Any, server_client: MilvusClient, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vecdr.backends.milvus import target as target_module
    from vecdr.format.segment import vectors_to_arrow

    n = 600
    texts = [f"row {i}" for i in range(n)]
    table = pa.table({"id": pa.array(np.arange(n), pa.int64()),
                      "vector": vectors_to_arrow(np.ones((n, 4), np.float32)), "text": texts})  # fmt: skip
    pq.write_table(table, tmp_path / "good.parquet")
    texts[500] = "x" * 70_000  # longer than any Milvus VARCHAR: refused by Milvus, late in the restore
    pq.write_table(table.set_column(2, "text", pa.array(texts)), tmp_path / "bad.parquet")
    good = vecdr.snapshot(repo, f"parquet:{tmp_path / 'good.parquet'}", collection="good")
    bad_snap = vecdr.snapshot(repo, f"parquet:{tmp_path / 'bad.parquet'}", collection="bad")
    existing = unique("kept")
    vecdr.restore(repo, server.uri(existing), good.snapshot)
    before = set(server_client.list_collections())

    monkeypatch.setattr(target_module, "INSERT_BATCH_BYTES", 2000)  # many inserts succeed before the bad one
    for force in (False, True):
        target = server.uri(existing if force else unique("fresh"))
        with pytest.raises(vecdr.errors.TargetError, match="inserting into") as caught:
            vecdr.restore(repo, target, bad_snap.snapshot, force=force)
        assert "max_length" in str(caught.value)
        assert set(server_client.list_collections()) == before
    assert server_client.query(existing, output_fields=["count(*)"])[0]["count(*)"] == n
    fails(run("restore", str(repo.url), bad_snap.snapshot, server.uri(existing), "--force"), "max_length")
    assert set(server_client.list_collections()) == before


# -- URIs and secrets -------------------------------------------------------------------


def test_uri_forms() -> None:
    from vecdr.backends.milvus.uri import endpoint

    lite = endpoint("data/x.db", "milvus:data/x.db", None, None, collection="c")
    assert lite.lite_path is not None and lite.lite_path.endswith("/data/x.db")
    assert lite.shown == "milvus:data/x.db?collection=c"
    plain = endpoint("//h:19531", "milvus+http://h:19531", "tok", None, collection="c")
    assert (plain.address, plain.shown, plain.token) == ("http://h:19531", "milvus+http://h:19531?collection=c", "tok")
    tls = endpoint("milvus+https://user:pw@cloud.example/prod", None, None, None, collection="c")
    assert (tls.address, tls.token, tls.db) == ("https://cloud.example:19530", "user:pw", "prod")
    assert tls.shown == "milvus+https://cloud.example:19530?db=prod&collection=c" and "pw" not in repr(tls)
    for path, uri in (("x.db", "milvus+https:x.db"), ("x.sqlite", "milvus:x.sqlite"), ("//:1", "milvus://:1")):
        with pytest.raises(vecdr.errors.UsageError):
            endpoint(path, uri, None, None)


SECRET = "tok-Secret-9f3k"
ENV_SECRET = "env-Secret-7q2"


def test_tokens_appear_nowhere(repo: vecdr.Repository, server: Any, server_client: MilvusClient,
                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Milvus Lite ignores tokens, so any token connects; it must never be shown or stored."""
    name = unique("tok")
    create_plain(server_client, name, 4)
    insert_rows(server_client, name, np.arange(20), np.ones((20, 4), np.float32))
    r = str(repo.url)
    with_param = server.uri(name) + f"&token={SECRET}"
    in_authority = with_param.replace("milvus://", f"milvus://root:{SECRET}@").replace(f"&token={SECRET}", "")
    copy = server.uri(unique("tok_copy")) + f"&token={SECRET}"
    outputs = [run("snapshot", r, with_param, "--json"), run("snapshot", r, in_authority, "--json")]
    outputs += run_all([("show", r, "latest", "--json"), ("restore", r, "latest", copy, "--json")])
    outputs.append(run("snapshot", r, server.uri(name), "--json", env={"VECDR_MILVUS_TOKEN": ENV_SECRET}))
    for proc in outputs:
        assert proc.returncode == 0, proc.stderr
    assert "milvus://127.0.0.1:" in outputs[3].stdout  # the URI is shown, without its token
    failures = run_all([("snapshot", r, f"milvus://127.0.0.1:{closed_port()}?collection=c&token={SECRET}"),
                        ("snapshot", r, with_param.replace(name, "missing")),
                        ("restore", r, "latest", copy)])  # fmt: skip  (the last one: exists)
    failures.append(run("snapshot", r, server.uri("missing"), env={"VECDR_MILVUS_TOKEN": ENV_SECRET}))
    for proc in failures:
        fails(proc)
    monkeypatch.setenv("VECDR_MILVUS_TOKEN", ENV_SECRET)
    errors = []
    for uri in (f"milvus://127.0.0.1:{closed_port()}?collection=c&token={SECRET}", server.uri("missing")):
        with pytest.raises(vecdr.errors.VecdrError) as caught:
            vecdr.snapshot(repo, uri)
        errors.append(f"{caught.value} {caught.value!r}")
    text = "".join(p.stdout + p.stderr for p in outputs + failures) + "".join(errors)
    for secret in (SECRET, ENV_SECRET):
        assert secret not in text
        stored = [p for p in Path(repo.url).rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
        assert stored == []


def test_cli_round_trip(repo: vecdr.Repository, server: Any, server_client: MilvusClient) -> None:
    name = unique("cli")
    create_pg_compatible(server_client, name)
    snap = json.loads(run("snapshot", str(repo.url), server.uri(name), "--json").stdout)
    assert (snap["mode"], snap["rows"]) == ("full", 120)
    copy = unique("cli_copy")
    proc = run("restore", str(repo.url), "latest", server.uri(copy), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rows"] == 120
    assert all_rows(server_client, copy) == all_rows(server_client, name)


def test_a_drill_restores_into_a_scratch_collection_and_drops_it(
    repo: vecdr.Repository, lite_db: str, lite_client: MilvusClient
) -> None:
    from vecdr.format.quality import decode_quality
    from vecdr.policy import Objectives

    name = unique("drilled")
    create_plain(lite_client, name, 16, index="HNSW")
    ids, vectors = make_rows(1500, 16, seed=70)
    insert_rows(lite_client, name, ids, vectors)
    snap = vecdr.snapshot(repo, f"milvus:{lite_db}?collection={name}")
    sample = decode_quality(repo.get(repo.load_manifest(repo.commits()[-1]).artifacts["quality"]))
    assert sample.answers is not None and len(sample.queries) == 32 and sample.metric == "L2"
    result = vecdr.drill(repo, snap.snapshot, objectives=Objectives(rto_seconds=600, min_recall=0.9))
    assert result.passed, result.checks
    assert result.target.startswith("milvus:") and "vecdr_drill_" in result.target
    assert result.rows_restored == 1500 and result.recall_ratio is not None and result.recall_ratio > 0.9
    assert not [c for c in lite_client.list_collections() if c.startswith("vecdr_drill_")]
    assert name in lite_client.list_collections()


@pytest.mark.fault("collection name of Milvus's longest length (255)", store="milvus")
def test_a_collection_name_of_the_longest_length_restores_and_drills(
    repo: vecdr.Repository, lite_db: str, lite_client: MilvusClient
) -> None:
    """Staging collections and the one a forced restore renames away derive their names
    from the target's: they must fit in 255 characters and keep their unique suffix."""
    name = unique("long").ljust(255, "x")
    restored, drilled = "r" + name[1:], "d" + name[1:]
    create_plain(lite_client, name, 4)
    insert_rows(lite_client, name, np.arange(40), np.arange(160, dtype=np.float32).reshape(40, 4))
    snap = vecdr.snapshot(repo, f"milvus:{lite_db}?collection={name}")
    for force in (False, True):  # a new collection, then over the one just restored
        vecdr.restore(repo, f"milvus:{lite_db}?collection={restored}", snap.snapshot, force=force)
        assert all_rows(lite_client, restored) == all_rows(lite_client, name)
    with pytest.raises(vecdr.errors.TargetExistsError):
        vecdr.restore(repo, f"milvus:{lite_db}?collection={restored}", snap.snapshot)
    result = vecdr.drill(repo, snap.snapshot, target=f"milvus:{lite_db}?collection={drilled}")
    assert result.rows_restored == 40 and result.passed
    assert drilled not in lite_client.list_collections()
    assert not [c for c in lite_client.list_collections() if "_vecdr_" in c]


# -- writers in the snapshotting process --------------------------------------------------


@pytest.mark.fault("Milvus Lite collection written by this process during a snapshot", store="milvus")
def test_a_write_in_this_process_during_a_lite_snapshot_is_warned(
    repo: vecdr.Repository, lite_db: str, lite_client: MilvusClient
) -> None:
    """Milvus Lite keeps no versions: a write made by another client of this process while the
    snapshot pages through the collection cannot be excluded, so the snapshot says so."""
    name = unique("written")
    create_plain(lite_client, name, 4)
    insert_rows(lite_client, name, np.arange(50), np.ones((50, 4), np.float32))
    source = MilvusSource(lite_db, collection=name)
    try:
        pages = source.scan(20)
        first = next(pages)
        lite_client.upsert(name, [{"pk": 49, "embedding": [2.0] * 4}])  # the application, mid-snapshot
        with pytest.warns(UserWarning, match="was written during this snapshot .* no MVCC versions"):
            rest = list(pages)
        assert first.num_rows + sum(t.num_rows for t in rest) == 50
    finally:
        source.close()


def replay(initial: dict[int, float], log: list[tuple[str, int, float]], restored: dict[int, float]) -> int | None:
    """The length of the first prefix of ``log`` that turns ``initial`` into ``restored``, or None."""
    state = dict(initial)
    differ = {i for i in state.keys() | restored.keys() if state.get(i) != restored.get(i)}
    for length in range(len(log) + 1):
        if not differ:
            return length
        if length == len(log):
            return None
        op, key, value = log[length]
        if op == "upsert":
            state[key] = value
        else:
            state.pop(key, None)
        (differ.discard if state.get(key) == restored.get(key) else differ.add)(key)
    return None


@pytest.mark.fault("Milvus Lite snapshots while a writer thread logs every operation", store="milvus")
def test_lite_snapshots_during_writes_are_a_prefix_or_warned_and_the_last_is_exact(
    repo: vecdr.Repository, lite_db: str, lite_client: MilvusClient
) -> None:
    """A writer thread upserts and deletes, logging each operation once Milvus acknowledged it.
    Every snapshot taken meanwhile restores to the state after one prefix of the log, or warns
    that it is not one point in time; the snapshot after the writer stops is exactly the live
    collection, without a warning."""
    import threading

    name = unique("busy")
    create_plain(lite_client, name, 4)
    n = 1500
    insert_rows(lite_client, name, np.arange(n), np.zeros((n, 4), np.float32))
    initial = dict.fromkeys(range(n), 0.0)
    log: list[tuple[str, int, float]] = []
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        k = 0
        try:
            while not stop.is_set():
                k += 1
                key = (k * 7919) % (n + 100)
                if k % 4 == 0:
                    lite_client.delete(name, ids=[key])
                    log.append(("delete", key, 0.0))
                else:
                    lite_client.upsert(name, [{"pk": key, "embedding": [float(k)] * 4}])
                    log.append(("upsert", key, float(k)))
        except BaseException as exc:  # noqa: BLE001  (reported by the test)
            failures.append(exc)

    def restored(snapshot: str) -> dict[int, float]:
        copy = unique("busy_copy")
        vecdr.restore(repo, f"milvus:{lite_db}?collection={copy}", snapshot)
        ids, vectors = read_rows(lite_client, copy)
        lite_client.drop_collection(copy)
        assert (vectors == vectors[:, :1]).all()
        return dict(zip(ids.tolist(), vectors[:, 0].tolist(), strict=True))

    uri = f"milvus:{lite_db}?collection={name}"
    during: list[tuple[str, bool]] = []
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        while len(log) < 20:
            time.sleep(0.01)
        for _ in range(3):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                snap = vecdr.snapshot(repo, uri)
            during.append((snap.snapshot, any("no MVCC versions" in str(w.message) for w in caught)))
    finally:
        stop.set()
        thread.join(30)
    assert not failures, failures
    assert len(log) > 20
    for snapshot, warned in during:
        assert warned or replay(initial, log, restored(snapshot)) is not None, snapshot
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing writes now: one point in time, no warning
        last = vecdr.snapshot(repo, uri)
    final = restored(last.snapshot)
    assert final == replay_state(initial, log)
    live_ids, live_vectors = read_rows(lite_client, name)
    assert final == dict(zip(live_ids.tolist(), live_vectors[:, 0].tolist(), strict=True))


def replay_state(initial: dict[int, float], log: list[tuple[str, int, float]]) -> dict[int, float]:
    state = dict(initial)
    for op, key, value in log:
        if op == "upsert":
            state[key] = value
        else:
            state.pop(key, None)
    return state
