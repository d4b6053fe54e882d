"""The two small mutable-namespace documents: ``config.json`` and commit records.

A commit record ``commits/<seq:020d>.json`` is THE commit point of a snapshot: it is
created with create-if-absent and names the manifest and its sha256.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vecdr.errors import IntegrityError, UnsupportedFormatError
from vecdr.format import FORMAT_VERSION
from vecdr.format.layout import LayoutError
from vecdr.format.objects import ObjectRef, dumps, loads


def _check_version(doc: dict[str, Any], name: str) -> None:
    version = doc.get("format")
    if not isinstance(version, int):
        raise IntegrityError(f"{name}: no format version", path=name)
    if version > FORMAT_VERSION:
        raise UnsupportedFormatError(
            f"{name} has format {version}; this vecdr reads up to {FORMAT_VERSION}: upgrade vecdr"
        )


#: Features a repository may require of its readers (``config.json``'s ``requires``).
#: A reader refuses a repository that requires a feature it does not know, rather
#: than misreading it (an encrypted repository read as plain, for instance).
FEATURES = frozenset({"encryption"})


@dataclass(frozen=True, slots=True)
class Config:
    """``config.json``: what this repository is and what its store can do.

    ``encryption``: how objects are encrypted (cipher, key derivation parameters,
    key check value; see :mod:`vecdr.store.keys`), or None for a plain repository.
    """

    id: str
    created_at: str
    format: int = FORMAT_VERSION
    capabilities: dict[str, Any] = field(default_factory=dict)
    encryption: dict[str, Any] | None = None

    @property
    def requires(self) -> list[str]:
        return ["encryption"] if self.encryption is not None else []

    def to_bytes(self) -> bytes:
        doc = {
            "format": self.format,
            "id": self.id,
            "created_at": self.created_at,
            "capabilities": self.capabilities,
            "kind": "vecdr-repository",
        }
        if self.encryption is not None:
            doc |= {"encryption": self.encryption, "requires": self.requires}
        return dumps(doc)

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "config.json") -> Config:
        doc = loads(data, name)
        if doc.get("kind") != "vecdr-repository":
            raise IntegrityError(f"{name}: not a vecdr repository config", path=name)
        _check_version(doc, name)
        requires = doc.get("requires", [])
        if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
            raise IntegrityError(f"{name}: malformed requires {requires!r}", path=name)
        unknown = sorted(set(requires) - FEATURES)
        if unknown:
            raise UnsupportedFormatError(
                f"{name}: the repository requires {', '.join(unknown)}, which this vecdr does not know: upgrade vecdr"
            )
        encryption = doc.get("encryption")
        if (encryption is not None) != ("encryption" in requires) or not isinstance(encryption, dict | None):
            raise IntegrityError(f"{name}: encryption settings and requires disagree", path=name)
        try:
            return cls(
                id=_text(doc["id"]),
                created_at=_text(doc["created_at"]),
                format=doc["format"],
                capabilities=_object(doc.get("capabilities", {})),
                encryption=encryption,
            )
        except (KeyError, TypeError) as exc:
            raise IntegrityError(f"{name}: malformed config ({exc!r})", path=name) from exc


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
                seq=_whole(doc["seq"]),
                snapshot=_text(doc["snapshot"]),
                collection=_text(doc["collection"]),
                manifest=ObjectRef.from_dict(doc["manifest"], "manifests"),
                created_at=_text(doc["created_at"]),
                parent=_optional_text(doc.get("parent")),
                tags=_texts(doc.get("tags", [])),
                rows=_whole(doc.get("rows", 0)),
            )
        except LayoutError as exc:
            raise IntegrityError(f"{name}: {exc}; refusing to read it", path=name) from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"{name}: malformed commit record ({exc!r})", path=name) from exc


def _whole(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"expected a whole number, not {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, not {type(value).__name__}")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, not {type(value).__name__}")
    return value


def _texts(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("expected a list of strings")
    return tuple(value)
