"""Writing new segments in parallel, and reading a snapshot's live rows back in parallel."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from vecdr.errors import IntegrityError
from vecdr.format.deletions import decode_deletion_slice
from vecdr.format.hashing import ROW_HASH_BYTES, row_hashes
from vecdr.format.manifest import Manifest, SegmentEntry
from vecdr.format.rowhashes import encode_row_hashes
from vecdr.format.segment import decode_segment, encode_segment, vectors_from_arrow
from vecdr.repository import Repository

#: Raw bytes of rows per new segment: small enough that the last segments of a
#: snapshot do not leave cores idle, large enough to keep objects few (measured).
SEGMENT_BYTES = 32 << 20


def default_workers() -> int:
    return max(2, min(8, os.cpu_count() or 2))


def io_workers(repo: Repository, workers: int | None = None) -> int:
    """Threads for work that waits on the store as much as on the cores: the cores, plus
    the transfers the store runs at once beyond the first (none for a local disk)."""
    return (workers or default_workers()) + repo.store.concurrency - 1


def segment_rows(dimension: int) -> int:
    return max(1024, SEGMENT_BYTES // (4 * dimension + 8))


def owned(table: pa.Table) -> pa.Table:
    """A copy of ``table`` in memory of its own.

    A source may hand out views of memory it keeps changing (a live FAISS index's
    storage); rows are hashed and encoded at different moments, so both must read
    bytes nobody else writes, or the stored row hashes would not match the stored rows.
    """
    columns = [pa.concat_arrays(c.chunks) if c.num_chunks else pa.array([], c.type) for c in table.columns]
    return pa.Table.from_arrays(columns, schema=table.schema)


def table_row_hashes(table: pa.Table) -> np.ndarray:
    """The row hash of each row of a table of the segment schema (its vector and attributes).

    Batch by batch: the vectors are hashed where they lie, never copied together.
    """
    dimension = table.schema.field("vector").type.list_size
    parts = [np.empty((0, ROW_HASH_BYTES), np.uint8)]
    for batch in table.to_batches():
        attrs = pa.Table.from_batches([batch]).drop_columns(["id", "vector"]) if batch.num_columns > 2 else None
        parts.append(row_hashes(vectors_from_arrow(batch.column("vector"), dimension), attrs))
    return np.concatenate(parts)


class SegmentWriter:
    """Buffers rows into segments and encodes and uploads them on a thread pool.

    Each segment is written with its row-hash sidecar. At most ``workers`` segments are in flight, which
    bounds memory.
    """

    def __init__(self, repo: Repository, schema: pa.Schema, workers: int, recheck: bool = False) -> None:
        self.repo = repo
        self.recheck = recheck  # re-read objects already stored before reusing them (Repository.put)
        self.schema = schema
        self.rows_per_segment = segment_rows(schema.field("vector").type.list_size)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vecdr-encode")
        self.workers = workers
        self.pending: list[pa.Table] = []
        self.pending_hashes: list[np.ndarray | None] = []
        self.pending_rows = 0
        self.inflight: deque[Future[tuple[SegmentEntry, int]]] = deque()
        self.done: list[tuple[SegmentEntry, int]] = []

    def add(self, table: pa.Table, hashes: np.ndarray | None) -> None:
        """Queue rows with their row hashes (``None``: hash them on the pool)."""
        n = table.num_rows
        taken = 0
        while taken < n:
            room = self.rows_per_segment - self.pending_rows
            part = table.slice(taken, min(room, n - taken))
            self.pending.append(part)
            self.pending_hashes.append(None if hashes is None else hashes[taken : taken + part.num_rows])
            self.pending_rows += part.num_rows
            taken += part.num_rows
            if self.pending_rows >= self.rows_per_segment:
                self.flush()

    def flush(self) -> None:
        """Start encoding the rows buffered so far as a segment (without waiting for it)."""
        if not self.pending_rows:
            return
        table = pa.concat_tables(self.pending).cast(self.schema)
        given = [h for h in self.pending_hashes if h is not None]
        hashes = np.concatenate(given) if len(given) == len(self.pending_hashes) else None
        self.pending, self.pending_hashes, self.pending_rows = [], [], 0
        while len(self.inflight) >= self.workers:
            self.done.append(self.inflight.popleft().result())
        self.inflight.append(self.pool.submit(self._write, table, hashes))

    def _write(self, table: pa.Table, hashes: np.ndarray | None) -> tuple[SegmentEntry, int]:
        ref, new = self.repo.put("segments", encode_segment(table), "parquet", recheck=self.recheck)
        ids = table.column("id").combine_chunks()
        sidecar = encode_row_hashes(ids, table_row_hashes(table) if hashes is None else hashes)
        pa.default_memory_pool().release_unused()  # encoding scratch back to the system, not kept for later
        href, hnew = self.repo.put("artifacts", sidecar, "hashes.parquet", recheck=self.recheck)
        written = (ref.size if new else 0) + (href.size if hnew else 0)
        return SegmentEntry(object=ref, rows=table.num_rows, live=table.num_rows, hashes=href), written

    def finish(self) -> list[tuple[SegmentEntry, int]]:
        """Write what is buffered and wait; returns (entry, bytes newly written) per segment."""
        self.flush()
        while self.inflight:
            self.done.append(self.inflight.popleft().result())
        self.pool.shutdown()
        return self.done

    def close(self) -> None:
        for future in self.inflight:
            future.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)


def dead_mask(repo: Repository, entry: SegmentEntry) -> np.ndarray | None:
    """The segment's deletion vector as a boolean mask, or None when every row is live."""
    dels = entry.deletions
    if dels is None:
        return None
    try:
        return decode_deletion_slice(repo.get_shared(dels.object), dels.offset, dels.length, entry.rows)
    except ValueError as exc:
        raise IntegrityError(f"{entry.deletions.key}: {exc}", path=entry.deletions.key) from exc


def load_live(
    repo: Repository, entry: SegmentEntry, columns: list[str] | None = None, schema: pa.Schema | None = None
) -> pa.Table:
    """One segment's live rows, checked against the manifest's row counts and, where
    given, its row ``schema`` (before anything is decoded: see :func:`decode_segment`)."""
    data = repo.get_buffer(entry.object)
    table = decode_segment(data, entry.object.key, columns=columns, rows=entry.rows, schema=schema)
    if table.num_rows != entry.rows:
        raise IntegrityError(
            f"{entry.object.key}: {table.num_rows} rows, manifest says {entry.rows}",
            path=entry.object.key,
        )
    dead = dead_mask(repo, entry)
    if dead is not None:
        table = table.filter(pa.array(~dead))
    if table.num_rows != entry.live:
        raise IntegrityError(
            f"{entry.object.key}: {table.num_rows} live rows, manifest says {entry.live}",
            path=entry.object.key,
        )
    return table


def sample_live(
    repo: Repository, manifest: Manifest, rows: int, seed: int = 0, workers: int | None = None
) -> pa.Table:
    """A uniform random sample of ``rows`` live rows (all of them if there are fewer)."""
    total = manifest.rows
    if rows >= total:
        wanted = np.arange(total)
    else:
        wanted = np.sort(np.random.default_rng(seed).choice(total, rows, replace=False))
    parts, start = [], 0
    for table in iter_live(repo, manifest, workers):
        end = start + table.num_rows
        lo, hi = np.searchsorted(wanted, [start, end])
        if hi > lo:
            parts.append(table.take(pa.array(wanted[lo:hi] - start)))
        start = end
    return pa.concat_tables(parts) if parts else pa.table({})


def iter_live(
    repo: Repository,
    manifest: Manifest,
    workers: int | None = None,
    columns: list[str] | None = None,
) -> Iterator[pa.Table]:
    """Yield each segment's live rows, in manifest order, reading ahead on a thread pool.

    At most ``workers + 1`` decoded segments are held at once (``workers`` grown by
    the store's transfer concurrency), so memory stays bounded while reading and
    decoding overlap whatever the caller does with each table.
    """
    workers = io_workers(repo, workers)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vecdr-read") as pool:
        queue: deque[Future[pa.Table]] = deque()
        entries = iter(manifest.segments)
        try:
            for entry in entries:
                queue.append(pool.submit(load_live, repo, entry, columns, manifest.schema))
                if len(queue) > workers:
                    yield queue.popleft().result()
            while queue:
                yield queue.popleft().result()
        finally:
            for future in queue:
                future.cancel()
