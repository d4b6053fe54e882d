"""Restoring a snapshot: stream its live rows into a target, or load a native blob."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from vecdr.backends.base import RestoreSpec, Target
from vecdr.engines.segments import iter_live, sample_live
from vecdr.errors import IntegrityError, SnapshotNotFoundError, VecdrError
from vecdr.format.manifest import Manifest
from vecdr.progress import NULL, Reporter
from vecdr.repository import Repository, resolve
from vecdr.repository.commits import skipped
from vecdr.repository.resolve import parse_time


@dataclass(frozen=True, slots=True)
class RestoreResult:
    snapshot: str
    collection: str
    target: str
    rows: int
    seconds: float
    #: Age of the restored snapshot when the restore finished (the achieved RPO).
    snapshot_age_seconds: float
    native: bool
    phases: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def open_snapshot(
    repo: Repository,
    ref: str | None = "latest",
    collection: str | None = None,
    as_of: str | datetime | None = None,
    reporter: Reporter = NULL,
) -> Manifest:
    """Resolve a snapshot reference and load its manifest (hash-checked).

    Unreadable commit records are skipped with a warning; when nothing else matches,
    the error names the unreadable record, which may be the snapshot asked for.
    """
    unreadable: list[VecdrError] = []
    commits = repo.commits(unreadable.append)
    try:
        commit = resolve(commits, ref, collection, as_of)
    except SnapshotNotFoundError as exc:
        if unreadable:
            first = unreadable[0]
            raise IntegrityError(f"{exc}; and {first}", path=getattr(first, "path", None)) from exc
        raise
    for problem in unreadable:
        reporter.warn(skipped(problem))
    return repo.load_manifest(commit)


def restore(
    repo: Repository,
    target: Target,
    ref: str | None = "latest",
    *,
    collection: str | None = None,
    as_of: str | datetime | None = None,
    force: bool = False,
    workers: int | None = None,
    reporter: Reporter = NULL,
) -> RestoreResult:
    """Rebuild snapshot ``ref`` into ``target``; the target is published only when complete."""
    started = time.perf_counter()
    manifest = open_snapshot(repo, ref, collection, as_of, reporter)

    def artifact(name: str) -> bytes | None:
        ref = manifest.artifacts.get(name)
        return repo.get(ref) if ref is not None else None

    def artifact_stream(name: str) -> object | None:
        ref = manifest.artifacts.get(name)
        return repo.open_verified(ref) if ref is not None else None

    spec = RestoreSpec(
        collection=manifest.collection,
        snapshot=manifest.snapshot,
        dimension=manifest.dimension,
        id_type=manifest.id_type,
        attributes=manifest.attributes,
        index=manifest.index,
        rows=manifest.rows,
        artifact=artifact,
        artifact_stream=artifact_stream,
        options={"warn": reporter.warn},
    )
    phases: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        native = target.begin(spec, force=force)
        phases["prepare"] = time.perf_counter() - t0
        if not native and (sample_rows := target.training_rows()):
            # A separate sampling pass keeps memory bounded by the sample, not the snapshot.
            t0 = time.perf_counter()
            reporter.start("sample for training", manifest.rows)
            sample = sample_live(repo, manifest, sample_rows, workers=workers)
            reporter.finish()
            phases["sample"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            target.train(sample)
            phases["train"] = time.perf_counter() - t0
        if not native:
            reporter.start("restore", manifest.rows)
            t0 = time.perf_counter()
            waited = 0.0
            rows = iter_live(repo, manifest, workers)
            while True:
                w0 = time.perf_counter()
                table = next(rows, None)
                waited += time.perf_counter() - w0
                if table is None:
                    break
                target.write(table)
                reporter.advance(table.num_rows)
            reporter.finish()
            phases["stream"] = time.perf_counter() - t0
            phases["read_wait"] = waited
        built = target.finish()
    except BaseException:
        target.abort()
        raise
    for name, seconds in built.items():
        phases[name] = phases.get(name, 0.0) + seconds
    created = parse_time(manifest.created_at)
    return RestoreResult(
        snapshot=manifest.snapshot,
        collection=manifest.collection,
        target=target.uri,
        rows=manifest.rows,
        seconds=round(time.perf_counter() - started, 6),
        snapshot_age_seconds=round((datetime.now(UTC) - created).total_seconds(), 3),
        native=native,
        phases={k: round(v, 6) for k, v in phases.items()},
    )
