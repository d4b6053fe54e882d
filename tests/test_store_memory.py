from __future__ import annotations

import pytest

from vecdr.store import Store, open_store
from vecdr.testing.stores import StoreTests


class TestMemoryStore(StoreTests):
    @pytest.fixture
    def store(self, memory_url: str) -> Store:
        return open_store(memory_url)
