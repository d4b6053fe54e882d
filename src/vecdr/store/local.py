"""Local disk: plain files, fsync'd, with ``os.link`` as create-if-absent."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from vecdr.durable import fsync_dir
from vecdr.store.base import ObjectInfo, Store, check_key

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

    def _stage(self, path: Path, data: bytes | memoryview) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A random name, created exclusively and never through a link planted there.
        tmp = path.parent / f"{TEMPORARY}{uuid.uuid4().hex}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            with open(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            # A full disk or an interrupted write must not leave its partial bytes behind.
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def read(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def read_range(self, key: str, start: int, length: int) -> bytes:
        with open(self._path(key), "rb") as f:
            return os.pread(f.fileno(), length, start)

    def local_path(self, key: str) -> str | None:
        return str(self._path(key))

    def write(self, key: str, data: bytes | memoryview) -> None:
        path = self._path(key)
        tmp = self._stage(path, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)

    def create(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = self._stage(path, data)
        try:
            os.link(tmp, path)
        finally:
            tmp.unlink()
        fsync_dir(path.parent)

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
        self._path(key).unlink(missing_ok=True)

    def list_info(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for key in self.list(prefix):
            try:
                st = self._path(key).stat()
            except FileNotFoundError:
                continue  # deleted since it was listed
            yield ObjectInfo(key, st.st_size, st.st_mtime)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
