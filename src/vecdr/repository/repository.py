"""A repository: config, content-addressed objects, manifests and commit records.

Write order for a snapshot: segments → artifacts → manifest → commit record.
Readers go the other way and check every hash. A snapshot exists when, and only
when, its commit record exists.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import pyarrow as pa

from vecdr.errors import (
    IntegrityError,
    NotARepositoryError,
    RepositoryExistsError,
    StoreAccessError,
    StoreError,
    UsageError,
    VecdrError,
)
from vecdr.format.hashing import part_hashes, sha256_hex
from vecdr.format.layout import object_key
from vecdr.format.manifest import Manifest
from vecdr.format.objects import ObjectRef
from vecdr.format.records import CommitRecord, Config
from vecdr.repository.cache import ObjectCache
from vecdr.repository.commits import commit_manifest, read_commits
from vecdr.repository.verified import VerifiedReader
from vecdr.store import Store, keys, open_store
from vecdr.store.encrypted import EncryptedStore

CONFIG = "config.json"

log = logging.getLogger("vecdr.repository")
T = TypeVar("T", bytes, pa.Buffer)


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _unsealed(store: Store, config: Config, secret: keys.Secret | None) -> Store:
    """The store as the repository reads it: through its key where it is encrypted."""
    if config.encryption is None:
        if secret is not None:
            # Refused rather than ignored: an altered config.json must not turn a
            # user's encrypted backups into plaintext ones.
            raise UsageError(
                f"{store.url} is not encrypted, yet a key was given ({secret.source}): "
                "unset it to use this repository unencrypted"
            )
        return store
    secret = secret or keys.ask(store.url, creating=False)
    master = keys.unlock(config.encryption, config.id, secret, store.url)
    return EncryptedStore(store, keys.data_key(master), config.id, keys.chunk_of(config.encryption))


def probe_atomic_create(store: Store) -> bool:
    """Whether a second create-if-absent of the same key fails, as it must."""
    key = f"locks/probe-{uuid.uuid4().hex}"
    try:
        store.create(key, b"1")
        try:
            store.create(key, b"2")
        except FileExistsError:
            return store.atomic_create
        return False
    finally:
        store.delete(key)


class Repository:
    """Objects, manifests and commits of one repository on one store."""

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self._shared = ObjectCache()

    @property
    def url(self) -> str:
        return self.store.url

    # -- lifecycle ---------------------------------------------------------------

    @classmethod
    def init(
        cls,
        url: str | os.PathLike[str],
        storage_options: Mapping[str, Any] | None = None,
        *,
        encrypt: bool = False,
        key: bytes | str | None = None,
        password: str | None = None,
    ) -> Repository:
        """Create an empty repository; refuses a location that already holds anything.

        A failed init leaves nothing behind: the only object it writes before
        ``config.json`` is the create-if-absent probe, which it removes.

        ``encrypt``: encrypt every object (see :mod:`vecdr.store.encrypted`) under
        ``key`` (32 bytes or 64 hex digits) or a key derived from ``password``; by
        default ``VECDR_KEY`` or ``VECDR_PASSWORD``, else the terminal prompt.
        """
        store = open_store(url, storage_options)
        secret = keys.given(key, password)
        if secret is not None and not encrypt:
            raise UsageError(
                f"a key was given ({secret.source}) for a repository that is not to be encrypted: "
                "pass --encrypt (encrypt=True), or unset it"
            )
        try:
            if store.exists(CONFIG):
                raise RepositoryExistsError(f"{store.url} already holds a vecdr repository")
            if next(iter(store.list()), None) is not None:
                raise RepositoryExistsError(
                    f"{store.url} is not empty; a repository needs an empty location"
                )
            repository_id = uuid.uuid4().hex
            sealed, encryption = store, None
            if encrypt:
                secret = secret or keys.ask(store.url, creating=True)
                encryption, master = keys.new_settings(secret, repository_id)
                sealed = EncryptedStore(store, keys.data_key(master), repository_id, keys.chunk_of(encryption))
            atomic = probe_atomic_create(store)
            config = Config(
                id=repository_id,
                created_at=utcnow(),
                capabilities={"atomic_create": atomic},
                encryption=encryption,
            )
            try:
                store.create(CONFIG, config.to_bytes())
            except FileExistsError:
                raise RepositoryExistsError(f"{store.url} already holds a vecdr repository") from None
        except OSError as exc:
            if isinstance(exc, VecdrError):
                raise
            if isinstance(exc, FileNotFoundError) and not store.root_exists():
                raise StoreError(f"cannot create a repository at {store.url}: its bucket does not exist") from exc
            raise StoreError(f"cannot create a repository at {store.url}: {exc}") from exc
        return cls(sealed, config)

    @classmethod
    def open(
        cls,
        url: str | os.PathLike[str],
        storage_options: Mapping[str, Any] | None = None,
        *,
        key: bytes | str | None = None,
        password: str | None = None,
    ) -> Repository:
        """Open a repository; an encrypted one with ``key``, ``password``, ``VECDR_KEY``,
        ``VECDR_PASSWORD`` or the terminal prompt, in that order."""
        store = open_store(url, storage_options)
        try:
            data = store.read(CONFIG)
        except FileNotFoundError:
            if not store.root_exists():
                raise NotARepositoryError(f"{store.url} is not a vecdr repository: its bucket does not exist") from None
            raise NotARepositoryError(
                f"{store.url} is not a vecdr repository (no {CONFIG}; create one with `vecdr init`)"
            ) from None
        except (IsADirectoryError, NotADirectoryError):
            raise NotARepositoryError(f"{store.url} is not a vecdr repository") from None
        except PermissionError as exc:
            raise StoreAccessError(f"cannot read {store.url}/{CONFIG}: permission denied") from exc
        config = Config.from_bytes(data, f"{store.url}/{CONFIG}")
        return cls(_unsealed(store, config, keys.given(key, password)), config)

    # -- objects -----------------------------------------------------------------

    def put(self, kind: str, data: bytes | memoryview, ext: str, *, recheck: bool = False) -> tuple[ObjectRef, bool]:
        """Store an immutable object by content; returns its ref and whether it was written.

        An object already stored under its name is reused only if it looks intact: the
        right size (one stat or HEAD), or with ``recheck`` the right bytes (it is read
        and hashed). Otherwise it is written again: the bytes its name promises, so
        every snapshot that refers to it is mended, none changed.

        A large object also gets the sha256 of each of its parts, which readers check
        in parallel instead of its whole sha256 (which only one core can compute).
        """
        digest = sha256_hex(data)
        ref = ObjectRef(object_key(kind, digest, ext), digest, len(data), part_hashes(data))
        if self.intact(ref, read_data=recheck):
            return ref, False
        self.store.write(ref.key, data)
        return ref, True

    def intact(self, ref: ObjectRef, read_data: bool = False) -> bool:
        """Whether the object ``ref`` names is stored with its size (and, with ``read_data``,
        its sha256); a damaged one is logged."""
        try:
            if read_data:
                self._check(ref, self.store.read(ref.key))
            elif (size := self.store.size(ref.key)) != ref.size:
                raise IntegrityError(f"{ref.key}: size {size} bytes, expected {ref.size}", path=ref.key)
        except FileNotFoundError:
            return False
        except IntegrityError as exc:  # DecryptionError included
            log.warning("%s", exc)
            return False
        return True

    def get(self, ref: ObjectRef) -> bytes:
        """Read an object and check its size and sha256; :class:`IntegrityError` if either is off.

        A read that fails the check is read once more: bytes damaged on the way (a
        flaky network, a bad cache) come right the second time, and the event is
        logged. Bytes damaged at rest fail twice and raise.
        """
        return self._read_checked(ref, self._read)

    def _read(self, ref: ObjectRef) -> bytes:
        try:
            return self.store.read(ref.key)
        except FileNotFoundError:
            raise IntegrityError(f"{ref.key}: referenced object is missing", path=ref.key) from None

    def _read_checked(self, ref: ObjectRef, read: Callable[[ObjectRef], T]) -> T:
        data = read(ref)
        try:
            self._check(ref, data)
        except IntegrityError as first:
            data = read(ref)
            self._check(ref, data)  # damaged at rest: raises again
            log.warning("%s; a second read was intact", first)
        return data

    def open_verified(self, ref: ObjectRef) -> VerifiedReader | None:
        """A stream over a large object whose every part is checked before it is read
        (:mod:`vecdr.repository.verified`); ``None`` for an object without part hashes."""
        return VerifiedReader(self.store, ref) if ref.parts else None

    def get_shared(self, ref: ObjectRef) -> bytes:
        """Like :meth:`get`, for a small object many readers need (a deletion file):
        read and checked once, then served from memory."""
        return self._shared.get(ref, self.get)

    def get_buffer(self, ref: ObjectRef) -> bytes | pa.Buffer:
        """Like :meth:`get`, but maps a local file instead of copying it into memory."""
        path = self.store.local_path(ref.key)
        if path is None:
            return self.get(ref)

        def mapped(ref: ObjectRef) -> pa.Buffer:
            try:
                return pa.memory_map(path).read_buffer()
            except FileNotFoundError:
                raise IntegrityError(f"{ref.key}: referenced object is missing", path=ref.key) from None

        return self._read_checked(ref, mapped)

    def _check(self, ref: ObjectRef, data: bytes | pa.Buffer) -> None:
        if len(data) != ref.size:
            raise IntegrityError(
                f"{ref.key}: size {len(data)} bytes, expected {ref.size} (truncated or replaced)",
                path=ref.key,
            )
        if ref.parts:
            bad = [i for i, (got, want) in enumerate(zip(part_hashes(data), ref.parts, strict=True)) if got != want]
            if bad:
                raise IntegrityError(f"{ref.key}: sha256 mismatch in part {bad[0]} (corrupted)", path=ref.key)
        elif sha256_hex(data) != ref.sha256:
            raise IntegrityError(f"{ref.key}: sha256 mismatch (corrupted)", path=ref.key)

    # -- manifests and commits ---------------------------------------------------

    def put_manifest(self, manifest: Manifest) -> ObjectRef:
        data = manifest.to_bytes()
        ref = ObjectRef(f"manifests/{manifest.snapshot}.json", sha256_hex(data), len(data))
        self.store.write(ref.key, data)
        return ref

    def load_manifest(self, commit: CommitRecord) -> Manifest:
        manifest = Manifest.from_bytes(self.get(commit.manifest), commit.manifest.key)
        if manifest.snapshot != commit.snapshot:
            raise IntegrityError(
                f"{commit.manifest.key}: belongs to snapshot {manifest.snapshot}, "
                f"commit {commit.key} names {commit.snapshot}",
                path=commit.manifest.key,
            )
        # The record's copies of these fields choose snapshots by collection, tag and
        # time, so they must agree with the (hash-checked) manifest.
        for field in ("collection", "created_at", "parent", "tags", "rows"):
            if getattr(commit, field) != getattr(manifest, field):
                raise IntegrityError(
                    f"{commit.key}: {field} {getattr(commit, field)!r} disagrees with its manifest "
                    f"({getattr(manifest, field)!r})",
                    path=commit.key,
                )
        return manifest

    def commits(self, on_error: Callable[[VecdrError], None] | None = None) -> list[CommitRecord]:
        """Every readable commit record, oldest first (unreadable ones go to ``on_error``)."""
        return read_commits(self.store, on_error)

    def commit(self, manifest: Manifest, ref: ObjectRef) -> CommitRecord:
        """Write the commit point for ``manifest`` (already stored at ``ref``)."""
        return commit_manifest(self.store, manifest, ref)
