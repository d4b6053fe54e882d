"""One process-wide thread pool for a snapshot's small, many-object work.

Reading the previous snapshot's row-hash sidecars and writing its deletion vectors
are a few milliseconds per segment; threads started once and reused keep thread
starts (about 2 ms each on a small VM) out of that. Each caller bounds its own work
in flight, and no task waits on another task of the pool. Segment encoding keeps
pools of its own (measured: sharing this one made later snapshots slower).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Threads start only as work needs them; this caps them.
MAX_THREADS = 32

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def shared_pool() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="vecdr")
        return _pool


def _forget_after_fork() -> None:
    # A forked child has none of the parent's threads: it starts a pool of its own.
    global _pool, _lock
    _pool, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def bounded_map(fn: Callable[[T], R], items: Iterable[T], limit: int) -> list[R]:
    """``[fn(item) for item in items]`` on the shared pool, at most ``limit`` at a time."""
    pool = shared_pool()
    results: list[R] = []
    queue: deque[Future[R]] = deque()
    try:
        for item in items:
            if len(queue) >= limit:
                results.append(queue.popleft().result())
            queue.append(pool.submit(fn, item))
        while queue:
            results.append(queue.popleft().result())
    finally:
        for future in queue:
            future.cancel()
        wait(queue)
    return results
