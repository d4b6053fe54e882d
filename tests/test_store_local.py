from __future__ import annotations

from pathlib import Path

import pytest

from vecdr.store import LocalStore, open_store
from vecdr.testing.stores import StoreTests


class TestLocalStore(StoreTests):
    @pytest.fixture
    def store(self, tmp_path: Path) -> LocalStore:
        return LocalStore(tmp_path / "store")


class TestLocalStoreByUrl(StoreTests):
    """``open_store`` of a plain path and of a ``file://`` URL both give a working local store."""

    @pytest.fixture(params=["path", "file-url"])
    def store(self, request: pytest.FixtureRequest, tmp_path: Path) -> LocalStore:
        root = tmp_path / "by-url"
        store = open_store(str(root) if request.param == "path" else f"file://{root}")
        assert isinstance(store, LocalStore)
        return store
