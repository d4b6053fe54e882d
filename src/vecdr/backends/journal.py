"""A durable change journal: which ids were upserted (with their vectors) or deleted.

A journal is a folder::

    BASE            {"base": <snapshot id or null>, "first": <first live log number>}
    000001.log      records appended, fsync'd, one per change call
    000002.log      …
    LOCK            flock'd by every append, rotation and trim

A snapshot calls :meth:`Journal.read`, which rotates to a fresh log and returns
what the closed logs hold; only after the snapshot's commit does
:meth:`Journal.trim` move ``BASE`` past them. A crash anywhere in between loses
nothing: the logs are still there and the next snapshot reads them again.
Records carry the vectors, so a tracked snapshot never reads the index, and a
torn record at the tail of a log (a crash mid-append) is ignored.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vecdr.durable import fsync_dir, publish

UPSERT = 1
DELETE = 2
_HEAD = struct.Struct("<BII")  # op, rows, dimension
_CRC = struct.Struct("<I")


@dataclass(slots=True)
class JournalState:
    """The net effect of every live record: last write per id wins."""

    base: str | None
    upsert_ids: np.ndarray
    upsert_vectors: np.ndarray
    delete_ids: np.ndarray
    upto: int  # logs numbered below this are covered


class Journal:
    """An append-only, crash-safe change journal in a folder."""

    def __init__(self, path: str | os.PathLike[str], dimension: int | None = None) -> None:
        if Path(path).exists() and not Path(path).is_dir():
            from vecdr.errors import SourceError

            raise SourceError(f"the journal {os.fspath(path)} is a file; a journal is a folder")
        self.path = Path(path)
        self.dimension = dimension
        self.path.mkdir(parents=True, exist_ok=True)
        if not (self.path / "BASE").exists():
            with self._locked():
                if not (self.path / "BASE").exists():
                    self._write_base(None, 1)

    @classmethod
    def exists_at(cls, path: str | os.PathLike[str]) -> bool:
        return (Path(path) / "BASE").is_file()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path / "LOCK", "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _base(self) -> tuple[str | None, int]:
        doc = json.loads((self.path / "BASE").read_text())
        return doc["base"], int(doc["first"])

    def _write_base(self, base: str | None, first: int) -> None:
        tmp = self.path / "BASE.tmp"
        tmp.write_text(json.dumps({"base": base, "first": first}))
        publish(tmp, self.path / "BASE")

    def _logs(self) -> list[int]:
        return sorted(int(p.stem) for p in self.path.glob("*.log") if p.stem.isdigit())

    def _log(self, number: int) -> Path:
        return self.path / f"{number:06d}.log"

    def _current(self) -> int:
        _, first = self._base()
        logs = [n for n in self._logs() if n >= first]
        return logs[-1] if logs else first

    def _append(self, op: int, ids: np.ndarray, vectors: np.ndarray | None) -> None:
        ids = np.ascontiguousarray(ids, dtype="<i8").reshape(-1)
        if not len(ids):
            return
        dim = 0 if vectors is None else int(vectors.shape[1])
        body = _HEAD.pack(op, len(ids), dim) + ids.tobytes()
        if vectors is not None:
            body += np.ascontiguousarray(vectors, dtype="<f4").tobytes()
        record = body + _CRC.pack(zlib.crc32(body))
        with self._locked():
            path = self._log(self._current())
            new = not path.exists()
            with open(path, "ab") as f:
                f.write(record)
                f.flush()
                os.fsync(f.fileno())
            if new:
                fsync_dir(self.path)

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Record that ``ids`` now hold ``vectors`` (inserted or overwritten)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(np.atleast_1d(ids)):
            raise ValueError("upsert needs one vector per id")
        self._append(UPSERT, np.atleast_1d(ids), vectors)

    def delete(self, ids: np.ndarray) -> None:
        """Record that ``ids`` were removed."""
        self._append(DELETE, np.atleast_1d(ids), None)

    def _records(self, number: int) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
        data = self._log(number).read_bytes()
        pos = 0
        while pos + _HEAD.size <= len(data):
            op, rows, dim = _HEAD.unpack_from(data, pos)
            size = _HEAD.size + rows * 8 + rows * dim * 4
            if pos + size + _CRC.size > len(data):
                break  # torn tail: the append never completed
            body = data[pos : pos + size]
            (crc,) = _CRC.unpack_from(data, pos + size)
            if crc != zlib.crc32(body):
                break
            ids = np.frombuffer(body, dtype="<i8", count=rows, offset=_HEAD.size)
            vectors = None
            if op == UPSERT:
                vectors = np.frombuffer(
                    body, dtype="<f4", count=rows * dim, offset=_HEAD.size + rows * 8
                ).reshape(rows, dim)
            yield op, ids, vectors
            pos += size + _CRC.size

    def read(self) -> JournalState:
        """Close the current log and return the net changes of every live log."""
        with self._locked():
            base, first = self._base()
            logs = [n for n in self._logs() if n >= first]
            upto = (logs[-1] + 1) if logs else first
            # Later appends go to a new log, so the logs read here stay as they are.
            self._log(upto).touch()
            fsync_dir(self.path)
        ids_parts: list[np.ndarray] = []
        ops_parts: list[np.ndarray] = []
        vec_parts: list[np.ndarray] = []
        dim = self.dimension or 0
        for number in logs:
            for op, ids, vectors in self._records(number):
                ids_parts.append(ids)
                ops_parts.append(np.full(len(ids), op, np.int8))
                if vectors is not None:
                    dim = vectors.shape[1]
                    vec_parts.append(vectors)
                else:
                    vec_parts.append(None)  # type: ignore[arg-type]
        if not ids_parts:
            empty = np.empty(0, np.int64)
            return JournalState(base, empty, np.empty((0, dim), np.float32), empty, upto)
        all_ids = np.concatenate(ids_parts)
        all_ops = np.concatenate(ops_parts)
        rows = [v if v is not None else np.zeros((len(i), dim), np.float32)
                for v, i in zip(vec_parts, ids_parts, strict=True)]
        all_vec = np.concatenate(rows) if rows else np.empty((0, dim), np.float32)
        # Last record per id wins.
        rev = all_ids[::-1]
        uniq, first_in_rev = np.unique(rev, return_index=True)
        last = len(all_ids) - 1 - first_in_rev
        ups = last[all_ops[last] == UPSERT]
        dels = last[all_ops[last] == DELETE]
        return JournalState(base, all_ids[ups], all_vec[ups], all_ids[dels], upto)

    def trim(self, snapshot: str, upto: int) -> None:
        """After ``snapshot`` committed: drop the logs it covered and record it as the base."""
        with self._locked():
            self._write_base(snapshot, upto)
            for number in self._logs():
                if number < upto:
                    self._log(number).unlink(missing_ok=True)
