"""Checking a repository: every commit, manifest and referenced object, optionally every byte."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from vecdr.errors import IntegrityError, VecdrError
from vecdr.format.deletions import decode_deletions
from vecdr.format.rowhashes import decode_row_hashes
from vecdr.format.segment import decode_segment
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

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, object]:
        doc = asdict(self)
        doc["ok"] = self.ok
        return doc


def verify(repo: Repository, read_data: bool = False, reporter: Reporter = NULL) -> VerifyReport:
    """Check the repository; with ``read_data`` read and hash every referenced object.

    Without ``read_data`` objects are checked for presence and size only.
    Problems are collected, not raised, so one bad object does not hide another.
    """
    report = VerifyReport()
    referenced: dict[str, object] = {}
    seqs = commit_seqs(repo.store)
    for seq in seqs:
        try:
            commit = read_commit(repo.store, seq)
            manifest = repo.load_manifest(commit)
        except (VecdrError, OSError) as exc:
            report.errors.append(Problem(getattr(exc, "path", None) or f"commits/{seq:020d}.json",
                                         str(exc)))
            continue
        report.snapshots += 1
        referenced[commit.manifest.key] = commit.manifest
        for entry in manifest.segments:
            referenced[entry.object.key] = ("segment", entry)
            referenced[entry.hashes.key] = ("hashes", entry)
            if entry.deletions:
                referenced[entry.deletions.key] = ("deletions", entry)
        for name, ref in manifest.artifacts.items():
            referenced[ref.key] = (name, ref)

    reporter.start("verify", len(referenced), unit="objects")
    for key, what in referenced.items():
        report.objects += 1
        try:
            if not isinstance(what, tuple):
                continue  # manifests were read and hashed above
            kind, item = what
            ref = {"segment": getattr(item, "object", None), "hashes": getattr(item, "hashes", None),
                   "deletions": getattr(item, "deletions", None)}.get(kind, item)
            if not read_data:
                if not repo.store.exists(key):
                    raise IntegrityError(f"{key}: referenced object is missing", path=key)
                size = repo.store.size(key)
                if size != ref.size:
                    raise IntegrityError(f"{key}: size {size}, expected {ref.size}", path=key)
                continue
            data = repo.get(ref)
            report.bytes_read += len(data)
            if kind == "segment":
                table = decode_segment(data, key)
                if table.num_rows != item.rows:
                    raise IntegrityError(f"{key}: {table.num_rows} rows, expected {item.rows}", path=key)
            elif kind == "deletions":
                dead = decode_deletions(data, item.rows)
                if int(item.rows - dead.sum()) != item.live:
                    raise IntegrityError(f"{key}: deletion vector disagrees with live count", path=key)
            elif kind == "hashes":
                ids, _ = decode_row_hashes(data, key)
                if len(ids) != item.rows:
                    raise IntegrityError(f"{key}: {len(ids)} row hashes, expected {item.rows}", path=key)
        except (VecdrError, OSError, ValueError) as exc:
            report.errors.append(Problem(key, str(exc)))
        finally:
            reporter.advance(1)
    reporter.finish()

    known = set(referenced) | {"config.json"} | {f"commits/{s:020d}.json" for s in seqs}
    for prefix in ("segments", "artifacts", "manifests"):
        for key in repo.store.list(prefix):
            if key not in known:
                report.unreferenced.append(key)
    return report
