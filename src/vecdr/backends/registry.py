"""Backends by URI scheme, imported lazily, with the extra to install when missing.

``faiss:PATH``, ``parquet:PATH``, ``postgresql://…?table=NAME`` (also ``postgres:``
and ``pgvector:``), ``milvus:PATH.db?collection=NAME`` and ``milvus://host:port?collection=NAME``
(also ``milvus+http:`` and ``milvus+https:``); later engines register the same way
(fsspec's ``known_implementations`` is the model).
"""

from __future__ import annotations

import importlib
import inspect
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
