"""References to immutable, content-addressed objects and the JSON helpers they share."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vecdr.errors import IntegrityError


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """Where an immutable object lives, and the sha256 and size its bytes must have."""

    key: str
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "sha256": self.sha256, "size": self.size}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ObjectRef:
        return cls(key=str(d["key"]), sha256=str(d["sha256"]), size=int(d["size"]))


def dumps(doc: dict[str, Any]) -> bytes:
    """Canonical JSON: sorted keys, so equal documents give equal bytes and hashes."""
    return (json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()


def loads(data: bytes, name: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"{name}: not valid JSON ({exc})", path=name) from exc
    if not isinstance(doc, dict):
        raise IntegrityError(f"{name}: expected a JSON object", path=name)
    return doc
