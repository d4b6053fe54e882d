"""Reading a collection page by page with Milvus's query iterator, at one point in time.

This is the protocol of pymilvus's ``QueryIterator``: each page is a ``Query``
with ``iterator=True``, a limit, and a primary-key cursor (``pk > last``), so
pages come in primary-key order and memory stays one page. The first page is
read at Strong consistency and the server answers with the MVCC timestamp it
read at (``session_ts``); every later page, of any partition, passes that
timestamp back as its guarantee timestamp, and a Milvus server then reads it as
of the same moment while writers carry on. Milvus Lite keeps no MVCC versions and
answers 0: see docs/milvus.md#consistency.

Pages are decoded column by column (:mod:`wire`) instead of into a dict per row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from pymilvus.grpc_gen import common_pb2, milvus_pb2

from vecdr.backends.milvus import wire
from vecdr.backends.milvus.client import check, failure, quiet, stub
from vecdr.backends.milvus.schema import Collection
from vecdr.backends.milvus.types import DYNAMIC, FieldSpec
from vecdr.backends.milvus.uri import Endpoint

T = TypeVar("T")

#: Milvus's largest query limit.
MAX_PAGE_ROWS = 16384
#: Bytes of vectors per page. Milvus Lite scans the whole collection for every page, so
#: fewer pages are faster; each page is a message, its decoded copy and the memory
#: glibc keeps after them (measured, 100k x 384: 32 MiB pages peak at 490-530 MiB RSS
#: in a snapshot, 16 MiB pages at 420-450 MiB and about 10% slower).
PAGE_BYTES = 16 << 20


def string_literal(value: str) -> str:
    """A double-quoted string in Milvus's expression language."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def page_rows(collection: Collection) -> int:
    """Rows per page: as many as fit PAGE_BYTES of vectors, at most Milvus's limit."""
    width = sum(4 * f.dimension for f in collection.fields if f.type == "FLOAT_VECTOR") + 64
    return max(1, min(MAX_PAGE_ROWS, PAGE_BYTES // width))


@dataclass(slots=True)
class Page:
    rows: int
    columns: dict[str, Any]  # FieldData by name (``$meta`` for the dynamic field)


@dataclass(slots=True)
class Reader:
    """Pages of one collection; ``read_ts`` pins every page after the first."""

    client: Any
    endpoint: Endpoint
    collection: Collection
    read_ts: int = 0  # the server's MVCC timestamp of the first page; 0 until then, or if it has none
    pages_read: int = 0
    specs: dict[str, FieldSpec | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.specs = {f.name: f for f in self.collection.fields}
        self.specs[DYNAMIC] = None

    def _request(self, expr: str, fields: list[str], partition: str | None, limit: int) -> Any:
        request = milvus_pb2.QueryRequest(
            db_name=self.endpoint.db,
            collection_name=self.collection.name,
            expr=expr,
            output_fields=fields,
            partition_names=[partition] if partition else [],
        )
        if self.read_ts:
            # As pymilvus's iterator does: the pinned timestamp, the collection's default level.
            request.guarantee_timestamp = self.read_ts
            request.use_default_consistency = True
        else:
            request.consistency_level = common_pb2.ConsistencyLevel.Strong
            request.use_default_consistency = False
        for key, value in (("limit", limit), ("iterator", "True"), ("reduce_stop_for_best", "True")):
            request.query_params.append(common_pb2.KeyValuePair(key=key, value=str(value)))
        return request

    def pages(self, fields: list[str], partition: str | None, limit: int,
              decode: Callable[[Page], T]) -> Iterator[T]:  # fmt: skip
        """Every row of ``partition`` (None: all) with ``fields``, in pages of at most ``limit``,
        each passed through ``decode``: the page's message is freed before its result is
        yielded, so only the decoded page stays in memory while the caller works on it."""
        pk = self.collection.primary
        last: Any = None
        while True:
            if last is None:
                expr = ""
            elif pk.type == "VARCHAR":
                expr = f"{pk.name} > {string_literal(last)}"
            else:
                expr = f"{pk.name} > {int(last)}"
            request = self._request(expr, fields, partition, limit)
            try:
                with quiet():
                    response = stub(self.client).Query(request)
            except Exception as exc:  # grpc errors: the server went away mid-scan
                raise failure(exc, self.endpoint, f"reading {self.collection.name}") from exc
            check(response.status, self.endpoint, f"reading {self.collection.name}")
            self.pages_read += 1
            if not self.read_ts and response.session_ts:
                self.read_ts = int(response.session_ts)
            columns = wire.columns(response)
            keys = columns.get(pk.name)
            rows = 0 if keys is None else wire.row_count(keys, pk)
            if rows == 0:
                # Not a short page: with reduce_stop_for_best a page may hold fewer rows
                # than the limit before the end; only an empty one ends the scan.
                return
            data = keys.scalars.string_data.data if pk.type == "VARCHAR" else keys.scalars.long_data.data
            last = data[-1]
            decoded = decode(Page(rows, columns))
            del response, columns, keys, data
            yield decoded

    def check_order(self, ids: np.ndarray, previous: int | None) -> None:
        """Integer keys must ascend strictly: anything else is a duplicate or a server
        that does not page in key order, and either would make the snapshot wrong."""
        from vecdr.errors import DuplicateIdError, SourceError

        if not len(ids):
            return
        keys = ids if previous is None else np.concatenate([[previous], ids])
        steps = np.diff(keys)
        if (steps > 0).all():
            return
        if (steps == 0).any():
            twice = int(keys[np.flatnonzero(steps == 0)[0]])
            raise DuplicateIdError(
                f"collection {self.collection.name!r} holds primary key {twice} twice; ids must be unique"
            )
        raise SourceError(
            f"{self.endpoint.shown} returned a page of {self.collection.name!r} out of primary key order; "
            "a snapshot cannot be read consistently from it"
        )
