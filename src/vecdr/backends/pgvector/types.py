"""PostgreSQL column types and how each travels: as Arrow, and in binary COPY.

Every column gets a *kind*. Native kinds are read and written in PostgreSQL's
binary COPY format; any other type travels as its text form (``col::text`` out,
a cast back to the recorded type in), so nothing is refused and nothing is lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from vecdr.errors import SchemaError

#: kind -> bytes per value in binary COPY (None: variable)
WIDTH: dict[str, int | None] = {
    "bool": 1,
    "int2": 2,
    "int4": 4,
    "int8": 8,
    "float4": 4,
    "float8": 8,
    "timestamp": 8,
    "timestamptz": 8,
    "date": 4,
    "text": None,
    "jsonb": None,
    "bytea": None,
    "vector": None,  # 4 + 4 × dimension where the dimension is declared
}

#: pg type name (pg_type.typname) -> kind, for the natively encoded types
KIND_OF_TYPNAME = {
    "bool": "bool",
    "int2": "int2",
    "int4": "int4",
    "int8": "int8",
    "float4": "float4",
    "float8": "float8",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
    "date": "date",
    "text": "text",
    "varchar": "text",
    "bpchar": "text",
    "name": "text",
    "json": "text",
    "jsonb": "jsonb",
    "bytea": "bytea",
    "vector": "vector",
}

ARROW_OF_KIND: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    "text": pa.string(),
    "jsonb": pa.string(),
    "bytea": pa.binary(),
    "cast": pa.string(),
    "vector": pa.list_(pa.float32()),
}

#: Microseconds and days from the Unix epoch to PostgreSQL's (2000-01-01).
PG_EPOCH_US = 946_684_800_000_000
PG_EPOCH_DAYS = 10_957

# Field metadata that carries the PostgreSQL type through a snapshot.
META_TYPE = b"pg_type"
META_KIND = b"pg_kind"


@dataclass(frozen=True, slots=True)
class Column:
    """A table column as vecdr moves it."""

    name: str
    pg_type: str  # format_type(): "vector(384)", "timestamp with time zone", "numeric(10,2)"
    kind: str  # a key of ARROW_OF_KIND
    not_null: bool = False
    dimension: int | None = None  # vector columns with a declared dimension

    @property
    def width(self) -> int | None:
        if self.kind == "vector":
            return 4 + 4 * self.dimension if self.dimension else None
        return WIDTH.get(self.kind)

    def arrow_field(self) -> pa.Field:
        return pa.field(
            self.name,
            ARROW_OF_KIND[self.kind],
            nullable=not self.not_null,
            metadata={META_TYPE: self.pg_type.encode(), META_KIND: self.kind.encode()},
        )


def quote(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def kind_of(typname: str) -> str:
    return KIND_OF_TYPNAME.get(typname, "cast")


def column_for_field(field: pa.Field) -> Column:
    """The column an Arrow attribute field is restored into.

    Fields from a pgvector snapshot carry their PostgreSQL type; others are mapped
    from the Arrow type.
    """
    meta = field.metadata or {}
    if META_TYPE in meta and META_KIND in meta:
        return Column(field.name, meta[META_TYPE].decode(), meta[META_KIND].decode(), not field.nullable)
    t = field.type
    if pa.types.is_boolean(t):
        pg, kind = "boolean", "bool"
    elif pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t):
        pg, kind = "smallint", "int2"
    elif pa.types.is_int32(t) or pa.types.is_uint16(t):
        pg, kind = "integer", "int4"
    elif pa.types.is_int64(t) or pa.types.is_uint32(t):
        pg, kind = "bigint", "int8"
    elif pa.types.is_float16(t) or pa.types.is_float32(t):
        pg, kind = "real", "float4"
    elif pa.types.is_float64(t):
        pg, kind = "double precision", "float8"
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        pg, kind = "text", "text"
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
        pg, kind = "bytea", "bytea"
    elif pa.types.is_timestamp(t):
        pg, kind = ("timestamp with time zone", "timestamptz") if t.tz else ("timestamp", "timestamp")
    elif pa.types.is_date32(t):
        pg, kind = "date", "date"
    elif (pa.types.is_list(t) or pa.types.is_fixed_size_list(t)) and pa.types.is_floating(t.value_type):
        pg, kind = "vector", "vector"
    else:
        raise SchemaError(f"attribute {field.name!r} has Arrow type {t}, which has no PostgreSQL column type here")
    return Column(field.name, pg, kind, not field.nullable)
