"""The commit protocol.

A snapshot is committed by creating ``commits/<seq:020d>.json`` with
create-if-absent. If another writer took that sequence number first
(:class:`FileExistsError`) we re-read and try the next one: every manifest is
self-contained, so nothing needs rewriting. On any other error the outcome is
unknown: we re-read the record and compare its snapshot id, and never delete.

Every read here must see what other writers just wrote; the store bypasses any
client-side listing cache (see :mod:`vecdr.store.fsspec`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from vecdr.errors import CommitError, IntegrityError, UnsupportedFormatError, VecdrError
from vecdr.format.manifest import Manifest
from vecdr.format.objects import ObjectRef
from vecdr.format.records import CommitRecord, commit_key
from vecdr.store import Store

MAX_ATTEMPTS = 20


def _seq_of(key: str) -> int | None:
    name = key.rsplit("/", 1)[-1]
    stem = name.removesuffix(".json")
    return int(stem) if stem.isdigit() and name.endswith(".json") else None


def commit_seqs(store: Store) -> list[int]:
    return sorted(s for s in map(_seq_of, store.list("commits")) if s is not None)


def read_commit(store: Store, seq: int) -> CommitRecord:
    key = commit_key(seq)
    record = CommitRecord.from_bytes(store.read(key), key)
    if record.seq != seq:
        raise IntegrityError(f"{key}: record says seq {record.seq}", path=key)
    return record


def skipped(exc: VecdrError) -> str:
    """The warning for an unreadable commit record that reads skip."""
    return f"skipping unreadable commit record: {exc}"


def read_commits(
    store: Store, on_error: Callable[[VecdrError], None] | None = None
) -> list[CommitRecord]:
    """Every readable commit record, oldest first.

    An unreadable record is skipped (and handed to ``on_error``) so that one
    damaged record blocks neither restoring other snapshots nor new backups;
    ``verify`` reports it as an error.
    """
    records = []
    for seq in commit_seqs(store):
        try:
            records.append(read_commit(store, seq))
        except (IntegrityError, UnsupportedFormatError) as exc:
            if on_error is not None:
                on_error(exc)
        except FileNotFoundError:
            continue
    return records


def commit_manifest(store: Store, manifest: Manifest, ref: ObjectRef) -> CommitRecord:
    seqs = commit_seqs(store)
    seq = (seqs[-1] + 1) if seqs else 1
    last_error: Exception | None = None
    for attempt in range(MAX_ATTEMPTS):
        record = CommitRecord(
            seq=seq,
            snapshot=manifest.snapshot,
            collection=manifest.collection,
            manifest=ref,
            created_at=manifest.created_at,
            parent=manifest.parent,
            tags=manifest.tags,
            rows=manifest.rows,
        )
        try:
            store.create(record.key, record.to_bytes())
            return record
        except FileExistsError:
            # Someone else holds this number; ours may also be there from an earlier
            # attempt whose reply we lost.
            pass
        except OSError as exc:
            last_error = exc
        # Outcome unknown or lost race: the record, if any, tells which.
        try:
            existing = read_commit(store, seq)
        except FileNotFoundError as exc:
            # Taken, yet not readable: the store showed a stale view (the store layer
            # bypasses client caches, so this is the server's own delay) or the reply lied.
            last_error = last_error or exc
            time.sleep(min(2.0, 0.05 * 2**attempt) * random.random())
            continue
        except (OSError, IntegrityError) as exc:
            last_error = exc
            time.sleep(min(2.0, 0.05 * 2**attempt) * random.random())
            continue
        if existing.snapshot == manifest.snapshot:
            return existing
        seqs = commit_seqs(store)
        seq = max(seq, seqs[-1] if seqs else 0) + 1
    why = f"last error: {last_error}" if last_error is not None else "every number tried was taken"
    raise CommitError(
        f"could not write a commit record for snapshot {manifest.snapshot} after "
        f"{MAX_ATTEMPTS} attempts ({why}); nothing was committed by this run "
        "unless `vecdr snapshots` lists it"
    )
