"""Compaction: the latest snapshot again, as a new snapshot whose segments hold only live rows.

A long run of incremental snapshots leaves many small segments and segments whose
rows are mostly dead; a restore reads and decodes all of them. ``compact`` writes
a new snapshot with the same rows in the same order: segments that carry deleted
rows or are small are rewritten together into full segments, the others are
referenced as they are. Row hashes come from the sidecars, artifacts (trained
state, native index) and the index spec are kept, tags too. The new snapshot's
parent is the compacted one; forgetting the old snapshots and pruning then
reclaims their space.

Only the collection's latest snapshot is compacted (the new snapshot becomes the
latest), under the exclusive lock so that no snapshot commits in between.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, replace

import numpy as np

from vecdr.engines.segments import SegmentWriter, dead_mask, default_workers, io_workers, load_live, segment_rows
from vecdr.errors import UsageError
from vecdr.format.manifest import SegmentEntry
from vecdr.format.rowhashes import decode_row_hashes
from vecdr.progress import NULL, Reporter
from vecdr.repository import Repository, resolve, utcnow
from vecdr.repository.locks import Lock

#: A clean segment with fewer rows than this share of a full one is merged with its neighbours.
SMALL = 0.5


@dataclass(frozen=True, slots=True)
class CompactResult:
    snapshot: str
    compacted: str
    collection: str
    seq: int
    rows: int
    segments_before: int
    segments_after: int
    segments_rewritten: int
    rows_rewritten: int
    dead_rows_dropped: int
    bytes_written: int
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return {"id": self.snapshot, **asdict(self)}


def _needs_rewrite(entry: SegmentEntry, full: int) -> bool:
    return entry.live < entry.rows or entry.rows < SMALL * full


def compact(
    repo: Repository,
    snapshot: str = "latest",
    collection: str | None = None,
    reporter: Reporter = NULL,
    workers: int | None = None,
) -> CompactResult:
    """Rewrite the collection's latest snapshot into a new, compact one (see the module)."""
    started = time.perf_counter()
    with Lock(repo.store, "exclusive", "compact"):
        commits = repo.commits(lambda exc: reporter.warn(str(exc)))
        commit = resolve(commits, snapshot, collection)
        name = commit.collection
        latest = [c for c in commits if c.collection == name][-1]
        if commit.seq != latest.seq:
            raise UsageError(
                f"snapshot {commit.snapshot[:12]} is not the latest of {name!r} ({latest.snapshot[:12]} is): "
                "compact the latest, or its copy would become the latest"
            )
        manifest = repo.load_manifest(commit)
        full = segment_rows(manifest.dimension)
        segments: list[SegmentEntry] = []
        written = rewritten = rows_rewritten = 0
        run: list[SegmentEntry] = []
        reporter.start("compact", manifest.rows)

        def flush_run() -> None:
            nonlocal written, rewritten, rows_rewritten
            if not run:
                return
            writer = SegmentWriter(repo, manifest.schema, io_workers(repo, workers or default_workers()) + 1)
            try:
                for entry in run:
                    table = load_live(repo, entry, schema=manifest.schema)
                    hashes = _live_hashes(repo, entry)
                    writer.add(table.cast(manifest.schema), hashes)
                    rows_rewritten += table.num_rows
                    reporter.advance(table.num_rows)
                done = writer.finish()
            except BaseException:
                writer.close()
                raise
            segments.extend(entry for entry, _ in done)
            written += sum(new for _, new in done)
            rewritten += len(run)
            run.clear()

        for entry in manifest.segments:
            if _needs_rewrite(entry, full):
                run.append(entry)
                continue
            flush_run()
            segments.append(entry)
            reporter.advance(entry.live)
        flush_run()
        reporter.finish()

        new = replace(
            manifest,
            snapshot=uuid.uuid4().hex,
            created_at=utcnow(),
            segments=tuple(segments),
            parent=commit.snapshot,
            stats={**manifest.stats, "mode": "compact", "compacted_from": commit.snapshot,
                   "rows": sum(e.live for e in segments), "added": 0, "changed": 0, "deleted": 0,
                   "bytes_written": written, "seconds": round(time.perf_counter() - started, 6)},
        )
        if new.rows != manifest.rows:
            raise AssertionError(f"compaction changed the row count: {manifest.rows} -> {new.rows}")
        ref = repo.put_manifest(new)
        record = repo.commit(new, ref)
    return CompactResult(
        snapshot=new.snapshot, compacted=commit.snapshot, collection=name, seq=record.seq, rows=new.rows,
        segments_before=len(manifest.segments), segments_after=len(segments), segments_rewritten=rewritten,
        rows_rewritten=rows_rewritten, dead_rows_dropped=sum(e.rows - e.live for e in manifest.segments),
        bytes_written=written + ref.size, seconds=round(time.perf_counter() - started, 6),
    )


def _live_hashes(repo: Repository, entry: SegmentEntry) -> np.ndarray:
    """The row hashes of the segment's live rows, in row order, from its sidecar."""
    _, hashes = decode_row_hashes(repo.get(entry.hashes), entry.hashes.key, entry.rows)
    dead = dead_mask(repo, entry)
    return hashes if dead is None else hashes[~dead]

