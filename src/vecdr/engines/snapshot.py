"""Taking a snapshot: full, diff (compare row hashes) or tracked (replay a journal).

Every mode ends the same way: new segments and artifacts are written, then a
self-contained manifest listing every live segment with its deletion vector,
then the commit record. Nothing before the commit record changes what any
reader sees.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from functools import cache
from importlib.metadata import version

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecdr.backends.base import WHOLE, ChangeSet, IdRange, Source, SourceInfo, in_range
from vecdr.engines.pool import bounded_map
from vecdr.engines.segments import SegmentWriter, dead_mask, default_workers, io_workers, owned
from vecdr.errors import (
    DimensionMismatchError,
    DuplicateIdError,
    IntegrityError,
    JournalDamagedError,
    NonFiniteVectorError,
    SchemaError,
    SourceError,
    UsageError,
)
from vecdr.format.deletions import encode_deletion_file
from vecdr.format.hashing import ROW_HASH_BYTES, row_hashes
from vecdr.format.manifest import DeletionRef, Manifest, SegmentEntry
from vecdr.format.quality import encode_quality
from vecdr.format.rowhashes import decode_row_hashes
from vecdr.format.segment import id_type, segment_schema, vectors_from_arrow
from vecdr.progress import NULL, Reporter
from vecdr.repository import Repository, utcnow
from vecdr.repository.commits import skipped
from vecdr.repository.locks import Lock

SCAN_BATCH_ROWS = 65536
MODES = ("auto", "full", "diff", "tracked")
#: Most previous rows a diff snapshot compares against at once (about 34 bytes each).
#: A larger collection is compared one id range at a time where the source can select
#: ranges cheaply (a database's WHERE), so memory does not grow with the collection.
DIFF_PASS_ROWS = 2_000_000
#: Query vectors a new collection's snapshots keep for drills, and the k of their answers.
QUALITY_QUERIES = 32
QUALITY_K = 10
#: The most queries a snapshot keeps (and a drill runs); each costs a search of the whole index.
QUALITY_MAX = 10_000
#: Ids sampled per id range when choosing range bounds.
_SAMPLES_PER_PASS = 64


@cache
def _vecdr_version() -> str:
    return version("vecdr")


@dataclass(frozen=True, slots=True)
class SnapshotResult:
    snapshot: str
    collection: str
    seq: int
    mode: str
    parent: str | None
    rows: int
    added: int
    changed: int
    deleted: int
    bytes_written: int
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return {"id": self.snapshot, **asdict(self)}


def _check_ids_unique(ids: pa.Array) -> None:
    counts = pc.value_counts(ids)
    dup = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(dup):
        first = dup[0].as_py()
        raise DuplicateIdError(
            f"the source holds {len(dup)} duplicated id(s), e.g. {first['values']!r} "
            f"appears {first['counts']} times; ids must be unique"
        )


def _check_batch(batch: pa.Table, info: SourceInfo, allow_nonfinite: bool) -> np.ndarray:
    vector_field = batch.schema.field("vector")
    width = getattr(vector_field.type, "list_size", None)
    if width != info.dimension:
        raise DimensionMismatchError(f"rows have dimension {width}, source said {info.dimension}")
    vectors = vectors_from_arrow(batch.column("vector"), info.dimension)
    if info.id_type == "string":
        try:
            batch.column("id").validate(full=True)  # Arrow strings must be UTF-8; a source may not have checked
        except pa.ArrowInvalid as exc:
            raise SchemaError(f"an id is not valid UTF-8 text ({exc})") from None
    # A row's sum is finite when all its values are; rows whose sum is not (NaN, Inf,
    # or a finite overflow) are checked exactly. One BLAS pass instead of a mask.
    with np.errstate(over="ignore", invalid="ignore"):
        suspect = np.flatnonzero(~np.isfinite(vectors @ np.ones(info.dimension, np.float32)))
    if not allow_nonfinite and len(suspect) and not np.isfinite(vectors[suspect]).all():
        bad = int(suspect[~np.isfinite(vectors[suspect]).all(axis=1)][0])
        raise NonFiniteVectorError(
            f"the vector of id {batch.column('id')[bad].as_py()!r} holds NaN or Inf; "
            "pass allow_nonfinite (--allow-nonfinite) to store it anyway"
        )
    return vectors


@dataclass(slots=True)
class LiveRows:
    """Live rows of a snapshot: each one's id, where it sits, and its change hash.

    Integer ids are held sorted (the other fields in the same order), so finding an
    id is a binary search that needs no second copy of the ids: 32 bytes a row.
    """

    ids: pa.Array
    segment: np.ndarray  # position in the manifest's segment list
    row: np.ndarray  # position in that segment
    hash: np.ndarray  # (n, 16) uint8

    @classmethod
    def of(cls, parts: list[tuple[pa.Array, np.ndarray, np.ndarray]], ids: pa.DataType) -> LiveRows:
        """Join per-segment ``(ids, rows, hashes)``, consuming ``parts`` so that at
        most one field is held twice while the rows are put in id order."""
        rows = cls(
            ids=pa.concat_arrays([pa.array([], type=ids)] + [p[0].cast(ids) for p in parts]),
            segment=np.concatenate(
                [np.empty(0, np.int32)] + [np.full(len(p[1]), i, np.int32) for i, p in enumerate(parts)]
            ),
            row=np.concatenate([np.empty(0, np.int32)] + [p[1] for p in parts]),
            hash=np.concatenate([np.empty((0, ROW_HASH_BYTES), np.uint8)] + [p[2] for p in parts]),
        )
        parts.clear()
        if pa.types.is_integer(ids) and len(rows):
            order = np.argsort(rows.ids.to_numpy(), kind="stable")
            rows.ids = pa.array(rows.ids.to_numpy()[order])
            rows.segment = rows.segment[order]
            rows.row = rows.row[order]
            rows.hash = rows.hash[order]
        return rows

    def __len__(self) -> int:
        return len(self.ids)

    def find(self, ids: pa.Array) -> np.ndarray:
        """Position of each id among these rows, -1 where absent."""
        if not len(self):
            return np.full(len(ids), -1, dtype=np.int64)
        if not pa.types.is_integer(self.ids.type):
            pos = pc.index_in(ids, value_set=self.ids)
            return pos.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        keys = self.ids.to_numpy()
        want = ids.cast(self.ids.type).to_numpy(zero_copy_only=False)
        at = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
        return np.where(keys[at] == want, at, -1).astype(np.int64)


def _segment_rows(
    repo: Repository, entry: SegmentEntry, only: pa.Array | np.ndarray | None, within: IdRange = WHOLE
) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(ids, positions, hashes) of one segment's live rows (those in ``only`` and ``within``), from its sidecar."""
    ids, hashes = decode_row_hashes(repo.get(entry.hashes), entry.hashes.key, entry.rows)
    if len(ids) != entry.rows:
        raise IntegrityError(
            f"{entry.hashes.key}: {len(ids)} rows, segment has {entry.rows}", path=entry.hashes.key
        )
    keep = np.ones(entry.rows, dtype=bool)
    dead = dead_mask(repo, entry)
    if dead is not None:
        keep &= ~dead
    if isinstance(only, np.ndarray):  # sorted integer ids: a binary search, no hash table per segment
        values = ids.to_numpy()
        at = np.minimum(np.searchsorted(only, values), len(only) - 1)
        keep &= only[at] == values
    elif only is not None:
        keep &= pc.is_in(ids, value_set=only.cast(ids.type)).to_numpy(zero_copy_only=False)
    inside = in_range(ids, within)
    if inside is not None:
        keep &= inside
    if keep.all():
        return ids, np.arange(entry.rows, dtype=np.int32), hashes
    return ids.filter(pa.array(keep)), np.flatnonzero(keep).astype(np.int32), hashes[keep]


def live_rows(
    repo: Repository,
    manifest: Manifest | None,
    ids: pa.DataType,
    only: pa.Array | None = None,
    within: IdRange = WHOLE,
) -> LiveRows:
    """Read the live rows of ``manifest`` from its segments' row-hash sidecars (in parallel).

    With ``only``, just the rows of those ids: what a tracked snapshot needs, in
    memory that grows with the changes, not with the collection. With ``within``,
    just the rows of that id range: one pass of a diff snapshot.
    """
    segments = manifest.segments if manifest else ()
    wanted: pa.Array | np.ndarray | None = only
    if only is not None and pa.types.is_integer(ids):
        wanted = np.unique(only.cast(ids).to_numpy(zero_copy_only=False))
        if not len(wanted):
            segments = ()
    parts = bounded_map(lambda entry: _segment_rows(repo, entry, wanted, within), segments, io_workers(repo))
    return LiveRows.of(parts, ids)


def id_ranges(repo: Repository, manifest: Manifest, ids: pa.DataType, pass_rows: int) -> list[IdRange]:
    """Id ranges that split ``manifest``'s rows into parts of about ``pass_rows`` rows.

    The bounds are quantiles of a sample of every segment's ids, so reading them
    holds a small fraction of the ids at a time. The first range starts and the
    last one ends unbounded: every id falls in exactly one range.
    """
    passes = -(-manifest.rows // max(1, pass_rows))
    if passes <= 1:
        return [WHOLE]
    stride = max(1, manifest.rows // (passes * _SAMPLES_PER_PASS))

    def sample(entry: SegmentEntry) -> pa.Array:
        segment_ids, _ = decode_row_hashes(repo.get(entry.hashes), entry.hashes.key, entry.rows)
        return segment_ids.cast(ids)[::stride]

    picked = pa.concat_arrays([pa.array([], ids)] + bounded_map(sample, manifest.segments, io_workers(repo)))
    picked = picked.take(pc.sort_indices(picked))
    bounds: list[object] = []
    for k in range(1, passes):
        bound = picked[k * len(picked) // passes].as_py()
        if not bounds or bound > bounds[-1]:
            bounds.append(bound)
    edges = [None, *bounds, None]
    return list(zip(edges[:-1], edges[1:], strict=True))


class _Snapshotter:
    """One snapshot in progress: the rows written and the previous rows dropped.

    The previous snapshot's rows are compared in passes (:meth:`begin` …
    :meth:`end`): all of them at once, the changed ones (tracked mode), or one id
    range at a time (a large diff); only the rows each pass drops are kept after it.
    """

    def __init__(
        self,
        repo: Repository,
        source: Source,
        info: SourceInfo,
        collection: str,
        prev: Manifest | None,
        workers: int,
        allow_nonfinite: bool,
        reporter: Reporter,
        parent: str | None,
        recheck: bool = False,
    ) -> None:
        self.parent = parent
        self.recheck = recheck
        self.repo = repo
        self.source = source
        self.info = info
        self.collection = collection
        self.prev = prev
        self.allow_nonfinite = allow_nonfinite
        self.reporter = reporter
        self.schema = segment_schema(info.dimension, info.id_type, info.attributes)
        # One segment beyond the cores keeps every core encoding while another waits on
        # fsync; each more would hold ~100 MB of encoding buffers (peak RSS, measured).
        # An object store adds one per transfer it runs at once beyond the first.
        self.writer = SegmentWriter(repo, self.schema, io_workers(repo, workers) + 1, recheck)
        self.added = 0
        self.changed = 0
        self.dropped: list[tuple[np.ndarray, np.ndarray]] = []  # (segment, row) of prev rows no longer live
        self.begin(live_rows(repo, None, id_type(info.id_type)))

    def begin(self, prev_rows: LiveRows, within: IdRange = WHOLE) -> None:
        """Compare the rows to come with ``prev_rows``: the previous rows whose ids lie in ``within``."""
        self.prev_rows = prev_rows
        self.within = within
        self.dead = np.zeros(len(prev_rows), dtype=bool)  # prev rows no longer live
        self.seen = np.zeros(len(prev_rows), dtype=bool)  # prev rows met in a full scan

    def end(self, scanned: bool) -> int:
        """Close the pass; after a scan, previous rows it did not meet are deleted (returns how many)."""
        unseen = ~self.seen & ~self.dead if scanned else np.zeros(len(self.prev_rows), dtype=bool)
        self.dead |= unseen
        dead = np.flatnonzero(self.dead)
        self.dropped.append((self.prev_rows.segment[dead], self.prev_rows.row[dead]))
        self.begin(live_rows(self.repo, None, id_type(self.info.id_type)))
        return int(unseen.sum())

    def upsert(self, batch: pa.Table) -> None:
        """Rows present in the source now: write those that are new or changed."""
        # Checked, hashed and encoded from one copy, in the stored types: the batch may be
        # a view of memory the source changes, and hashes must be of the bytes written.
        batch = owned(batch)
        vectors = _check_batch(batch, self.info, self.allow_nonfinite)
        batch = batch.cast(self.schema)
        if self.within != WHOLE:
            self._check_within(batch.column("id").combine_chunks())
        if not len(self.prev_rows):
            # Nothing to compare with: every row is new, and the encoding threads hash them.
            self.added += batch.num_rows
            self.writer.add(batch, None)
            self.reporter.advance(batch.num_rows)
            return
        ids = batch.column("id").combine_chunks().cast(id_type(self.info.id_type))
        attrs = batch.select([f.name for f in self.info.attributes]) if self.info.attributes else None
        hashes = row_hashes(vectors, attrs)
        pos = self.prev_rows.find(ids)
        known = pos >= 0
        same = np.zeros(len(ids), dtype=bool)
        if known.any():
            same[known] = (self.prev_rows.hash[pos[known]] == hashes[known]).all(axis=1)
            self.seen[pos[known]] = True
        replaced = known & ~same
        self.dead[pos[replaced]] = True
        self.changed += int(replaced.sum())
        self.added += int((~known).sum())
        write = ~same
        if write.any():
            mask = pa.array(write)
            out = batch.filter(mask) if not write.all() else batch
            self.writer.add(out, hashes[write])
        self.reporter.advance(batch.num_rows)

    def _check_within(self, ids: pa.Array) -> None:
        # A row outside the pass's range would be taken for a new one while its old
        # version stayed live: two rows for one id. Refuse it.
        inside = in_range(ids.cast(id_type(self.info.id_type)), self.within)
        if inside is not None and not inside.all():
            lo, hi = self.within
            raise SourceError(
                f"the source returned id {ids[int(np.argmin(inside))].as_py()!r} when asked for ids "
                f"from {lo!r} up to {hi!r}; its id-range scan disagrees with vecdr's id order"
            )

    def delete(self, ids: pa.Array) -> int:
        """Ids removed from the source (tracked mode)."""
        if not len(ids):
            return 0
        pos = self.prev_rows.find(ids.cast(id_type(self.info.id_type)))
        pos = pos[pos >= 0]
        fresh = pos[~self.dead[pos]]
        self.dead[fresh] = True
        return len(fresh)

    def _updated_segments(self) -> tuple[list[SegmentEntry], int]:
        """Previous segments that keep live rows, with updated deletion vectors.

        Every deletion vector this snapshot changes goes into one deletion file: one
        object to write, however many segments the changes touch.
        """
        if self.prev is None:
            return [], 0
        segments = list(self.prev.segments)
        masks: dict[int, np.ndarray] = {}
        for i, newly_dead in sorted(_group_dead(self.dropped).items()):
            old = dead_mask(self.repo, segments[i])
            masks[i] = np.zeros(segments[i].rows, dtype=bool) if old is None else old.copy()
            masks[i][newly_dead] = True
        kept = [i for i in masks if not masks[i].all()]
        written = 0
        if kept:
            data, ranges = encode_deletion_file([masks[i] for i in kept])
            ref, new = self.repo.put("artifacts", data, "del")
            written = ref.size if new else 0
            for i, (offset, length) in zip(kept, ranges, strict=True):
                entry = segments[i]
                segments[i] = SegmentEntry(entry.object, entry.rows, int(entry.rows - masks[i].sum()),
                                           entry.hashes, DeletionRef(ref, offset, length))
        gone = set(masks) - set(kept)
        return [entry for i, entry in enumerate(segments) if i not in gone], written

    def finish(self, deleted: int, with_index: bool, tags: tuple[str, ...], mode: str,
               started: float, quality_queries: int) -> tuple[Manifest, int]:
        # The last segment encodes while the deletion vectors are written.
        self.writer.flush()
        segments, bytes_written = self._updated_segments()
        written = self.writer.finish()
        bytes_written += sum(new_bytes for _, new_bytes in written)
        segments.extend(entry for entry, _ in written)

        kept = dict(self.source.artifacts(with_index))
        sample = self.source.quality_sample(quality_queries, QUALITY_K) if quality_queries else None
        if sample is not None:
            kept["quality"] = (encode_quality(sample, id_type(self.info.id_type)), "quality.parquet")
        artifacts = {}
        for name, (data, ext) in kept.items():
            ref, new = self.repo.put("artifacts", data, ext, recheck=self.recheck)
            bytes_written += ref.size if new else 0
            artifacts[name] = ref

        snapshot_id = uuid.uuid4().hex
        manifest = Manifest(
            snapshot=snapshot_id,
            collection=self.collection,
            created_at=utcnow(),
            dimension=self.info.dimension,
            id_type=self.info.id_type,
            schema=self.schema,
            segments=tuple(segments),
            index=self.info.index,
            artifacts=artifacts,
            parent=self.parent,
            tags=tags,
            source={"backend": self.source.backend, "uri": self.source.uri},
            software={"vecdr": _vecdr_version(), "pyarrow": pa.__version__, **self.info.software},
            stats={
                "mode": mode,
                "rows": sum(e.live for e in segments),
                "added": self.added,
                "changed": self.changed,
                "deleted": deleted,
                "bytes_written": bytes_written,
                "seconds": round(time.perf_counter() - started, 6),
                "quality_queries": quality_queries,
            },
        )
        return manifest, bytes_written


def _group_dead(dropped: list[tuple[np.ndarray, np.ndarray]]) -> dict[int, np.ndarray]:
    """Row positions newly dead, per previous segment, from ``(segment, row)`` pairs."""
    segs = np.concatenate([np.empty(0, np.int32)] + [d[0] for d in dropped])
    if not len(segs):
        return {}
    order = np.argsort(segs, kind="stable")
    segs, pos = segs[order], np.concatenate([d[1] for d in dropped])[order]
    bounds = np.flatnonzero(np.diff(segs)) + 1
    return {int(s[0]): p for s, p in zip(np.split(segs, bounds), np.split(pos, bounds), strict=True)}


def snapshot(
    repo: Repository,
    source: Source,
    *,
    collection: str | None = None,
    tags: tuple[str, ...] | list[str] = (),
    with_index: bool = False,
    mode: str = "auto",
    allow_nonfinite: bool = False,
    workers: int | None = None,
    reporter: Reporter = NULL,
    diff_pass_rows: int = DIFF_PASS_ROWS,
    quality_sample: int | None = None,
) -> SnapshotResult:
    """Snapshot ``source`` into ``repo`` and commit it.

    ``mode``: ``"auto"`` uses the source's change journal when it continues the
    collection's latest snapshot, else compares row hashes (``"diff"``, which is a
    full snapshot when there is no previous one). ``"full"`` ignores the previous
    snapshot's rows (segments already stored are still not rewritten twice).

    A diff compares at most ``diff_pass_rows`` previous rows at once when the source
    scans id ranges cheaply (:attr:`Source.range_scans`): a larger collection is
    scanned one id range at a time, so memory stays bounded whatever its size.

    ``quality_sample``: how many query vectors, with the source index's top-10 answers,
    to keep for drills (:mod:`vecdr.format.quality`); 0 keeps none. By default a new
    collection keeps 32, and later snapshots keep what the previous one did.
    """
    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    # A shared lock keeps maintenance (prune, compact) out while this snapshot writes and
    # references objects. Without atomic create-if-absent, two writers could both win a
    # commit number: there, one snapshot at a time.
    kind = "shared" if repo.config.capabilities.get("atomic_create", True) else "exclusive"
    # Pinned: a source that changes in this process (a TrackedIndex) keeps still until
    # the commit, so its row count, journal and rows are read at one point in time.
    with Lock(repo.store, kind, f"snapshot of {collection or source.uri}"), source.pinned():
        return _take(repo, source, collection, tags, with_index, mode, allow_nonfinite, workers, reporter,
                     diff_pass_rows, quality_sample)


def _take(
    repo: Repository,
    source: Source,
    collection: str | None,
    tags: tuple[str, ...] | list[str],
    with_index: bool,
    mode: str,
    allow_nonfinite: bool,
    workers: int | None,
    reporter: Reporter,
    diff_pass_rows: int,
    quality_sample: int | None,
) -> SnapshotResult:
    started = time.perf_counter()
    info = source.info()
    name = collection or info.name
    tags = tuple(tags)
    commits = repo.commits(lambda exc: reporter.warn(skipped(exc)))
    previous = [c for c in commits if c.collection == name]
    prev = None
    for commit in reversed(previous):
        # A damaged record or manifest must not stop new backups: base on the newest
        # snapshot that loads (every manifest is complete, so any base is correct).
        try:
            prev = repo.load_manifest(commit)
            break
        except IntegrityError as exc:
            reporter.warn(f"cannot use snapshot {commit.snapshot} as a base: {exc}")
    if prev is not None:
        if prev.dimension != info.dimension:
            raise DimensionMismatchError(
                f"collection {name!r} holds {prev.dimension}-dimensional vectors; "
                f"the source has {info.dimension}"
            )
        if prev.id_type != info.id_type:
            raise SchemaError(f"collection {name!r} has {prev.id_type} ids; the source has {info.id_type}")
        if not prev.attributes.equals(info.attributes):
            raise SchemaError(
                f"collection {name!r} has attribute columns {prev.attributes.names}; "
                f"the source has {info.attributes.names}: snapshot it into a new --collection"
            )
    use_prev = prev is not None and mode != "full"
    # Read the journal before scanning: whatever it holds is in the scan too, so
    # after the commit it can be trimmed up to here whatever mode ran.
    journal: ChangeSet | None = source.changes()
    base = prev.snapshot if use_prev and prev is not None else None
    continues = journal is not None and base is not None and journal.base == base
    if journal is not None and journal.problem is not None:
        if isinstance(journal.problem, JournalDamagedError) and continues and mode in ("auto", "tracked"):
            raise journal.problem  # never a silent loss: the error says to snapshot with --mode diff
        reporter.warn(str(journal.problem))
        continues = False
    tracked = mode != "diff" and continues
    if mode == "tracked" and not continues and (journal is None or journal.problem is None):
        reporter.warn(
            "the source's change journal does not continue the latest snapshot; comparing every row"
            if journal is not None
            else "the source keeps no change journal; comparing every row"
        )
    ids_type = id_type(info.id_type)
    if tracked and journal is not None and prev is not None:
        upserted = journal.upserts.column("id").combine_chunks().cast(ids_type)
        changed_ids = pa.concat_arrays([upserted, journal.deletes.cast(ids_type)])
        changed_rows = live_rows(repo, prev, ids_type, only=changed_ids)
        # The journal must account for exactly the rows the source holds; if it does
        # not, some change bypassed it, and only a full comparison is safe.
        new = int((changed_rows.find(upserted) < 0).sum())
        gone = int((changed_rows.find(journal.deletes) >= 0).sum())
        if info.rows is not None and prev.rows + new - gone != info.rows:
            reporter.warn(
                f"the change journal accounts for {prev.rows + new - gone} rows but the source "
                f"holds {info.rows}; comparing every row instead"
            )
            tracked = False
    run_mode = "tracked" if tracked else ("diff" if use_prev else "full")

    job = _Snapshotter(
        repo, source, info, name, prev if use_prev else None,
        workers or default_workers(), allow_nonfinite, reporter,
        parent=prev.snapshot if prev is not None else None,
        recheck=mode == "full",  # a full snapshot trusts no stored object it reuses
    )
    try:
        if tracked and journal is not None:
            job.begin(changed_rows)
            upserts = journal.upserts
            _check_ids_unique(upserts.column("id").combine_chunks())
            reporter.start("snapshot (tracked)", upserts.num_rows)
            for offset in range(0, upserts.num_rows, SCAN_BATCH_ROWS):
                job.upsert(upserts.slice(offset, SCAN_BATCH_ROWS))
            deleted = job.delete(journal.deletes)
            job.end(scanned=False)
        else:
            if not info.unique_ids:
                _check_ids_unique(source.ids())
            ranges = [WHOLE]
            if use_prev and prev is not None and source.range_scans:
                ranges = id_ranges(repo, prev, ids_type, diff_pass_rows)
            reporter.start(f"snapshot ({run_mode})", info.rows)
            deleted = 0
            for within in ranges:
                if use_prev:
                    job.begin(live_rows(repo, prev, ids_type, within=within), within)
                whole = within == WHOLE
                for batch in source.scan(SCAN_BATCH_ROWS) if whole else source.scan_range(SCAN_BATCH_ROWS, *within):
                    job.upsert(batch)
                deleted += job.end(scanned=True)
        reporter.finish()
        if quality_sample is None:  # a new collection samples; an existing one keeps its setting
            quality_sample = int(prev.stats.get("quality_queries", 0)) if prev is not None else QUALITY_QUERIES
        quality_sample = max(0, min(quality_sample, QUALITY_MAX))  # a damaged manifest's setting too
        manifest, bytes_written = job.finish(deleted, with_index, tags, run_mode, started, quality_sample)
    except BaseException:
        job.writer.close()
        raise
    ref = repo.put_manifest(manifest)
    record = repo.commit(manifest, ref)
    source.committed(manifest.snapshot, journal)
    return SnapshotResult(
        snapshot=manifest.snapshot,
        collection=name,
        seq=record.seq,
        mode=run_mode,
        parent=manifest.parent,
        rows=manifest.rows,
        added=job.added,
        changed=job.changed,
        deleted=deleted,
        bytes_written=bytes_written + ref.size,
        seconds=round(time.perf_counter() - started, 6),
    )
