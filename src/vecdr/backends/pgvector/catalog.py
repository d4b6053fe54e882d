"""What a table is: its columns, which is the id and which the vector, and its indexes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from vecdr.backends.pgvector import names
from vecdr.backends.pgvector.types import Column, kind_of, quote
from vecdr.errors import NotFoundInBackendError, SchemaError

VECTOR_TYPES = ("vector", "halfvec")
ID_KINDS = {"int2": "int64", "int4": "int64", "int8": "int64", "text": "string", "cast": "string"}
#: pgvector operator classes and the metric each one means
OPCLASS_METRIC = {
    "vector_l2_ops": "L2",
    "vector_ip_ops": "IP",
    "vector_cosine_ops": "cosine",
    "halfvec_l2_ops": "L2",
    "halfvec_ip_ops": "IP",
    "halfvec_cosine_ops": "cosine",
}


@dataclass(frozen=True, slots=True)
class TableInfo:
    schema: str
    name: str
    columns: list[Column]  # every column, in table order
    id: Column
    vector: Column
    vector_typname: str  # "vector" or "halfvec"
    dimension: int
    indexes: list[dict[str, Any]] = field(default_factory=list)
    primary_key: bool = False

    @property
    def qualified(self) -> str:
        return f"{quote(self.schema)}.{quote(self.name)}"

    @property
    def attributes(self) -> list[Column]:
        return [c for c in self.columns if c.name not in (self.id.name, self.vector.name)]


def split_table(table: str, schema: str | None) -> tuple[str, str]:
    if schema is None and "." in table:
        schema, table = table.split(".", 1)
    return names.check(schema or "public", "schema"), names.check(table)


def describe(
    conn: psycopg.Connection[Any], table: str, schema: str | None, id_column: str | None, vector_column: str | None
) -> TableInfo:
    schema, name = split_table(table, schema)
    oid_row = conn.execute(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
        (schema, name),
    ).fetchone()
    if oid_row is None:
        raise NotFoundInBackendError(f"no table {schema}.{name} in the database")
    oid = oid_row[0]
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname, a.atttypmod, a.attnotnull "
        "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (oid,),
    ).fetchall()
    typnames = {r[0]: r[2] for r in rows}
    pk = conn.execute(
        "SELECT array_agg(a.attname ORDER BY a.attnum) FROM pg_index x "
        "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = ANY(x.indkey) "
        "WHERE x.indrelid = %s AND x.indisprimary",
        (oid,),
    ).fetchone()[0]

    if vector_column is None:
        candidates = [r[0] for r in rows if r[2] == "vector"] or [r[0] for r in rows if r[2] == "halfvec"]
        if not candidates:
            raise SchemaError(f"{schema}.{name} has no vector or halfvec column")
        vector_column = candidates[0]
    elif vector_column not in typnames:
        raise NotFoundInBackendError(f"{schema}.{name} has no column {vector_column!r}")
    elif typnames[vector_column] not in VECTOR_TYPES:
        raise SchemaError(f"column {vector_column!r} of {schema}.{name} is {typnames[vector_column]}, not a vector")

    if id_column is None:
        if pk and len(pk) == 1:
            id_column = pk[0]
        elif "id" in typnames:
            id_column = "id"
        else:
            raise SchemaError(f"{schema}.{name} has no single-column primary key or id column: name it with id=COLUMN")
    elif id_column not in typnames:
        raise NotFoundInBackendError(f"{schema}.{name} has no column {id_column!r}")

    columns: list[Column] = []
    for attname, pg_type, typname, typmod, notnull in rows:
        if attname == vector_column:
            kind, dim = "vector", (typmod if typmod > 0 else None)
        else:
            kind = kind_of(typname)
            dim = typmod if typname == "vector" and typmod > 0 else None
        columns.append(Column(attname, pg_type, kind, bool(notnull), dim))
    by_name = {c.name: c for c in columns}
    id_col = by_name[id_column]
    if id_col.kind not in ID_KINDS or (id_col.kind == "cast" and typnames[id_column] != "uuid"):
        raise SchemaError(f"id column {id_column!r} is {id_col.pg_type}: ids must be integers, text or uuid")
    vector = by_name[vector_column]
    dimension = vector.dimension or _dimension_from_rows(conn, schema, name, vector_column)
    return TableInfo(
        schema=schema,
        name=name,
        columns=columns,
        id=id_col,
        vector=vector,
        vector_typname=typnames[vector_column],
        dimension=dimension,
        indexes=_indexes(conn, oid),
        primary_key=bool(pk) and pk == [id_column],
    )


def _dimension_from_rows(conn: psycopg.Connection[Any], schema: str, name: str, column: str) -> int:
    row = conn.execute(
        f"SELECT vector_dims({quote(column)}::vector) FROM {quote(schema)}.{quote(name)} "
        f"WHERE {quote(column)} IS NOT NULL LIMIT 1"
    ).fetchone()
    if row is None:
        raise SchemaError(f"column {column!r} declares no dimension and the table is empty: cannot tell it")
    return int(row[0])


def _indexes(conn: psycopg.Connection[Any], oid: int) -> list[dict[str, Any]]:
    """Every index but the primary key's, as restore recreates it.

    ``columns`` are the key columns (each with its operator class and its order,
    e.g. ``DESC NULLS LAST``), ``include`` the columns an ``INCLUDE`` clause carries.
    """
    out = []
    for name, method, definition, columns, opclasses, options, unique, has_expr, keys, flags in conn.execute(
        "SELECT i.relname, am.amname, pg_get_indexdef(x.indexrelid), "
        "  ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(n, o) "
        "        JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n ORDER BY k.o), "
        "  ARRAY(SELECT c.opcname FROM unnest(x.indclass) WITH ORDINALITY k(n, o) "
        "        JOIN pg_opclass c ON c.oid = k.n ORDER BY k.o), "
        "  i.reloptions, x.indisunique, (x.indexprs IS NOT NULL OR x.indpred IS NOT NULL), "
        "  x.indnkeyatts, x.indoption::int2[] "
        "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am am ON am.oid = i.relam "
        "WHERE x.indrelid = %s AND NOT x.indisprimary ORDER BY i.relname",
        (oid,),
    ):
        params = dict(opt.split("=", 1) for opt in options or [])
        out.append(
            {
                "name": name,
                "method": method,
                "columns": list(columns[:keys]),
                "include": list(columns[keys:]),
                "opclasses": list(opclasses),
                "orders": [_order(flag) for flag in flags[:keys]],
                "params": params,
                "unique": bool(unique),
                "definition": definition,
                "expression": bool(has_expr),
            }
        )
    return out


def _order(option: int) -> str:
    """A key column's sort order from ``pg_index.indoption`` (bit 1: DESC, bit 2: NULLS FIRST)."""
    desc, nulls_first = bool(option & 1), bool(option & 2)
    words = ["DESC"] if desc else []
    if nulls_first != desc:  # NULLS LAST is the default ascending, NULLS FIRST descending
        words.append("NULLS FIRST" if nulls_first else "NULLS LAST")
    return " ".join(words)


def portable_index(indexes: list[dict[str, Any]], vector_column: str) -> dict[str, Any] | None:
    """The vector index in engine-neutral terms, for restoring into another engine."""
    for index in indexes:
        if index["method"] not in ("hnsw", "ivfflat") or index["columns"] != [vector_column]:
            continue
        metric = OPCLASS_METRIC.get(index["opclasses"][0], "L2")
        params = index["params"]
        if index["method"] == "hnsw":
            return {
                "kind": "hnsw",
                "metric": metric,
                "m": int(params.get("m", 16)),
                "ef_construction": int(params.get("ef_construction", 64)),
            }
        return {"kind": "ivf", "metric": metric, "lists": int(params.get("lists", 100))}
    return None
