"""PostgreSQL URIs: vecdr's options apart from libpq's, secrets kept out of sight.

``postgresql://user@host:5432/db?table=items&id=pk&vector=embedding&schema=public``
(also ``postgres://`` and ``pgvector://``). ``table``, ``id``, ``vector`` and
``schema`` are vecdr's; every other query parameter (``host=/run/postgresql``,
``sslmode=require``…) goes to libpq unchanged. The password, in the URI or in a
``password=`` parameter, is used to connect and never shown: :func:`redact` is what
manifests, logs and ``--json`` output see.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict

from vecdr.errors import BackendConnectionError, UsageError

SCHEMES = ("postgresql", "postgres", "pgvector")
#: libpq parameters that carry a secret.
SECRET_PARAMS = frozenset({"password", "sslpassword"})
_PASSWORD_IN_NETLOC = re.compile(r"^(?P<pre>//[^/@:]*):[^/@]*@")


@dataclass(frozen=True, slots=True)
class Dsn:
    """Where to connect (``conninfo``, secret) and what to show (``shown``, not secret)."""

    conninfo: str
    shown: str


def redact(uri: str) -> str:
    """``uri`` without its password (in the authority or as a query parameter)."""
    scheme, sep, rest = uri.partition(":")
    path, qmark, query = rest.partition("?")
    path = _PASSWORD_IN_NETLOC.sub(lambda m: m.group("pre") + "@", path)
    if qmark:
        kept = [kv for kv in query.split("&") if kv.split("=", 1)[0].lower() not in SECRET_PARAMS]
        query = "&".join(kept)
    return f"{scheme}{sep}{path}" + (f"?{query}" if query else "")


def shown_options(**options: str | None) -> dict[str, str]:
    """vecdr's own URI options that were given, in a stable order, for the shown URI."""
    return {name: value for name, value in options.items() if value}


def first_line(exc: BaseException) -> str:
    """The first line of a database error: the reason, without PostgreSQL's context lines."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def build(path: str, libpq: dict[str, Any], vecdr_options: dict[str, Any]) -> Dsn:
    """The libpq URI for ``postgresql:PATH`` plus ``libpq`` parameters, and its shown form."""
    if not path.startswith("//"):
        raise UsageError(f"a PostgreSQL URI looks like postgresql://user@host:port/db?table=NAME, not {path!r}")
    params = {k: str(v) for k, v in libpq.items()}
    conninfo = "postgresql:" + path + (f"?{urlencode(params, safe='/')}" if params else "")
    try:
        conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as exc:
        raise UsageError(f"invalid PostgreSQL URI {redact(conninfo)}: {exc}") from exc
    shown_params = {**{k: v for k, v in params.items() if k not in SECRET_PARAMS}, **vecdr_options}
    shown = redact("postgresql:" + path) + (f"?{urlencode(shown_params, safe='/')}" if shown_params else "")
    return Dsn(conninfo, shown)


def connect(dsn: Dsn, autocommit: bool = False) -> psycopg.Connection[Any]:
    """A connection, or a :class:`BackendConnectionError` that names the server but no secret."""
    try:
        return psycopg.connect(dsn.conninfo, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise BackendConnectionError(f"cannot connect to {dsn.shown}: {reason}") from exc
