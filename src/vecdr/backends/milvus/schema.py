"""What a collection is: its fields, which is the id and which the vector, partitions, indexes.

:func:`describe` reads a collection through pymilvus into a :class:`Collection`,
whose :meth:`Collection.record` is what the manifest keeps (and a restore into
Milvus recreates); :func:`foreign` makes one for a snapshot of another engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from vecdr.backends import naming
from vecdr.backends.milvus.types import DYNAMIC, PARTITION, FieldSpec, spec_for_arrow, type_name
from vecdr.errors import NotFoundInBackendError, SchemaError, UsageError

DEFAULT_PARTITION = "_default"
#: Milvus names (collections, fields, partitions): a letter or _, then letters, digits, _.
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
#: Milvus metric names and their engine-neutral spelling in ``portable``.
METRICS = {"L2": "L2", "IP": "IP", "COSINE": "cosine"}
#: Defaults of Milvus Lite's FAISS-backed indexes, for indexes recorded without parameters.
HNSW_DEFAULTS = {"M": 16, "efConstruction": 200}
IVF_DEFAULT_NLIST = 128
_TYPE_PARAMS = ("dim", "max_length", "max_capacity")


#: The longest name Milvus takes (``proxy.maxNameLength``; Milvus Lite: a folder name, 255 bytes).
MAX_NAME = 255


def derived_name(base: str, suffix: str) -> str:
    """``base + suffix`` as a Milvus name that fits, the suffix (e.g. ``_vecdr_<token>``) kept
    whole (:func:`vecdr.backends.naming.derived`): derived names never collide with each other."""
    return naming.derived(base, suffix, MAX_NAME)


def check_name(name: str, what: str) -> str:
    if not NAME.match(name):
        raise UsageError(f"{name!r} is not a valid Milvus {what} name (a letter or _, then letters, digits, _)")
    return name


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """One index: on which field, its type, metric and build parameters."""

    field: str
    index_type: str
    metric_type: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "index_type": self.index_type}
        if self.metric_type:
            out["metric_type"] = self.metric_type
        if self.params:
            out["params"] = self.params
        if self.name and self.name != self.field:
            out["name"] = self.name
        return out

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> IndexSpec:
        return cls(record["field"], record["index_type"], record.get("metric_type", ""),
                   dict(record.get("params", {})), record.get("name", ""))  # fmt: skip

    def portable(self) -> dict[str, Any]:
        """This vector index in engine-neutral terms, as the FAISS and pgvector backends read them."""
        metric = METRICS.get(self.metric_type.upper(), "L2")
        kind = self.index_type.upper()
        if kind in ("FLAT", "BRUTE_FORCE", "GPU_BRUTE_FORCE"):
            return {"kind": "flat", "metric": metric}
        if "IVF" in kind or kind == "SCANN":
            return {"kind": "ivf", "metric": metric, "lists": int(self.params.get("nlist", IVF_DEFAULT_NLIST))}
        # HNSW and its quantized forms; AUTOINDEX, DISKANN and CAGRA are graphs too.
        return {
            "kind": "hnsw",
            "metric": metric,
            "m": int(self.params.get("M", HNSW_DEFAULTS["M"])),
            "ef_construction": int(self.params.get("efConstruction", HNSW_DEFAULTS["efConstruction"])),
        }


def index_for_portable(portable: dict[str, Any] | None, vector: str) -> IndexSpec:
    """The Milvus index for another engine's index (HNSW, IVF_FLAT or FLAT; AUTOINDEX if unknown)."""
    if not portable:
        return IndexSpec(vector, "AUTOINDEX", "L2")
    metric = {"L2": "L2", "IP": "IP", "cosine": "COSINE"}.get(portable.get("metric", "L2"), "L2")
    if portable.get("kind") == "hnsw":
        params = {"M": int(portable.get("m", 16)), "efConstruction": int(portable.get("ef_construction", 200))}
        return IndexSpec(vector, "HNSW", metric, params)
    if portable.get("kind") == "ivf":
        return IndexSpec(vector, "IVF_FLAT", metric, {"nlist": int(portable.get("lists", IVF_DEFAULT_NLIST))})
    return IndexSpec(vector, "FLAT", metric)


@dataclass(frozen=True, slots=True)
class Collection:
    """A collection's schema as vecdr keeps and recreates it."""

    name: str
    fields: tuple[FieldSpec, ...]  # every field, in schema order
    vector: str  # the field that is the snapshot's ``vector`` column
    dynamic: bool = False
    partitions: tuple[str, ...] = (DEFAULT_PARTITION,)
    num_partitions: int | None = None  # partition-key collections: how many buckets
    indexes: tuple[IndexSpec, ...] = ()
    description: str = ""
    consistency_level: str = ""
    properties: dict[str, str] = field(default_factory=dict)
    shards: int | None = None

    @property
    def primary(self) -> FieldSpec:
        return next(f for f in self.fields if f.is_primary)

    @property
    def vector_field(self) -> FieldSpec:
        return next(f for f in self.fields if f.name == self.vector)

    @property
    def partition_key(self) -> str | None:
        return next((f.name for f in self.fields if f.is_partition_key), None)

    @property
    def attributes(self) -> list[FieldSpec]:
        """Every field but the primary key and the snapshot's vector, in schema order."""
        return [f for f in self.fields if not f.is_primary and f.name != self.vector]

    @property
    def tracks_partitions(self) -> bool:
        """Rows carry their partition, except where a partition key decides it."""
        return self.partition_key is None

    @property
    def id_type(self) -> str:
        return "int64" if self.primary.type == "INT64" else "string"

    def arrow_attributes(self) -> pa.Schema:
        """The attribute columns of the segments: fields, then ``$meta`` and ``$partition``."""
        out = [f.arrow_field() for f in self.attributes]
        if self.dynamic:
            out.append(pa.field(DYNAMIC, pa.string(), nullable=False, metadata={b"milvus_type": b"JSON"}))
        if self.tracks_partitions:
            out.append(pa.field(PARTITION, pa.string(), nullable=False))
        return pa.schema(out)

    def index_on(self, field_name: str) -> IndexSpec | None:
        return next((i for i in self.indexes if i.field == field_name), None)

    def portable(self) -> dict[str, Any] | None:
        index = self.index_on(self.vector)
        return index.portable() if index is not None else None

    def record(self) -> dict[str, Any]:
        """The manifest's index spec: enough to recreate the collection."""
        index = self.index_on(self.vector)
        return {
            "engine": "milvus",
            "collection": self.name,
            "description": self.description,
            "primary_key": self.primary.name,
            "auto_id": self.primary.auto_id,
            "vector": self.vector,
            "metric": index.metric_type if index is not None else None,
            "fields": [f.record() for f in self.fields],
            "dynamic_field": self.dynamic,
            "partitions": list(self.partitions),
            "partition_key": self.partition_key,
            "num_partitions": self.num_partitions,
            "indexes": [i.record() for i in self.indexes],
            "consistency_level": self.consistency_level,
            "properties": self.properties,
            "shards": self.shards,
            "portable": self.portable(),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], name: str) -> Collection:
        return cls(
            name=name,
            fields=tuple(FieldSpec.from_record(f) for f in record["fields"]),
            vector=record["vector"],
            dynamic=bool(record.get("dynamic_field")),
            partitions=tuple(record.get("partitions") or (DEFAULT_PARTITION,)),
            num_partitions=record.get("num_partitions"),
            indexes=tuple(IndexSpec.from_record(i) for i in record.get("indexes", [])),
            description=record.get("description", ""),
            consistency_level=record.get("consistency_level", ""),
            properties=dict(record.get("properties") or {}),
            shards=record.get("shards"),
        )


def _plain(value: Any) -> Any:
    """A default value as a JSON value (pymilvus may hand back its protobuf ``ValueField``)."""
    which = getattr(value, "WhichOneof", None)
    if which is None:
        return value
    slot = which("data")
    return getattr(value, slot) if slot else None


def _field(raw: dict[str, Any], collection: str) -> FieldSpec:
    name = raw["name"]
    params = {k: (int(v) if k in _TYPE_PARAMS else v) for k, v in (raw.get("params") or {}).items()}
    element = raw.get("element_type")
    return FieldSpec(
        name=name,
        type=type_name(int(raw["type"]), name, collection),
        params=params,
        element_type=type_name(int(element), name, collection) if element is not None else None,
        nullable=bool(raw.get("nullable", False)),
        default_value=_plain(raw.get("default_value")),
        is_primary=bool(raw.get("is_primary", False)),
        auto_id=bool(raw.get("auto_id", False)),
        is_partition_key=bool(raw.get("is_partition_key", False)),
        is_clustering_key=bool(raw.get("is_clustering_key", False)),
        description=raw.get("description") or "",
    )


def _index(client: Any, collection: str, name: str) -> IndexSpec | None:
    desc = client.describe_index(collection, name)
    if not desc:
        return None
    # Milvus returns build parameters as flat keys; Milvus Lite as a JSON "params" dict.
    skip = {"index_type", "metric_type", "field_name", "index_name", "total_rows", "indexed_rows",
            "pending_index_rows", "state", "params", "index_state_fail_reason"}  # fmt: skip
    params = {k: v for k, v in desc.items() if k not in skip}
    params.update(desc.get("params") or {})
    return IndexSpec(desc["field_name"], desc["index_type"], desc.get("metric_type", "") or "", params,
                     desc.get("index_name", ""))  # fmt: skip


def describe(client: Any, name: str, vector: str | None = None) -> Collection:
    """Read collection ``name``'s schema, partitions and indexes; refuse what vecdr cannot keep."""
    raw = client.describe_collection(name)
    if raw.get("functions"):
        names = ", ".join(f.get("name", "?") if isinstance(f, dict) else str(f) for f in raw["functions"])
        raise SchemaError(
            f"collection {name!r} has schema functions ({names}): their output fields are not yet supported"
        )
    if raw.get("struct_array_fields"):
        raise SchemaError(f"collection {name!r} has struct array fields, which are not yet supported")
    fields = tuple(_field(f, name) for f in raw["fields"])
    primary = next((f for f in fields if f.is_primary), None)
    if primary is None or primary.type not in ("INT64", "VARCHAR"):
        raise SchemaError(f"collection {name!r} needs an INT64 or VARCHAR primary key")
    vectors = [f.name for f in fields if f.type == "FLOAT_VECTOR"]
    if vector is None:
        if not vectors:
            raise SchemaError(f"collection {name!r} has no FLOAT_VECTOR field")
        vector = vectors[0]
    elif vector not in {f.name for f in fields}:
        raise NotFoundInBackendError(f"collection {name!r} has no field {vector!r}")
    elif vector not in vectors:
        raise SchemaError(f"field {vector!r} of collection {name!r} is not a FLOAT_VECTOR field")
    partition_key = any(f.is_partition_key for f in fields)
    indexes = [i for n in client.list_indexes(name) if (i := _index(client, name, n)) is not None]
    return Collection(
        name=name,
        fields=fields,
        vector=vector,
        dynamic=bool(raw.get("enable_dynamic_field", False)),
        partitions=tuple(client.list_partitions(name)),
        num_partitions=int(raw.get("num_partitions", 0)) if partition_key else None,
        indexes=tuple(indexes),
        description=raw.get("description") or "",
        consistency_level=raw.get("consistency_level_name") or "",
        properties={str(k): str(v) for k, v in (raw.get("properties") or {}).items()},
        shards=raw.get("num_shards"),
    )


def foreign(name: str, dimension: int, id_type: str, attributes: pa.Schema, portable: dict[str, Any] | None,
            id_name: str, vector_name: str) -> Collection:  # fmt: skip
    """A collection for a snapshot of another engine (FAISS, pgvector, Parquet).

    ``$meta`` and ``$partition`` columns (a Milvus snapshot that went through another
    engine) become the dynamic field and the rows' partitions again.
    """
    primary = (
        FieldSpec(id_name, "INT64", is_primary=True)
        if id_type == "int64"
        else FieldSpec(id_name, "VARCHAR", {"max_length": 65535}, is_primary=True)
    )
    vector = FieldSpec(vector_name, "FLOAT_VECTOR", {"dim": dimension})
    attrs = []
    for arrow in attributes:
        if arrow.name in (DYNAMIC, PARTITION):
            continue
        if not NAME.match(arrow.name):
            raise SchemaError(
                f"attribute {arrow.name!r} is not a valid Milvus field name (a letter or _, then letters, digits, _)"
            )
        attrs.append(spec_for_arrow(arrow))
    fields = (primary, vector, *attrs)
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise SchemaError(f"field names collide in the restored collection: {names}; rename with id= or vector=")
    indexes = [index_for_portable(portable, vector_name)]
    # Every vector field needs an index before Milvus loads the collection.
    indexes += [index_for_portable(None, f.name) for f in attrs if f.type == "FLOAT_VECTOR"]
    return Collection(name=name, fields=fields, vector=vector_name, dynamic=DYNAMIC in attributes.names,
                      indexes=tuple(indexes))  # fmt: skip
