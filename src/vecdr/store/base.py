"""The store contract: a flat key space of byte objects over one filesystem.

A store knows nothing about snapshots. Keys are relative POSIX paths such as
``segments/ab/<sha256>.parquet``. Two writes matter to the commit protocol:

* :meth:`Store.write` puts an object under its final name; for content-addressed
  objects writing the same bytes twice is harmless.
* :meth:`Store.create` is create-if-absent: it raises :class:`FileExistsError`
  when the key exists, atomically where :attr:`Store.atomic_create` is true.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

from vecdr.errors import UnsafeKeyError
from vecdr.store.secrets import redact_url

__all__ = ["ObjectInfo", "Store", "check_key", "redact_url"]

def check_key(key: str) -> str:
    """``key`` itself, if it names something inside the store's root; else :class:`UnsafeKeyError`.

    The repository checks every key it reads from a document against its layout;
    this is the store's own line of defence: a relative POSIX path of plain names,
    no ``..`` or ``.``, no absolute path, backslash, empty part, NUL or scheme.
    """
    parts = key.split("/")
    if (
        "\\" in key
        or "\x00" in key
        or ":" in parts[0]
        or any(part in ("", ".", "..") for part in parts)
    ) and key != "":
        raise UnsafeKeyError(f"refusing the key {key[:120]!r}: it does not name an object inside the store")
    return key


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    modified: float  # Unix time of the last write


class Store(ABC):
    """A flat key space of immutable objects plus create-if-absent records."""

    #: True where :meth:`create` cannot be won by two writers at once.
    atomic_create: bool = False
    #: Transfers worth running at once beyond what the cores encode: 1 for a local
    #: disk, more for an object store whose requests wait on the network.
    concurrency: int = 1

    def __init__(self, url: str) -> None:
        self.url = redact_url(url)

    @abstractmethod
    def read(self, key: str) -> bytes:
        """Return the object's bytes; :class:`FileNotFoundError` when absent."""

    @abstractmethod
    def write(self, key: str, data: bytes | memoryview) -> None:
        """Put ``data`` under ``key`` durably, replacing what is there."""

    @abstractmethod
    def create(self, key: str, data: bytes) -> None:
        """Put ``data`` under ``key`` only if the key is absent, else :class:`FileExistsError`."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` holds an object."""

    @abstractmethod
    def size(self, key: str) -> int:
        """The object's size in bytes; :class:`FileNotFoundError` when absent."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield every key under ``prefix`` (a folder, without trailing slash)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; absent keys are ignored."""

    @abstractmethod
    def list_info(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Like :meth:`list`, with each object's size and last-modified time (what GC's grace period reads)."""

    def temporaries(self) -> Iterator[ObjectInfo]:
        """Leftovers of writes that never finished (a process killed mid-write), which
        :meth:`list` never shows; ``prune`` removes the old ones. A failed write removes
        its own. This default: a store that keeps none."""
        return iter(())

    def remove_temporary(self, key: str) -> None:
        """Remove one of :meth:`temporaries` by its key; absent ones are ignored."""

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes of the object from ``start`` (fewer at its end); this default
        reads the whole object, stores that can read a range override it."""
        return self.read(key)[start : start + length]

    def root_exists(self) -> bool:
        """Whether the place the store lives in (an S3 bucket, a container) exists at all."""
        return True

    def local_path(self, key: str) -> str | None:
        """A local file holding the object, where the store has one (for zero-copy loads)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
