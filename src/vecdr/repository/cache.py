"""A small cache of verified immutable objects that many readers share.

A snapshot's deletion file holds the deletion vectors of many segments, and the
threads reading those segments each need it; reading and hashing it once per
segment would multiply its cost by the number of segments. Objects are named by
content, so a cached copy never goes stale; the cache holds at most ``budget``
bytes, least recently used first out, and a load in progress is shared, not
repeated, by threads that ask for the same object.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future

from vecdr.format.objects import ObjectRef

#: Bytes of objects kept; deletion files are a few KiB to a few MiB.
BUDGET = 32 << 20


class ObjectCache:
    def __init__(self, budget: int = BUDGET) -> None:
        self.budget = budget
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, int], Future[bytes]] = OrderedDict()
        self._bytes = 0

    def get(self, ref: ObjectRef, load: Callable[[ObjectRef], bytes]) -> bytes:
        """The object's bytes: from the cache, or ``load(ref)`` (which must check them)."""
        name = (ref.sha256, ref.size)
        with self._lock:
            pending = self._items.get(name)
            owner = pending is None
            if pending is None:
                pending = self._items[name] = Future()
            else:
                self._items.move_to_end(name)
        if owner:
            self._fill(name, pending, ref, load)
        return pending.result()

    def _fill(
        self, name: tuple[str, int], pending: Future[bytes], ref: ObjectRef, load: Callable[[ObjectRef], bytes]
    ) -> None:
        try:
            data = load(ref)
        except BaseException as exc:
            with self._lock:
                self._items.pop(name, None)  # a failed read is tried again next time
            pending.set_exception(exc)
            return
        with self._lock:
            self._bytes += len(data)
            pending.set_result(data)
            while self._bytes > self.budget and self._items:
                old_name, old = next(iter(self._items.items()))
                if not old.done():
                    break
                del self._items[old_name]
                self._bytes -= len(old.result())
