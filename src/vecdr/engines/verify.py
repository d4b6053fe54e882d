"""Checking a repository: every commit, manifest and referenced object, optionally every byte."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from vecdr.engines.segments import table_row_hashes
from vecdr.errors import IntegrityError, VecdrError
from vecdr.format.deletions import decode_deletion_slice
from vecdr.format.manifest import Manifest, SegmentEntry
from vecdr.format.objects import ObjectRef
from vecdr.format.rowhashes import decode_row_hashes
from vecdr.format.segment import ID, decode_segment
from vecdr.progress import NULL, Reporter
from vecdr.repository import Repository
from vecdr.repository.commits import commit_seqs, read_commit


@dataclass(frozen=True, slots=True)
class Problem:
    object: str
    problem: str


@dataclass(slots=True)
class VerifyReport:
    snapshots: int = 0
    objects: int = 0
    bytes_read: int = 0
    errors: list[Problem] = field(default_factory=list)
    unreferenced: list[str] = field(default_factory=list)
    temporaries: list[str] = field(default_factory=list)  # unfinished writes; `prune` removes old ones

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, object]:
        doc = asdict(self)
        doc["ok"] = self.ok
        return doc


@dataclass(slots=True)
class _Object:
    """A referenced object: what it is, the reference to check it by, the segments it serves."""

    kind: str  # "segment", "hashes", "deletions" or an artifact name
    ref: ObjectRef
    entries: dict[object, SegmentEntry] = field(default_factory=dict)
    schema: pa.Schema | None = None  # a segment's row schema, from the manifest that lists it

    def check(self, repo: Repository, data: bytes) -> None:
        """Decode the object and compare it with what the manifests say of it."""
        key = self.ref.key
        for entry in self.entries.values():
            if self.kind == "segment":
                # The footer is checked against the manifest (rows, columns, sizes) before decoding.
                table = decode_segment(data, key, rows=entry.rows, schema=self.schema)
                if table.num_rows != entry.rows:
                    raise IntegrityError(f"{key}: {table.num_rows} rows, expected {entry.rows}", path=key)
                _check_row_hashes(repo, table, entry)
            elif self.kind == "hashes":
                ids, _ = decode_row_hashes(data, key, entry.rows)
                if len(ids) != entry.rows:
                    raise IntegrityError(f"{key}: {len(ids)} row hashes, expected {entry.rows}", path=key)
            elif self.kind == "deletions" and entry.deletions is not None:
                dels = entry.deletions
                try:
                    dead = decode_deletion_slice(data, dels.offset, dels.length, entry.rows)
                except ValueError as exc:
                    raise IntegrityError(f"{key}: {exc}", path=key) from exc
                if int(entry.rows - dead.sum()) != entry.live:
                    raise IntegrityError(
                        f"{key}: the deletion vector at byte {dels.offset} disagrees with the live "
                        f"count of {entry.object.key}",
                        path=key,
                    )


def _check_row_hashes(repo: Repository, table: pa.Table, entry: SegmentEntry) -> None:
    """Recompute every row hash of a segment from its data and compare with its sidecar:
    a segment whose rows changed after they were hashed would otherwise pass every
    sha256 check and look unchanged to the next diff snapshot."""
    key = entry.object.key
    try:
        ids, stored = decode_row_hashes(repo.get(entry.hashes), entry.hashes.key, entry.rows)
    except IntegrityError:
        return  # a damaged sidecar is reported as itself, when verify reaches it
    if not ids.equals(table.column(ID).combine_chunks().cast(ids.type)):
        raise IntegrityError(f"{key}: its ids differ from those of its row hashes {entry.hashes.key}", path=key)
    actual = table_row_hashes(table)
    wrong = np.flatnonzero((actual != stored).any(axis=1))
    if len(wrong):
        raise IntegrityError(
            f"{key}: {len(wrong)} of {entry.rows} rows do not match their row hashes in {entry.hashes.key} "
            f"(the first is id {table.column(ID)[int(wrong[0])].as_py()!r})",
            path=key,
        )


def _referenced(manifest: Manifest, objects: dict[str, _Object]) -> None:
    """Add the objects ``manifest`` uses to ``objects``."""

    def use(kind: str, ref: ObjectRef, entry: SegmentEntry, per_vector: bool = False) -> None:
        # A segment is checked once; a deletion file once per vector in it that a manifest uses.
        obj = objects.setdefault(ref.key, _Object(kind, ref))
        obj.entries[(entry.deletions, entry.live) if per_vector else None] = entry

    for entry in manifest.segments:
        use("segment", entry.object, entry)
        objects[entry.object.key].schema = manifest.schema
        use("hashes", entry.hashes, entry)
        if entry.deletions:
            use("deletions", entry.deletions.object, entry, per_vector=True)
    for name, ref in manifest.artifacts.items():
        objects.setdefault(ref.key, _Object(name, ref))


def verify(repo: Repository, read_data: bool = False, reporter: Reporter = NULL) -> VerifyReport:
    """Check the repository; with ``read_data`` read and hash every referenced object.

    Without ``read_data`` objects are checked for presence and size only.
    Problems are collected, not raised, so one bad object does not hide another.
    """
    report = VerifyReport()
    objects: dict[str, _Object] = {}
    manifests: set[str] = set()
    committed: dict[str, str] = {}  # snapshot id -> its first commit record
    seqs = commit_seqs(repo.store)
    for seq in seqs:
        try:
            commit = read_commit(repo.store, seq)
            if commit.snapshot in committed:
                raise IntegrityError(
                    f"{commit.key}: commits snapshot {commit.snapshot} again (first in {committed[commit.snapshot]})",
                    path=commit.key,
                )
            committed[commit.snapshot] = commit.key
            manifest = repo.load_manifest(commit)  # read and hashed here
        except (VecdrError, OSError) as exc:
            report.errors.append(Problem(getattr(exc, "path", None) or f"commits/{seq:020d}.json",
                                         str(exc)))
            continue
        report.snapshots += 1
        manifests.add(commit.manifest.key)
        _referenced(manifest, objects)

    reporter.start("verify", len(manifests) + len(objects), unit="objects")
    report.objects += len(manifests)
    reporter.advance(len(manifests))
    for key, obj in objects.items():
        report.objects += 1
        try:
            if not read_data:
                if not repo.store.exists(key):
                    raise IntegrityError(f"{key}: referenced object is missing", path=key)
                size = repo.store.size(key)
                if size != obj.ref.size:
                    raise IntegrityError(f"{key}: size {size}, expected {obj.ref.size}", path=key)
                continue
            data = repo.get(obj.ref)
            report.bytes_read += len(data)
            obj.check(repo, data)
        except (VecdrError, OSError, ValueError, pa.ArrowException) as exc:
            report.errors.append(Problem(key, str(exc)))
        finally:
            reporter.advance(1)
    reporter.finish()

    known = set(objects) | manifests | {"config.json"} | {f"commits/{s:020d}.json" for s in seqs}
    for prefix in ("segments", "artifacts", "manifests"):
        for key in repo.store.list(prefix):
            if key not in known:
                report.unreferenced.append(key)
    report.temporaries = [info.key for info in repo.store.temporaries()]
    return report
