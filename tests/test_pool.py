"""The shared thread pool: results in order, work in flight bounded, errors surface."""

from __future__ import annotations

import threading
import time

import pytest

from vecdr.engines.pool import bounded_map, shared_pool


def test_bounded_map_keeps_order_and_its_limit() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()

    def work(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.002 * (i % 3))
        with lock:
            running -= 1
        return i * i

    assert bounded_map(work, range(40), 3) == [i * i for i in range(40)]
    assert 1 <= peak <= 3


def test_bounded_map_raises_the_first_error_and_starts_nothing_after_it() -> None:
    started: list[int] = []

    def work(i: int) -> int:
        started.append(i)
        if i == 2:
            raise ValueError("boom")
        time.sleep(0.01)
        return i

    with pytest.raises(ValueError, match="boom"):
        bounded_map(work, range(100), 2)
    assert max(started) < 10


def test_the_pool_is_shared_and_reuses_its_threads() -> None:
    assert shared_pool() is shared_pool()
    bounded_map(lambda i: i, range(8), 2)
    before = threading.active_count()
    for _ in range(5):
        bounded_map(lambda i: i, range(8), 2)
    assert threading.active_count() == before
