"""Milvus URIs: where to connect, and a form of it that holds no secret.

``milvus:PATH.db?collection=NAME`` opens a Milvus Lite database (a folder that
pymilvus serves in this process); ``milvus://host:19530?collection=NAME`` (also
``milvus+http://``) a Milvus server over plain gRPC, ``milvus+https://`` one over
TLS (Zilliz Cloud, a server behind TLS). The token comes from ``token=``, from
``user:password@`` in the authority, or from ``VECDR_MILVUS_TOKEN``; it is used to
connect and never shown: manifests, log lines, error messages and ``--json``
output see :attr:`Endpoint.shown`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import unquote, urlencode, urlsplit

from vecdr.errors import UsageError

SCHEMES = ("milvus", "milvus+http", "milvus+https")
TOKEN_ENV = "VECDR_MILVUS_TOKEN"
DEFAULT_PORT = 19530


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A Milvus to connect to: ``address`` as pymilvus takes it, ``shown`` for people."""

    address: str  # a Milvus Lite path ending in .db, or http(s)://host:port
    shown: str  # the URI without any secret, with vecdr's options
    lite_path: str | None = None  # the Milvus Lite folder, when it is one
    db: str = ""  # the Milvus database ("" is the server's default)
    token: str = field(default="", repr=False)

    def scrub(self, text: str) -> str:
        """``text`` with the token blanked out, for messages built from library errors."""
        return text.replace(self.token, "***") if self.token else text


def parse(scheme: str, path: str, token: str | None, db: str | None, **shown_options: str | None) -> Endpoint:
    """The endpoint of ``SCHEME:PATH``; ``shown_options`` are vecdr's options to show (never secrets)."""
    if scheme not in SCHEMES:
        raise UsageError(f"not a Milvus URI: {scheme}:… (use milvus:PATH.db or milvus://host:port)")
    options = {k: v for k, v in shown_options.items() if v}
    if db:
        options = {"db": db, **options}
    query = ("?" + urlencode(options, safe="/")) if options else ""
    token = token or os.environ.get(TOKEN_ENV, "")

    if not path.startswith("//"):
        if scheme != "milvus":
            raise UsageError(f"{scheme}: needs a server, {scheme}://host:port; a Milvus Lite file is milvus:PATH.db")
        if not path.endswith(".db"):
            raise UsageError(f"a Milvus Lite database is a path ending in .db (milvus:PATH.db), not {path!r}")
        full = os.path.abspath(os.path.expanduser(path))
        return Endpoint(address=full, shown=f"milvus:{path}{query}", lite_path=full, db=db or "", token=token)

    parts = urlsplit("http:" + path)
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise UsageError(f"invalid port in {scheme}://{parts.hostname or ''}…: {exc}") from None
    host = parts.hostname
    if not host:
        raise UsageError(f"a Milvus server URI names a host: {scheme}://host:{DEFAULT_PORT}?collection=NAME")
    if parts.username is not None:
        # Milvus takes "user:password" as a token; an explicit token= wins.
        user, password = unquote(parts.username), unquote(parts.password or "")
        token = token or (f"{user}:{password}" if password else user)
    if not db and parts.path.strip("/"):
        db = parts.path.strip("/").split("/")[0]
        options = {"db": db, **{k: v for k, v in options.items() if k != "db"}}
        query = "?" + urlencode(options, safe="/")
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    transport = "https" if scheme == "milvus+https" else "http"
    return Endpoint(
        address=f"{transport}://{netloc}",
        shown=f"{scheme}://{netloc}{query}",
        db=db or "",
        token=token,
    )


def endpoint(path: str, uri: str | None, token: str | None, db: str | None, **shown_options: str | None) -> Endpoint:
    """The endpoint of a backend's ``path`` (what follows ``SCHEME:``, or a whole Milvus URI).

    The registry passes the scheme in ``uri``; called directly, ``path`` may be
    ``milvus:…``/``milvus+https://…`` itself, and a bare path or ``//host`` means ``milvus:``.
    """
    scheme = "milvus"
    head = path.split(":", 1)[0].lower()
    if ":" in path and head in SCHEMES:
        scheme, path = head, path.split(":", 1)[1]
    elif uri and ":" in uri:
        scheme = uri.split(":", 1)[0].lower()
    return parse(scheme, path, token, db, **shown_options)
