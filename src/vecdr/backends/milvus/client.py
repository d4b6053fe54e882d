"""Connecting to Milvus, and turning its failures into vecdr's typed, one-line errors.

pymilvus logs every failed call with a traceback (and Milvus Lite, in this
process, logs a failed start and the calls it does not implement); vecdr reports
each failure itself as a typed error, so while it talks to Milvus those
libraries' records below CRITICAL are dropped (:func:`quiet`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vecdr.backends.milvus.uri import Endpoint
from vecdr.errors import BackendConnectionError, BackendError, NotFoundInBackendError, VecdrError

#: Seconds to wait for a server to answer when connecting.
CONNECT_TIMEOUT = 10.0
#: Milvus error codes meaning "no such collection / partition / database".
NOT_FOUND_CODES = {4, 100, 200, 800}
#: pymilvus, Milvus Lite, and gRPC's server (Milvus Lite in this process serves through it).
_LOGGERS = ("pymilvus", "pymilvus.milvus_client", "pymilvus.bulk_writer", "milvus_lite", "grpc._server")
_quiet_lock = threading.Lock()
_quiet_depth = 0
_saved_levels: dict[str, int] = {}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Drop pymilvus's and Milvus Lite's own log records below CRITICAL meanwhile."""
    global _quiet_depth
    with _quiet_lock:
        if _quiet_depth == 0:
            for name in _LOGGERS:
                logger = logging.getLogger(name)
                _saved_levels[name] = logger.level
                logger.setLevel(logging.CRITICAL)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                for name, level in _saved_levels.items():
                    logging.getLogger(name).setLevel(level)
                _saved_levels.clear()


def reason(exc: BaseException, endpoint: Endpoint) -> str:
    """A library error as one line without secrets."""
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return endpoint.scrub(" ".join(str(text).split()))


def failure(exc: Exception, endpoint: Endpoint, doing: str, kind: type[VecdrError] = BackendError) -> VecdrError:
    """The vecdr error for a failed Milvus call (``doing``: what was being done, for the message;
    ``kind``: the error when Milvus refused the call itself)."""
    if isinstance(exc, VecdrError):
        return exc
    code = getattr(exc, "code", None)
    text = f"{doing} on {endpoint.shown} failed: {reason(exc, endpoint)}"
    if code in NOT_FOUND_CODES or "not exist" in text or "not found" in text:
        return NotFoundInBackendError(text)
    if type(exc).__name__ in ("MilvusUnavailableException", "FutureTimeoutError", "RpcError"):
        return BackendConnectionError(text)
    return kind(text)


def _is_lite_database(path: Path) -> bool:
    return path.is_dir() and ((path / "collections").is_dir() or (path / "LOCK").is_file())


def check_lite_path(endpoint: Endpoint, create: bool) -> None:
    """Refuse, before Milvus Lite touches it, a path that is not (and cannot become) its database.

    Milvus Lite keeps a database in a folder; it would create one at any path,
    inside any existing folder. Only a target may create one, and only at a new
    path or in an empty folder.
    """
    assert endpoint.lite_path is not None
    path = Path(endpoint.lite_path)
    if not path.exists():
        if not create:
            raise NotFoundInBackendError(f"no Milvus Lite database at {path}")
        if not path.parent.is_dir():
            raise NotFoundInBackendError(f"cannot create the Milvus Lite database {path}: {path.parent} does not exist")
        return
    if _is_lite_database(path) or (create and path.is_dir() and not any(path.iterdir())):
        return
    what = "a file" if path.is_file() else "a folder of something else"
    raise BackendConnectionError(
        f"{path} is not a Milvus Lite database ({what}; Milvus Lite 3 keeps a database in a folder, "
        "and a single .db file is milvus-lite 2's format, which `milvus-lite dump` exports)"
    )


def _locked_elsewhere(path: str) -> bool:
    """Whether another process holds Milvus Lite's lock on the database folder."""
    lock = Path(path) / "LOCK"
    if not lock.is_file():
        return False
    import fcntl

    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def connect(endpoint: Endpoint, create: bool = False) -> Any:
    """A ``MilvusClient`` for ``endpoint``, or a typed error that names it without secrets."""
    from pymilvus import MilvusClient

    if endpoint.lite_path is not None:
        check_lite_path(endpoint, create)
    try:
        with quiet():
            return MilvusClient(
                uri=endpoint.address, token=endpoint.token, db_name=endpoint.db, timeout=CONNECT_TIMEOUT
            )
    except Exception as exc:  # pymilvus raises MilvusException and grpc errors alike
        if endpoint.lite_path is not None and _locked_elsewhere(endpoint.lite_path):
            raise BackendConnectionError(
                f"cannot open {endpoint.shown}: another process has the database open (Milvus Lite allows one "
                "process per database); stop it, or serve the database with `milvus-lite server` and use "
                "milvus://host:port"
            ) from exc
        raise BackendConnectionError(f"cannot connect to {endpoint.shown}: {reason(exc, endpoint)}") from exc


def server_version(client: Any) -> str:
    try:
        with quiet():
            return str(client.get_server_version())
    except Exception:  # noqa: BLE001  (only informative)
        return "unknown"


def stub(client: Any) -> Any:
    """The gRPC stub of a client's connection (auth and database headers included).

    Rows move through it as columnar ``FieldData`` (see :mod:`wire`): pymilvus's row
    API would build a Python list per vector.
    """
    return client._get_connection()._stub


def check(status: Any, endpoint: Endpoint, doing: str, kind: type[VecdrError] = BackendError) -> None:
    """Raise the vecdr error for a non-success ``common.Status``."""
    if status.code == 0 and status.error_code == 0:
        return
    from pymilvus.exceptions import MilvusException

    error = MilvusException(code=status.code or status.error_code, message=status.reason)
    raise failure(error, endpoint, doing, kind)
