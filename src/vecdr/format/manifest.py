"""Manifests: one self-contained JSON document per snapshot.

A manifest lists every segment live in its snapshot with that segment's deletion
vector, so the manifest alone gives the exact live set: restoring a snapshot never
walks a chain, and deleting an older snapshot never breaks a newer one.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from vecdr.errors import IntegrityError, UnsupportedFormatError
from vecdr.format import FORMAT_VERSION
from vecdr.format.objects import ObjectRef, dumps, loads


@dataclass(frozen=True, slots=True)
class DeletionRef:
    """A segment's deletion vector: a byte range of a snapshot's deletion file."""

    object: ObjectRef
    offset: int
    length: int

    @property
    def key(self) -> str:
        return self.object.key

    def to_dict(self) -> dict[str, Any]:
        return {**self.object.to_dict(), "offset": self.offset, "length": self.length}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeletionRef:
        return cls(ObjectRef.from_dict(d), int(d["offset"]), int(d["length"]))


@dataclass(frozen=True, slots=True)
class SegmentEntry:
    """A segment file, its row-hash sidecar, and which of its rows are live in this snapshot."""

    object: ObjectRef
    rows: int
    live: int
    hashes: ObjectRef
    deletions: DeletionRef | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": self.object.to_dict(),
            "rows": self.rows,
            "live": self.live,
            "hashes": self.hashes.to_dict(),
            "deletions": self.deletions.to_dict() if self.deletions else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SegmentEntry:
        dels = d.get("deletions")
        return cls(
            object=ObjectRef.from_dict(d["object"]),
            rows=int(d["rows"]),
            live=int(d["live"]),
            hashes=ObjectRef.from_dict(d["hashes"]),
            deletions=DeletionRef.from_dict(dels) if dels else None,
        )


@dataclass(frozen=True, slots=True)
class Manifest:
    """Everything needed to restore one snapshot of one collection."""

    snapshot: str
    collection: str
    created_at: str
    dimension: int
    id_type: str
    schema: pa.Schema
    segments: tuple[SegmentEntry, ...]
    index: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, ObjectRef] = field(default_factory=dict)
    parent: str | None = None
    tags: tuple[str, ...] = ()
    source: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    software: dict[str, str] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(s.live for s in self.segments)

    @property
    def attributes(self) -> pa.Schema:
        """The schema of the per-row attribute columns (everything but id and vector)."""
        return pa.schema([f for f in self.schema if f.name not in ("id", "vector")])

    def referenced(self) -> list[ObjectRef]:
        """Every object this manifest needs, segments first."""
        refs = [s.object for s in self.segments]
        refs += [s.hashes for s in self.segments]
        refs += list({s.deletions.key: s.deletions.object for s in self.segments if s.deletions}.values())
        refs += list(self.artifacts.values())
        return refs

    def to_bytes(self) -> bytes:
        return dumps(
            {
                "format": FORMAT_VERSION,
                "snapshot": self.snapshot,
                "collection": self.collection,
                "created_at": self.created_at,
                "parent": self.parent,
                "tags": list(self.tags),
                "dimension": self.dimension,
                "id_type": self.id_type,
                "schema": base64.b64encode(self.schema.serialize().to_pybytes()).decode(),
                "columns": [{"name": f.name, "type": str(f.type)} for f in self.schema],
                "segments": [s.to_dict() for s in self.segments],
                "index": self.index,
                "artifacts": {k: v.to_dict() for k, v in sorted(self.artifacts.items())},
                "source": self.source,
                "stats": self.stats,
                "software": self.software,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "manifest") -> Manifest:
        doc = loads(data, name)
        version = doc.get("format")
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise UnsupportedFormatError(
                f"{name} has format {version}; this vecdr reads up to {FORMAT_VERSION}: upgrade vecdr"
            )
        try:
            schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(doc["schema"])))
            return cls(
                snapshot=str(doc["snapshot"]),
                collection=str(doc["collection"]),
                created_at=str(doc["created_at"]),
                parent=doc.get("parent"),
                tags=tuple(doc.get("tags", ())),
                dimension=int(doc["dimension"]),
                id_type=str(doc["id_type"]),
                schema=schema,
                segments=tuple(SegmentEntry.from_dict(s) for s in doc["segments"]),
                index=dict(doc.get("index", {})),
                artifacts={k: ObjectRef.from_dict(v) for k, v in doc.get("artifacts", {}).items()},
                source=dict(doc.get("source", {})),
                stats=dict(doc.get("stats", {})),
                software=dict(doc.get("software", {})),
            )
        except (KeyError, TypeError, ValueError, pa.ArrowInvalid) as exc:
            raise IntegrityError(f"{name}: malformed manifest ({exc!r})", path=name) from exc
