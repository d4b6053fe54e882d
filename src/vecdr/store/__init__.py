"""Stores: where repository objects live. ``open_store`` picks one by URL."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from vecdr.errors import StoreError, UsageError
from vecdr.store.base import Store, redact_url
from vecdr.store.fsspec import FsspecStore
from vecdr.store.local import LocalStore
from vecdr.store.options import OWN, S3_PROTOCOLS, concurrency, retries, s3_filesystem_options
from vecdr.store.retry import RetryingStore
from vecdr.store.secrets import remember, scrub, url_credentials

__all__ = ["FsspecStore", "LocalStore", "RetryingStore", "Store", "open_store", "redact_url"]


#: Schemes whose URL authority is a bucket: a ``user@`` part there can only be a credential.
_BUCKET_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs"})

_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure"}


def open_store(url: str | os.PathLike[str], options: Mapping[str, Any] | None = None) -> Store:
    """Open the store at a local path or any fsspec URL (``memory://``, ``s3://``, …).

    ``options``: storage options (see :mod:`vecdr.store.options`). A store reached
    over the network retries transient failures and types every error
    (:class:`RetryingStore`).
    """
    import fsspec

    if not isinstance(url, str | os.PathLike):
        raise UsageError(f"a repository is a path or URL, not {type(url).__name__}")
    text = os.fspath(url)
    if not isinstance(text, str) or not text.strip():
        raise UsageError("the repository path or URL is empty")
    options = dict(options or {})
    if "://" not in text or text.startswith("file://") or text.startswith("local://"):
        # A local disk takes vecdr's own options only; anything else was meant for
        # another store, and ignoring it would hide the mistake.
        concurrency(options, remote=False)
        retries(options)
        unknown = sorted(str(k) for k in options if k not in OWN)
        if unknown:
            raise UsageError(f"storage option {', '.join(unknown)} does not apply to a local repository")
        _fs, path = fsspec.core.url_to_fs(text)
        return LocalStore(os.path.abspath(path), url=text)
    scheme = text.split("://", 1)[0].lower()
    credentials = url_credentials(text)
    if credentials is not None and (scheme in _BUCKET_SCHEMES or ":" in credentials):
        # Never taken from a URL: it would show in shell history, process lists and logs.
        raise UsageError(
            f"{redact_url(text)}: a repository URL must not hold credentials; give them the way the "
            "store's own tools take them (for S3: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile "
            "with AWS_PROFILE, or the storage options key and secret)"
        )
    remote = scheme != "memory"
    transfers = concurrency(options, remote)
    attempts = retries(options)
    kwargs = {k: v for k, v in options.items() if k not in OWN}
    remember(kwargs)  # a client library may quote them in an error: masked wherever they appear
    # A listing cache answers from what this process saw last: a commit record, lock
    # or manifest another writer has just created would look absent (see FsspecStore).
    kwargs["use_listings_cache"] = False
    if scheme in S3_PROTOCOLS:
        kwargs = s3_filesystem_options(kwargs)
    try:
        fs, path = fsspec.core.url_to_fs(text, **kwargs)
    except ImportError as exc:
        extra = _EXTRAS.get(scheme)
        hint = f"; install it with: pip install 'vecdr[{extra}]'" if extra else ""
        raise StoreError(f"no filesystem package for {scheme}:// URLs{hint}") from exc
    except (ValueError, TypeError) as exc:
        raise StoreError(f"cannot open {redact_url(text)}: {scrub(' '.join(str(exc).split()))}") from exc
    if scheme in S3_PROTOCOLS:
        if not path.strip("/"):
            raise UsageError(f"{redact_url(text)} names no bucket: write s3://BUCKET/PREFIX")
        fs.retries = 1  # s3fs's own retry loop: botocore's and RetryingStore's are enough
    store = FsspecStore(fs, path, text, concurrency=transfers)
    return RetryingStore(store, attempts=attempts) if remote else store
