"""Parquet files of embeddings that live outside any engine: ``parquet:PATH``.

A source needs an ``id`` column (integers or strings) and a ``vector`` column
(fixed or variable size lists of float32); ``?id=COL&vector=COL`` names others.
Every other column is kept as a per-row attribute. As a target, a snapshot's live
rows are written as one Parquet file of the segment schema.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vecdr.backends.base import RestoreSpec, Source, SourceInfo, Target
from vecdr.durable import publish
from vecdr.errors import SchemaError, SourceError, TargetExistsError
from vecdr.format.segment import ID, VECTOR, id_kind, segment_schema, vector_type


class ParquetSource(Source):
    backend = "parquet"

    def __init__(
        self, path: str | os.PathLike[str], *, id: str = ID, vector: str = VECTOR, uri: str | None = None
    ) -> None:
        super().__init__(uri or f"parquet:{path}")
        self.path = Path(path)
        try:
            self.file = pq.ParquetFile(self.path)
        except FileNotFoundError:
            raise SourceError(f"no Parquet file at {self.path}") from None
        except (pa.ArrowInvalid, OSError) as exc:
            raise SourceError(f"{self.path} is not a Parquet file ({exc})") from exc
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
        return self._valid(self.file.read(columns=[self.id_col]).column(0).combine_chunks(), self.id_col)

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
        self.tmp = self.path.with_name(f".{self.path.name}.vecdr-tmp")
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def exists(self) -> bool:
        return self.path.exists()

    def begin(self, spec: RestoreSpec, force: bool = False) -> bool:
        if self.exists() and not force:
            raise TargetExistsError(f"{self.path} already exists; pass --force to replace it")
        self.spec = spec
        self.schema = segment_schema(spec.dimension, spec.id_type, spec.attributes)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = pq.ParquetWriter(
            self.tmp, self.schema, compression="zstd",
            use_byte_stream_split=[f"{VECTOR}.list.element"],
            use_dictionary=[n for n in self.schema.names if n != VECTOR],
        )
        return False

    def write(self, rows: pa.Table) -> None:
        assert self.writer is not None
        self.writer.write_table(rows.cast(self.schema))
        self.rows += rows.num_rows

    def finish(self) -> dict[str, float]:
        assert self.writer is not None
        self.writer.close()
        publish(self.tmp, self.path)
        return {}

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.tmp.unlink(missing_ok=True)
