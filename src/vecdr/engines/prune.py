"""Garbage collection: delete the objects no live snapshot uses, once they are old enough.

Under the repository's exclusive lock (so no snapshot is being written: every
snapshot holds a shared lock while it runs):

1. Every commit record is read and every manifest it names is loaded and
   hash-checked. If any fails, prune stops before deleting anything: an object
   only that snapshot uses would look unused.
2. The live set is every manifest those records name and every object those
   manifests reference.
3. Under ``segments/``, ``artifacts/`` and ``manifests/``, an object not in the
   live set whose last write is older than ``grace`` (default 24 hours) is deleted.
   The grace period keeps what a writer that does not take locks (an older vecdr,
   a process whose lock expired) may still be about to reference.
4. Temporaries older than ``grace`` are removed too: the partial files of writes
   that never finished (a process killed mid-write) and, on S3, uploads that were
   never completed. A write that fails removes its own at once.

Prune only ever deletes unreferenced objects, so a crash at any point leaves every
snapshot restorable, and running it again finishes the job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta

from vecdr.engines.pool import bounded_map
from vecdr.engines.segments import io_workers
from vecdr.errors import IntegrityError, UnsupportedFormatError, VecdrError
from vecdr.progress import NULL, Reporter
from vecdr.repository import Repository
from vecdr.repository.commits import commit_seqs, read_commit
from vecdr.repository.locks import Lock

DEFAULT_GRACE = timedelta(hours=24)
PREFIXES = ("segments", "artifacts", "manifests")


@dataclass(slots=True)
class PruneResult:
    snapshots: int = 0
    live_objects: int = 0
    deleted: list[str] = field(default_factory=list)
    deleted_bytes: int = 0
    kept_young: list[str] = field(default_factory=list)  # unreferenced, within the grace period
    dry_run: bool = False
    temporaries: list[str] = field(default_factory=list)  # unfinished writes older than the grace period

    def to_dict(self) -> dict[str, object]:
        return {"snapshots": self.snapshots, "live_objects": self.live_objects, "deleted": len(self.deleted),
                "deleted_bytes": self.deleted_bytes, "kept_within_grace": len(self.kept_young),
                "dry_run": self.dry_run, "deleted_keys": self.deleted, "temporaries": len(self.temporaries)}


def live_objects(repo: Repository) -> tuple[int, set[str]]:
    """How many snapshots there are and every key they use; raises if any cannot be loaded."""
    live: set[str] = set()
    seqs = commit_seqs(repo.store)
    for seq in seqs:
        try:
            commit = read_commit(repo.store, seq)
            manifest = repo.load_manifest(commit)
        except FileNotFoundError:
            continue  # forgotten since it was listed
        except (IntegrityError, UnsupportedFormatError) as exc:
            raise IntegrityError(
                f"refusing to prune: snapshot record {seq} cannot be loaded ({exc}); "
                "an object only it uses would look unused. Run `vecdr verify`, then forget that snapshot",
                path=getattr(exc, "path", None),
            ) from exc
        live.add(commit.manifest.key)
        live.update(ref.key for ref in manifest.referenced())
    return len(seqs), live


def prune(
    repo: Repository,
    grace: timedelta = DEFAULT_GRACE,
    dry_run: bool = False,
    reporter: Reporter = NULL,
) -> PruneResult:
    """Delete unreferenced objects older than ``grace`` (see the module)."""
    if grace < timedelta(0):
        raise VecdrError("the grace period must not be negative")
    with Lock(repo.store, "exclusive", "prune"):
        result = PruneResult(dry_run=dry_run)
        result.snapshots, live = live_objects(repo)
        result.live_objects = len(live)
        cutoff = time.time() - grace.total_seconds()
        doomed = []
        for prefix in PREFIXES:
            for info in repo.store.list_info(prefix):
                if info.key in live:
                    continue
                if info.modified > cutoff:
                    result.kept_young.append(info.key)
                else:
                    doomed.append(info)
        stale = []
        for info in repo.store.temporaries():
            if info.modified > cutoff:
                result.kept_young.append(info.key)
            else:
                stale.append(info.key)
                result.deleted_bytes += info.size
        result.temporaries = stale
        result.deleted = [info.key for info in doomed]
        result.deleted_bytes += sum(info.size for info in doomed)
        if not dry_run and (doomed or stale):
            reporter.start("prune", len(doomed) + len(stale), unit="objects")

            def delete(key: str) -> None:
                repo.store.delete(key)
                reporter.advance(1)

            def remove(key: str) -> None:
                repo.store.remove_temporary(key)
                reporter.advance(1)

            bounded_map(delete, result.deleted, io_workers(repo))
            bounded_map(remove, stale, io_workers(repo))
            reporter.finish()
        result.deleted += stale
    return result
