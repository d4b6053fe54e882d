"""Fault-injecting stores for tests: restic's wrapper backends, in Python.

:class:`WrappedStore` passes every call to another store; the subclasses add one
fault each:

- :class:`CrashingStore` dies (raises :class:`Crash`, a ``BaseException`` that no
  ``except Exception`` in vecdr catches) at the k-th mutating operation, before or
  after it takes effect, as a killed process would;
- :class:`CorruptOnceStore` returns damaged bytes the first time each matching
  object is read, as a flaky network would;
- :class:`CountingStore` only counts, to size a crash matrix.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from vecdr.store.base import ObjectInfo, Store

#: Operations that change the store.
MUTATIONS = ("write", "create", "delete")


class Crash(BaseException):  # noqa: N818 — not an error a caller should handle
    """The process died here."""


class WrappedStore(Store):
    """Passes everything to another store; subclasses add behaviour."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner.url)
        self.inner = inner
        self.atomic_create = inner.atomic_create
        self.concurrency = inner.concurrency

    def read(self, key: str) -> bytes:
        return self.inner.read(key)

    def write(self, key: str, data: bytes | memoryview) -> None:
        self.inner.write(key, data)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        # Through read(), so that a wrapper's read faults reach ranged reads too.
        return self.read(key)[start : start + length]

    def create(self, key: str, data: bytes) -> None:
        self.inner.create(key, data)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def size(self, key: str) -> int:
        return self.inner.size(key)

    def list(self, prefix: str = "") -> Iterator[str]:
        return self.inner.list(prefix)

    def list_info(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list_info(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def root_exists(self) -> bool:
        return self.inner.root_exists()

    def temporaries(self) -> Iterator[ObjectInfo]:
        return self.inner.temporaries()

    def remove_temporary(self, key: str) -> None:
        self.inner.remove_temporary(key)


class CountingStore(WrappedStore):
    """Counts mutating operations (and remembers their keys, in order)."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.mutations: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def _note(self, op: str, key: str) -> None:
        with self._lock:
            self.mutations.append((op, key))

    def write(self, key: str, data: bytes | memoryview) -> None:
        self._note("write", key)
        super().write(key, data)

    def create(self, key: str, data: bytes) -> None:
        self._note("create", key)
        super().create(key, data)

    def delete(self, key: str) -> None:
        self._note("delete", key)
        super().delete(key)


class CrashingStore(WrappedStore):
    """Raises :class:`Crash` at the ``at``-th mutating operation (1-based).

    ``after``: the operation takes effect first (the process dies before it hears
    back); otherwise it does not happen at all. Every later operation also
    crashes: a dead process does nothing more.
    """

    def __init__(self, inner: Store, at: int, after: bool = False) -> None:
        super().__init__(inner)
        self.at = at
        self.after = after
        self.count = 0
        self.crashed: tuple[str, str] | None = None
        self._lock = threading.Lock()

    def _mutate(self, op: str, key: str, do: Callable[[], None]) -> None:
        with self._lock:
            if self.crashed is not None:
                raise Crash(f"already dead (died at {self.crashed[0]} {self.crashed[1]})")
            self.count += 1
            dies = self.count == self.at
            if dies:
                self.crashed = (op, key)
        if dies and not self.after:
            raise Crash(f"died before {op} {key}")
        do()
        if dies:
            raise Crash(f"died after {op} {key}")

    def write(self, key: str, data: bytes | memoryview) -> None:
        self._mutate("write", key, lambda: self.inner.write(key, data))

    def create(self, key: str, data: bytes) -> None:
        self._mutate("create", key, lambda: self.inner.create(key, data))

    def delete(self, key: str) -> None:
        self._mutate("delete", key, lambda: self.inner.delete(key))

    def read(self, key: str) -> bytes:
        if self.crashed is not None:
            raise Crash("already dead")
        return self.inner.read(key)


class CorruptOnceStore(WrappedStore):
    """The first read (or range read) of each object whose key ``matches`` comes back with one bit flipped."""

    def __init__(self, inner: Store, matches: Callable[[str], bool]) -> None:
        super().__init__(inner)
        self.matches = matches
        self.corrupted: list[str] = []
        self._lock = threading.Lock()

    def read(self, key: str) -> bytes:
        return self._damage_first(key, self.inner.read(key))

    def read_range(self, key: str, start: int, length: int) -> bytes:
        return self._damage_first(key, self.inner.read_range(key, start, length))

    def _damage_first(self, key: str, data: bytes) -> bytes:
        with self._lock:
            first = self.matches(key) and key not in self.corrupted and len(data) > 0
            if first:
                self.corrupted.append(key)
        if not first:
            return data
        damaged = bytearray(data)
        damaged[len(damaged) // 2] ^= 0x10
        return bytes(damaged)
