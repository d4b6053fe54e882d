"""The pgvector backend: PostgreSQL tables with a ``vector`` column.

``postgresql://user@host:5432/db?table=items`` (or ``pgvector://…``) as a source
snapshots the table at one point in time; as a target it restores a snapshot into
a new table. See docs/pgvector.md.
"""

from vecdr.backends.pgvector.source import PgvectorSource
from vecdr.backends.pgvector.target import PgvectorTarget

__all__ = ["PgvectorSource", "PgvectorTarget"]
