"""Parquet files of embeddings that live outside any engine: ``parquet:PATH``.

A source needs an ``id`` column (integers or strings) and a ``vector`` column
(fixed or variable size lists of float32); ``?id=COL&vector=COL`` names others.
Every other column is kept as a per-row attribute. As a target, a snapshot's live
rows are written as one Parquet file of the segment schema.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vecdr.backends.base import RestoreSpec, Source, SourceInfo, Target
from vecdr.durable import check_replaceable, publish, temp_beside, writing
from vecdr.errors import SchemaError, SourceError, TargetExistsError
from vecdr.format.segment import ID, VECTOR, id_kind, segment_schema, vector_type

#: Times to read a file's footer again when it changed while being read.
OPEN_TRIES = 5
#: Seconds to wait before calling an unreadable file "not Parquet": one being written changes meanwhile.
SETTLE_SECONDS = 0.05


class ParquetSource(Source):
    backend = "parquet"

    def __init__(
        self, path: str | os.PathLike[str], *, id: str = ID, vector: str = VECTOR, uri: str | None = None
    ) -> None:
        super().__init__(uri or f"parquet:{path}")
        self.path = Path(path)
        self.handle: pa.NativeFile | None = None
        self.file, self._version = self._open()
        schema = self.file.schema_arrow
        for col in (id, vector):
            if col not in schema.names:
                raise SchemaError(f"{self.path} has no column {col!r} (columns: {schema.names})")
        self.id_col, self.vector_col = id, vector
        vtype = schema.field(vector).type
        if not (pa.types.is_list(vtype) or pa.types.is_fixed_size_list(vtype)
                or pa.types.is_large_list(vtype)) or vtype.value_type != pa.float32():
            raise SchemaError(f"column {vector!r} is {vtype}; vectors must be lists of float32")
        self.kind = id_kind(schema.field(id).type)
        self.dimension = vtype.list_size if pa.types.is_fixed_size_list(vtype) else self._probe_width()
        self.attributes = pa.schema(
            [f for f in schema if f.name not in (id, vector)]
        )
        segment_schema(self.dimension, self.kind, self.attributes)  # reserved-name check

    # -- one version of the file ----------------------------------------------------
    #
    # Every read goes through one open handle, so a file replaced by a rename (the safe
    # way to write one) is still read whole, as it was. A file rewritten in place (the
    # same inode truncated and written again) would be read torn: its identity (size,
    # modification time, inode, and the footer's bytes) is pinned when the
    # footer is read and checked after every read; a change refuses the snapshot.

    def _open(self) -> tuple[pq.ParquetFile, tuple[object, ...]]:
        """The file and its identity, opened while nobody was rewriting it (a few tries)."""
        for _ in range(OPEN_TRIES):
            self.close()
            try:
                self.handle = pa.OSFile(str(self.path))
            except FileNotFoundError:
                raise SourceError(f"no Parquet file at {self.path}") from None
            except OSError as exc:  # a folder, no permission
                raise SourceError(f"{self.path} is not a Parquet file ({exc})") from exc
            before = self._identity()
            try:
                file = pq.ParquetFile(self.handle)
            except (pa.ArrowException, OSError) as exc:
                # Half-written (e.g. just truncated by a writer) or simply not Parquet:
                # a file that is being written changes within a moment.
                time.sleep(SETTLE_SECONDS)
                if self._identity() == before:
                    raise SourceError(f"{self.path} is not a Parquet file ({exc})") from exc
                continue
            if self._identity() == before:
                return file, before
        raise self._changed_error()

    def _identity(self) -> tuple[object, ...]:
        assert self.handle is not None
        fd = self.handle.fileno()
        st = os.fstat(fd)
        tail = os.pread(fd, 8, max(0, st.st_size - 8))
        footer = b""
        if len(tail) == 8 and tail[4:] == b"PAR1":
            length = int.from_bytes(tail[:4], "little")
            footer = os.pread(fd, min(length, st.st_size), max(0, st.st_size - 8 - length))
        # Not the change time: a rename over the path unlinks the inode read here, which changes it.
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, tail, footer)

    def _changed_error(self) -> SourceError:
        return SourceError(
            f"{self.path} changed while the snapshot read it (rewritten in place); nothing was stored: "
            "take the snapshot again, or write the file to a new name and rename it over the old one"
        )

    def _verify(self) -> None:
        """Raise if the file is no longer the version pinned at open."""
        if self._identity() != self._version:
            raise self._changed_error()

    def _failed(self, exc: Exception) -> SourceError:
        """The error for ``exc``, raised while reading: a torn read's says the file changed."""
        try:
            self._verify()
        except SourceError as changed:
            changed.__cause__ = exc
            return changed
        return exc if isinstance(exc, SourceError) else SourceError(f"cannot read {self.path}: {exc}")

    def close(self) -> None:
        if getattr(self, "handle", None) is not None:
            assert self.handle is not None
            self.handle.close()
            self.handle = None

    def _probe_width(self) -> int:
        for batch in self.file.iter_batches(batch_size=1, columns=[self.vector_col]):
            if batch.num_rows:
                return len(batch.column(0)[0])
        raise SchemaError(f"{self.path} holds no rows to take the vector dimension from")

    def info(self) -> SourceInfo:
        return SourceInfo(
            name=self.path.stem,
            dimension=self.dimension,
            id_type=self.kind,
            attributes=self.attributes,
            index={"engine": "parquet"},
            rows=self.file.metadata.num_rows,
        )

    def ids(self) -> pa.Array:
        try:
            ids = self.file.read(columns=[self.id_col]).column(0).combine_chunks()
        except (pa.ArrowException, OSError) as exc:
            raise self._failed(exc) from exc
        self._verify()
        return self._valid(ids, self.id_col)

    def _valid(self, column: pa.Array | pa.ChunkedArray, name: str) -> pa.Array | pa.ChunkedArray:
        """``column``, once its strings are known to be valid UTF-8: Parquet does not check,
        and a string that is not would break every reader of the snapshot after it."""
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            try:
                column.validate(full=True)
            except pa.ArrowInvalid:
                raise SchemaError(f"{self.path}: column {name!r} holds text that is not valid UTF-8") from None
        big = name == self.id_col and pa.types.is_uint64(column.type) and len(column) > 0
        if big and pc.max(column).as_py() > 2**63 - 1:
            # Ids are stored as int64 (FAISS's, PostgreSQL's and Milvus's own id type).
            raise SchemaError(f"{self.path}: column {name!r} holds {pc.max(column).as_py()}, above 2**63-1, "
                              "the largest id vecdr stores")
        return column

    def scan(self, batch_rows: int) -> Iterator[pa.Table]:
        try:
            yield from self._scan(batch_rows)
        except (pa.ArrowException, OSError, SourceError) as exc:
            failed = self._failed(exc)  # an error from a torn read says the file changed
            if failed is exc:
                raise
            raise failed from exc
        # The last batch is out; had anything changed meanwhile, this refuses the
        # snapshot before its commit.
        self._verify()

    def _scan(self, batch_rows: int) -> Iterator[pa.Table]:
        want = vector_type(self.dimension)
        for batch in self.file.iter_batches(batch_size=batch_rows):
            table = pa.Table.from_batches([batch])
            vectors = table.column(self.vector_col).combine_chunks()
            if vectors.null_count:
                raise SchemaError(f"{self.path}: a row has no vector")
            if not pa.types.is_fixed_size_list(vectors.type):
                lengths = pc.list_value_length(vectors)
                if pc.any(pc.not_equal(lengths, self.dimension)).as_py():
                    raise SchemaError(f"{self.path}: vectors of differing lengths")
                vectors = pa.FixedSizeListArray.from_arrays(vectors.flatten(), type=want)
            else:
                vectors = vectors.cast(want)
            ids = self._valid(table.column(self.id_col).combine_chunks(), self.id_col)
            if ids.null_count:
                raise SchemaError(f"{self.path}: a row has no id")
            columns = {ID: ids, VECTOR: vectors}
            columns.update({f.name: self._valid(table.column(f.name), f.name) for f in self.attributes})
            yield pa.table(columns)


class ParquetTarget(Target):
    """Write a snapshot's live rows to one Parquet file (atomically renamed into place)."""

    backend = "parquet"

    def __init__(self, path: str | os.PathLike[str], uri: str | None = None) -> None:
        super().__init__(uri or f"parquet:{path}")
        self.path = Path(path)
        self.tmp: Path | None = None
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def exists(self) -> bool:
        return self.path.exists()

    def begin(self, spec: RestoreSpec, force: bool = False) -> bool:
        check_replaceable(self.path)  # a device or a folder is never replaced, even with force
        if self.exists() and not force:
            raise TargetExistsError(f"{self.path} already exists; pass --force to replace it")
        self.spec = spec
        self.schema = segment_schema(spec.dimension, spec.id_type, spec.attributes)
        with writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = temp_beside(self.path)  # random, exclusive, never through a planted link
            self.writer = pq.ParquetWriter(
                self.tmp, self.schema, compression="zstd",
                use_byte_stream_split=[f"{VECTOR}.list.element"],
                use_dictionary=[n for n in self.schema.names if n != VECTOR],
            )
        return False

    def write(self, rows: pa.Table) -> None:
        assert self.writer is not None
        with writing(self.path):
            self.writer.write_table(rows.cast(self.schema))
        self.rows += rows.num_rows

    def finish(self) -> dict[str, float]:
        assert self.writer is not None and self.tmp is not None
        with writing(self.path):
            self.writer.close()
            publish(self.tmp, self.path)
        return {}

    def abort(self) -> None:
        try:
            if self.writer is not None:
                self.writer.close()  # may fail again on the full disk that failed the write
        except OSError:
            pass
        finally:
            if self.tmp is not None:
                self.tmp.unlink(missing_ok=True)
