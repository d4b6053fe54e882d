"""Any fsspec filesystem: memory, S3, GCS, Azure, …

Create-if-absent is ``pipe_file(mode="create")``: s3fs sends ``If-None-Match: *``
and the memory filesystem opens with ``"xb"``. Elsewhere fsspec falls back to
check-then-write, which two writers can both win, so :attr:`atomic_create` is
false there and the repository runs single-writer.

Every read sees what other writers did: a listing cache (s3fs, gcsfs and adlfs
keep one per filesystem object) would answer from this process's last listing,
so a commit record another process just created would raise
:class:`FileNotFoundError` and its writer would retry the same number until it
gave up. :func:`vecdr.store.open_store` opens filesystems with
``use_listings_cache=False``; a filesystem handed in with its cache on is
invalidated before each read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from vecdr.store.base import ObjectInfo, Store, check_key

#: Protocols whose ``pipe_file(mode="create")`` is atomic.
ATOMIC_CREATE_PROTOCOLS = frozenset({"memory", "s3", "s3a"})

#: Between an object's key and an unfinished upload's id in :meth:`FsspecStore.temporaries`.
UPLOAD = "?upload="

# The memory filesystem checks and creates in two steps; one process-wide lock makes
# the pair atomic for every thread of this process, which is all memory:// can see.
_memory_lock = threading.Lock()


class FsspecStore(Store):
    """Objects under ``root`` on an fsspec filesystem."""

    def __init__(self, fs: Any, root: str, url: str, concurrency: int = 1) -> None:
        super().__init__(url)
        self.fs = fs
        self.root = root.rstrip("/")
        self.concurrency = concurrency
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        self.protocol = protocols[0]
        self.atomic_create = bool(ATOMIC_CREATE_PROTOCOLS.intersection(protocols))
        dircache = getattr(fs, "dircache", None)
        self._cached = bool(getattr(dircache, "use_listings_cache", False))

    def _path(self, key: str) -> str:
        return f"{self.root}/{check_key(key)}" if key else self.root

    def _fresh(self, key: str) -> str:
        """The path of ``key``, with whatever the filesystem cached about it and its folders dropped."""
        path = self._path(key)
        if self._cached:
            self.fs.invalidate_cache(path)
            self.fs.invalidate_cache(path.rsplit("/", 1)[0])
        return path

    def read(self, key: str) -> bytes:
        data: bytes = self.fs.cat_file(self._fresh(key))
        return data

    def write(self, key: str, data: bytes | memoryview) -> None:
        self.fs.pipe_file(self._path(key), data if isinstance(data, bytes) else bytes(data))

    def create(self, key: str, data: bytes) -> None:
        if self.protocol == "memory":
            with _memory_lock:
                self.fs.pipe_file(self._path(key), data, mode="create")
        else:
            self.fs.pipe_file(self._path(key), data, mode="create")

    def read_range(self, key: str, start: int, length: int) -> bytes:
        data: bytes = self.fs.cat_file(self._fresh(key), start=start, end=start + length)
        return data

    def exists(self, key: str) -> bool:
        return bool(self.fs.isfile(self._fresh(key)))

    def size(self, key: str) -> int:
        return int(self.fs.size(self._fresh(key)))

    def _find(self, prefix: str) -> dict[str, dict[str, Any]]:
        """``{key: fsspec info}`` of every object under ``prefix``."""
        try:
            if self._cached:
                self.fs.invalidate_cache()  # every folder below the prefix, not only its own listing
            found = self.fs.find(self._path(prefix), detail=True)
        except FileNotFoundError:
            return {}
        offset = len(self.root) + 1
        out = {}
        for path, info in found.items():
            path = path if path.startswith("/") or not self.root.startswith("/") else "/" + path
            out[path[offset:]] = info
        return out

    def list(self, prefix: str = "") -> Iterator[str]:
        yield from self._find(prefix)

    def list_info(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for key, info in self._find(prefix).items():
            yield ObjectInfo(key, int(info.get("size") or 0), _modified(info))

    def temporaries(self) -> Iterator[ObjectInfo]:
        # On S3 an upload that never completed (its process was killed; a failed one is
        # aborted by s3fs) is invisible to listings, yet its parts are stored and billed.
        if self.protocol not in ("s3", "s3a"):
            return
        bucket, _, prefix = self.root.partition("/")
        prefix = prefix + "/" if prefix else ""
        for upload in self.fs.list_multipart_uploads(bucket):
            key = str(upload.get("Key", ""))
            if key.startswith(prefix):
                yield ObjectInfo(f"{key[len(prefix):]}{UPLOAD}{upload['UploadId']}", 0, _modified(
                    {"LastModified": upload.get("Initiated")}))

    def remove_temporary(self, key: str) -> None:
        name, sep, upload = key.rpartition(UPLOAD)
        if not sep or self.protocol not in ("s3", "s3a"):
            raise ValueError(f"{key!r} is not an unfinished upload")
        bucket, _, _ = self.root.partition("/")
        try:
            self.fs.abort_mpu(bucket, self._path(name).partition("/")[2], upload)
        except FileNotFoundError:
            pass  # completed or aborted since it was listed

    def root_exists(self) -> bool:
        bucket = self.root.split("/", 1)[0]
        return self.protocol == "memory" or bool(self.fs.exists(bucket))

    def delete(self, key: str) -> None:
        try:
            self.fs.rm_file(self._path(key))
        except FileNotFoundError:
            pass


def _modified(info: dict[str, Any]) -> float:
    """The last-modified time in an fsspec info dict, whichever key the filesystem uses."""
    for name in ("LastModified", "mtime", "last_modified", "updated", "created"):
        value = info.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return time.time()  # unknown: as if written now, which a grace period always keeps
