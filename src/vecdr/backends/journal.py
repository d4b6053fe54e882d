"""A durable change journal: which ids were upserted (with their vectors) or deleted.

A journal is a folder::

    BASE            {"base": <snapshot id or null>, "first": <first live log number>}
    SAVED           where index files saved through the journal's index stand in it
    000001.log      records appended, fsync'd, one per change call
    000002.log      …
    LOCK            flock'd by every append, rotation and trim

A log number is a position in the index's history: the logs numbered below ``n``
hold every change made before position ``n``. A snapshot reads the logs below a
position (:meth:`Journal.read`): below a fresh one it rotates to, for an index in
this process, or below the position recorded for a saved index file
(:meth:`Journal.saved_at`). Only after the snapshot's commit does
:meth:`Journal.trim` move ``BASE`` to that position, never past it, so a crash
anywhere in between loses nothing, and changes newer than what a snapshot holds
stay for the next one.

Records carry the vectors, so a tracked snapshot never reads the index. Each
writer starts a log of its own, so a record torn by a crash mid-append can only be
the last one of its log, and is ignored there; a record that fails its checksum
anywhere else is damage, and reading the journal fails (:class:`JournalDamagedError`)
instead of silently dropping what follows it.
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

from vecdr.durable import fsync_dir, replacing
from vecdr.errors import JournalDamagedError, SourceError

UPSERT = 1
DELETE = 2
_HEAD = struct.Struct("<BII")  # op, rows, dimension
_CRC = struct.Struct("<I")
_OPS = (UPSERT, DELETE)
#: Saved files remembered in SAVED: a reader that opened the previous file still finds it.
SAVED_KEPT = 8


def file_identity(path: str | os.PathLike[str]) -> dict[str, int]:
    """What tells one version of a file from another: device, inode, size, modification time."""
    st = os.stat(path)
    return {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclass(slots=True)
class JournalState:
    """The net effect of every live record: last write per id wins."""

    base: str | None
    upsert_ids: np.ndarray
    upsert_vectors: np.ndarray
    delete_ids: np.ndarray
    upto: int  # logs numbered below this are covered
    #: ``upto`` lies behind the journal's base: the changes since the base are not known
    #: (a saved file older than what the latest snapshot holds).
    behind: bool = False


class Journal:
    """An append-only, crash-safe change journal in a folder."""

    def __init__(self, path: str | os.PathLike[str], dimension: int | None = None) -> None:
        if Path(path).exists() and not Path(path).is_dir():
            raise SourceError(f"the journal {os.fspath(path)} is a file; a journal is a folder")
        self.path = Path(path)
        self.dimension = dimension
        self._own_log: int | None = None  # the log this object appends to, once it has appended
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
        self._write_json("BASE", {"base": base, "first": first})

    def _write_json(self, name: str, doc: object) -> None:
        with replacing(self.path / name) as tmp:  # a random temporary name: a planted link is never followed
            tmp.write_text(json.dumps(doc))

    @property
    def base(self) -> str | None:
        """The snapshot the live logs continue (``None``: none yet)."""
        return self._base()[0]

    def _logs(self) -> list[int]:
        return sorted(int(p.stem) for p in self.path.glob("*.log") if p.stem.isdigit())

    def _log(self, number: int) -> Path:
        return self.path / f"{number:06d}.log"

    def _current(self) -> int:
        _, first = self._base()
        logs = [n for n in self._logs() if n >= first]
        return logs[-1] if logs else first

    def _rotate(self) -> int:
        """Start a new, empty log (under the lock); returns its number, the position now."""
        position = self._current()
        if self._log(position).exists() and self._log(position).stat().st_size:
            position += 1
        self._log(position).touch()
        fsync_dir(self.path)
        return position

    def rotate(self) -> int:
        """Close the current log: later changes go to a new one. Returns the position
        (every change recorded so far lies in the logs below it)."""
        with self._locked():
            return self._rotate()

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
            current = self._current()
            if self._own_log != current:
                # A log of its own: a torn record left by a writer that crashed can only
                # be the last record of that writer's log, never one followed by others.
                current = self._own_log = self._rotate()
            path = self._log(current)
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
        while pos < len(data):
            if pos + _HEAD.size > len(data):
                return  # torn tail: the append never completed, so the index never saw it
            op, rows, dim = _HEAD.unpack_from(data, pos)
            size = _HEAD.size + rows * 8 + rows * dim * 4
            end = pos + size + _CRC.size
            plausible = op in _OPS and (op == UPSERT) == (dim > 0)
            if end > len(data) and plausible:
                return  # torn tail, as above
            body = data[pos : pos + size]
            if not plausible or end > len(data) or _CRC.unpack_from(data, pos + size)[0] != zlib.crc32(body):
                if end == len(data) and plausible:
                    return  # the last record, cut short of its bytes by a crash
                raise JournalDamagedError(
                    f"the change journal {self.path} is damaged: the record at byte {pos} of "
                    f"{self._log(number).name} fails its check, so the changes after it cannot be "
                    "trusted; take a snapshot with --mode diff (mode='diff'), which compares every row "
                    "and then starts the journal afresh",
                    path=str(self._log(number)),
                )
            ids = np.frombuffer(body, dtype="<i8", count=rows, offset=_HEAD.size)
            vectors = None
            if op == UPSERT:
                vectors = np.frombuffer(
                    body, dtype="<f4", count=rows * dim, offset=_HEAD.size + rows * 8
                ).reshape(rows, dim)
            yield op, ids, vectors
            pos += size + _CRC.size

    def read(self, upto: int | None = None) -> JournalState:
        """The net changes of the live logs below position ``upto``; by default, of every
        live log, after closing the current one (later appends go to a new log, so the
        logs read here stay as they are). Raises :class:`JournalDamagedError` (whose
        ``upto`` says the position read to) when a record in them is damaged."""
        with self._locked():
            base, first = self._base()
            if upto is None:
                upto = self._rotate()
            elif upto < first:
                empty = np.empty(0, np.int64)
                return JournalState(base, empty, np.empty((0, self.dimension or 0), np.float32), empty, upto,
                                    behind=True)
            logs = [n for n in self._logs() if first <= n < upto]
        try:
            return self._net(base, logs, upto)
        except JournalDamagedError as exc:
            exc.upto = upto
            raise

    def _net(self, base: str | None, logs: list[int], upto: int) -> JournalState:
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

    def trim(self, snapshot: str, upto: int) -> bool:
        """After ``snapshot``, which holds every change below position ``upto``, committed:
        record it as the base and drop the logs it covers. Never past ``upto``: a position
        behind the journal's base (a snapshot of an older saved file) trims nothing."""
        with self._locked():
            _, first = self._base()
            if upto < first:
                return False
            self._write_base(snapshot, upto)
            for number in self._logs():
                if number < upto:
                    self._log(number).unlink(missing_ok=True)
            return True

    # -- saved index files --------------------------------------------------------

    def record_saved(self, path: str | os.PathLike[str], position: int) -> None:
        """Remember that the file now at ``path`` holds every change below ``position``."""
        entry = {"position": position, "file": file_identity(path)}
        with self._locked():
            kept = [e for e in self._saved() if e["file"] != entry["file"]]
            self._write_json("SAVED", (kept + [entry])[-SAVED_KEPT:])

    def saved_at(self, identity: dict[str, int]) -> int | None:
        """The position of the saved file with this :func:`file_identity`, if it was saved here."""
        for entry in reversed(self._saved()):
            if entry.get("file") == identity:
                return int(entry["position"])
        return None

    def _saved(self) -> list[dict]:
        try:
            doc = json.loads((self.path / "SAVED").read_text())
        except (FileNotFoundError, ValueError):
            return []
        if not isinstance(doc, list):
            return []
        return [e for e in doc if isinstance(e, dict) and isinstance(e.get("file"), dict)]
