"""FAISS: snapshot an index file or object, restore into an index of the recorded spec.

URIs: ``faiss:PATH`` (an index written by ``faiss.write_index``). Options after
``?``: ``embeddings=FILE`` (``.npy`` in index order, or Parquet with ``id`` and
``vector`` columns) for indexes that do not keep vectors losslessly, and
``journal=DIR`` for tracked mode (default: ``PATH.journal`` when it exists).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecdr.backends import faiss_gpu
from vecdr.backends import faiss_index as fi
from vecdr.backends.base import ChangeSet, RestoreSpec, Source, SourceInfo, Target
from vecdr.backends.faiss_add import add_vectors
from vecdr.backends.journal import Journal, file_identity
from vecdr.durable import check_replaceable, replacing, writing
from vecdr.errors import (
    DimensionMismatchError,
    JournalDamagedError,
    LossyIndexError,
    SchemaError,
    SourceError,
    TargetError,
    TargetExistsError,
)
from vecdr.format.quality import QualitySample
from vecdr.format.segment import vector_chunks, vectors_from_arrow, vectors_to_arrow

#: Fewest sample rows an index that needs training is trained on (when the snapshot has them).
TRAIN_SAMPLE_MIN = 65536

#: Rows per FAISS add call when streaming (IVF, IDMap over Flat).
ADD_BATCH_ROWS = 32768

#: Index built when restoring a snapshot whose spec is not a FAISS one (cross-engine).
DEFAULT_FACTORY = "HNSW32,Flat"

#: Why rows cannot go into an index without an id map (its vectors are numbered by position).
NOT_POSITIONS = "ids of an index without an id map must be 0…n-1"


def _table(ids: np.ndarray, vectors: np.ndarray) -> pa.Table:
    return pa.table({"id": pa.array(ids, pa.int64()), "vector": vectors_to_arrow(vectors)})


def _load_embeddings(path: str, ids: np.ndarray, dimension: int) -> np.ndarray:
    """Embeddings aligned with ``ids`` (the index's order) from ``.npy`` or Parquet."""
    if path.endswith(".npy"):
        vectors = np.load(path, mmap_mode="r")
        if vectors.ndim != 2 or len(vectors) != len(ids):
            raise SourceError(
                f"{path}: expected {len(ids)} embeddings (one per indexed vector), found shape {vectors.shape}"
            )
    else:
        from vecdr.backends.parquet import ParquetSource

        embedded = ParquetSource(path)
        tables = list(embedded.scan(1 << 16))
        table = pa.concat_tables(tables) if tables else None
        if table is None:
            raise SourceError(f"{path}: no embeddings")
        pos = pc.index_in(pa.array(ids), value_set=table.column("id").combine_chunks())
        if pos.null_count:
            raise SourceError(f"{path}: {pos.null_count} indexed ids have no embedding")
        vectors = vectors_from_arrow(table.column("vector"), embedded.dimension)[pos.to_numpy()]
    if vectors.shape[1] != dimension:
        raise DimensionMismatchError(f"{path}: embeddings have dimension {vectors.shape[1]}, the index {dimension}")
    return np.asarray(vectors, dtype=np.float32)


def _read_stable(path: Path) -> tuple[faiss.Index, dict[str, int]]:
    """The index in ``path`` and the identity of the file it was read from, checked
    unchanged across the read: a file saved again meanwhile is read again."""
    for attempt in range(6):
        before = file_identity(path)
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            if file_identity(path) != before:
                continue
            raise SourceError(f"{path} is not a FAISS index file") from exc
        if file_identity(path) == before:
            return index, before
        time.sleep(0.05 * attempt)
    raise SourceError(f"{path} kept changing while it was read; snapshot it when its writer pauses")


def _sequential_ids(index: faiss.Index) -> np.ndarray:
    """Ids in the order embeddings are expected: insertion order, or ascending for IVF."""
    inner, id_map, _ = fi.unwrap(index)
    ids = fi.ids_in_order(index)
    return ids if id_map is not None or fi._ivf(inner) is None else np.sort(ids)


class FaissSource(Source):
    """A FAISS index (object or file), optionally with embeddings and a change journal."""

    backend = "faiss"

    def __init__(
        self,
        index: faiss.Index | str | os.PathLike[str],
        *,
        embeddings: np.ndarray | str | None = None,
        journal: Journal | str | os.PathLike[str] | None = None,
        name: str | None = None,
        uri: str | None = None,
    ) -> None:
        #: The file read and its identity: its journaled changes are those below the
        #: position recorded when it was saved (TrackedIndex.save).
        self._file: tuple[Path, dict[str, int]] | None = None
        self._pin: Any = nullcontext
        if isinstance(index, str | os.PathLike):
            path = Path(index)
            if not path.is_file():
                raise SourceError(f"no FAISS index at {path}")
            index, identity = _read_stable(path)
            self._file = (path, identity)
            name = name or path.stem
            uri = uri or f"faiss:{path}"
            if journal is None and Journal.exists_at(f"{path}.journal"):
                journal = f"{path}.journal"
        if isinstance(index, TrackedIndex):
            journal = journal or index.journal
            self._pin = index.frozen
            index = index.index
        super().__init__(uri or "faiss:<memory>")
        self.index = index
        self.name = name or "faiss"
        self.journal = Journal(journal) if isinstance(journal, str | os.PathLike) else journal
        self._embeddings = embeddings
        self._spec = fi.describe(index)

    def info(self) -> SourceInfo:
        return SourceInfo(
            name=self.name,
            dimension=self.index.d,
            id_type="int64",
            index=self._spec,
            rows=self.index.ntotal,
            software={"faiss": faiss.__version__},
        )

    def ids(self) -> pa.Array:
        return pa.array(fi.ids_in_order(self.index), pa.int64())

    def scan(self, batch_rows: int) -> Iterator[pa.Table]:
        if self._spec["lossless"]:
            # Views of the index's memory: FAISS indexes are not safe to change while
            # being read anyway, and the views die with the snapshot that reads them.
            for ids, vectors in fi.iter_vectors(self.index, batch_rows, copy=False):
                yield _table(ids, vectors)
            return
        if self._embeddings is None:
            raise LossyIndexError(
                f"a {self._spec['class']} index does not keep the original vectors; "
                "supply the embeddings (--embeddings FILE, faiss:PATH?embeddings=FILE, or embeddings=… in the API)"
            )
        ids = _sequential_ids(self.index)
        if isinstance(self._embeddings, str):
            vectors = _load_embeddings(self._embeddings, ids, self.index.d)
        else:
            vectors = np.asarray(self._embeddings, dtype=np.float32)
            if vectors.shape != (len(ids), self.index.d):
                raise SourceError(
                    f"embeddings have shape {vectors.shape}, the index holds "
                    f"{len(ids)} vectors of dimension {self.index.d}"
                )
        for start in range(0, len(ids), batch_rows):
            yield _table(ids[start : start + batch_rows], vectors[start : start + batch_rows])

    def quality_sample(self, queries: int, k: int) -> QualitySample | None:
        total = self.index.ntotal
        if not total or not queries or not self._spec["lossless"]:
            return None
        # Stored vectors as the queries, the same ones for a given index size.
        picks = np.sort(np.random.default_rng(total).choice(total, min(queries, total), replace=False))
        found, start = [], 0
        for _, vectors in fi.iter_vectors(self.index, 1 << 16, copy=False):
            inside = picks[(picks >= start) & (picks < start + len(vectors))]
            found.append(np.array(vectors[inside - start], dtype=np.float32))
            start += len(vectors)
        sample = np.concatenate(found)
        metric = fi.METRICS.get(fi.unwrap(self.index)[0].metric_type, "L2")
        if isinstance(fi.unwrap(self.index)[0], faiss.IndexFlat):
            return QualitySample(sample, None, k, metric)  # exhaustive: its answers are the exact ones
        _, labels = self.index.search(sample, k)
        return QualitySample(sample, [[int(x) for x in row if x >= 0] for row in labels], k, metric)

    def pinned(self) -> AbstractContextManager[None]:
        # A TrackedIndex of this process: its writers wait while the snapshot reads it.
        return self._pin()  # type: ignore[no-any-return]

    def changes(self) -> ChangeSet | None:
        if self.journal is None:
            return None
        upto = None
        if self._file is not None:
            path, identity = self._file
            upto = self._saved_position(identity)
            if upto is None:
                return self._unusable(None, SourceError(
                    f"{path} was not saved through TrackedIndex.save, or was changed since, so which "
                    "journaled changes it holds is unknown: comparing every row, and keeping the journal"))
        try:
            state = self.journal.read(upto)
        except JournalDamagedError as exc:
            return self._unusable(exc.upto, exc)
        if state.behind:
            return self._unusable(None, SourceError(
                f"{self.uri} was saved before the changes the latest snapshot holds: comparing every row, "
                "and keeping the journal"))
        return ChangeSet(
            base=state.base,
            upserts=_table(state.upsert_ids, state.upsert_vectors.reshape(-1, self.index.d)),
            deletes=pa.array(state.delete_ids, pa.int64()),
            token=state.upto,
        )

    def _saved_position(self, identity: dict[str, int]) -> int | None:
        assert self.journal is not None
        position = self.journal.saved_at(identity)
        # A save records the file's position just after publishing it: a file a moment
        # old may be waiting for its record.
        for _ in range(10):
            if position is not None or time.time_ns() - identity["mtime_ns"] > 1_000_000_000:
                break
            time.sleep(0.05)
            position = self.journal.saved_at(identity)
        return position

    def _unusable(self, upto: int | None, problem: Exception) -> ChangeSet:
        assert self.journal is not None
        empty = _table(np.empty(0, np.int64), np.empty((0, self.index.d), np.float32))
        return ChangeSet(self.journal.base, empty, pa.array([], pa.int64()), token=upto, problem=problem)

    def committed(self, snapshot: str, changes: ChangeSet | None) -> None:
        # Trimmed only up to what the snapshot holds: the position read, never further.
        if self.journal is not None and changes is not None and changes.token is not None:
            self.journal.trim(snapshot, changes.token)

    def artifacts(self, with_index: bool) -> dict[str, tuple[bytes, str]]:
        out: dict[str, tuple[bytes, str]] = {}
        trained = fi.trained_state(self.index)
        if trained is not None:
            out["trained"] = (trained, "faiss")
        if with_index:
            out["native_index"] = (fi.serialize(self.index), "faiss")
        return out


class TrackedIndex:
    """A FAISS index whose every change is first recorded in a durable journal.

    Wrap an index that addresses vectors by id (``IndexIDMap2``, ``IndexIDMap`` or
    an IVF index) and change it only through this wrapper; snapshots then read the
    journal instead of scanning the index, at a cost proportional to the changes::

        index = vecdr.faiss.TrackedIndex(faiss.IndexIDMap2(faiss.IndexFlatL2(d)), "idx.journal")
        index.add_with_ids(x, ids)
        vecdr.snapshot(repo, index)
    """

    def __init__(self, index: faiss.Index, journal: str | os.PathLike[str] | Journal) -> None:
        inner, id_map, _ = fi.unwrap(index)
        if id_map is None and not fi.supports_add_with_ids(inner):
            raise SourceError(
                f"a {type(inner).__name__} renumbers its vectors on removal; wrap it in "
                "faiss.IndexIDMap2 to track changes by id"
            )
        self.index = index
        self.journal = journal if isinstance(journal, Journal) else Journal(journal, index.d)
        # Each change is journaled and applied under this lock, and a snapshot of this
        # index holds it (frozen): what it reads is one point in the index's history.
        self._lock = threading.RLock()
        # Changes are journaled before the index applies them, so an operation the
        # index cannot do must be refused before it reaches the journal.
        try:
            index.remove_ids(np.empty(0, dtype=np.int64))
            self.removable = True
        except RuntimeError:
            self.removable = False

    def _check_removable(self) -> None:
        if not self.removable:
            raise SourceError(
                f"a {type(fi.unwrap(self.index)[0]).__name__} cannot remove vectors; "
                "rebuild it and snapshot in diff mode, or track a removable index (Flat, IVF)"
            )

    @property
    def d(self) -> int:
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def _check(self, x: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Refuse, before anything is journaled, what the index would refuse."""
        if not self.index.is_trained:
            raise SourceError("the index is not trained yet: train it before adding vectors")
        x = np.ascontiguousarray(x, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if x.ndim != 2 or x.shape[1] != self.d:
            raise DimensionMismatchError(f"vectors must have shape (n, {self.d}), got {x.shape}")
        if len(ids) != len(x):
            raise SourceError("one id per vector is needed")
        return x, ids

    def add_with_ids(self, x: np.ndarray, ids: np.ndarray) -> None:
        x, ids = self._check(x, ids)
        with self._lock:
            self.journal.upsert(ids, x)
            self.index.add_with_ids(x, ids)

    def remove_ids(self, ids: np.ndarray) -> int:
        self._check_removable()
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        with self._lock:
            self.journal.delete(ids)
            return int(self.index.remove_ids(ids))

    def upsert(self, x: np.ndarray, ids: np.ndarray) -> None:
        """Insert or overwrite the vectors of ``ids``."""
        x, ids = self._check(x, ids)
        self._check_removable()
        with self._lock:
            self.journal.upsert(ids, x)
            self.index.remove_ids(ids)
            self.index.add_with_ids(x, ids)

    def search(self, x: np.ndarray, k: int, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        # Not under the lock: a snapshot only reads, so searches go on while it runs.
        return self.index.search(x, k, **kwargs)  # type: ignore[no-any-return]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to ``path`` (atomically) and record in the journal which changes
        the file holds, so ``vecdr snapshot REPO faiss:PATH`` from another process can use
        the journal safely: the changes made after this save stay for a later snapshot."""
        with self._lock:
            position = self.journal.rotate()
            write_index_atomic(self.index, Path(path))
            self.journal.record_saved(path, position)

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """No change gets in while this is held (a snapshot of this index holds it)."""
        with self._lock:
            yield

    def __getattr__(self, name: str) -> Any:
        return getattr(self.index, name)


def write_index_atomic(index: faiss.Index | bytes, path: Path) -> None:
    """Write an index (or serialized bytes) so ``path`` is either old or complete, never partial."""
    with writing(path):  # a full disk or a read-only folder: TargetWriteError naming path
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:  # a random temporary name: a planted link is never followed
            if isinstance(index, bytes | bytearray | memoryview):
                tmp.write_bytes(index)
            else:
                faiss.write_index(index, str(tmp))


def _available_memory() -> int | None:
    """Bytes of memory this machine can still give (Linux's MemAvailable), if known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_fits(spec: RestoreSpec) -> None:
    """Refuse, before allocating, an index whose vectors alone cannot fit in memory: a
    FAISS index lives in memory, and sizing its storage for a manifest's row count must
    not end in an allocator abort (a crafted manifest may declare any count)."""
    needed = spec.rows * (spec.dimension * 4 + 8)
    available = _available_memory()
    if available is not None and needed > available:
        raise TargetError(
            f"the snapshot holds {spec.rows:,} vectors of dimension {spec.dimension}: at least "
            f"{needed / 2**30:.1f} GiB for a FAISS index, and this machine has {available / 2**30:.1f} GiB free"
        )


class FaissTarget(Target):
    """Rebuild a FAISS index; write it to ``path``, or keep it in :attr:`index` when path is None.

    Options: ``factory`` overrides the recorded index spec (no trained state or
    native blob is then used), ``metric`` the recorded metric. ``gpu`` (``auto``,
    ``on``, ``off``, ``require``; True/False for on/off) runs the expensive parts of
    the rebuild on a GPU, ``gpu_device`` picks the GPU (see docs/gpu.md).
    """

    backend = "faiss"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        factory: str | None = None,
        metric: str | None = None,
        gpu: str | bool | None = "auto",
        gpu_device: int | str | None = None,
        uri: str | None = None,
    ) -> None:
        super().__init__(uri or (f"faiss:{path}" if path else "faiss:<memory>"))
        self.path = Path(path) if path is not None else None
        self.factory = factory
        self.metric = metric
        self.gpu = faiss_gpu.parse_mode(gpu)
        self.gpu_device = faiss_gpu.parse_device(gpu_device)
        self._gpu: faiss_gpu.GpuBuild | None = None
        self._params: dict[str, Any] = {}
        self.index: faiss.Index | None = None
        self.blob: bytes | None = None
        self.phases: dict[str, float] = {}
        self._needs_training = False
        self._plain = False  # ids are positions: rows must be added in id order
        # Streamed rows wait in _pending until a batch is full. All rows are collected
        # instead (_ids, _vectors) and added in one call when ids are positions, and
        # for HNSW, whose graph then comes out exactly as a one-call build of the
        # same rows in the same order would. A flat index is filled in place:
        # _vectors is its own storage, and _ids holds the ids under an id map, or
        # without one which positions have been written.
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_rows = 0
        self._batch: tuple[np.ndarray, np.ndarray] | None = None  # reused by _flush_pending
        self._in_place = False
        self._ids: np.ndarray | None = None
        self._vectors: np.ndarray | None = None
        self._filled = 0
        self._warn: Any = lambda message: None

    def exists(self) -> bool:
        return self.path is not None and self.path.exists()

    def begin(self, spec: RestoreSpec, force: bool = False) -> bool:
        if self.path is not None:
            check_replaceable(self.path)  # a device or a folder is never replaced, even with force
        if self.exists() and not force:
            raise TargetExistsError(f"{self.path} already exists; pass --force to replace it")
        self._warn = spec.options.get("warn", lambda message: None)
        self.spec = spec
        if self.gpu == "require":
            faiss_gpu.require(self.gpu_device)  # fail before reading anything
        recorded = spec.index if spec.index.get("engine") == "faiss" else {}
        override = self.factory is not None or self.metric is not None

        if recorded and not override:
            started = time.perf_counter()
            # FAISS's reader is not built for hostile input, so it parses only bytes the
            # manifest vouches for: a large blob part by part, each part hash-checked
            # before a byte of it is read (the next parts are read and checked while it
            # parses); a small one whole, checked first.
            stream = spec.artifact_stream("native_index") if self.path is None else None
            if stream is not None:
                if self._use_stream(stream, spec):
                    self.phases["load_native"] = time.perf_counter() - started
                    return True
            else:
                blob = spec.artifact("native_index")
                if blob is not None and self._use_blob(blob, spec):
                    self.phases["load_native"] = time.perf_counter() - started
                    return True

        if spec.id_type != "int64":
            raise SchemaError("FAISS ids are integers; this snapshot has string ids")
        # Another engine's snapshot: its index in engine-neutral terms (pgvector HNSW m=16 → HNSW16).
        foreign = {} if recorded or self.factory else fi.from_portable(spec.index.get("portable"))
        if foreign.get("warning") and not self.metric:
            self._warn(foreign["warning"])
        metric = self.metric or recorded.get("metric") or foreign.get("metric", "L2")
        index: faiss.Index | None = None
        if recorded and not override and recorded.get("needs_training"):
            index = self._trained(spec)
        if index is None:
            factory = self.factory or (recorded.get("factory") if recorded else foreign.get("factory", DEFAULT_FACTORY))
            if factory is None:
                raise SchemaError(
                    f"the snapshot's {recorded.get('class')} index has no factory string to rebuild "
                    "it from; restore a snapshot taken with --with-index, or pass --index-factory"
                )
            index = fi.new_index(factory, spec.dimension, metric)
            fi.apply_params(index, foreign.get("params", {}))
            self._needs_training = not index.is_trained
        if index.d != spec.dimension:
            raise DimensionMismatchError(f"the index has dimension {index.d}, the snapshot {spec.dimension}")
        self._params = recorded.get("params", {}) if not self.factory else {}
        fi.apply_params(index, self._params)

        # Ids: an id map as recorded; IVF indexes keep ids natively; a recorded index
        # without an id map numbers its vectors 0…n-1; anything else gets an IDMap2.
        inner, own_map, _ = fi.unwrap(index)
        id_map = recorded.get("id_map") if recorded and not self.factory else None
        if own_map is None:
            if id_map == "IDMap":
                index = faiss.IndexIDMap(index)
            elif id_map == "IDMap2":
                index = faiss.IndexIDMap2(index)
            elif not fi.supports_add_with_ids(inner):
                if recorded and not self.factory:
                    self._plain = True
                else:
                    index = faiss.IndexIDMap2(index)
        self.index = index
        _check_fits(spec)
        self._gpu = faiss_gpu.prepare(index, spec.rows, self.gpu, self.gpu_device, self._warn)
        flat = fi.empty_flat(index) if self._gpu is None else None
        if flat is not None and (self._plain or fi.unwrap(index)[1] is not None):
            # Rows go straight into the flat index's storage, sized once: in arrival
            # order under an id map, at the position their id names without one.
            self._ids = np.empty(spec.rows, np.int64) if not self._plain else np.zeros(spec.rows, bool)
            self._vectors = fi.flat_storage(flat, spec.rows)
            self._in_place = True
        elif self._plain or fi.is_hnsw(fi.unwrap(index)[0]):
            self._ids = np.empty(spec.rows, np.int64)
            self._vectors = np.empty((spec.rows, spec.dimension), np.float32)
        if self._gpu is not None and index.is_trained:
            self.index = self._gpu.to_device(index)  # adds go to the GPU from the first row
        return False

    def _trained(self, spec: RestoreSpec) -> faiss.Index | None:
        """The kept trained state as an empty index, or None (with a warning) if unusable."""
        trained = spec.artifact("trained")
        if trained is None:
            return None
        try:
            index = fi.deserialize(trained)
        except RuntimeError:
            index = None
        if index is None or index.d != spec.dimension or not index.is_trained or index.ntotal:
            self._warn("the kept trained state does not load in this faiss; retraining")
            return None
        return index

    def _use_stream(self, stream: Any, spec: RestoreSpec) -> bool:
        try:
            # Blocks of a whole part: most parts reach FAISS as the checked object itself.
            index = fi.deserialize_stream(stream.read, stream.part_bytes)
        except RuntimeError:
            if stream.error is not None:  # a part failed its check: FAISS saw none of its bytes
                raise stream.error from None
            index = None
        finally:
            stream.close()
        if not self._native_usable(index, spec):
            return False
        self.index = index
        return True

    def _use_blob(self, blob: bytes, spec: RestoreSpec) -> bool:
        if self.path is not None:  # written out as it is: its bytes are already hash-checked
            self.blob = blob
            return True
        try:
            index = fi.deserialize(blob)
        except RuntimeError:
            index = None
        if not self._native_usable(index, spec):
            return False
        self.index, self.blob = index, blob
        return True

    def _native_usable(self, index: faiss.Index | None, spec: RestoreSpec) -> bool:
        """Whether a loaded native index can serve as the restore; warns why not."""
        if index is None:
            self._warn("the native index blob does not load in this faiss; rebuilding")
            return False
        if index.ntotal != spec.rows or index.d != spec.dimension:
            self._warn("the native index blob does not match the snapshot; rebuilding")
            return False
        return True

    def write(self, rows: pa.Table) -> None:
        assert self.index is not None
        ids = rows.column("id").to_numpy().astype(np.int64)
        # Each chunk's vectors are a view of the decoded segment: no copy until they
        # land in a batch or the index.
        chunks = vector_chunks(rows.column("vector"), self.spec.dimension)
        if self._ids is None:
            # Streaming add, in batches of about ADD_BATCH_ROWS: FAISS adds faster in
            # cache-sized batches than in one call or in many small ones (measured).
            at = 0
            for vectors in chunks:
                self._pending.append((ids[at : at + len(vectors)], vectors))
                at += len(vectors)
            self._pending_rows += len(ids)
            if self._pending_rows >= ADD_BATCH_ROWS:
                self._flush_pending()
            return
        at, n = self._filled, len(ids)
        if at + n > len(self._ids):
            raise TargetError(f"the snapshot yielded more than its {self.spec.rows} rows")
        if self._in_place and self._plain:
            self._place_by_id(ids, chunks)
            return
        self._ids[at : at + n] = ids
        for vectors in chunks:
            self._vectors[at : at + len(vectors)] = vectors
            at += len(vectors)
        self._filled += n

    def _place_by_id(self, ids: np.ndarray, chunks: list[np.ndarray]) -> None:
        """Rows of a flat index without an id map, each written at the position of its id."""
        seen = self._ids
        if len(ids) and (ids.min() < 0 or ids.max() >= len(seen) or seen[ids].any()):
            raise TargetError(NOT_POSITIONS)
        seen[ids] = True
        at = 0
        for vectors in chunks:
            part = ids[at : at + len(vectors)]
            if len(part) and part[-1] - part[0] == len(part) - 1 and bool((np.diff(part) == 1).all()):
                self._vectors[part[0] : part[-1] + 1] = vectors  # a run of ids: one copy
            else:
                self._vectors[part] = vectors
            at += len(vectors)
        self._filled += len(ids)

    def training_rows(self) -> int:
        if not self._needs_training:
            return 0
        ivf = fi._ivf(fi.unwrap(self.index)[0]) if self.index is not None else None
        # As many points as FAISS's own k-means would keep (256 per centroid), and
        # enough for 256-centroid PQ/SQ codebooks.
        wanted = max(TRAIN_SAMPLE_MIN, 256 * ivf.nlist if ivf is not None else 0)
        return int(min(self.spec.rows, wanted))

    def train(self, sample: pa.Table) -> None:
        assert self.index is not None
        vectors = vectors_from_arrow(sample.column("vector"), self.spec.dimension)
        if self._gpu is not None:
            self._gpu.train(self.index, vectors)
            self.index = self._gpu.to_device(self.index)
        else:
            fi.train(self.index, vectors)
        self._needs_training = False

    def _flush_pending(self) -> None:
        if not self._pending:
            return
        if len(self._pending) == 1:
            ids, vectors = self._pending[0]
        else:
            # Gathered into one batch buffer, reused from batch to batch: a fresh
            # buffer this size is zero-filled page by page on every batch, which cost
            # as much as the copy (measured: 0.44 s of a 200k x 768 IVF-PQ restore).
            n = self._pending_rows
            if self._batch is None or len(self._batch[0]) < n:
                self._batch = (np.empty(n, np.int64), np.empty((n, self.spec.dimension), np.float32))
            ids, vectors = self._batch[0][:n], self._batch[1][:n]
            np.concatenate([p[0] for p in self._pending], out=ids)
            np.concatenate([p[1] for p in self._pending], out=vectors)
        self._pending, self._pending_rows = [], 0
        self._add(ids, vectors)

    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        assert self.index is not None
        started = time.perf_counter()
        try:
            if self._plain:
                self.index.add(vectors)
            elif not add_vectors(self.index, vectors, ids):
                self.index.add_with_ids(vectors, ids)
        except RuntimeError as exc:
            if self._gpu is None:
                raise
            # Out of GPU memory, or a layout the GPU rejects, after the index moved there.
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TargetError(f"adding vectors on the GPU failed ({reason}); restore with --gpu off") from exc
        self.phases["add"] = self.phases.get("add", 0.0) + time.perf_counter() - started

    def finish(self) -> dict[str, float]:
        if self.blob is None:
            assert self.index is not None
            self._flush_pending()
            self._batch = None
            if self._gpu is not None and not self._gpu.builds_graph:
                started = time.perf_counter()
                self.index = self._gpu.to_host(self.index)
                fi.apply_params(self.index, self._params)
                self.phases["to_host"] = time.perf_counter() - started
            if self._in_place:
                if not self._plain:
                    fi.publish_flat(self.index, self._ids[: self._filled])
                elif self._filled != len(self._ids):
                    raise TargetError(f"built {self._filled} vectors, expected {len(self._ids)}")
                elif not bool(self._ids.all()):  # an id came twice, so another never did
                    raise TargetError(NOT_POSITIONS)
                else:
                    fi.publish_flat(self.index, self._filled)
                self._ids = self._vectors = None
            elif self._ids is not None:
                ids, vectors = self._ids[: self._filled], self._vectors[: self._filled]
                if self._plain and len(ids) and not bool((ids[1:] > ids[:-1]).all()):
                    order = np.argsort(ids)
                    ids, vectors = ids[order], vectors[order]
                if self._plain and not np.array_equal(ids, np.arange(len(ids))):
                    raise TargetError(NOT_POSITIONS)
                started = time.perf_counter()
                if self._gpu is not None and self._gpu.builds_graph and self._gpu.build_graph(
                    self.index, ids, vectors, self._plain
                ):
                    self.phases["add"] = self.phases.get("add", 0.0) + time.perf_counter() - started
                else:
                    self._add(ids, vectors)
                self._ids = self._vectors = None
            if self.index.ntotal != self.spec.rows:
                raise TargetError(f"built {self.index.ntotal} vectors, expected {self.spec.rows}")
        if self.path is not None:
            started = time.perf_counter()
            write_index_atomic(self.blob if self.blob is not None else self.index, self.path)
            self.phases["write"] = time.perf_counter() - started
        return self.phases

    def _published(self) -> faiss.Index | None:
        if self.index is None and self.path is not None and self.path.exists():
            self.index = faiss.read_index(str(self.path))
        return self.index

    def search(self, queries: np.ndarray, k: int) -> list[list[Any]] | None:
        index = self._published()
        if index is None:
            return None
        _, labels = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return [[int(x) for x in row if x >= 0] for row in labels]

    def count(self) -> int | None:
        index = self._published()
        return None if index is None else int(index.ntotal)

    def drop(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        self.index = None

    def abort(self) -> None:
        self.index = None
        self._ids = self._vectors = None
        self._pending, self._batch = [], None
