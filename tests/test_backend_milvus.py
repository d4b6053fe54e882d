"""The Milvus backend against a real Milvus Lite: a database file opened in this process,
and a ``milvus-lite server`` the ``vecdr`` commands reach too."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="the milvus extra is not installed")
pytest.importorskip("milvus_lite", reason="the milvus extra is not installed")

from pymilvus import DataType, MilvusClient  # noqa: E402

import vecdr  # noqa: E402
from vecdr.backends.milvus import MilvusSource, MilvusTarget  # noqa: E402
from vecdr.testing.backends import BackendTests, MakeSource, MakeTarget, Rows  # noqa: E402

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

