"""Conformance suites that every store and backend must pass, shipped with vecdr.

A store's or backend's own test file subclasses a suite and supplies fixtures,
and that is all (zarr's ``zarr.testing.store`` and restic's backend suite are the
models)::

    from vecdr.testing.stores import StoreTests

    class TestMyStore(StoreTests):
        @pytest.fixture
        def store(self, tmp_path):
            return MyStore(tmp_path)

These modules import pytest; ``import vecdr`` never imports them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BackendTests", "StoreTests"]


def __getattr__(name: str) -> Any:
    # Loaded on first use so that ``import vecdr.testing`` alone needs no pytest.
    if name == "StoreTests":
        from vecdr.testing.stores import StoreTests

        return StoreTests
    if name == "BackendTests":
        from vecdr.testing.backends import BackendTests

        return BackendTests
    raise AttributeError(f"module 'vecdr.testing' has no attribute {name!r}")
