"""Milvus field types and the Arrow types their values travel as.

Every supported scalar type has an Arrow type; a field's Milvus type rides along
in the Arrow field's metadata so a restore into Milvus (or a reader of the
segments) knows what it was. Vector types other than FLOAT_VECTOR are refused
with a message that says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from vecdr.errors import SchemaError

#: Milvus DataType numbers (pymilvus.DataType), by name.
CODES = {
    "BOOL": 1,
    "INT8": 2,
    "INT16": 3,
    "INT32": 4,
    "INT64": 5,
    "FLOAT": 10,
    "DOUBLE": 11,
    "VARCHAR": 21,
    "ARRAY": 22,
    "JSON": 23,
    "GEOMETRY": 24,
    "TIMESTAMPTZ": 26,
    "FLOAT_VECTOR": 101,
}
NAMES = {code: name for name, code in CODES.items()}

#: Vector types Milvus has and vecdr does not snapshot yet.
UNSUPPORTED_VECTORS = {
    100: "BINARY_VECTOR",
    102: "FLOAT16_VECTOR",
    103: "BFLOAT16_VECTOR",
    104: "SPARSE_FLOAT_VECTOR",
    105: "INT8_VECTOR",
}
NOT_YET = "vecdr supports FLOAT_VECTOR fields; binary, float16, bfloat16, sparse and int8 vectors are not yet supported"

ARROW: dict[str, pa.DataType] = {
    "BOOL": pa.bool_(),
    "INT8": pa.int8(),
    "INT16": pa.int16(),
    "INT32": pa.int32(),
    "INT64": pa.int64(),
    "FLOAT": pa.float32(),
    "DOUBLE": pa.float64(),
    "VARCHAR": pa.string(),
    "JSON": pa.string(),  # the JSON text, as Milvus returns it
    "GEOMETRY": pa.string(),  # WKT
    "TIMESTAMPTZ": pa.string(),  # ISO 8601, as Milvus returns it
}
#: Element types an ARRAY field may have.
ELEMENTS = ("BOOL", "INT8", "INT16", "INT32", "INT64", "FLOAT", "DOUBLE", "VARCHAR")

#: Field metadata carrying the Milvus type of an attribute column.
META_TYPE = b"milvus_type"
#: Attribute columns that are not schema fields: the dynamic field and each row's partition.
DYNAMIC = "$meta"
PARTITION = "$partition"

#: Longest VARCHAR Milvus allows, used for strings of snapshots from other engines.
MAX_VARCHAR = 65535


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a collection's schema, as recorded in the manifest."""

    name: str
    type: str  # a key of CODES
    params: dict[str, Any] = field(default_factory=dict)  # dim, max_length, max_capacity
    element_type: str | None = None  # ARRAY fields
    nullable: bool = False
    default_value: Any = None
    is_primary: bool = False
    auto_id: bool = False
    is_partition_key: bool = False
    is_clustering_key: bool = False
    description: str = ""

    @property
    def code(self) -> int:
        return CODES[self.type]

    @property
    def dimension(self) -> int:
        return int(self.params["dim"])

    def record(self) -> dict[str, Any]:
        """The JSON form kept in the manifest (only what is set)."""
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        for key in ("params", "element_type", "default_value", "description"):
            value = getattr(self, key)
            if value not in (None, {}, ""):
                out[key] = value
        for key in ("nullable", "is_primary", "auto_id", "is_partition_key", "is_clustering_key"):
            if getattr(self, key):
                out[key] = True
        return out

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> FieldSpec:
        return cls(**record)

    def arrow_type(self) -> pa.DataType:
        if self.type == "FLOAT_VECTOR":
            return pa.list_(pa.field("element", pa.float32(), nullable=False), self.dimension)
        if self.type == "ARRAY":
            return pa.list_(ARROW[self.element_type or ""])
        return ARROW[self.type]

    def arrow_field(self, name: str | None = None) -> pa.Field:
        return pa.field(
            name or self.name, self.arrow_type(), nullable=self.nullable, metadata={META_TYPE: self.type.encode()}
        )


def type_name(code: int, field_name: str, collection: str) -> str:
    """The supported type name of a DataType number, or a SchemaError naming the field."""
    if code in UNSUPPORTED_VECTORS:
        raise SchemaError(
            f"field {field_name!r} of collection {collection!r} is a {UNSUPPORTED_VECTORS[code]} field: {NOT_YET}"
        )
    if code not in NAMES:
        raise SchemaError(
            f"field {field_name!r} of collection {collection!r} has Milvus type {code}, which vecdr cannot store yet"
        )
    return NAMES[code]


def spec_for_arrow(arrow: pa.Field) -> FieldSpec:
    """The Milvus field an attribute column of another engine's snapshot is restored into."""
    meta = arrow.metadata or {}
    t = arrow.type
    kind = meta.get(b"pg_kind", b"").decode()
    nullable = arrow.nullable
    if pa.types.is_boolean(t):
        return FieldSpec(arrow.name, "BOOL", nullable=nullable)
    if pa.types.is_int8(t):
        return FieldSpec(arrow.name, "INT8", nullable=nullable)
    if pa.types.is_int16(t) or pa.types.is_uint8(t):
        return FieldSpec(arrow.name, "INT16", nullable=nullable)
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return FieldSpec(arrow.name, "INT32", nullable=nullable)
    if pa.types.is_int64(t) or pa.types.is_uint32(t):
        return FieldSpec(arrow.name, "INT64", nullable=nullable)
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return FieldSpec(arrow.name, "FLOAT", nullable=nullable)
    if pa.types.is_float64(t):
        return FieldSpec(arrow.name, "DOUBLE", nullable=nullable)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if kind == "jsonb" or meta.get(META_TYPE) == b"JSON":
            return FieldSpec(arrow.name, "JSON", nullable=nullable)
        return FieldSpec(arrow.name, "VARCHAR", {"max_length": MAX_VARCHAR}, nullable=nullable)
    if (pa.types.is_fixed_size_list(t)) and pa.types.is_floating(t.value_type):
        return FieldSpec(arrow.name, "FLOAT_VECTOR", {"dim": t.list_size}, nullable=nullable)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        element = spec_for_arrow(pa.field("element", t.value_type)).type
        if element in ELEMENTS:
            params = {"max_capacity": 4096, **({"max_length": MAX_VARCHAR} if element == "VARCHAR" else {})}
            return FieldSpec(arrow.name, "ARRAY", params, element_type=element, nullable=nullable)
    raise SchemaError(
        f"attribute {arrow.name!r} has Arrow type {t}, which has no Milvus field type "
        "(Milvus fields are booleans, integers, floats, strings, JSON, arrays of those and float vectors)"
    )
