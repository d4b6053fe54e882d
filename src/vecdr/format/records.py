"""The two small mutable-namespace documents: ``config.json`` and commit records.

A commit record ``commits/<seq:020d>.json`` is THE commit point of a snapshot: it is
created with create-if-absent and names the manifest and its sha256.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vecdr.errors import IntegrityError, UnsupportedFormatError
from vecdr.format import FORMAT_VERSION
from vecdr.format.objects import ObjectRef, dumps, loads


def _check_version(doc: dict[str, Any], name: str) -> None:
    version = doc.get("format")
    if not isinstance(version, int):
        raise IntegrityError(f"{name}: no format version", path=name)
    if version > FORMAT_VERSION:
        raise UnsupportedFormatError(
            f"{name} has format {version}; this vecdr reads up to {FORMAT_VERSION}: upgrade vecdr"
        )


@dataclass(frozen=True, slots=True)
class Config:
    """``config.json``: what this repository is and what its store can do."""

    id: str
    created_at: str
    format: int = FORMAT_VERSION
    capabilities: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return dumps(
            {
                "format": self.format,
                "id": self.id,
                "created_at": self.created_at,
                "capabilities": self.capabilities,
                "kind": "vecdr-repository",
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "config.json") -> Config:
        doc = loads(data, name)
        if doc.get("kind") != "vecdr-repository":
            raise IntegrityError(f"{name}: not a vecdr repository config", path=name)
        _check_version(doc, name)
        return cls(
            id=str(doc["id"]),
            created_at=str(doc["created_at"]),
            format=int(doc["format"]),
            capabilities=dict(doc.get("capabilities", {})),
        )


def commit_key(seq: int) -> str:
    return f"commits/{seq:020d}.json"


@dataclass(frozen=True, slots=True)
class CommitRecord:
    """The commit point: snapshot ``snapshot`` exists because this record does."""

    seq: int
    snapshot: str
    collection: str
    manifest: ObjectRef
    created_at: str
    parent: str | None = None
    tags: tuple[str, ...] = ()
    rows: int = 0

    @property
    def key(self) -> str:
        return commit_key(self.seq)

    def to_bytes(self) -> bytes:
        return dumps(
            {
                "format": FORMAT_VERSION,
                "seq": self.seq,
                "snapshot": self.snapshot,
                "collection": self.collection,
                "manifest": self.manifest.to_dict(),
                "created_at": self.created_at,
                "parent": self.parent,
                "tags": list(self.tags),
                "rows": self.rows,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes, name: str) -> CommitRecord:
        doc = loads(data, name)
        _check_version(doc, name)
        try:
            return cls(
                seq=int(doc["seq"]),
                snapshot=str(doc["snapshot"]),
                collection=str(doc["collection"]),
                manifest=ObjectRef.from_dict(doc["manifest"]),
                created_at=str(doc["created_at"]),
                parent=doc.get("parent"),
                tags=tuple(doc.get("tags", ())),
                rows=int(doc.get("rows", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"{name}: malformed commit record ({exc!r})", path=name) from exc
