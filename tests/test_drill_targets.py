"""A drill deletes only what it created: an existing --target is refused and left as it was.

The same rule on every engine that can be a drill target (a FAISS file, a pgvector
table, a Milvus collection), through the API and the console script.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

import vecdr
from test_cli import fails, run
from vecdr.errors import TargetExistsError

D = 8
DATA = np.random.default_rng(17).standard_normal((300, D)).astype(np.float32)


def _flat(n: int = 300) -> faiss.Index:
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(D))
    index.add_with_ids(DATA[:n], np.arange(n))
    return index


def _refused_twice(repo: vecdr.Repository, target: str) -> None:
    """The API and the CLI both refuse ``target`` with one clear line."""
    with pytest.raises(TargetExistsError, match="already exists"):
        vecdr.drill(repo, target=target)
    fails(run("drill", str(repo.url), "--target", target), "already exists")


@pytest.mark.fault("drill --target names an existing FAISS file")
def test_an_existing_faiss_file_survives_a_refused_drill(repo: vecdr.Repository, tmp_path: Path) -> None:
    vecdr.snapshot(repo, _flat(), collection="c")
    precious = tmp_path / "live.faiss"
    faiss.write_index(_flat(120), str(precious))
    before = hashlib.sha256(precious.read_bytes()).hexdigest()
    _refused_twice(repo, f"faiss:{precious}")
    assert hashlib.sha256(precious.read_bytes()).hexdigest() == before
    # A target that does not exist yet is restored, judged and removed again.
    fresh = tmp_path / "fresh.faiss"
    result = vecdr.drill(repo, target=f"faiss:{fresh}")
    assert result.rows_restored == 300 and not fresh.exists()
    assert precious.exists()


@pytest.mark.fault("drill --target names an existing pgvector table")
def test_an_existing_pgvector_table_survives_a_refused_drill(repo: vecdr.Repository, pg: Any) -> None:
    from vecdr.backends.pgvector.search import vector_literal

    with pg.connect() as conn:
        conn.execute(f"CREATE TABLE items (id bigint PRIMARY KEY, embedding vector({D}) NOT NULL)")
        conn.execute(f"CREATE TABLE precious (id bigint PRIMARY KEY, embedding vector({D}) NOT NULL)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO items VALUES (%s, %s::vector)",
                            [(i, vector_literal(DATA[i])) for i in range(200)])
            cur.executemany("INSERT INTO precious VALUES (%s, %s::vector)",
                            [(i, vector_literal(DATA[i])) for i in range(150)])
    vecdr.snapshot(repo, pg.uri("items"))
    _refused_twice(repo, pg.uri("precious"))
    with pg.connect() as conn:
        assert conn.execute("SELECT count(*) FROM precious").fetchone()[0] == 150
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 200
    # The default scratch table is fresh, and gone afterwards.
    result = vecdr.drill(repo)
    assert result.rows_restored == 200 and "vecdr_drill_" in result.target
    with pg.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'vecdr_drill_%'").fetchone()[0] == 0


@pytest.fixture
def lite_db(tmp_path: Path) -> Iterator[str]:
    pytest.importorskip("milvus_lite", reason="the milvus extra is not installed")
    path = str(tmp_path / "milvus.db")
    yield path
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(path)


@pytest.mark.fault("drill --target names an existing Milvus collection")
def test_an_existing_milvus_collection_survives_a_refused_drill(repo: vecdr.Repository, lite_db: str) -> None:
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(lite_db)
    names = {role: f"{role}_{uuid.uuid4().hex[:8]}" for role in ("items", "precious")}
    for role, name in names.items():
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("pk", DataType.INT64, is_primary=True)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=D)
        params = client.prepare_index_params()
        params.add_index("embedding", index_type="FLAT", metric_type="L2")
        client.create_collection(name, schema=schema, index_params=params)
        rows = 200 if role == "items" else 150
        client.insert(name, [{"pk": i, "embedding": DATA[i].tolist()} for i in range(rows)])
        client.flush(name)
    vecdr.snapshot(repo, f"milvus:{lite_db}?collection={names['items']}")
    with pytest.raises(TargetExistsError, match="already exists"):
        vecdr.drill(repo, target=f"milvus:{lite_db}?collection={names['precious']}")
    client.load_collection(names["precious"])
    assert client.query(names["precious"], output_fields=["count(*)"])[0]["count(*)"] == 150
    assert set(names.values()) <= set(client.list_collections())
