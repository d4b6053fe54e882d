"""Restore into a PostgreSQL table: load by binary COPY, build indexes after, publish atomically.

Everything happens in one transaction: a staging table is created, loaded, given
its primary key and indexes (with a session ``maintenance_work_mem`` and parallel
maintenance workers), counted, and only then renamed to the target name (with
``force``, the old table is dropped in the same transaction). A failure or a
killed process rolls all of it back: no half-built table is ever visible.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa

from vecdr.backends.base import RestoreSpec, Target
from vecdr.backends.pgvector import names
from vecdr.backends.pgvector.catalog import split_table
from vecdr.backends.pgvector.copybinary import TRAILER, encode_rows
from vecdr.backends.pgvector.dsn import Dsn, build, connect, first_line, shown_options
from vecdr.backends.pgvector.search import nearest
from vecdr.backends.pgvector.types import Column, column_for_field, quote
from vecdr.errors import (
    BackendError,
    NotFoundInBackendError,
    SchemaError,
    TargetError,
    TargetExistsError,
)

#: pgvector operator class per metric, for indexes of snapshots from other engines
OPCLASS = {"L2": "vector_l2_ops", "IP": "vector_ip_ops", "cosine": "vector_cosine_ops"}


class PgvectorTarget(Target):
    """Rebuild a snapshot as a table (``table=NAME``, optionally ``schema=``).

    ``id=`` and ``vector=`` name the id and vector columns where the snapshot does
    not (snapshots of other engines; defaults ``id`` and ``embedding``).
    ``maintenance_work_mem`` (default 1GB) and ``workers`` (parallel maintenance
    workers, default one less than the client's cores) tune the index build.
    """

    backend = "pgvector"

    def __init__(
        self,
        path: str,
        *,
        table: str | None = None,
        schema: str | None = None,
        id: str | None = None,
        vector: str | None = None,
        maintenance_work_mem: str = "1GB",
        workers: int | str | None = None,
        uri: str | None = None,
        **libpq: Any,
    ) -> None:
        from vecdr.errors import UsageError

        if not table:
            raise UsageError("a pgvector target needs the table: postgresql://…/db?table=NAME")
        self.dsn: Dsn = build(path, libpq, shown_options(table=table, schema=schema, id=id, vector=vector))
        super().__init__(self.dsn.shown)
        self.schema, self.name = split_table(table, schema)
        self.id_name, self.vector_name = id, vector
        self.maintenance_work_mem = maintenance_work_mem
        self.workers = int(workers) if workers is not None else max(1, (os.cpu_count() or 2) - 1)
        self.conn: psycopg.Connection[Any] | None = None
        # Every name the restore makes carries this run's token in full (names.derived
        # shortens the table's name instead), so none can collide with another or be cut.
        self.token = uuid.uuid4().hex[:8]
        self.staging = names.derived(self.name, f"_vecdr_{self.token}")
        self.columns: list[Column] = []
        self.sources: list[str] = []  # the snapshot column feeding each table column
        self.phases: dict[str, float] = {}
        self._warn: Any = lambda message: None
        self._first = True

    @property
    def qualified(self) -> str:
        return f"{quote(self.schema)}.{quote(self.name)}"

    def _exists(self, conn: psycopg.Connection[Any]) -> bool:
        return conn.execute("SELECT to_regclass(%s)", (self.qualified,)).fetchone()[0] is not None

    def exists(self) -> bool:
        with connect(self.dsn, autocommit=True) as conn:
            return self._exists(conn)

    # -- begin --------------------------------------------------------------------

    def begin(self, spec: RestoreSpec, force: bool = False) -> bool:
        self.spec = spec
        self._warn = spec.options.get("warn", lambda message: None)
        self.conn = conn = connect(self.dsn)
        self._ensure_extension(conn)
        if self._exists(conn) and not force:
            raise TargetExistsError(f"table {self.schema}.{self.name} already exists; pass --force to replace it")
        self.columns, self.sources = self._layout(spec)
        started = time.perf_counter()
        cols = ", ".join(
            f"{quote(c.name)} {self._load_type(c)}" + (" NOT NULL" if c.not_null else "") for c in self._table_order()
        )
        try:
            conn.execute(f"CREATE TABLE {quote(self.schema)}.{quote(self.staging)} ({cols})")
        except psycopg.Error as exc:  # e.g. no privilege on the schema
            raise TargetError(f"cannot create {self.schema}.{self.name}: {first_line(exc)}") from exc
        conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", (self.maintenance_work_mem,))
        conn.execute("SELECT set_config('max_parallel_maintenance_workers', %s, true)", (str(self.workers),))
        self.phases["create"] = time.perf_counter() - started
        return False

    def _ensure_extension(self, conn: psycopg.Connection[Any]) -> None:
        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone():
            return
        if not conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone():
            raise NotFoundInBackendError(
                f"the pgvector extension is not installed on {self.dsn.shown} and not available to install"
            )
        try:
            conn.execute("CREATE EXTENSION vector")
        except psycopg.Error as exc:
            raise BackendError(f"cannot create the pgvector extension on {self.dsn.shown}: {first_line(exc)}") from exc

    def _layout(self, spec: RestoreSpec) -> tuple[list[Column], list[str]]:
        recorded = spec.index if spec.index.get("engine") == "pgvector" else {}
        d = spec.dimension
        if recorded:
            id_col = Column(self.id_name or recorded["id"]["name"], recorded["id"]["type"], "", True)
            vec_type = recorded["vector"]["type"]
            vec_col = Column(self.vector_name or recorded["vector"]["name"], vec_type, "vector", True, d)
        else:
            id_col = Column(self.id_name or "id", "bigint" if spec.id_type == "int64" else "text", "", True)
            vec_col = Column(self.vector_name or "embedding", f"vector({d})", "vector", True, d)
        id_kind = "int8" if spec.id_type == "int64" else ("cast" if id_col.pg_type == "uuid" else "text")
        if recorded and spec.id_type == "int64":
            id_kind = {"smallint": "int2", "integer": "int4"}.get(id_col.pg_type, "int8")
        id_col = Column(id_col.name, id_col.pg_type, id_kind, True)
        attrs = [column_for_field(f) for f in spec.attributes]
        names = [id_col.name, vec_col.name] + [a.name for a in attrs]
        if len(set(names)) != len(names):
            raise SchemaError(f"column names collide in the restored table: {names}; rename with id= or vector=")
        return [id_col, vec_col, *attrs], ["id", "vector"] + [a.name for a in attrs]

    def _table_order(self) -> list[Column]:
        """The columns in the recorded table's order, so ``SELECT *`` and positional INSERTs still fit."""
        recorded = self.spec.index if self.spec.index.get("engine") == "pgvector" else {}
        if not recorded.get("columns"):
            return self.columns
        rename = {recorded["id"]["name"]: self.columns[0].name, recorded["vector"]["name"]: self.columns[1].name}
        rank = {rename.get(c["name"], c["name"]): i for i, c in enumerate(recorded["columns"])}
        return sorted(self.columns, key=lambda c: rank.get(c.name, len(rank)))

    def _load_type(self, column: Column) -> str:
        """The type a column has while loading: text for types that travel as text."""
        if column.kind == "cast":
            return "text"
        if column.kind == "vector" and not column.pg_type.startswith("vector"):
            return f"vector({column.dimension})" if column.dimension else "vector"  # halfvec loads as vector
        return column.pg_type

    # -- rows ---------------------------------------------------------------------

    def write(self, rows: pa.Table) -> None:
        assert self.conn is not None
        started = time.perf_counter()
        arrays = [rows.column(name).combine_chunks() for name in self.sources]
        data = encode_rows(arrays, self.columns, header=True) + TRAILER
        names = ", ".join(quote(c.name) for c in self.columns)
        try:
            with (
                self.conn.cursor() as cur,
                cur.copy(
                    f"COPY {quote(self.schema)}.{quote(self.staging)} ({names}) FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.write(data)
        except psycopg.Error as exc:
            raise TargetError(f"loading rows into {self.schema}.{self.name} failed: {first_line(exc)}") from exc
        self.phases["load"] = self.phases.get("load", 0.0) + time.perf_counter() - started

    # -- finish -------------------------------------------------------------------

    def finish(self) -> dict[str, float]:
        assert self.conn is not None
        conn, staging = self.conn, f"{quote(self.schema)}.{quote(self.staging)}"
        try:
            started = time.perf_counter()
            casts = [c for c in self.columns if self._load_type(c) != c.pg_type]
            if casts:
                conn.execute(
                    f"ALTER TABLE {staging} "
                    + ", ".join(
                        f"ALTER COLUMN {quote(c.name)} TYPE {c.pg_type} USING {quote(c.name)}::{c.pg_type}"
                        for c in casts
                    )
                )
            count = conn.execute(f"SELECT count(*) FROM {staging}").fetchone()[0]
            if count != self.spec.rows:
                raise TargetError(f"loaded {count} rows, expected {self.spec.rows}")
            self.phases["convert"] = time.perf_counter() - started
            started = time.perf_counter()
            pkey = names.derived(self.name, f"_vecdr_{self.token}_pkey")
            id_column = quote(self.columns[0].name)
            conn.execute(f"ALTER TABLE {staging} ADD CONSTRAINT {quote(pkey)} PRIMARY KEY ({id_column})")
            self.phases["primary_key"] = time.perf_counter() - started
            started = time.perf_counter()
            built = [(self._create_index(i, index), index) for i, index in enumerate(self._indexes())]
            self.phases["index"] = time.perf_counter() - started
            started = time.perf_counter()
            self._publish(pkey, built)
            conn.commit()
            self.phases["publish"] = time.perf_counter() - started
        except psycopg.Error as exc:
            raise TargetError(f"building {self.schema}.{self.name} failed: {first_line(exc)}") from exc
        finally:
            if not conn.closed:
                conn.rollback()
                conn.close()
        return self.phases

    def _indexes(self) -> list[dict[str, Any]]:
        """The indexes to build, as recorded or translated from another engine's index."""
        spec = self.spec
        vec = self.columns[1].name
        if spec.index.get("engine") == "pgvector":
            recorded = spec.index
            rename = {recorded["id"]["name"]: self.columns[0].name, recorded["vector"]["name"]: vec}
            out = []
            for index in recorded.get("indexes", []):
                if index.get("expression"):
                    self._warn(f"index {index['name']} uses an expression or predicate; not recreated")
                    continue
                columns, include = ([rename.get(c, c) for c in index.get(k, [])] for k in ("columns", "include"))
                out.append({**index, "columns": columns, "include": include})
            return out
        portable = spec.index.get("portable")
        if not portable or portable.get("kind") not in ("hnsw", "ivf"):
            return []
        metric = portable.get("metric", "L2")
        if portable["kind"] == "hnsw":
            # pgvector's bounds: 2 ≤ m ≤ 100, 2·m ≤ ef_construction ≤ 1000 (FAISS's default 40 < 2·32).
            m = min(100, max(2, int(portable.get("m", 16))))
            ef = min(1000, max(2 * m, int(portable.get("ef_construction", 64))))
            if (m, ef) != (portable.get("m"), portable.get("ef_construction")):
                self._warn(f"HNSW index built with m={m}, ef_construction={ef} (pgvector's limits)")
            method, params = "hnsw", {"m": m, "ef_construction": ef}
        else:
            lists = min(32768, max(1, int(portable.get("lists", 100))))
            method, params = "ivfflat", {"lists": lists}
        return [
            {
                "name": None,
                "method": method,
                "columns": [vec],
                "opclasses": [OPCLASS.get(metric, "vector_l2_ops")],
                "params": params,
                "unique": False,
            }
        ]

    def _create_index(self, i: int, index: dict[str, Any]) -> str:
        assert self.conn is not None
        name = names.derived(self.name, f"_vecdr_{self.token}_i{i}")
        # Key columns have an operator class each; older records list INCLUDE columns after them.
        keys = len(index["opclasses"])
        orders = index.get("orders") or [""] * keys
        cols = ", ".join(
            f"{quote(c)} {op} {order}".rstrip()
            for c, op, order in zip(index["columns"][:keys], index["opclasses"], orders, strict=True)
        )
        include = index.get("include") or index["columns"][keys:]
        including = f" INCLUDE ({', '.join(quote(c) for c in include)})" if include else ""
        params = index.get("params") or {}
        with_ = (" WITH (" + ", ".join(f"{k} = {v}" for k, v in params.items()) + ")") if params else ""
        unique = "UNIQUE " if index.get("unique") else ""
        self.conn.execute(
            f"CREATE {unique}INDEX {quote(name)} ON {quote(self.schema)}.{quote(self.staging)} "
            f"USING {index['method']} ({cols}){including}{with_}"
        )
        return name

    def _publish(self, pkey: str, built: list[tuple[str, dict[str, Any]]]) -> None:
        assert self.conn is not None
        conn, s = self.conn, quote(self.schema)
        if self._exists(conn):
            conn.execute(f"DROP TABLE {self.qualified}")
        conn.execute(f"ALTER TABLE {s}.{quote(self.staging)} RENAME TO {quote(self.name)}")
        final_pkey = quote(self._free(names.derived(self.name, "_pkey")))
        conn.execute(f"ALTER TABLE {self.qualified} RENAME CONSTRAINT {quote(pkey)} TO {final_pkey}")
        recorded_table = self.spec.index.get("table")
        for staging_name, index in built:
            wanted = index.get("name")
            if wanted and recorded_table and recorded_table != self.name and wanted.startswith(recorded_table):
                wanted = self.name + wanted[len(recorded_table) :]
            if not wanted:
                wanted = names.derived(self.name, f"_{'_'.join(index['columns'])}_idx")
            conn.execute(f"ALTER INDEX {s}.{quote(staging_name)} RENAME TO {quote(self._free(wanted))}")

    def _free(self, name: str) -> str:
        """``name`` if no relation in the schema has it, else ``name`` with a number."""
        assert self.conn is not None
        base, n = names.derived(name), 0
        candidate = base
        while self.conn.execute(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            (self.schema, candidate),
        ).fetchone():
            n += 1
            candidate = names.clip(base, names.MAX_BYTES - len(str(n))) + str(n)
        return candidate

    # -- after finish ---------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int) -> list[list[Any]] | None:
        metric = (self.spec.index.get("portable") or {}).get("metric", "L2")
        with connect(self.dsn, autocommit=True) as conn:
            return nearest(conn, self.qualified, self.columns[0].name, quote(self.columns[1].name), queries, k, metric)

    def count(self) -> int | None:
        with connect(self.dsn, autocommit=True) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {self.qualified}").fetchone()[0])

    def drop(self) -> None:
        with connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {self.qualified}")

    def abort(self) -> None:
        if self.conn is not None and not self.conn.closed:
            try:
                self.conn.rollback()
            finally:
                self.conn.close()
