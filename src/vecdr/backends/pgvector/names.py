"""Names vecdr derives from a table's name (staging tables, indexes, constraints, change logs).

PostgreSQL cuts every identifier at 63 bytes (NAMEDATALEN - 1), silently. A derived
name cut there loses its suffix and can collide with the table, with another derived
name or with a user's relation, so a name that would not fit keeps a readable prefix
of the table's name plus a short hash of the whole of it, then the full suffix.
"""

from __future__ import annotations

import hashlib

from vecdr.errors import UsageError

#: The longest identifier PostgreSQL keeps, in bytes.
MAX_BYTES = 63
#: Hex digits of the hash that stands for the part of a name that was cut.
HASH_DIGITS = 10


def clip(text: str, limit: int) -> str:
    """The longest prefix of ``text`` of at most ``limit`` bytes in UTF-8, cut between characters."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", "ignore")


def derived(base: str, suffix: str = "") -> str:
    """``base + suffix`` where it fits in 63 bytes; else a prefix of ``base``, a hash of all of it, and ``suffix``.

    Two different bases never share a shortened name (but for a hash collision), and
    names with different suffixes never collide, whatever the base's length.
    """
    whole = base + suffix
    if len(whole.encode()) <= MAX_BYTES:
        return whole
    digest = hashlib.sha256(base.encode()).hexdigest()[:HASH_DIGITS]
    room = MAX_BYTES - len(suffix.encode()) - HASH_DIGITS - 1
    if room < 1:
        raise ValueError(f"suffix {suffix!r} leaves no room for a name")
    return f"{clip(base, room)}_{digest}{suffix}"


def check(name: str, what: str = "table") -> str:
    """``name``, or a usage error where PostgreSQL would silently cut it (it would then name another relation)."""
    if not name:
        raise UsageError(f"the {what} name is empty")
    if len(name.encode()) > MAX_BYTES:
        raise UsageError(
            f"the {what} name {name[:20]!r}… is {len(name.encode())} bytes long: PostgreSQL names are at most "
            f"{MAX_BYTES} bytes"
        )
    return name
