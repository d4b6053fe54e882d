"""The pgvector backend: PostgreSQL tables with a ``vector`` column.

``postgresql://user@host:5432/db?table=items`` (or ``pgvector://…``) as a source
snapshots the table at one point in time; as a target it restores a snapshot into
a new table. :func:`enable_tracking` installs the change log that makes
incremental snapshots read only what changed. See docs/pgvector.md.
"""

from __future__ import annotations

from vecdr.backends.pgvector import tracking
from vecdr.backends.pgvector.dsn import SCHEMES, Dsn, build, shown_options
from vecdr.backends.pgvector.source import PgvectorSource
from vecdr.backends.pgvector.target import PgvectorTarget
from vecdr.errors import UsageError

__all__ = ["PgvectorSource", "PgvectorTarget", "disable_tracking", "enable_tracking"]


def _parse(uri: str) -> tuple[Dsn, str, str | None, str | None]:
    from vecdr.backends.registry import split_uri

    scheme, path, options = split_uri(uri)
    if scheme not in SCHEMES:
        raise UsageError(f"not a PostgreSQL URI: {scheme}:… (use postgresql://…?table=NAME)")
    table, schema, id_ = options.pop("table", None), options.pop("schema", None), options.pop("id", None)
    options.pop("vector", None)
    if not table:
        raise UsageError("name the table: postgresql://…/db?table=NAME")
    return build(path, options, shown_options(table=table, schema=schema)), table, schema, id_


def enable_tracking(uri: str) -> str:
    """Install the change log and triggers on the URI's table; returns the log table's name."""
    dsn, table, schema, id_ = _parse(uri)
    return tracking.enable(dsn, table, schema, id_)


def disable_tracking(uri: str) -> None:
    """Remove the change log and triggers from the URI's table."""
    dsn, table, schema, _ = _parse(uri)
    tracking.disable(dsn, table, schema)
