"""The repository's object names, and the check that a name read from a document is one.

Manifests and commit records are read from the store, so the keys they name are
untrusted until checked: a crafted ``../../home/x/.ssh/id_rsa``, an absolute path, a
URL or a backslash must never reach a store. Every key read from a document must
have exactly the shape vecdr writes::

    segments/ab/<sha256>.parquet
    artifacts/ab/<sha256>.<ext>        ext: lower-case letters and digits, dot-separated
    manifests/<snapshot id>.json       32 lower-case hex digits

and a content-addressed key must name the reference's own sha256, sharded by its
first two digits. Anything else is refused before any store is touched.
"""

from __future__ import annotations

import re
from typing import Any

from vecdr.format.hashing import PART_BYTES

#: Kinds of objects a document may name, and the shape of each kind's keys.
_SHAPES = {
    "segments": re.compile(r"segments/([0-9a-f]{2})/([0-9a-f]{64})\.parquet"),
    "artifacts": re.compile(r"artifacts/([0-9a-f]{2})/([0-9a-f]{64})\.[a-z0-9]{1,16}(?:\.[a-z0-9]{1,16}){0,3}"),
    "manifests": re.compile(r"manifests/[0-9a-f]{32}\.json"),
}
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: Characters of an offending key shown in a message: enough to recognise it.
_SHOWN = 120


class LayoutError(ValueError):
    """A document names something that is not an object of the repository's layout."""


def object_key(kind: str, digest: str, ext: str) -> str:
    """``segments/ab/<sha256>.parquet``: sharded by the first two hex digits."""
    return f"{kind}/{digest[:2]}/{digest}.{ext}"


def shown(key: object) -> str:
    """``key`` as a message shows it: quoted, escaped, and cut short."""
    text = repr(key)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 4] + "...'"


def check_ref(kind: str, key: Any, sha256: Any, size: Any) -> None:
    """Refuse a reference whose key is not a ``kind`` key of the layout, or whose sha256
    or size is malformed; :class:`LayoutError` says which."""
    shape = _SHAPES[kind]
    if not isinstance(key, str) or (match := shape.fullmatch(key)) is None:
        raise LayoutError(f"object key {shown(key)} is not a {kind} key of this repository")
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise LayoutError(f"object {key} has a malformed sha256 {shown(sha256)}")
    if shape.groups and (match.group(1) != sha256[:2] or match.group(2) != sha256):
        raise LayoutError(f"object key {key} does not name its own sha256 {sha256}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise LayoutError(f"object {key} has a malformed size {shown(size)}")


def check_parts(key: str, parts: Any, size: int) -> None:
    """Refuse part hashes that are not one well-formed sha256 per part of an object of ``size``."""
    if parts == []:
        return
    wanted = -(-size // PART_BYTES) if size > PART_BYTES else 0
    if not isinstance(parts, list) or len(parts) != wanted or not all(
        isinstance(p, str) and _SHA256.fullmatch(p) for p in parts
    ):
        raise LayoutError(f"object {key} has malformed part hashes (expected {wanted} sha256 values)")
