"""Local disk: plain files, fsync'd, with ``os.link`` as create-if-absent."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from vecdr.durable import fsync_dir, publish
from vecdr.store.base import Store

T = TypeVar("T")


class LocalStore(Store):
    """Objects as files under ``root``.

    :meth:`write` stages the bytes in a temporary file beside the final name; the
    object is readable at once through this store, and :meth:`flush` fsyncs every
    staged file, gives each its final name and fsyncs the folders. One flush per
    snapshot costs far less than an fsync per object, and the final name still
    never holds a partial object, also across a crash (staged files that a crash
    leaves behind are hidden ``.tmp-*`` files, never listed).

    :meth:`create` (commit records) is durable at once: temp file, fsync,
    ``os.link`` (which fails when the name exists), fsync of the folder.
    """

    atomic_create = True

    def __init__(self, root: str | os.PathLike[str], url: str | None = None) -> None:
        self.root = Path(root)
        super().__init__(url or str(self.root))
        self._staged: dict[str, Path] = {}
        self._lock = threading.Lock()
        # Held through a whole flush, so a flush returns only once everything staged
        # before it is published, even what a concurrent flush took over.
        self._flushing = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.root / key

    def _where(self, key: str) -> Path:
        with self._lock:
            return self._staged.get(key) or self._path(key)

    def _on(self, key: str, op: Callable[[Path], T]) -> T:
        """Apply ``op`` to the staged file, or to the final one if a flush just published it."""
        where = self._where(key)
        try:
            return op(where)
        except FileNotFoundError:
            if where == self._path(key):
                raise
            return op(self._path(key))

    def _stage(self, path: Path, data: bytes | memoryview, sync: bool) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".tmp-{uuid.uuid4().hex}"
        with open(tmp, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        return tmp

    def read(self, key: str) -> bytes:
        return self._on(key, Path.read_bytes)

    def local_path(self, key: str) -> str | None:
        return str(self._where(key))

    def write(self, key: str, data: bytes | memoryview) -> None:
        tmp = self._stage(self._path(key), data, sync=False)
        with self._lock:
            replaced = self._staged.pop(key, None)
            self._staged[key] = tmp
        if replaced is not None:
            replaced.unlink(missing_ok=True)

    def flush(self) -> None:
        with self._flushing:
            with self._lock:
                staged = dict(self._staged)
            folders = set()
            for key, tmp in staged.items():
                path = self._path(key)
                publish(tmp, path, sync_folder=False)
                folders.add(path.parent)
                with self._lock:
                    if self._staged.get(key) == tmp:
                        del self._staged[key]
            for folder in folders:
                fsync_dir(folder)

    def create(self, key: str, data: bytes) -> None:
        with self._lock:
            if key in self._staged:
                raise FileExistsError(key)
        path = self._path(key)
        tmp = self._stage(path, data, sync=True)
        try:
            os.link(tmp, path)
        finally:
            tmp.unlink()
        fsync_dir(path.parent)

    def exists(self, key: str) -> bool:
        return self._where(key).is_file() or self._path(key).is_file()

    def size(self, key: str) -> int:
        return self._on(key, lambda path: path.stat().st_size)

    def list(self, prefix: str = "") -> Iterator[str]:
        with self._lock:
            staged = {k for k in self._staged if not prefix or k.startswith(prefix.rstrip("/") + "/")}
        yield from sorted(staged)
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key not in staged:
                    yield key

    def delete(self, key: str) -> None:
        with self._lock:
            staged = self._staged.pop(key, None)
        if staged is not None:
            staged.unlink(missing_ok=True)
        self._path(key).unlink(missing_ok=True)
