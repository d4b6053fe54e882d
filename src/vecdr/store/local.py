"""Local disk: plain files, fsync'd, with ``os.link`` as create-if-absent."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from vecdr.durable import fsync_dir
from vecdr.errors import StoreError
from vecdr.store.base import ObjectInfo, Store, check_key
from vecdr.store.oserrors import DENIED, FULL, typed

T = TypeVar("T")

#: The prefix of the name a write has before it is complete.
TEMPORARY = ".tmp-"


class LocalStore(Store):
    """Objects as files under ``root``.

    Every write goes to a temporary file in the target folder, is fsync'd, then
    takes its final name (``os.replace`` for :meth:`write`, ``os.link`` for
    :meth:`create`, which fails when the name exists), and the folder is fsync'd.
    A crash therefore never leaves a partial object under a final name.
    """

    atomic_create = True

    def __init__(self, root: str | os.PathLike[str], url: str | None = None) -> None:
        self.root = Path(root)
        super().__init__(url or str(self.root))

    def _path(self, key: str) -> Path:
        # Lexical: a key of plain names under the root (symbolic links inside the root
        # are the owner's choice and are followed).
        return self.root / check_key(key)

    def _call(self, op: str, key: str, fn: Callable[[], T]) -> T:
        """``fn()``, with a full disk, a read-only mount or a denied permission as vecdr's typed
        error naming the object; other OS errors (absent, taken, not a folder) are answers
        the callers read, and pass through."""
        try:
            return fn()
        except StoreError:
            raise
        except OSError as exc:
            if exc.errno not in FULL | DENIED:
                raise
            raise typed(op, f"{self.url.rstrip('/')}/{key}" if key else self.url, exc) from exc

    def _stage(self, path: Path, data: bytes | memoryview) -> Path:
        # A random name, created exclusively and never through a link planted there.
        tmp = path.parent / f"{TEMPORARY}{uuid.uuid4().hex}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        made = self._make_folders(path.parent)
        try:
            try:
                fd = os.open(tmp, flags, 0o644)
            except FileNotFoundError:
                # The folder went away between making and using it (a failed write of another
                # writer removed the folder it had made): make it again, once.
                made = self._make_folders(path.parent)
                fd = os.open(tmp, flags, 0o644)
            with open(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            # A full disk or an interrupted write must not leave its partial bytes behind,
            # nor the folders made for it.
            tmp.unlink(missing_ok=True)
            self._remove_folders(made)
            raise
        return tmp

    def _make_folders(self, folder: Path) -> list[Path]:
        """Create ``folder`` and its missing parents; returns those this call made, deepest first."""
        missing = []
        while not folder.is_dir() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        made = []
        try:
            for f in reversed(missing):
                try:
                    f.mkdir()
                except FileExistsError:
                    continue  # another writer made it: not ours to remove
                made.append(f)
        except BaseException:
            self._remove_folders(made[::-1])
            raise
        return made[::-1]

    @staticmethod
    def _remove_folders(made: list[Path]) -> None:
        for folder in made:
            try:
                folder.rmdir()
            except OSError:
                return  # not empty: another writer put something there since

    def read(self, key: str) -> bytes:
        return self._call("reading", key, self._path(key).read_bytes)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        def read() -> bytes:
            with open(self._path(key), "rb") as f:
                return os.pread(f.fileno(), length, start)

        return self._call("reading", key, read)

    def local_path(self, key: str) -> str | None:
        return str(self._path(key))

    def write(self, key: str, data: bytes | memoryview) -> None:
        path = self._path(key)

        def write() -> None:
            tmp = self._stage(path, data)
            try:
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            fsync_dir(path.parent)

        self._call("writing", key, write)

    def create(self, key: str, data: bytes) -> None:
        path = self._path(key)

        def create() -> None:
            tmp = self._stage(path, data)
            try:
                os.link(tmp, path)
            finally:
                tmp.unlink()
            fsync_dir(path.parent)

        self._call("creating", key, create)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(TEMPORARY):
                    continue
                yield Path(dirpath, name).relative_to(self.root).as_posix()

    def temporaries(self) -> Iterator[ObjectInfo]:
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(TEMPORARY):
                    path = Path(dirpath, name)
                    try:
                        st = path.lstat()
                    except FileNotFoundError:
                        continue  # its write finished or failed since
                    yield ObjectInfo(path.relative_to(self.root).as_posix(), st.st_size, st.st_mtime)

    def remove_temporary(self, key: str) -> None:
        if not key.rsplit("/", 1)[-1].startswith(TEMPORARY):
            raise ValueError(f"{key!r} is not a temporary file")
        self._call("removing", key, lambda: self._path(key).unlink(missing_ok=True))

    def list_info(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for key in self.list(prefix):
            try:
                st = self._path(key).stat()
            except FileNotFoundError:
                continue  # deleted since it was listed
            yield ObjectInfo(key, st.st_size, st.st_mtime)

    def delete(self, key: str) -> None:
        self._call("deleting", key, lambda: self._path(key).unlink(missing_ok=True))
