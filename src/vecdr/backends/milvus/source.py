"""Snapshot a Milvus collection: its schema, then every row, page by page, at one point in time."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from vecdr.backends.base import Source, SourceInfo
from vecdr.backends.milvus import wire
from vecdr.backends.milvus.client import connect, failure, quiet, server_version
from vecdr.backends.milvus.pages import MAX_PAGE_ROWS, Page, Reader, page_rows
from vecdr.backends.milvus.schema import Collection, describe
from vecdr.backends.milvus.types import DYNAMIC
from vecdr.backends.milvus.uri import endpoint
from vecdr.errors import NotFoundInBackendError, SchemaError, SourceError, UsageError, VecdrError
from vecdr.format.quality import QualitySample
from vecdr.format.segment import id_type, segment_schema


def is_loaded(client: Any, name: str) -> bool:
    state = client.get_load_state(name).get("state")
    return getattr(state, "name", str(state)) == "Loaded"


def _lite_database(endpoint: Any) -> Any:
    """Milvus Lite's database object where this process already serves ``endpoint``'s file, else None."""
    if endpoint.lite_path is None:
        return None
    try:
        from milvus_lite.server_manager import server_manager_instance

        entry = server_manager_instance._servers.get(os.path.abspath(endpoint.lite_path))
    except Exception:  # noqa: BLE001  (another Milvus Lite: nothing to look at)
        return None
    return entry[1] if entry else None


class MilvusSource(Source):
    """A Milvus collection (``collection=NAME``), read through the query iterator.

    ``vector=FIELD`` names the field that becomes the snapshot's ``vector`` column
    (default: the first FLOAT_VECTOR field); every other field is an attribute
    column, other float vector fields as fixed-size lists. A collection that is not
    loaded is loaded for the snapshot and released again at :meth:`close`.
    """

    backend = "milvus"

    def __init__(
        self,
        path: str,
        *,
        collection: str | None = None,
        vector: str | None = None,
        token: str | None = None,
        db: str | None = None,
        uri: str | None = None,
    ) -> None:
        if not collection:
            raise UsageError("a Milvus source needs the collection: milvus:PATH.db?collection=NAME")
        self.endpoint = endpoint(path, uri, token, db, collection=collection, vector=vector)
        super().__init__(self.endpoint.shown)
        # Milvus Lite already serving this database here means clients of this process
        # (the application's) may write while the snapshot reads.
        self._shared = _lite_database(self.endpoint) is not None
        self.client = connect(self.endpoint)
        self._release = False
        self._warned = False
        try:
            with quiet():
                if not self.client.has_collection(collection):
                    raise NotFoundInBackendError(f"no collection {collection!r} in {self.endpoint.shown}")
                self.collection: Collection = describe(self.client, collection, vector)
                if not is_loaded(self.client, collection):
                    # Milvus answers queries only from loaded collections.
                    self.client.load_collection(collection)
                    self._release = True
                self._position = self._write_position(collection)
                counted = self.client.query(collection, output_fields=["count(*)"], consistency_level="Strong")
                self._rows = int(counted[0]["count(*)"]) if counted else 0
            self._version = server_version(self.client)
        except VecdrError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise failure(exc, self.endpoint, f"reading collection {collection!r}") from exc
        self.reader = Reader(self.client, self.endpoint, self.collection)
        self._schema = segment_schema(
            self.collection.vector_field.dimension, self.collection.id_type, self.collection.arrow_attributes()
        )

    # -- Source -------------------------------------------------------------------

    def info(self) -> SourceInfo:
        import pymilvus

        c = self.collection
        return SourceInfo(
            name=c.name,
            dimension=c.vector_field.dimension,
            id_type=c.id_type,
            attributes=c.arrow_attributes(),
            index=c.record(),
            rows=self._rows,
            software={"milvus": self._version, "pymilvus": pymilvus.__version__},
            # One query per partition: Milvus returns a primary key once per query, not
            # once per collection, so several partitions need the separate id pass.
            unique_ids=len(self._partitions()) == 1,
        )

    def quality_sample(self, queries: int, k: int) -> QualitySample | None:
        c = self.collection
        if not self._rows or not queries:
            return None
        vector = c.vector_field.name
        portable = c.portable() or {"kind": "flat", "metric": "L2"}
        try:
            with quiet():
                rows = self.client.query(c.name, filter="", output_fields=[vector], limit=min(queries, self._rows),
                                         consistency_level="Strong")
                sample = np.array([r[vector] for r in rows], dtype=np.float32)
                if portable["kind"] == "flat":  # searched exhaustively: its answers are the exact ones
                    return QualitySample(sample, None, k, portable["metric"])
                hits = self.client.search(c.name, data=sample.tolist(), anns_field=vector, limit=k,
                                          output_fields=[c.primary.name], consistency_level="Strong")
        except Exception as exc:
            raise failure(exc, self.endpoint, f"sampling queries from {c.name!r}") from exc
        key = c.primary.name  # hits are keyed by the primary key's field name
        return QualitySample(sample, [[h[key] for h in row] for row in hits], k, portable["metric"])

    def _partitions(self) -> list[str | None]:
        return list(self.collection.partitions) if self.collection.tracks_partitions else [None]

    def ids(self) -> pa.Array:
        pk = self.collection.primary
        def keys(page: Page) -> pa.Array:
            return wire.decode(page.columns[pk.name], pk, page.rows)

        parts = [part for p in self._partitions() for part in self.reader.pages([pk.name], p, MAX_PAGE_ROWS, keys)]
        ids = pa.concat_arrays(parts) if parts else pa.array([], id_type(self.collection.id_type))
        return ids.cast(id_type(self.collection.id_type))

    def scan(self, batch_rows: int) -> Iterator[pa.Table]:
        c = self.collection
        fields = [f.name for f in c.fields] + ([DYNAMIC] if c.dynamic else [])
        limit = max(1, min(page_rows(c), batch_rows))
        for partition in self._partitions():
            previous = None
            for table in self.reader.pages(fields, partition, limit, lambda page, p=partition: self._table(page, p)):
                self._warn_unpinned()
                if c.primary.type == "INT64":
                    ids = table.column("id").to_numpy()
                    self.reader.check_order(ids, previous)
                    previous = int(ids[-1])
                yield table
        self._check_writes()

    def _write_position(self, name: str) -> int | None:
        """Milvus Lite's write sequence of the collection, where this process serves the database."""
        database = _lite_database(self.endpoint)
        try:
            lite = database.get_collection(name, **({"database_name": self.endpoint.db} if self.endpoint.db else {}))
            return int(lite._next_seq)
        except Exception:  # noqa: BLE001  (not served here, or another Milvus Lite: nothing to compare)
            return None

    def _check_writes(self) -> None:
        """Warn when the rows just read are not one point in time: written meanwhile in this process."""
        name = self.collection.name
        if self.endpoint.lite_path is None:
            return
        position = self._write_position(name)
        if self._position is not None and position is not None:
            if position == self._position:
                return
            what = "was written during this snapshot (by this process: Milvus Lite allows no other)"
        elif self._shared:
            what = "is open in this process, whose writes during the snapshot cannot be excluded or detected"
        else:
            return
        warnings.warn(
            f"collection {name!r} in {self.endpoint.shown} {what}; Milvus Lite keeps no MVCC versions, so the "
            "snapshot may hold some of those writes and miss others: pause the writers while it runs, or take "
            "another snapshot after they stop",
            stacklevel=2,
        )

    def _warn_unpinned(self) -> None:
        # Over a server without MVCC (a Milvus Lite server) nothing pins the read; a
        # Milvus Lite file at least cannot be written by another process meanwhile.
        if self._warned or self.reader.read_ts or self.endpoint.lite_path is not None:
            return
        self._warned = True
        warnings.warn(
            f"{self.endpoint.shown} returned no read timestamp (Milvus Lite keeps no MVCC versions): rows "
            "written during this snapshot may or may not be in it",
            stacklevel=2,
        )

    def _table(self, page: Page, partition: str | None) -> pa.Table:
        c, n = self.collection, page.rows

        def column(name: str) -> Any:
            if name not in page.columns:
                raise SourceError(f"{self.endpoint.shown} returned no field {name!r} of {c.name!r}")
            return page.columns[name]

        vector = wire.decode(column(c.vector), c.vector_field, n)
        if vector.null_count:
            raise SchemaError(
                f"{vector.null_count} row(s) of {c.name!r} have no {c.vector!r} vector; "
                "every row needs one (name another vector field with vector=FIELD)"
            )
        arrays = [wire.decode(column(c.primary.name), c.primary, n), vector]
        arrays += [wire.decode(column(f.name), f, n) for f in c.attributes]
        if c.dynamic:
            meta = page.columns.get(DYNAMIC)
            arrays.append(wire.decode(meta, None, n) if meta is not None else pa.array(["{}"] * n))
        if c.tracks_partitions:
            arrays.append(pa.repeat(pa.scalar(partition, pa.string()), n))
        return pa.Table.from_arrays(arrays, schema=self._schema)

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is None:
            return
        try:
            with quiet():
                if self._release:
                    self.client.release_collection(self.collection.name)
                client.close()
        except Exception:  # noqa: BLE001  (closing: nothing more to do)
            pass
        self.client = None

