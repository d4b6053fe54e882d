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
from vecdr.format.layout import LayoutError
from vecdr.format.objects import ObjectRef, dumps, loads
from vecdr.format.segment import ID, MAX_DIMENSION, VECTOR, max_segment_rows, segment_schema


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
        offset, length = _object(d)["offset"], d["length"]
        if not (_count(offset) and _count(length) and length > 0):
            raise ValueError(f"deletion range {offset!r}+{length!r} is not a byte range")
        return cls(ObjectRef.from_dict(d, "artifacts"), offset, length)


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
        dels = _object(d).get("deletions")
        rows, live = d["rows"], d["live"]
        if not (_count(rows) and _count(live) and live <= rows):
            raise ValueError(f"a segment of {rows!r} rows cannot have {live!r} live")
        return cls(
            object=ObjectRef.from_dict(d["object"], "segments"),
            rows=rows,
            live=live,
            hashes=ObjectRef.from_dict(d["hashes"], "artifacts"),
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
            schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(doc["schema"], validate=True)))
            artifacts = _object(doc.get("artifacts", {}))
            manifest = cls(
                snapshot=_text(doc["snapshot"]),
                collection=_text(doc["collection"]),
                created_at=_text(doc["created_at"]),
                parent=_optional_text(doc.get("parent")),
                tags=_texts(doc.get("tags", [])),
                dimension=doc["dimension"],
                id_type=_text(doc["id_type"]),
                schema=schema,
                segments=tuple(SegmentEntry.from_dict(s) for s in _list(doc["segments"])),
                index=_object(doc.get("index", {})),
                artifacts={k: ObjectRef.from_dict(v, "artifacts") for k, v in artifacts.items()},
                source=_object(doc.get("source", {})),
                stats=_object(doc.get("stats", {})),
                software=_object(doc.get("software", {})),
            )
            _check_schema(manifest)
            return manifest
        except LayoutError as exc:
            raise IntegrityError(f"{name}: {exc}; refusing to read it", path=name) from exc
        except (KeyError, TypeError, ValueError, OSError, pa.ArrowException) as exc:  # OSError: a bad schema
            raise IntegrityError(f"{name}: malformed manifest ({exc!r})", path=name) from exc


def _count(value: Any) -> bool:
    """Whether ``value`` is a whole number of zero or more (JSON's booleans are not)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, not {type(value).__name__}")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _texts(value: Any) -> tuple[str, ...]:
    return tuple(_text(v) for v in _list(value))


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, not {type(value).__name__}")
    return value


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, not {type(value).__name__}")
    return value


def _check_schema(manifest: Manifest) -> None:
    """The row schema must be a segment schema of the recorded dimension and id type,
    and the segments must be ones vecdr could have written: each listed once, each of
    no more rows than a segment holds (so no count sizes an allocation unchecked)."""
    if not _count(manifest.dimension) or not 1 <= manifest.dimension <= MAX_DIMENSION:
        raise ValueError(f"dimension {manifest.dimension!r} is not between 1 and {MAX_DIMENSION}")
    expected = segment_schema(manifest.dimension, manifest.id_type)
    for name in (ID, VECTOR):
        index = manifest.schema.get_field_index(name)
        if index < 0 or not manifest.schema.field(index).type.equals(expected.field(name).type):
            raise ValueError(f"the {name} column is not {expected.field(name).type}")
    most = max_segment_rows(manifest.dimension)
    seen: set[str] = set()
    for entry in manifest.segments:
        if entry.rows > most:
            raise ValueError(
                f"segment {entry.object.key} declares {entry.rows} rows; a segment of "
                f"{manifest.dimension}-dimensional vectors holds at most {most}"
            )
        if entry.object.key in seen:
            raise ValueError(f"segment {entry.object.key} is listed twice")
        seen.add(entry.object.key)
