"""The backend contract: a source yields rows to snapshot, a target rebuilds from them.

Rows travel as Arrow tables of the segment schema: ``id`` (int64 or string),
``vector`` (FixedSizeList<float32, d>) and one column per attribute.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecdr.format.quality import QualitySample

IdRange = tuple[Any, Any]
"""``(lo, hi)``: the ids with ``lo <= id < hi``; ``None`` leaves that side unbounded."""
WHOLE: IdRange = (None, None)


def in_range(ids: pa.Array, within: IdRange) -> np.ndarray | None:
    """Which of ``ids`` lie in ``within``, in Arrow's order (``None``: all of them)."""
    lo, hi = within
    mask = None
    if lo is not None:
        mask = pc.greater_equal(ids, pa.scalar(lo, ids.type))
    if hi is not None:
        below = pc.less(ids, pa.scalar(hi, ids.type))
        mask = below if mask is None else pc.and_(mask, below)
    return None if mask is None else mask.to_numpy(zero_copy_only=False)


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What a source holds, known before scanning it."""

    name: str
    dimension: int
    id_type: str
    attributes: pa.Schema = field(default_factory=lambda: pa.schema([]))
    index: dict[str, Any] = field(default_factory=dict)
    rows: int | None = None
    software: dict[str, str] = field(default_factory=dict)
    #: The source itself guarantees unique ids (a primary key): no separate id pass.
    unique_ids: bool = False


@dataclass(slots=True)
class ChangeSet:
    """Changes a tracked source recorded since snapshot ``base`` (``None``: since creation).

    ``token`` says how far the changes go, for :meth:`Source.committed` to trim the
    journal to (``None``: trim nothing). ``problem``, when set, says why the changes
    cannot be used: the snapshot then compares every row, or refuses.
    """

    base: str | None
    upserts: pa.Table
    deletes: pa.Array
    token: Any = None
    problem: Exception | None = None


class Source(ABC):
    """Something to snapshot."""

    backend: str = ""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    @abstractmethod
    def info(self) -> SourceInfo: ...

    @abstractmethod
    def ids(self) -> pa.Array:
        """Every id, without vectors: cheap, so duplicates are caught before anything is written."""

    @abstractmethod
    def scan(self, batch_rows: int) -> Iterator[pa.Table]:
        """Every row, in batches of at most ``batch_rows``."""

    #: :meth:`scan_range` selects an id range without reading the rest (a database's
    #: WHERE on its key): a diff snapshot of a large collection then compares one id
    #: range at a time, in memory bounded by the range, not the collection.
    range_scans: bool = False

    def scan_range(self, batch_rows: int, lo: Any, hi: Any) -> Iterator[pa.Table]:
        """Rows with ``lo <= id < hi`` (``None``: unbounded), ids ordered as Arrow orders them
        (integers by value, strings by their UTF-8 bytes). This default filters :meth:`scan`."""
        for batch in self.scan(batch_rows):
            inside = in_range(batch.column("id").combine_chunks(), (lo, hi))
            yield batch if inside is None else batch.filter(pa.array(inside))

    def quality_sample(self, queries: int, k: int) -> QualitySample | None:
        """``queries`` query vectors drawn from the source and its own index's top-``k``
        ids for each (see :mod:`vecdr.format.quality`); ``None`` where the source cannot search."""
        return None

    def changes(self) -> ChangeSet | None:
        """Recorded changes for tracked mode; ``None`` where the source keeps no journal."""
        return None

    def committed(self, snapshot: str, changes: ChangeSet | None) -> None:
        """Called after snapshot ``snapshot`` is committed (tracked sources trim their journal)."""

    def pinned(self) -> AbstractContextManager[None]:
        """Held for the whole snapshot: a source that changes in this process keeps still
        inside it, so row count, changes and scan are one point in time."""
        return nullcontext()

    def artifacts(self, with_index: bool) -> dict[str, tuple[bytes, str]]:
        """Extra state to keep, as ``{name: (bytes, extension)}``: trained state, native index."""
        return {}

    def close(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class RestoreSpec:
    """What the target is asked to rebuild."""

    collection: str
    snapshot: str
    dimension: int
    id_type: str
    attributes: pa.Schema
    index: dict[str, Any]
    rows: int
    #: Fetches (and hash-checks) a kept artifact by name; ``None`` if the snapshot has none.
    artifact: Callable[[str], bytes | None] = field(default=lambda name: None, repr=False)
    #: A stream (``read(n)``, ``close()``) over a large kept artifact whose every part
    #: is hash-checked before a byte of it is read; ``None`` where there is none.
    artifact_stream: Callable[[str], Any] = field(default=lambda name: None, repr=False)
    options: dict[str, Any] = field(default_factory=dict)


class Target(ABC):
    """Somewhere to restore into. ``begin`` → [``train``] → ``write``* → ``finish``, or ``abort``."""

    backend: str = ""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    @abstractmethod
    def exists(self) -> bool: ...

    @abstractmethod
    def begin(self, spec: RestoreSpec, force: bool = False) -> bool:
        """Prepare; return True when the target is already complete (a native fast path)."""

    def training_rows(self) -> int:
        """How many sample rows to :meth:`train` on before the rows stream in (0: none)."""
        return 0

    def train(self, sample: pa.Table) -> None:
        """Train on a uniform random sample of the snapshot's rows."""

    @abstractmethod
    def write(self, rows: pa.Table) -> None: ...

    @abstractmethod
    def finish(self) -> dict[str, float]:
        """Build and publish atomically; returns seconds per phase."""

    def abort(self) -> None:
        """Drop whatever ``begin`` and ``write`` made."""

    # -- after finish: what a drill asks of the restored index ---------------------

    def search(self, queries: np.ndarray, k: int) -> list[list[Any]] | None:
        """The restored index's top-``k`` ids for each query; ``None`` where the target cannot search."""
        return None

    def count(self) -> int | None:
        """How many rows the published target holds; ``None`` where it cannot tell."""
        return None

    def drop(self) -> None:
        """Remove the published target (a drill's scratch index, table or collection)."""
        raise NotImplementedError(f"a {self.backend} target cannot be dropped")
