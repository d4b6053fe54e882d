"""Client-side encryption: a store wrapper that seals every object with AES-256-GCM.

Below the repository, in restic's manner: the repository reads and writes plaintext,
and :class:`EncryptedStore` encrypts on the way to the store and decrypts on the way
back. Every object but ``config.json`` is encrypted. An object is::

    b"VDE1" | chunk 0 | chunk 1 | ...      chunk: nonce (12 bytes) | ciphertext | tag (16 bytes)

Each chunk holds up to ``chunk`` plaintext bytes under a fresh random 96-bit nonce.
Its associated data binds the repository id, the object's key (its path in the
repository), the chunk's position and whether it is the last: an object altered,
truncated, reordered, or moved to another name or repository fails to decrypt
(:class:`DecryptionError`, an :class:`IntegrityError` naming the object).

Sizes are plaintext sizes (:meth:`size` subtracts the fixed overhead), so manifests
and ``verify`` see the same numbers as in a plain repository. There is no local file
to map (:meth:`local_path` is None): ciphertext cannot be loaded in place.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

from vecdr.errors import DecryptionError, EncryptionUnavailableError
from vecdr.store.base import ObjectInfo, Store

MAGIC = b"VDE1"
NONCE = 12
TAG = 16
#: Bytes a chunk adds to its plaintext.
OVERHEAD = NONCE + TAG
#: Objects kept in plaintext: what opening a repository must read before it has a key.
PLAIN = frozenset({"config.json"})

log = logging.getLogger("vecdr.store")


def _aead(key: bytes) -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as exc:
        raise EncryptionUnavailableError(
            "encrypted repositories need the cryptography package: pip install 'vecdr[encrypt]'"
        ) from exc
    return AESGCM(key)


def sealed_size(size: int, chunk: int) -> int:
    """The stored size of an object of ``size`` plaintext bytes."""
    chunks = max(1, -(-size // chunk))
    return len(MAGIC) + size + chunks * OVERHEAD


def plain_size(stored: int, chunk: int) -> int | None:
    """The plaintext size of an object stored in ``stored`` bytes; None if no object has that size."""
    whole, rest = divmod(stored - len(MAGIC), chunk + OVERHEAD)
    if stored - len(MAGIC) <= 0 or (rest and rest < OVERHEAD):
        return None
    return whole * chunk + (rest - OVERHEAD if rest else 0)


class EncryptedStore(Store):
    """``inner`` with every object but ``config.json`` sealed under ``key`` (see the module)."""

    def __init__(self, inner: Store, key: bytes, repository_id: str, chunk: int) -> None:
        super().__init__(inner.url)
        self.inner = inner
        self.chunk = chunk
        self.atomic_create = inner.atomic_create
        self.concurrency = inner.concurrency
        self._aead = _aead(key)
        self._context = b"vecdr object\x00" + repository_id.encode() + b"\x00"

    def _associated(self, key: str, index: int, last: bool) -> bytes:
        return self._context + key.encode() + b"\x00" + index.to_bytes(8, "big") + (b"\x01" if last else b"\x00")

    def seal(self, key: str, data: bytes | memoryview) -> bytes:
        view = memoryview(data).cast("B")
        chunks = max(1, -(-len(view) // self.chunk))
        parts: list[bytes] = [MAGIC]
        for i in range(chunks):
            nonce = os.urandom(NONCE)  # fresh and random for every chunk of every object
            piece = view[i * self.chunk : (i + 1) * self.chunk]
            parts += [nonce, self._aead.encrypt(nonce, piece, self._associated(key, i, i == chunks - 1))]
        return b"".join(parts)

    def unseal(self, key: str, data: bytes) -> bytes:
        """The plaintext of an object read from ``key``; :class:`DecryptionError` if it does not decrypt."""
        size = plain_size(len(data), self.chunk)
        if size is None or data[: len(MAGIC)] != MAGIC:
            raise DecryptionError(
                f"{key}: not an object encrypted by vecdr ({len(data)} bytes; truncated, or written without "
                "encryption)",
                path=key,
            )
        from cryptography.exceptions import InvalidTag

        view = memoryview(data)
        chunks = max(1, -(-size // self.chunk))
        parts = []
        at = len(MAGIC)
        for i in range(chunks):
            length = min(self.chunk, size - i * self.chunk) + TAG
            nonce, sealed = view[at : at + NONCE], view[at + NONCE : at + NONCE + length]
            at += NONCE + length
            try:
                parts.append(self._aead.decrypt(nonce, sealed, self._associated(key, i, i == chunks - 1)))
            except InvalidTag:
                raise DecryptionError(
                    f"{key}: does not decrypt with this repository's key (altered, damaged, or moved from "
                    "another object)",
                    path=key,
                ) from None
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def read(self, key: str) -> bytes:
        data = self.inner.read(key)
        if key in PLAIN:
            return data
        try:
            return self.unseal(key, data)
        except DecryptionError as first:
            # As for a failed hash check: bytes damaged on the way come right the
            # second time; bytes damaged at rest fail again and raise.
            plain = self.unseal(key, self.inner.read(key))
            log.warning("%s; a second read was intact", first)
            return plain

    def write(self, key: str, data: bytes | memoryview) -> None:
        self.inner.write(key, data if key in PLAIN else self.seal(key, data))

    def create(self, key: str, data: bytes) -> None:
        self.inner.create(key, data if key in PLAIN else self.seal(key, data))

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def size(self, key: str) -> int:
        stored = self.inner.size(key)
        if key in PLAIN:
            return stored
        size = plain_size(stored, self.chunk)
        if size is None:
            raise DecryptionError(f"{key}: {stored} bytes cannot be an encrypted object (truncated)", path=key)
        return size

    def list(self, prefix: str = "") -> Iterator[str]:
        return self.inner.list(prefix)

    def list_info(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for info in self.inner.list_info(prefix):
            size = info.size if info.key in PLAIN else plain_size(info.size, self.chunk)
            yield ObjectInfo(info.key, info.size if size is None else size, info.modified)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def root_exists(self) -> bool:
        return self.inner.root_exists()

    def temporaries(self) -> Iterator[ObjectInfo]:
        return self.inner.temporaries()

    def remove_temporary(self, key: str) -> None:
        self.inner.remove_temporary(key)
