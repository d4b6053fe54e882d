"""Every error vecdr raises on purpose.

One root, :class:`VecdrError`. Each subclass also inherits the builtin a caller
would naturally catch, so ``except FileNotFoundError`` still works::

    VecdrError
    ├── RepositoryError
    │   ├── NotARepositoryError          (FileNotFoundError)
    │   ├── RepositoryExistsError        (FileExistsError)
    │   ├── UnsupportedFormatError
    │   ├── IntegrityError               (hash mismatch, truncated or missing object, a key outside the layout)
    │   │   └── DecryptionError          (ValueError: an object does not decrypt: altered, swapped or damaged)
    │   ├── SnapshotNotFoundError        (LookupError)
    │   ├── AmbiguousSnapshotError       (LookupError)
    │   ├── CollectionError              (LookupError: unknown or ambiguous collection)
    │   ├── CommitError                  (the commit point could not be written)
    │   ├── LockedError                  (another process holds the repository's lock)
    │   └── EncryptionError              (an encrypted repository cannot be opened as asked)
    │       ├── KeyRequiredError         (PermissionError: the repository is encrypted and no key was given)
    │       ├── WrongKeyError            (PermissionError: the key does not open this repository)
    │       └── EncryptionUnavailableError  (ImportError: the `encrypt` extra is not installed)
    ├── SourceError                      (ValueError)
    │   ├── DimensionMismatchError
    │   ├── DuplicateIdError
    │   ├── NonFiniteVectorError
    │   ├── LossyIndexError
    │   ├── JournalDamagedError          (a change journal record fails its check: snapshot with --mode diff)
    │   └── SchemaError
    ├── TargetError
    │   ├── TargetExistsError            (FileExistsError)
    │   ├── TargetWriteError             (OSError: no space, read-only or denied where the target is written)
    │   └── GpuUnavailableError          (gpu="require" and no GPU build path)
    ├── UsageError                       (ValueError: an invalid or conflicting argument)
    ├── BackendError
    │   ├── UnknownSchemeError           (ValueError)
    │   ├── BackendUnavailableError      (ImportError: the extra to install is named)
    │   ├── BackendConnectionError       (ConnectionError: unreachable, refused, bad credentials)
    │   └── NotFoundInBackendError       (LookupError: no such table, collection or column)
    └── StoreError                       (OSError: the message names the object and the reason)
        ├── StoreAccessError             (PermissionError: wrong credentials, access denied)
        ├── StoreUnreachableError        (ConnectionError: endpoint unreachable, retries spent)
        ├── StoreFullError               (no space left on the device, or a quota or file size limit reached)
        └── UnsafeKeyError               (ValueError: a key that would resolve outside the store's root)
"""

from __future__ import annotations


class VecdrError(Exception):
    """Root of every error vecdr raises on purpose."""


class RepositoryError(VecdrError):
    """Something about the repository itself is wrong."""


class NotARepositoryError(RepositoryError, FileNotFoundError):
    """The location holds no vecdr repository."""


class RepositoryExistsError(RepositoryError, FileExistsError):
    """``init`` was asked to create a repository where one (or something else) already is."""


class UnsupportedFormatError(RepositoryError):
    """The repository was written by a newer format than this vecdr reads."""


class IntegrityError(RepositoryError):
    """An object's bytes do not match its recorded hash, or it is missing or truncated.

    ``path`` names the object so an operator can find it.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class DecryptionError(IntegrityError, ValueError):
    """An object of an encrypted repository does not decrypt with its key and name:
    its bytes were altered or damaged, or it was moved from another name or repository."""


class SnapshotNotFoundError(RepositoryError, LookupError):
    """No snapshot matches the given reference."""


class AmbiguousSnapshotError(RepositoryError, LookupError):
    """A snapshot id prefix matches more than one snapshot."""


class CollectionError(RepositoryError, LookupError):
    """The collection is unknown, or a collection must be named and was not."""


class CommitError(RepositoryError):
    """The commit record could not be written; nothing was committed."""


class LockedError(RepositoryError):
    """Another process holds the repository's lock; the message names it and the way out."""


class EncryptionError(RepositoryError):
    """An encrypted repository cannot be opened or created as asked."""


class KeyRequiredError(EncryptionError, PermissionError):
    """The repository is encrypted and no key or passphrase was given."""


class WrongKeyError(EncryptionError, PermissionError):
    """The key or passphrase given does not open this repository (its key check fails)."""


class EncryptionUnavailableError(EncryptionError, ImportError):
    """The ``cryptography`` package is missing; the message names the extra to install."""


class SourceError(VecdrError, ValueError):
    """The data offered for a snapshot is unusable."""


class JournalDamagedError(SourceError):
    """A change journal holds a damaged record: the changes after it cannot be trusted.

    ``path`` names the damaged log; ``upto`` is the journal position that was being
    read, so a snapshot that does not need the changes can still trim past them.
    """

    def __init__(self, message: str, path: str | None = None, upto: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.upto = upto


class DimensionMismatchError(SourceError):
    """Vector dimension differs from the collection's or the target's."""


class DuplicateIdError(SourceError):
    """The same id appears more than once in one source."""


class NonFiniteVectorError(SourceError):
    """A vector holds NaN or Inf and non-finite values were not allowed."""


class LossyIndexError(SourceError):
    """The index does not store vectors losslessly and no embeddings were supplied."""


class SchemaError(SourceError):
    """Columns are missing or of a type vecdr cannot store."""


class TargetError(VecdrError):
    """The restore target cannot be written."""


class TargetExistsError(TargetError, FileExistsError):
    """The restore target already exists and ``force`` was not given."""


class TargetWriteError(TargetError, OSError):
    """The target's files cannot be written: no space left, a read-only file system, access
    denied. The message names the file and the cause; nothing partial is left under its name."""


class GpuUnavailableError(TargetError):
    """``gpu="require"``, and the rebuild cannot run on a GPU; the message says why."""


class UsageError(VecdrError, ValueError):
    """An argument is invalid, or two arguments conflict."""


class BackendError(VecdrError):
    """A source or target URI cannot be served by any backend."""


class UnknownSchemeError(BackendError, ValueError):
    """No backend is registered for the URI's scheme."""


class BackendUnavailableError(BackendError, ImportError):
    """The backend's package is not installed; the message names the extra."""


class BackendConnectionError(BackendError, ConnectionError):
    """The database could not be reached or refused the connection (the message holds no secret)."""


class NotFoundInBackendError(BackendError, LookupError):
    """The named table, collection, column or extension is not in the database."""


class StoreError(VecdrError, OSError):
    """The underlying storage failed in a way vecdr cannot recover from."""


class StoreAccessError(StoreError, PermissionError):
    """The store refused the credentials or the operation (access denied)."""


class StoreUnreachableError(StoreError, ConnectionError):
    """The store could not be reached, or kept failing until the retries ran out."""


class StoreFullError(StoreError):
    """The store has no space left (or a quota or file size limit was reached) for an object;
    the message names it. What the failed write had begun is removed."""


class UnsafeKeyError(StoreError, ValueError):
    """A key that would resolve outside the store's root (``..``, an absolute path, a backslash)."""
