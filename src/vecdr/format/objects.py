"""References to immutable, content-addressed objects and the JSON helpers they share."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vecdr.errors import IntegrityError
from vecdr.format.layout import check_parts, check_ref


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """Where an immutable object lives, and the sha256 and size its bytes must have."""

    key: str
    sha256: str
    size: int
    #: sha256 of each PART_BYTES slice, for a large object (empty otherwise): what a
    #: reader checks, on all its cores at once; the whole-object sha256 names the object.
    parts: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "sha256": self.sha256, "size": self.size}
        if self.parts:
            out["parts"] = list(self.parts)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], kind: str) -> ObjectRef:
        """The reference a document holds, to an object of ``kind`` (``segments``,
        ``artifacts`` or ``manifests``); :class:`~vecdr.format.layout.LayoutError` unless
        its key has exactly the layout's shape (see :mod:`vecdr.format.layout`)."""
        if not isinstance(d, dict):
            raise TypeError(f"an object reference must be a JSON object, not {type(d).__name__}")
        key, sha256, size = d["key"], d["sha256"], d["size"]
        check_ref(kind, key, sha256, size)
        parts = d.get("parts", [])
        check_parts(key, parts, size)
        return cls(key=key, sha256=sha256, size=size, parts=tuple(parts))


def dumps(doc: dict[str, Any]) -> bytes:
    """Canonical JSON: sorted keys, so equal documents give equal bytes and hashes."""
    return (json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()


def loads(data: bytes, name: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, an integer of 5,000 digits, deep nesting
        raise IntegrityError(f"{name}: not valid JSON ({' '.join(str(exc).split())[:200]})", path=name) from exc
    if not isinstance(doc, dict):
        raise IntegrityError(f"{name}: expected a JSON object", path=name)
    return doc
