"""Names derived from a user's name (staging tables and collections, indexes, change logs)
that must fit an engine's limit on names.

An engine that cuts or refuses a long name would lose the suffix that makes a derived
name unique, so a name that would not fit keeps a readable prefix of the base name,
a short hash of the whole of it, then the full suffix.
"""

from __future__ import annotations

import hashlib

#: Hex digits of the hash that stands for the part of a name that was cut.
HASH_DIGITS = 10


def clip(text: str, limit: int) -> str:
    """The longest prefix of ``text`` of at most ``limit`` bytes in UTF-8, cut between characters."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", "ignore")


def derived(base: str, suffix: str, limit: int) -> str:
    """``base + suffix`` where it fits in ``limit`` bytes; else a prefix of ``base``, a hash of all
    of it, and ``suffix``.

    Two different bases never share a shortened name (but for a hash collision), and
    names with different suffixes never collide, whatever the base's length.
    """
    whole = base + suffix
    if len(whole.encode()) <= limit:
        return whole
    digest = hashlib.sha256(base.encode()).hexdigest()[:HASH_DIGITS]
    room = limit - len(suffix.encode()) - HASH_DIGITS - 1
    if room < 1:
        raise ValueError(f"suffix {suffix!r} leaves no room for a name")
    return f"{clip(base, room)}_{digest}{suffix}"
