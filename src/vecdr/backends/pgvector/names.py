"""Names vecdr derives from a table's name (staging tables, indexes, constraints, change logs).

PostgreSQL cuts every identifier at 63 bytes (NAMEDATALEN - 1), silently. A derived
name cut there loses its suffix and can collide with the table, with another derived
name or with a user's relation, so a name that would not fit keeps a readable prefix
of the table's name plus a short hash of the whole of it, then the full suffix.
"""

from __future__ import annotations

from vecdr.backends import naming
from vecdr.backends.naming import clip
from vecdr.errors import UsageError

__all__ = ["MAX_BYTES", "check", "clip", "derived"]

#: The longest identifier PostgreSQL keeps, in bytes.
MAX_BYTES = 63


def derived(base: str, suffix: str = "") -> str:
    """``base + suffix`` as a PostgreSQL identifier that is never cut (:func:`vecdr.backends.naming.derived`)."""
    return naming.derived(base, suffix, MAX_BYTES)


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
