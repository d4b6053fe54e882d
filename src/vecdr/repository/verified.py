"""Reading a large object as a stream of checked parts.

A large object's reference carries the sha256 of each of its parts
(:data:`vecdr.format.hashing.PART_BYTES`). :class:`VerifiedReader` fetches and
hashes parts ahead of the reader on a thread, and hands out no byte of a part
before that part's hash has matched: a parser fed through it (FAISS reading a
native index) never sees a byte the manifest does not vouch for, yet parses while
the next parts are still being read and checked. A part that fails is read once
more (damage on the way), then fails the read with an :class:`IntegrityError`.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from vecdr.errors import IntegrityError
from vecdr.format.hashing import PART_BYTES, sha256_hex
from vecdr.format.objects import ObjectRef
from vecdr.store import Store

log = logging.getLogger("vecdr.repository")


class VerifiedReader:
    """``read(n)`` over an object with part hashes; ``close()`` when done (see the module)."""

    def __init__(self, store: Store, ref: ObjectRef, ahead: int = 2) -> None:
        if not ref.parts:
            raise ValueError(f"{ref.key} has no part hashes to stream against")
        self.store = store
        self.ref = ref
        self.error: IntegrityError | None = None  # the first failure, for callers whose parser hides it
        self._pool = ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="vecdr-verify")
        self._ahead = ahead
        self._queue: deque[Future[bytes]] = deque()
        self._next = 0  # next part to schedule
        self._current = memoryview(b"")
        self._offset = 0
        self._fill()

    def _fetch(self, i: int) -> bytes:
        start = i * PART_BYTES
        length = min(PART_BYTES, self.ref.size - start)
        for attempt in (1, 2):
            try:
                data = self.store.read_range(self.ref.key, start, length)
            except FileNotFoundError:
                raise IntegrityError(f"{self.ref.key}: referenced object is missing", path=self.ref.key) from None
            if len(data) == length and sha256_hex(data) == self.ref.parts[i]:
                if attempt == 2:
                    log.warning("%s: part %d failed its sha256 check; a second read was intact", self.ref.key, i)
                return data
        problem = "truncated" if len(data) != length else "corrupted"
        raise IntegrityError(f"{self.ref.key}: sha256 mismatch in part {i} ({problem})", path=self.ref.key)

    def _fill(self) -> None:
        while len(self._queue) < self._ahead and self._next < len(self.ref.parts):
            self._queue.append(self._pool.submit(self._fetch, self._next))
            self._next += 1

    def read(self, size: int) -> bytes:
        out = []
        wanted = size
        while wanted > 0:
            if self._offset == len(self._current):
                if not self._queue:
                    break  # the end of the object
                try:
                    self._current = memoryview(self._queue.popleft().result())
                except IntegrityError as exc:
                    self.error = self.error or exc
                    raise
                self._offset = 0
                self._fill()
            take = self._current[self._offset : self._offset + wanted]
            out.append(take.tobytes())
            self._offset += len(take)
            wanted -= len(take)
        return b"".join(out)

    def close(self) -> None:
        for future in self._queue:
            future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
