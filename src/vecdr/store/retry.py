"""Retries for remote stores: transient failures again with jittered backoff, the rest at once.

A wrapper in restic's manner: :class:`RetryingStore` adds the policy around any
store without touching it. The client library underneath (botocore for S3)
already retries each request a few times; this layer sees what is left after
that, and turns every failure into one of vecdr's errors naming the object:

- absent (``FileNotFoundError``) and taken (``FileExistsError``) are answers, not
  failures, and pass through unchanged: the commit protocol depends on them;
- refused (``PermissionError``) is :class:`StoreAccessError` at once;
- malformed requests (``EINVAL`` and its kin) are :class:`StoreError` at once;
- anything else (timeouts, resets, 5xx, throttling) is retried up to ``attempts``
  times, then :class:`StoreUnreachableError`.

A retried ``create`` whose first attempt took effect raises ``FileExistsError``;
the commit protocol then re-reads the record and recognises its own commit.
"""

from __future__ import annotations

import errno
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from vecdr.errors import StoreAccessError, StoreError, StoreUnreachableError
from vecdr.store.base import ObjectInfo, Store
from vecdr.store.oserrors import FULL, typed
from vecdr.store.secrets import scrub

T = TypeVar("T")

log = logging.getLogger("vecdr.store")

#: errno values of requests that would fail the same way again
PERMANENT_ERRNOS = frozenset(
    {errno.EINVAL, errno.EMSGSIZE, errno.ENAMETOOLONG, errno.ENOSYS, errno.EPERM, errno.ENOTEMPTY,
     getattr(errno, "EREMCHG", errno.ENOENT), errno.EROFS, errno.ENOSPC}
)


class RetryingStore(Store):
    """``inner`` with transient failures retried and every failure typed (see the module)."""

    def __init__(
        self,
        inner: Store,
        attempts: int = 4,
        backoff: float = 0.25,
        max_backoff: float = 8.0,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(inner.url)
        self.inner = inner
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.on_retry = on_retry or log.warning
        self.atomic_create = inner.atomic_create
        self.concurrency = inner.concurrency

    def _call(self, op: str, key: str, fn: Callable[[], T]) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except (FileNotFoundError, FileExistsError):
                raise
            except StoreError:
                raise
            except PermissionError as exc:
                raise StoreAccessError(f"{op} {self._where(key)}: access denied ({_reason(exc)})") from exc
            except Exception as exc:
                if isinstance(exc, OSError) and (exc.errno in FULL or exc.errno == errno.EROFS):
                    raise typed(op, self._where(key), exc) from exc  # no room, read-only: fix, then run again
                kind = _classify(exc)
                if kind == "bug":
                    raise
                if kind == "access":
                    raise StoreAccessError(f"{op} {self._where(key)}: {_reason(exc)}") from exc
                if kind == "permanent":
                    raise StoreError(f"{op} {self._where(key)} failed: {_reason(exc)}") from exc
                if attempt == self.attempts:
                    raise StoreUnreachableError(
                        f"{op} {self._where(key)} failed {attempt} times, giving up: {_reason(exc)}"
                    ) from exc
                self._pause(op, key, exc, attempt)
        raise AssertionError("unreachable")

    def _pause(self, op: str, key: str, exc: Exception, attempt: int) -> None:
        pause = random.uniform(0, min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))
        self.on_retry(f"{op} {self._where(key)} failed ({_reason(exc)}); retry {attempt} in {pause:.2f}s")
        time.sleep(pause)

    def _where(self, key: str) -> str:
        return f"{self.url.rstrip('/')}/{key}" if key else self.url

    def read(self, key: str) -> bytes:
        return self._call("reading", key, lambda: self.inner.read(key))

    def read_range(self, key: str, start: int, length: int) -> bytes:
        return self._call("reading", key, lambda: self.inner.read_range(key, start, length))

    def write(self, key: str, data: bytes | memoryview) -> None:
        self._call("writing", key, lambda: self.inner.write(key, data))

    def create(self, key: str, data: bytes) -> None:
        self._call("creating", key, lambda: self.inner.create(key, data))

    def exists(self, key: str) -> bool:
        return self._call("checking", key, lambda: self.inner.exists(key))

    def size(self, key: str) -> int:
        return self._call("sizing", key, lambda: self.inner.size(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        return iter(self._call("listing", prefix, lambda: list(self.inner.list(prefix))))

    def list_info(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return iter(self._call("listing", prefix, lambda: list(self.inner.list_info(prefix))))

    def delete(self, key: str) -> None:
        self._call("deleting", key, lambda: self.inner.delete(key))

    def root_exists(self) -> bool:
        return self._call("checking", "", self.inner.root_exists)

    def temporaries(self) -> Iterator[ObjectInfo]:
        return iter(self._call("listing temporaries in", "", lambda: list(self.inner.temporaries())))

    def remove_temporary(self, key: str) -> None:
        self._call("removing", key, lambda: self.inner.remove_temporary(key))


def _classify(exc: Exception) -> str:
    """``transient``, ``permanent``, ``access`` or ``bug`` (not a storage failure at all)."""
    if isinstance(exc, OSError):
        return "permanent" if exc.errno in PERMANENT_ERRNOS else "transient"
    # Client-library errors that reach past s3fs's translation (botocore's own tree).
    try:
        from botocore import exceptions as boto
    except ImportError:
        return "bug"
    if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
        return "access"
    if isinstance(exc, boto.ConnectionError | boto.HTTPClientError):
        return "transient"  # unreachable, timed out, reset: the retry may get through
    if isinstance(exc, boto.BotoCoreError):
        return "permanent"
    return "bug"


def _reason(exc: BaseException) -> str:
    """The error's own words on one line, without the botocore class chatter."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return scrub(text)[:300]  # a client library may quote a credential it was given
