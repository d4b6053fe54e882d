"""Restore into a Milvus collection: build a staging collection, publish it by renaming.

The staging collection gets the recorded schema and partitions; rows go in as
large columnar inserts, converted from Arrow in the restore's thread while a
sender thread waits on the previous insert (Milvus Lite's ingest is Python, so
overlapping the two is what makes the restore fast). Then flush, build every
recorded index, load, count, and rename the staging collection to the target
name (with ``force``: the old collection is renamed away first, its aliases moved
to the new one, and dropped last). A failure at any step drops the staging
collection and puts an old collection back: nothing half-made stays.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pymilvus import DataType, MilvusClient

from vecdr.backends.base import RestoreSpec, Target
from vecdr.backends.milvus import wire
from vecdr.backends.milvus.client import check, connect, failure, quiet, server_version, stub
from vecdr.backends.milvus.schema import DEFAULT_PARTITION, Collection, IndexSpec, check_name, derived_name, foreign
from vecdr.backends.milvus.types import CODES, DYNAMIC, PARTITION, FieldSpec
from vecdr.backends.milvus.uri import endpoint
from vecdr.errors import (
    DimensionMismatchError,
    SchemaError,
    TargetError,
    TargetExistsError,
    UsageError,
    VecdrError,
)

#: Bytes of rows per insert request: large enough that per-request costs vanish,
#: well under the 64-256 MiB message limits of Milvus servers.
INSERT_BATCH_BYTES = 16 << 20
#: Insert requests converted ahead of the one being sent (memory: this many batches).
QUEUED_REQUESTS = 2
#: Lets a restore insert the recorded ids into an auto_id collection on a Milvus server.
ALLOW_INSERT_AUTO_ID = "allow_insert_auto_id"


class _Sender(threading.Thread):
    """Runs jobs (inserts, partition creation) in order, one at a time, off the restore's thread."""

    def __init__(self) -> None:
        super().__init__(name="vecdr-milvus-insert", daemon=True)
        self.jobs: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=QUEUED_REQUESTS)
        self.error: BaseException | None = None
        self.seconds = 0.0

    def run(self) -> None:
        while (job := self.jobs.get()) is not None:
            if self.error is None:  # after a failure, only drain
                started = time.perf_counter()
                try:
                    job()
                except BaseException as exc:  # noqa: BLE001  (raised in the restore's thread)
                    self.error = exc
                self.seconds += time.perf_counter() - started

    def put(self, job: Callable[[], None]) -> None:
        while True:
            self.raise_error()
            try:
                self.jobs.put(job, timeout=0.2)
                return
            except queue.Full:
                continue

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self.jobs.put(None)
        self.join()

    def cancel(self) -> None:
        """Stop without running the jobs still queued."""
        if self.error is None:
            self.error = TargetError("the restore was stopped")
        self.stop()


class MilvusTarget(Target):
    """Rebuild a snapshot as collection ``collection=NAME``.

    A Milvus snapshot is recreated as recorded (fields, partitions, indexes);
    another engine's gets a primary key ``id`` and a FLOAT_VECTOR field ``vector``
    (``id=``/``vector=`` rename them), a field per attribute and the matching index.
    """

    backend = "milvus"

    def __init__(
        self,
        path: str,
        *,
        collection: str | None = None,
        id: str | None = None,
        vector: str | None = None,
        token: str | None = None,
        db: str | None = None,
        uri: str | None = None,
    ) -> None:
        if not collection:
            raise UsageError("a Milvus target needs the collection: milvus:PATH.db?collection=NAME")
        self.name = check_name(collection, "collection")
        for given in (id, vector):
            if given:
                check_name(given, "field")
        self.endpoint = endpoint(path, uri, token, db, collection=collection, id=id, vector=vector)
        super().__init__(self.endpoint.shown)
        self.id_name, self.vector_name = id, vector
        self.staging = derived_name(self.name, f"_vecdr_{uuid.uuid4().hex[:8]}")
        self.client: Any = None
        self.layout: Collection | None = None
        self.phases: dict[str, float] = {}
        self._created = False  # the staging collection exists
        self._old: str | None = None  # the replaced collection, while it is renamed away
        self._force = False
        self._sender: _Sender | None = None
        self._pending: dict[str, list[pa.Table]] = {}
        self._pending_bytes: dict[str, int] = {}
        self._partitions: set[str] = set()
        self._sent_rows = 0
        self._max_id: int | None = None  # largest integer id restored, for the auto_id check
        self._warn: Any = lambda message: None

    def _connect(self) -> Any:
        if self.client is None:
            self.client = connect(self.endpoint, create=True)
        return self.client

    def _call(self, doing: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            with quiet():
                return fn(*args, **kwargs)
        except VecdrError:
            raise
        except Exception as exc:
            raise failure(exc, self.endpoint, doing, TargetError) from exc

    def exists(self) -> bool:
        if self.endpoint.lite_path is not None and not Path(self.endpoint.lite_path).exists():
            return False
        return bool(self._call("looking for the collection", self._connect().has_collection, self.name))

    # -- begin --------------------------------------------------------------------

    def begin(self, spec: RestoreSpec, force: bool = False) -> bool:
        self.spec, self._force = spec, force
        self._warn = spec.options.get("warn", lambda message: None)
        started = time.perf_counter()
        client = self._connect()
        if self._call("looking for the collection", client.has_collection, self.name) and not force:
            raise TargetExistsError(
                f"collection {self.name!r} already exists in {self.endpoint.shown}; pass --force to replace it"
            )
        self.layout = self._layout(spec)
        self._create(self.layout)
        self._plan = [("id", self.layout.primary), ("vector", self.layout.vector_field)]
        self._plan += [(f.name, f) for f in self.layout.attributes]
        missing = [name for name, _ in self._plan[2:] if name not in spec.attributes.names]
        if missing:
            raise SchemaError(f"the snapshot has no column for field(s) {missing} of {self.name!r}")
        self._sender = _Sender()
        self._sender.start()
        self.phases["create"] = time.perf_counter() - started
        return False

    def _layout(self, spec: RestoreSpec) -> Collection:
        if spec.index.get("engine") != "milvus":
            return foreign(
                self.staging, spec.dimension, spec.id_type, spec.attributes, spec.index.get("portable"),
                self.id_name or "id", self.vector_name or "vector",
            )  # fmt: skip
        layout = Collection.from_record(spec.index, self.staging)
        if layout.vector_field.dimension != spec.dimension:
            raise DimensionMismatchError(
                f"field {layout.vector!r} has dimension {layout.vector_field.dimension}, the snapshot {spec.dimension}"
            )
        renames = {layout.primary.name: self.id_name, layout.vector: self.vector_name}
        renames = {old: new for old, new in renames.items() if new and new != old}
        if not renames:
            return layout
        fields = tuple(replace(f, name=renames.get(f.name, f.name)) for f in layout.fields)
        if len({f.name for f in fields}) != len(fields):
            raise SchemaError(f"field names collide in the restored collection: {[f.name for f in fields]}")
        indexes = tuple(replace(i, field=renames.get(i.field, i.field), name="") for i in layout.indexes)
        return replace(layout, fields=fields, vector=renames.get(layout.vector, layout.vector), indexes=indexes)

    def _create(self, c: Collection) -> None:
        schema = MilvusClient.create_schema(
            auto_id=c.primary.auto_id, enable_dynamic_field=c.dynamic, description=c.description
        )
        for f in c.fields:
            schema.add_field(f.name, DataType(f.code), **_field_options(f))
        options: dict[str, Any] = {}
        properties = dict(c.properties)
        if c.primary.auto_id:
            properties[ALLOW_INSERT_AUTO_ID] = "true"
        if properties:
            options["properties"] = properties
        if c.consistency_level:
            options["consistency_level"] = c.consistency_level
        if c.num_partitions:
            options["num_partitions"] = c.num_partitions
        if c.shards:
            options["num_shards"] = c.shards
        self._call(f"creating collection {self.name!r}", self.client.create_collection, c.name, schema=schema,
                   **options)  # fmt: skip
        self._created = True
        if c.tracks_partitions:
            self._partitions.add(DEFAULT_PARTITION)
            for partition in c.partitions:
                self._create_partition(partition)

    def _create_partition(self, partition: str) -> None:
        if partition in self._partitions:
            return
        assert self.layout is not None
        self._call(f"creating partition {partition!r}", self.client.create_partition, self.layout.name, partition)
        self._partitions.add(partition)

    # -- rows ---------------------------------------------------------------------

    def write(self, rows: pa.Table) -> None:
        assert self._sender is not None and self.layout is not None
        self._sender.raise_error()
        if not rows.num_rows:
            return
        if self.layout.tracks_partitions and PARTITION in rows.column_names:
            column = rows.column(PARTITION)
            names = pc.unique(column).to_pylist()
            groups = [(names[0], rows)] if len(names) == 1 else [
                (name, rows.filter(pc.equal(column, name))) for name in names
            ]  # fmt: skip
        else:
            groups = [(DEFAULT_PARTITION if self.layout.tracks_partitions else "", rows)]
        # Rows come partition by partition: a partition not in this batch is complete.
        for done in [p for p in self._pending if p not in {name for name, _ in groups}]:
            self._send(done)
        for partition, part in groups:
            if partition is None:
                raise SchemaError(f"a row of the snapshot has no {PARTITION}")
            self._pending.setdefault(partition, []).append(part)
            self._pending_bytes[partition] = self._pending_bytes.get(partition, 0) + part.nbytes
            if self._pending_bytes[partition] >= INSERT_BATCH_BYTES:
                self._send(partition)

    def _send(self, partition: str) -> None:
        """Convert the rows waiting for ``partition`` into insert requests and queue them."""
        assert self._sender is not None and self.layout is not None
        tables = self._pending.pop(partition, [])
        self._pending_bytes.pop(partition, None)
        if not tables:
            return
        started = time.perf_counter()
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        if self.layout.primary.auto_id and self.layout.primary.type == "INT64":
            top = pc.max(table.column("id")).as_py()
            self._max_id = top if self._max_id is None or top is None else max(self._max_id, top)
        if partition and partition not in self._partitions:
            self._sender.put(lambda p=partition: self._create_partition(p))
        per_request = max(1, int(table.num_rows * INSERT_BATCH_BYTES / max(1, table.nbytes)))
        for offset in range(0, table.num_rows, per_request):
            chunk = table.slice(offset, per_request)
            fields = [wire.encode(chunk.column(name), spec) for name, spec in self._plan]
            if self.layout.dynamic:
                fields.append(wire.encode_dynamic(chunk.column(DYNAMIC)))
            request = wire.insert_request(self.layout.name, partition, self.endpoint.db, chunk.num_rows, fields)
            self.phases["convert"] = self.phases.get("convert", 0.0) + time.perf_counter() - started
            self._sender.put(lambda r=request: self._insert(r))
            started = time.perf_counter()

    def _insert(self, request: Any) -> None:
        doing = f"inserting into {self.name!r}"
        try:
            with quiet():
                response = stub(self.client).Insert(request)
        except Exception as exc:
            raise failure(exc, self.endpoint, doing, TargetError) from exc
        check(response.status, self.endpoint, doing, TargetError)
        if response.insert_cnt != request.num_rows:
            raise TargetError(f"{doing}: {response.insert_cnt} of {request.num_rows} rows were inserted")
        self._sent_rows += request.num_rows

    # -- finish -------------------------------------------------------------------

    def finish(self) -> dict[str, float]:
        assert self._sender is not None and self.layout is not None
        started = time.perf_counter()
        for partition in list(self._pending):
            self._send(partition)
        self._sender.stop()
        self.phases["insert"] = self._sender.seconds
        self._sender.raise_error()
        self.phases["insert_wait"] = time.perf_counter() - started
        client, staging = self.client, self.layout.name

        def timed(phase: str, doing: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            out = self._call(doing, fn, *args, **kwargs)
            self.phases[phase] = self.phases.get(phase, 0.0) + time.perf_counter() - t0
            return out

        timed("flush", f"flushing {self.name!r}", client.flush, staging)
        indexes = self._indexes()
        if indexes:
            timed("index", f"building the indexes of {self.name!r}", client.create_index, staging, indexes)
        timed("load", f"loading {self.name!r}", client.load_collection, staging)
        counted = timed("count", f"counting {self.name!r}", client.query, staging, output_fields=["count(*)"],
                        consistency_level="Strong")  # fmt: skip
        count = int(counted[0]["count(*)"]) if counted else 0
        if count != self.spec.rows:
            raise TargetError(f"restored {count} rows into {self.name!r}, expected {self.spec.rows}")
        timed("publish", f"publishing {self.name!r}", self._publish)
        self._check_auto_ids()
        return self.phases

    def _check_auto_ids(self) -> None:
        """Milvus numbers new rows of an auto_id collection by time, after any restored id;
        Milvus Lite by its own write counter, which starts again in a restored collection."""
        if self._max_id is None or self._max_id <= self.spec.rows:
            return
        if server_version(self.client).startswith("milvus_lite"):
            self._warn(
                f"{self.name!r} has auto_id keys up to {self._max_id}: Milvus Lite numbers new rows from "
                f"about {self.spec.rows + 1}, so rows inserted later without a key may reuse a restored id"
            )

    def _indexes(self) -> Any:
        assert self.layout is not None
        params = self.client.prepare_index_params()
        for index in self.layout.indexes:
            params.add_index(**_index_options(index))
        return params if len(params) else None

    def _publish(self) -> None:
        assert self.layout is not None
        client, staging = self.client, self.layout.name
        if client.has_collection(self.name):
            if not self._force:
                raise TargetExistsError(f"collection {self.name!r} was created during the restore; not replaced")
            self._old = derived_name(self.name, f"_vecdr_old_{uuid.uuid4().hex[:8]}")
            client.rename_collection(self.name, self._old)
        client.rename_collection(staging, self.name)
        self._created = False
        if self._old is not None:
            # Applications reading through an alias follow it to the restored collection.
            for alias in client.list_aliases(collection_name=self._old).get("aliases", []):
                client.alter_alias(self.name, alias)
            client.drop_collection(self._old)
            self._old = None
        client.load_collection(self.name)  # Milvus Lite forgets the load state on a rename
        if self.layout.primary.auto_id:
            try:
                client.drop_collection_properties(self.name, [ALLOW_INSERT_AUTO_ID])
            except Exception:  # noqa: BLE001  (a server that does not know the property)
                self._warn(f"could not remove {ALLOW_INSERT_AUTO_ID} from {self.name!r}")

    # -- after finish ---------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int) -> list[list[Any]] | None:
        assert self.layout is not None
        key = self.layout.primary.name  # hits are keyed by the primary key's field name
        hits = self._call(f"searching {self.name!r}", self._connect().search, self.name,
                          data=np.asarray(queries, dtype=np.float32).tolist(), anns_field=self.layout.vector_field.name,
                          limit=k, output_fields=[key], consistency_level="Strong")
        return [[h[key] for h in row] for row in hits]

    def count(self) -> int | None:
        counted = self._call(f"counting {self.name!r}", self._connect().query, self.name,
                             output_fields=["count(*)"], consistency_level="Strong")
        return int(counted[0]["count(*)"]) if counted else 0

    def drop(self) -> None:
        self._call(f"dropping {self.name!r}", self._connect().drop_collection, self.name)

    def abort(self) -> None:
        if self._sender is not None and self._sender.is_alive():
            self._sender.cancel()
        if self.client is None:
            return
        with quiet():
            try:
                if self._old is not None and not self.client.has_collection(self.name):
                    self.client.rename_collection(self._old, self.name)
                    self._old = None
                if self._created and self.layout is not None:
                    self.client.drop_collection(self.layout.name)
                    self._created = False
            except Exception as exc:  # noqa: BLE001  (the restore's own error is raised; say what is left)
                left = self._old or (self.layout.name if self.layout else self.staging)
                self._warn(f"could not clean up after the failed restore ({exc}); drop collection {left!r}")


def _field_options(f: FieldSpec) -> dict[str, Any]:
    options: dict[str, Any] = dict(f.params)
    if f.is_primary:
        options["is_primary"] = True
    if f.element_type:
        options["element_type"] = DataType(CODES[f.element_type])
    for key in ("nullable", "is_partition_key", "is_clustering_key"):
        if getattr(f, key):
            options[key] = True
    if f.default_value is not None:
        options["default_value"] = f.default_value
    if f.description:
        options["description"] = f.description
    return options


def _index_options(index: IndexSpec) -> dict[str, Any]:
    options: dict[str, Any] = {"field_name": index.field, "index_type": index.index_type}
    if index.metric_type:
        options["metric_type"] = index.metric_type
    if index.name:
        options["index_name"] = index.name
    if index.params:
        # Nested under "params" (sent as one JSON value), the form both Milvus and
        # Milvus Lite read; pymilvus would otherwise send each as its own key,
        # which Milvus Lite ignores.
        options["params"] = {"params": index.params}
    return options
