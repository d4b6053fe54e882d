"""A real PostgreSQL with pgvector for tests, the demo and benchmarks, through ``pgserver``.

``pgserver`` (pip) ships PostgreSQL 16 and pgvector in its wheel and runs the
server from a data folder, listening on a Unix socket in that folder.
"""

from __future__ import annotations

import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vecdr.errors import BackendUnavailableError


@dataclass
class LocalPostgres:
    """A running server: ``uri(db, table=…)`` builds vecdr URIs for it."""

    folder: Path
    server: Any

    @property
    def bin(self) -> Path:
        """The folder with ``pg_dump``, ``pg_restore``, ``psql`` of this server."""
        import pgserver

        return Path(pgserver.__file__).parent / "pginstall" / "bin"

    def dsn(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@/{db}?host={self.folder}"

    def uri(self, table: str, db: str = "postgres", **options: str) -> str:
        extra = "".join(f"&{k}={v}" for k, v in options.items())
        return f"postgresql://postgres@/{db}?host={self.folder}&table={table}{extra}"

    def connect(self, db: str = "postgres", autocommit: bool = True) -> Any:
        import psycopg

        return psycopg.connect(self.dsn(db), autocommit=autocommit)

    def create_database(self, name: str, vector: bool = True) -> None:
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        if vector:
            with self.connect(name) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")

    def stop(self, remove: bool = True) -> None:
        self.server.cleanup()
        if remove:
            shutil.rmtree(self.folder, ignore_errors=True)


def start(folder: str | os.PathLike[str]) -> LocalPostgres:
    """Start (or reuse) a server whose data lives in ``folder``; pgvector is created in ``postgres``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset on servers
            import pgserver
    except ImportError as exc:
        raise BackendUnavailableError("a local PostgreSQL needs pgserver: pip install 'vecdr[pgvector]'") from exc
    folder = Path(folder)
    # Unix socket paths are limited to about 100 bytes; the socket lives in the folder.
    if len(str(folder)) > 80:
        raise ValueError(f"{folder} is too long a path for PostgreSQL's socket")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset on servers
        server = pgserver.get_server(folder, cleanup_mode="stop")
    pg = LocalPostgres(folder, server)
    with pg.connect() as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    return pg
