"""Repairing a repository: mending the damaged or missing objects live snapshots reference.

Every object is named by the sha256 of its bytes, so repair writes an object only
with the very bytes its name promises, under that name. No manifest or commit
record changes, and every snapshot that referenced the object is whole again,
with its id, time and place in its collection's history as before.

- A row-hash sidecar is rebuilt from its segment (no source needed).
- A segment is rebuilt from a source: its rows are found by id in the source and
  must have the row hashes its sidecar records, then they are encoded in the
  segment's order; the result is written only if its sha256 is the segment's name.
- Anything else (a manifest, a commit record, a deletion vector, an artifact), or a
  segment the source no longer holds as it was, cannot be repaired. The snapshots
  that need it are reported and kept; ``forget_unrepairable`` forgets them (their
  commit records go, their objects stay until ``prune``).

Repair deletes nothing else and runs under the exclusive lock, like ``forget``;
a dry run writes nothing and takes no lock.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecdr.backends.base import Source
from vecdr.engines.pool import bounded_map
from vecdr.engines.segments import io_workers, table_row_hashes
from vecdr.errors import DimensionMismatchError, IntegrityError, SchemaError
from vecdr.format.hashing import ROW_HASH_BYTES, sha256_hex
from vecdr.format.manifest import Manifest, SegmentEntry
from vecdr.format.objects import ObjectRef
from vecdr.format.records import CommitRecord, commit_key
from vecdr.format.rowhashes import decode_row_hashes, encode_row_hashes
from vecdr.format.segment import decode_segment, encode_segment
from vecdr.progress import NULL, Reporter
from vecdr.repository import Repository, collections, pick_collection
from vecdr.repository.commits import commit_seqs, read_commit
from vecdr.repository.locks import Lock

SCAN_BATCH_ROWS = 65536


@dataclass(frozen=True, slots=True)
class Damage:
    """A damaged or missing object: what it is, what is wrong, and what repair did about it."""

    object: str
    kind: str  # "segment", "row hashes", "deletions", "manifest", "commit record" or an artifact name
    problem: str
    repaired: bool = False
    how: str = ""  # how it was (or, in a dry run, would be) repaired, or why it cannot be
    snapshots: tuple[str, ...] = ()  # the snapshots that reference it


@dataclass(slots=True)
class RepairResult:
    dry_run: bool = False
    snapshots: int = 0  # commit records found
    objects: int = 0  # referenced objects checked
    damaged: list[Damage] = field(default_factory=list)
    unrepairable: list[str] = field(default_factory=list)  # snapshot ids (or commit keys) still damaged
    forgotten: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every snapshot left in the repository is whole (or would be, after a dry run)."""
        return set(self.unrepairable) <= set(self.forgotten)

    def to_dict(self) -> dict[str, object]:
        doc = asdict(self)
        doc["ok"] = self.ok
        return doc


@dataclass(slots=True)
class _Referenced:
    kind: str
    ref: ObjectRef
    snapshots: list[str] = field(default_factory=list)
    entry: SegmentEntry | None = None  # for a segment or its sidecar
    manifest: Manifest | None = None  # one manifest that uses it (its schema, for a segment)


def _same_bytes(ref: ObjectRef, data: bytes | pa.Buffer) -> bool:
    return len(data) == ref.size and sha256_hex(data) == ref.sha256


class _Repair:
    def __init__(self, repo: Repository, dry_run: bool, reporter: Reporter) -> None:
        self.repo = repo
        self.dry_run = dry_run
        self.reporter = reporter
        self.result = RepairResult(dry_run=dry_run)
        self.objects: dict[str, _Referenced] = {}
        self.commits: list[CommitRecord] = []  # the readable ones
        self.manifests: dict[str, Manifest] = {}  # snapshot id -> manifest, oldest first
        self.broken: dict[str, str] = {}  # damaged key -> problem
        self.fixed: dict[str, str] = {}  # repaired key -> how
        self.unfixable: dict[str, str] = {}  # damaged key -> why not

    # -- finding the damage ----------------------------------------------------

    # Only an IntegrityError (missing, truncated, altered, undecryptable) is damage. Any
    # other error (a store that cannot be reached, a newer format) stops the repair:
    # taking it for damage could forget snapshots that are whole.

    def load(self) -> None:
        """Read every commit record and manifest; damaged ones are damage no one can repair."""
        for seq in commit_seqs(self.repo.store):
            key = commit_key(seq)
            try:
                commit = read_commit(self.repo.store, seq)
            except IntegrityError as exc:
                self._unrepairable(key, "commit record", str(exc), key)
                continue
            except FileNotFoundError:
                continue  # forgotten since it was listed
                continue
            self.result.snapshots += 1
            self.commits.append(commit)
            try:
                manifest = self.repo.load_manifest(commit)
            except IntegrityError as exc:
                self._unrepairable(commit.manifest.key, "manifest", str(exc), commit.snapshot)
                continue
            self.manifests[commit.snapshot] = manifest
            for entry in manifest.segments:
                self._use("segment", entry.object, commit.snapshot, entry, manifest)
                self._use("row hashes", entry.hashes, commit.snapshot, entry, manifest)
                if entry.deletions is not None:
                    self._use("deletions", entry.deletions.object, commit.snapshot)
            for name, ref in manifest.artifacts.items():
                self._use(name, ref, commit.snapshot)

    def _use(self, kind: str, ref: ObjectRef, snapshot: str, entry: SegmentEntry | None = None,
             manifest: Manifest | None = None) -> None:
        obj = self.objects.setdefault(ref.key, _Referenced(kind, ref, entry=entry, manifest=manifest))
        obj.snapshots.append(snapshot)

    def _unrepairable(self, key: str, kind: str, problem: str, snapshot: str) -> None:
        self.result.damaged.append(Damage(key, kind, problem, False, "cannot be rebuilt", (snapshot,)))
        self.result.unrepairable.append(snapshot)

    def check(self) -> None:
        """Read and hash every referenced object (``verify --read-data``'s check)."""
        self.reporter.start("check", len(self.objects), unit="objects")

        def problem(obj: _Referenced) -> str | None:
            try:
                self.repo.get(obj.ref)
            except IntegrityError as exc:
                return str(exc)
            finally:
                self.reporter.advance(1)
            return None

        found = bounded_map(problem, list(self.objects.values()), io_workers(self.repo))
        self.reporter.finish()
        self.result.objects = len(self.objects)
        self.broken = {obj.ref.key: p for obj, p in zip(self.objects.values(), found, strict=True) if p is not None}

    # -- mending -----------------------------------------------------------------

    def _write(self, ref: ObjectRef, data: bytes | pa.Buffer, how: str) -> None:
        if not self.dry_run:
            self.repo.store.write(ref.key, data)
        self.fixed[ref.key] = how

    def segments_from(self, source: Source, collection: str | None) -> None:
        """Rebuild the damaged segments of ``collection``'s snapshots from ``source``."""
        info = source.info()
        own = info.name if info.name in collections(self.commits) else None
        name = pick_collection(self.commits, collection or own)
        ours = [m for m in self.manifests.values() if m.collection == name]
        if not ours:
            return
        newest = ours[-1]
        if info.dimension != newest.dimension:
            raise DimensionMismatchError(
                f"collection {name!r} holds {newest.dimension}-dimensional vectors; the source has {info.dimension}"
            )
        if info.id_type != newest.id_type or not info.attributes.equals(newest.attributes):
            raise SchemaError(f"the source's id type or attribute columns differ from collection {name!r}'s")
        todo: dict[str, tuple[_Referenced, pa.Array, np.ndarray]] = {}
        for key, obj in self.objects.items():
            if obj.kind != "segment" or key not in self.broken or obj.entry is None or obj.manifest is None:
                continue
            if obj.manifest.collection != name:
                continue
            sidecar = obj.entry.hashes
            if sidecar.key in self.broken:
                self.unfixable[key] = f"its row-hash sidecar {sidecar.key} is damaged too: which rows it held is lost"
                continue
            ids, hashes = decode_row_hashes(self.repo.get(sidecar), sidecar.key)
            todo[key] = (obj, ids, hashes)
        if not todo:
            return

        # One scan of the source keeps the rows of every damaged segment (and only those).
        schema = newest.schema
        wanted = pa.concat_arrays([ids.cast(schema.field("id").type) for _, ids, _ in todo.values()])
        found: list[pa.Table] = [schema.empty_table()]
        found_hashes: list[np.ndarray] = [np.empty((0, ROW_HASH_BYTES), np.uint8)]
        self.reporter.start("repair: scanning the source", info.rows)
        for batch in source.scan(SCAN_BATCH_ROWS):
            self.reporter.advance(batch.num_rows)
            batch = batch.cast(schema)
            keep = pc.is_in(batch.column("id"), value_set=wanted)
            if pc.any(keep).as_py():
                rows = batch.filter(keep)
                found.append(rows)
                found_hashes.append(table_row_hashes(rows))
        self.reporter.finish()
        rows = pa.concat_tables(found).combine_chunks()
        hashes = np.concatenate(found_hashes)
        row_ids = rows.column("id").combine_chunks()

        for key, (obj, ids, want) in todo.items():
            where = pc.index_in(ids.cast(row_ids.type), value_set=row_ids)
            if where.null_count:
                self.unfixable[key] = f"the source no longer holds {where.null_count} of its {len(ids)} rows"
                continue
            at = where.to_numpy(zero_copy_only=False).astype(np.int64)
            changed = int((hashes[at] != want).any(axis=1).sum())
            if changed:
                self.unfixable[key] = f"{changed} of its {len(ids)} rows have changed in the source since"
                continue
            data = encode_segment(rows.take(pa.array(at)))
            if not _same_bytes(obj.ref, data):
                self.unfixable[key] = ("its rows, encoded again, give other bytes (written by another "
                                       "vecdr or pyarrow version?)")
                continue
            self._write(obj.ref, data, f"rebuilt from {source.uri}")

    def sidecars(self) -> None:
        """Rebuild each damaged row-hash sidecar from its (intact or repaired) segment."""
        for key, obj in self.objects.items():
            if obj.kind != "row hashes" or key not in self.broken or obj.entry is None:
                continue
            segment = obj.entry.object
            if segment.key in self.broken and segment.key not in self.fixed:
                self.unfixable[key] = f"its segment {segment.key} is damaged too"
                continue
            if segment.key in self.fixed and self.dry_run:
                self.fixed[key] = "rebuilt from its segment, once the segment is"
                continue
            table = decode_segment(self.repo.get_buffer(segment), segment.key)
            data = encode_row_hashes(table.column("id").combine_chunks(), table_row_hashes(table))
            if not _same_bytes(obj.ref, data):
                self.unfixable[key] = "its segment's rows hash to another sidecar"
                continue
            self._write(obj.ref, data, "rebuilt from its segment")

    def settle(self) -> None:
        """Record every damaged object with its outcome, and the snapshots left damaged."""
        for key, problem in self.broken.items():
            obj = self.objects[key]
            if key in self.fixed:
                outcome = (True, self.fixed[key])
            else:
                outcome = (False, self.unfixable.get(key, self._why_not(obj)))
            self.result.damaged.append(Damage(key, obj.kind, problem, *outcome, tuple(dict.fromkeys(obj.snapshots))))
            if not outcome[0]:
                self.result.unrepairable.extend(obj.snapshots)
        self.result.unrepairable = list(dict.fromkeys(self.result.unrepairable))

    def _why_not(self, obj: _Referenced) -> str:
        if obj.kind == "segment":
            return "no source of its collection was given (--source)"
        return "cannot be rebuilt"


def repair(
    repo: Repository,
    source: Source | None = None,
    *,
    collection: str | None = None,
    dry_run: bool = False,
    forget_unrepairable: bool = False,
    reporter: Reporter = NULL,
) -> RepairResult:
    """Check every object live snapshots reference and mend what can be mended.

    ``source``: where the damaged segments of ``collection`` (by default the source's
    own, or the only one) are rebuilt from. ``dry_run``: write nothing, say what
    would be done. ``forget_unrepairable``: forget the snapshots that stay damaged.
    """
    # A dry run writes nothing, so it needs no lock (and runs on a read-only repository).
    with nullcontext() if dry_run else Lock(repo.store, "exclusive", "repair"):
        job = _Repair(repo, dry_run, reporter)
        job.load()
        job.check()
        if source is not None and any(job.objects[key].kind == "segment" for key in job.broken):
            job.segments_from(source, collection)
        job.sidecars()
        job.settle()
        result = job.result
        if forget_unrepairable:
            _forget(repo, result, dry_run, reporter.warn)
    return result


def _forget(repo: Repository, result: RepairResult, dry_run: bool, warn: Callable[[str], None]) -> None:
    """Delete the commit records of the snapshots left damaged (named by id, or by record key)."""
    keys = {c.snapshot: c.key for c in repo.commits()}
    for snapshot in result.unrepairable:
        key = keys.get(snapshot, snapshot if snapshot.startswith("commits/") else None)
        if key is None:
            continue
        if not dry_run:
            repo.store.delete(key)
        result.forgotten.append(snapshot)
    if result.forgotten and not dry_run:
        warn(f"forgot {len(result.forgotten)} damaged snapshot(s); `vecdr prune` deletes what only they used")
