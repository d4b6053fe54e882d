"""Backends by URI scheme, imported lazily, with the extra to install when missing.

``faiss:PATH``, ``parquet:PATH``, ``postgresql://…?table=NAME`` (also ``postgres:``
and ``pgvector:``), ``milvus:PATH.db?collection=NAME`` and ``milvus://host:port?collection=NAME``
(also ``milvus+http:`` and ``milvus+https:``); later engines register the same way
(fsspec's ``known_implementations`` is the model).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from vecdr.backends.base import Source, Target
from vecdr.errors import BackendUnavailableError, UnknownSchemeError, UsageError

#: scheme -> (module, source class, target class, extra to install, import name)
KNOWN: dict[str, tuple[str, str, str, str, str]] = {
    "faiss": ("vecdr.backends.faiss", "FaissSource", "FaissTarget", "faiss", "faiss"),
    "parquet": ("vecdr.backends.parquet", "ParquetSource", "ParquetTarget", "", "pyarrow"),
    "postgresql": ("vecdr.backends.pgvector", "PgvectorSource", "PgvectorTarget", "pgvector", "psycopg"),
    "postgres": ("vecdr.backends.pgvector", "PgvectorSource", "PgvectorTarget", "pgvector", "psycopg"),
    "pgvector": ("vecdr.backends.pgvector", "PgvectorSource", "PgvectorTarget", "pgvector", "psycopg"),
    "milvus": ("vecdr.backends.milvus", "MilvusSource", "MilvusTarget", "milvus", "pymilvus"),
    "milvus+http": ("vecdr.backends.milvus", "MilvusSource", "MilvusTarget", "milvus", "pymilvus"),
    "milvus+https": ("vecdr.backends.milvus", "MilvusSource", "MilvusTarget", "milvus", "pymilvus"),
}


def split_uri(uri: str) -> tuple[str, str, dict[str, str]]:
    """``scheme:path?k=v`` -> (scheme, path, options)."""
    if ":" not in uri:
        raise UnknownSchemeError(
            f"{uri!r} names no backend; write it as SCHEME:PATH (known: {', '.join(sorted(KNOWN))})"
        )
    scheme, rest = uri.split(":", 1)
    path, _, query = rest.partition("?")
    return scheme.lower(), path, dict(parse_qsl(query))


def _load(scheme: str) -> Any:
    if scheme not in KNOWN:
        raise UnknownSchemeError(f"no backend for {scheme!r} URIs (known: {', '.join(sorted(KNOWN))})")
    module, _src, _dst, extra, import_name = KNOWN[scheme]
    try:
        importlib.import_module(import_name)
    except ImportError as exc:
        hint = f"pip install 'vecdr[{extra}]'" if extra else f"pip install {import_name}"
        raise BackendUnavailableError(f"the {scheme} backend needs {import_name}: {hint}") from exc
    return importlib.import_module(module)


def _open(uri: str, role: int, options: dict[str, Any]) -> Any:
    scheme, path, query = split_uri(uri)
    if not path.strip():
        # `faiss:` would be the current folder: never a file to read, or to replace with --force.
        raise UsageError(f"{uri!r} names nothing: write {scheme}:PATH (or the backend's URL)")
    cls = getattr(_load(scheme), KNOWN[scheme][role])
    given = {**query, **options}
    # Every parameter after (self, path) but uri is an option; a backend taking
    # **kwargs passes the rest on (PostgreSQL's libpq parameters) and checks them.
    params = list(inspect.signature(cls.__init__).parameters.values())[2:]
    accepted = {p.name for p in params if p.kind is not p.VAR_KEYWORD} - {"uri"}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in params)
    unknown = sorted(set(given) - accepted)
    if unknown and not open_ended:
        raise UsageError(
            f"{scheme} {'sources' if role == 1 else 'targets'} take no option {', '.join(unknown)} "
            f"(they take: {', '.join(sorted(accepted)) or 'none'})"
        )
    return cls(path, uri=uri.split("?", 1)[0], **given)


def open_source(uri: str, **options: Any) -> Source:
    source: Source = _open(uri, 1, options)
    return source


def open_target(uri: str, **options: Any) -> Target:
    target: Target = _open(uri, 2, options)
    return target


def local_file(uri: str) -> Path | None:
    """The local path a ``SCHEME:PATH`` URI names (FAISS, Parquet, Milvus Lite); None for a server's URL."""
    scheme, path, _ = split_uri(uri)
    if scheme not in KNOWN or path.startswith("//") or scheme in ("postgresql", "postgres", "pgvector"):
        return None
    return Path(path)


def check_droppable(uri: str) -> None:
    """Refuse, before anything runs, a target that a drill could not drop again (a Parquet file)."""
    scheme, _, _ = split_uri(uri)
    cls = getattr(_load(scheme), KNOWN[scheme][2]) if scheme in KNOWN else None
    if cls is not None and cls.drop is Target.drop:
        raise UsageError(f"a drill drops what it restores, and a {scheme} target cannot be dropped: "
                         "drill into a faiss:, postgresql:// or milvus: target, or leave --target out")
