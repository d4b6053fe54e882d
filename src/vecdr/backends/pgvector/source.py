"""Snapshot a PostgreSQL table: one REPEATABLE READ transaction, rows by binary COPY."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql

from vecdr.backends.base import ChangeSet, Source, SourceInfo
from vecdr.backends.pgvector import tracking
from vecdr.backends.pgvector.catalog import ID_KINDS, TableInfo, describe, portable_index
from vecdr.backends.pgvector.copybinary import CopyReader, read_tables
from vecdr.backends.pgvector.dsn import Dsn, build, connect, first_line, shown_options
from vecdr.backends.pgvector.search import nearest, sample_vectors
from vecdr.backends.pgvector.types import Column, quote
from vecdr.errors import BackendError, UsageError
from vecdr.format.quality import QualitySample
from vecdr.format.segment import id_type, segment_schema


class PgvectorSource(Source):
    """A PostgreSQL table with a pgvector column, read at one point in time.

    Every read (ids, rows, the change log) happens in one REPEATABLE READ, READ
    ONLY transaction opened here and held until :meth:`close`, so the snapshot is
    the table as it was at that moment while writers carry on.
    """

    backend = "pgvector"
    range_scans = True

    def __init__(
        self,
        path: str,
        *,
        table: str | None = None,
        id: str | None = None,
        vector: str | None = None,
        schema: str | None = None,
        uri: str | None = None,
        **libpq: Any,
    ) -> None:
        if not table:
            raise UsageError("a pgvector source needs the table: postgresql://…/db?table=NAME")
        self.dsn: Dsn = build(path, libpq, shown_options(table=table, id=id, vector=vector, schema=schema))
        super().__init__(self.dsn.shown)
        self.conn = connect(self.dsn)
        try:
            self.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            self.conn.read_only = True
            self.table: TableInfo = describe(self.conn, table, schema, id, vector)
            self._rows = int(self.conn.execute(f"SELECT count(*) FROM {self.table.qualified}").fetchone()[0])
            self._versions = dict(
                self.conn.execute(
                    "SELECT 'postgresql', current_setting('server_version') UNION ALL "
                    "SELECT 'pgvector', extversion FROM pg_extension WHERE extname = 'vector'"
                ).fetchall()
            )
        except psycopg.Error as exc:  # e.g. no privilege on the table
            self.conn.close()
            raise BackendError(f"cannot read {table} on {self.dsn.shown}: {first_line(exc)}") from exc
        except BaseException:
            self.conn.close()
            raise

    # -- what is read -------------------------------------------------------------

    def _select(self, column: Column) -> str:
        name = quote(column.name)
        if column is self.table.vector and self.table.vector_typname != "vector":
            return f"{name}::vector"
        if column.kind == "cast":
            return f"{name}::text"
        return name

    def _columns(self) -> list[Column]:
        t = self.table
        return [t.id, t.vector, *t.attributes]

    def _reader(self, columns: list[Column]) -> CopyReader:
        names = ["id" if c is self.table.id else "vector" if c is self.table.vector else c.name for c in columns]
        vector_at = columns.index(self.table.vector) if self.table.vector in columns else -1
        return CopyReader(columns, names, self.table.dimension, vector_at)

    def _stream(self, query: str, columns: list[Column], batch_rows: int = 1 << 62) -> Iterator[pa.Table]:
        """The rows of a ``COPY … TO STDOUT (FORMAT BINARY)`` yielding ``columns``."""
        reader = self._reader(columns)
        try:
            with self.conn.cursor() as cur, cur.copy(query) as copy:
                for table in read_tables(copy, reader):
                    for offset in range(0, table.num_rows, batch_rows):
                        yield table.slice(offset, batch_rows)
        except psycopg.Error as exc:
            raise BackendError(f"reading {self.table.schema}.{self.table.name} failed: {exc}") from exc

    def _copy(self, columns: list[Column], where: str = "", batch_rows: int = 1 << 62) -> Iterator[pa.Table]:
        select = ", ".join(self._select(c) for c in columns)
        query = f"COPY (SELECT {select} FROM {self.table.qualified} {where}) TO STDOUT (FORMAT BINARY)"
        return self._stream(query, columns, batch_rows)

    def _ids(self, query: str) -> pa.Array:
        parts = [t.column("id").combine_chunks() for t in self._stream(query, [self.table.id])]
        return pa.concat_arrays(parts) if parts else pa.array([], id_type(ID_KINDS[self.table.id.kind]))

    # -- Source -------------------------------------------------------------------

    def info(self) -> SourceInfo:
        t = self.table
        index = {
            "engine": "pgvector",
            "schema": t.schema,
            "table": t.name,
            "id": {"name": t.id.name, "type": t.id.pg_type},
            "vector": {"name": t.vector.name, "type": t.vector.pg_type, "typname": t.vector_typname},
            "columns": [{"name": c.name, "type": c.pg_type, "kind": c.kind, "not_null": c.not_null} for c in t.columns],
            "primary_key": t.primary_key,
            "indexes": t.indexes,
            "portable": portable_index(t.indexes, t.vector.name),
        }
        return SourceInfo(
            name=t.name,
            dimension=t.dimension,
            id_type=ID_KINDS[t.id.kind],
            attributes=pa.schema([c.arrow_field() for c in t.attributes]),
            index=index,
            rows=self._rows,
            software=self._versions,
            unique_ids=t.primary_key,
        )

    def ids(self) -> pa.Array:
        select = self._select(self.table.id)
        return self._ids(f"COPY (SELECT {select} FROM {self.table.qualified}) TO STDOUT (FORMAT BINARY)")

    def scan(self, batch_rows: int) -> Iterator[pa.Table]:
        yield from self._copy(self._columns(), batch_rows=batch_rows)

    def scan_range(self, batch_rows: int, lo: Any, hi: Any) -> Iterator[pa.Table]:
        # Integer ids compare by value (an index range scan on the key); text and uuid
        # ids as text under the "C" collation, which orders by bytes as Arrow does.
        key = self._select(self.table.id)
        if ID_KINDS[self.table.id.kind] == "string":
            key = f'({key})::text COLLATE "C"'
        bounds = [f"{key} >= {sql.Literal(lo).as_string(self.conn)}"] if lo is not None else []
        bounds += [f"{key} < {sql.Literal(hi).as_string(self.conn)}"] if hi is not None else []
        where = f"WHERE {' AND '.join(bounds)}" if bounds else ""
        yield from self._copy(self._columns(), where, batch_rows)

    def quality_sample(self, queries: int, k: int) -> QualitySample | None:
        t = self.table
        if not self._rows or not queries:
            return None
        vector = self._select(t.vector)
        try:
            sample = sample_vectors(self.conn, t.qualified, t.id.name, vector, queries, self._rows)
            portable = portable_index(t.indexes, t.vector.name)
            if portable is None:  # no vector index: the table is searched exhaustively
                return QualitySample(sample, None, k, "L2")
            metric = portable["metric"]
            return QualitySample(sample, nearest(self.conn, t.qualified, t.id.name, vector, sample, k, metric), k,
                                 metric)
        except psycopg.Error as exc:
            raise BackendError(f"sampling queries from {t.schema}.{t.name} failed: {first_line(exc)}") from exc

    def changes(self) -> ChangeSet | None:
        state = tracking.read_state(self.conn, self.table)
        if state is None:
            return None
        base, log, incomplete = state
        if incomplete is not None:
            warnings.warn(incomplete, stacklevel=2)
        ids_in_log = f"SELECT DISTINCT id FROM {log}"
        upserts_parts = list(self._copy(self._columns(), f"WHERE {quote(self.table.id.name)} IN ({ids_in_log})"))
        upserts = pa.concat_tables(upserts_parts) if upserts_parts else self._empty()
        deleted = self._ids(tracking.deleted_ids_query(self.table, log))
        token = self.conn.execute("SELECT pg_current_snapshot()::text").fetchone()[0]
        return ChangeSet(base=base, upserts=upserts, deletes=deleted, token=token)

    def _empty(self) -> pa.Table:
        schema = segment_schema(self.table.dimension, ID_KINDS[self.table.id.kind])
        fields = list(schema) + [c.arrow_field() for c in self.table.attributes]
        return pa.schema(fields).empty_table()

    def committed(self, snapshot: str, changes: ChangeSet | None) -> None:
        if changes is not None:
            tracking.trim(self.dsn, self.table, snapshot, changes.token)

    def close(self) -> None:
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()
