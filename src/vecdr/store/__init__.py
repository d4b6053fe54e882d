"""Stores: where repository objects live. ``open_store`` picks one by URL."""

from __future__ import annotations

import os

from vecdr.errors import StoreError
from vecdr.store.base import Store, redact_url
from vecdr.store.fsspec import FsspecStore
from vecdr.store.local import LocalStore

__all__ = ["FsspecStore", "LocalStore", "Store", "open_store", "redact_url"]


_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure"}


def open_store(url: str | os.PathLike[str]) -> Store:
    """Open the store at a local path or any fsspec URL (``memory://``, ``s3://``, …)."""
    import fsspec

    text = os.fspath(url)
    if "://" not in text or text.startswith("file://") or text.startswith("local://"):
        _fs, path = fsspec.core.url_to_fs(text)
        return LocalStore(os.path.abspath(path), url=text)
    try:
        fs, path = fsspec.core.url_to_fs(text)
    except ImportError as exc:
        scheme = text.split("://", 1)[0]
        extra = _EXTRAS.get(scheme)
        hint = f"; install it with: pip install 'vecdr[{extra}]'" if extra else ""
        raise StoreError(f"no filesystem package for {scheme}:// URLs{hint}") from exc
    except ValueError as exc:
        raise StoreError(f"cannot open {redact_url(text)}: {exc}") from exc
    return FsspecStore(fs, path, text)
