"""Segments: plain Parquet files of rows (``id``, ``vector``, attribute columns).

Vectors are ``FixedSizeList<float32, d>`` written with BYTE_STREAM_SPLIT and zstd,
the only layout measured to compress float embeddings (about 0.85 of raw), in row
groups small enough that several decode at once. Any Parquet reader (pyarrow,
DuckDB, Polars, Spark) opens a segment without vecdr.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vecdr.errors import IntegrityError, SchemaError
from vecdr.format import footer, thrift, vectorpages

ID = "id"
VECTOR = "vector"
RESERVED = (ID, VECTOR)

#: Raw vector bytes per row group: big enough to compress well, small enough that
#: every core gets a row group to decode (measured on 768-d vectors: 1k- and 4k-row
#: groups decode at about 1 GB/s per thread, 16k-row groups at half that).
ROW_GROUP_BYTES = 16 << 20
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 1

#: The widest vectors vecdr stores (Qdrant's limit; Milvus allows 32,768, pgvector 16,000):
#: a row group holds at least 1,024 rows, so wider vectors would make every segment huge.
MAX_DIMENSION = 65536

#: The most rows a segment may hold (:func:`max_segment_rows`): vecdr writes segments
#: of at least 1,024 rows and otherwise about 32 MiB of vectors (64 MiB in early
#: versions), so a manifest or footer declaring more is refused before anything is
#: allocated for it.
MAX_SEGMENT_BYTES = 128 << 20
MIN_SEGMENT_ROWS = 1024


def max_segment_rows(dimension: int) -> int:
    return max(MIN_SEGMENT_ROWS, MAX_SEGMENT_BYTES // (4 * max(dimension, 1) + 8))


def vector_type(dimension: int) -> pa.DataType:
    return pa.list_(pa.field("element", pa.float32(), nullable=False), dimension)


def id_type(kind: str) -> pa.DataType:
    """Arrow type of the id column for ``"int64"`` or ``"string"`` ids."""
    if kind == "int64":
        return pa.int64()
    if kind == "string":
        return pa.string()
    raise SchemaError(f"unsupported id type {kind!r}: use int64 or string")


def id_kind(typ: pa.DataType) -> str:
    """The id kind (``"int64"`` or ``"string"``) an Arrow id type is stored as."""
    if pa.types.is_integer(typ):
        return "int64"
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "string"
    raise SchemaError(f"ids must be integers or strings, not {typ}")


def segment_schema(dimension: int, ids: str, attributes: pa.Schema | None = None) -> pa.Schema:
    if not 1 <= dimension <= MAX_DIMENSION:
        raise SchemaError(f"vectors of dimension {dimension} cannot be stored: vecdr stores 1 to {MAX_DIMENSION}")
    fields = [
        pa.field(ID, id_type(ids), nullable=False),
        pa.field(VECTOR, vector_type(dimension), nullable=False),
    ]
    for field in attributes or []:
        if field.name in RESERVED:
            raise SchemaError(f"attribute column {field.name!r} clashes with a reserved column")
        fields.append(field)
    return pa.schema(fields)


def vectors_to_arrow(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """Wrap an ``(n, d)`` float32 array as FixedSizeList without copying."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = vectors.shape
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), type=vector_type(d))


def vector_chunks(column: pa.ChunkedArray | pa.Array, dimension: int) -> list[np.ndarray]:
    """The ``(n_i, d)`` float32 matrices of a vector column's chunks, zero-copy."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    # flatten() respects a chunk's offset and length (a slice's .values does not).
    return [chunk.flatten().to_numpy(zero_copy_only=False).reshape(-1, dimension) for chunk in chunks]


def vectors_from_arrow(column: pa.ChunkedArray | pa.Array, dimension: int) -> np.ndarray:
    """The ``(n, d)`` float32 matrix of a vector column (zero-copy for one chunk)."""
    parts = vector_chunks(column, dimension)
    if not parts:
        return np.empty((0, dimension), dtype=np.float32)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def row_group_rows(dimension: int) -> int:
    rows = ROW_GROUP_BYTES // (4 * max(dimension, 1))
    return int(min(65536, max(1024, 1 << (rows.bit_length() - 1))))


def encode_segment(table: pa.Table) -> bytes | pa.Buffer:
    """Serialize a table of the segment schema to Parquet (a bytes-like object).

    Arrow writes every column but the vectors; :mod:`vectorpages` writes the vector
    column chunks, appended after Arrow's, and the footer is Arrow's with those
    chunks added. Should Arrow ever lay the vector column out differently than
    expected, Arrow writes the whole file instead.
    """
    layout = _vector_layout(table.schema)
    if layout is None:
        return _encode_with_arrow(table)
    head, meta, data_end = _arrow_file(table.drop_columns([VECTOR]), table.schema)

    dimension = table.schema.field(VECTOR).type.list_size
    column = table.column(VECTOR)
    zstd = vectorpages.compressor()
    parts: list[bytes | pa.Buffer] = [head[:data_end]]
    offset, start = data_end, 0
    for group in meta.get_value(4, (thrift.STRUCT, []))[1]:
        rows = group.get_value(3)
        chunk = vectorpages.encode_vectors(vectors_from_arrow(column.slice(start, rows), dimension), zstd)
        group.get_value(1)[1].insert(1, chunk.metadata(layout.path, offset))
        group[2] = (thrift.I64, group.get_value(2) + chunk.uncompressed)
        if 6 in group:
            group[6] = (thrift.I64, group.get_value(6) + chunk.size)
        parts += chunk.parts
        offset += chunk.size
        start += rows
    meta.update(layout.footer_fields)
    footer = thrift.encode(meta)
    parts += [footer, len(footer).to_bytes(4, "little"), b"PAR1"]
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class _Layout:
    """What Arrow writes into a footer for a segment schema: the vector leaf's path,
    and the schema, key-value metadata (the Arrow schema) and column orders."""

    path: list[str]
    footer_fields: dict[int, tuple[int, Any]]


@functools.lru_cache(maxsize=64)
def _vector_layout(schema: pa.Schema) -> _Layout | None:
    """The footer fields of ``schema``, taken from an empty file Arrow writes for it;
    None unless the vectors are the expected required list of required floats at
    leaf 1 (the one layout :mod:`vectorpages` encodes)."""
    _, meta, _ = _arrow_file(schema.empty_table(), schema)
    elements = meta.get_value(2)[1]
    if len(elements) < 5 or elements[2].get_value(4) != VECTOR.encode():
        return None
    vector, repeated, leaf = elements[2:5]
    expected = (
        (vector.get_value(3), vector.get_value(5)) == (0, 1)  # required group, one child
        and (repeated.get_value(3), repeated.get_value(5)) == (2, 1)  # repeated group, one child
        and (leaf.get_value(1), leaf.get_value(3), leaf.get_value(5)) == (vectorpages.FLOAT, 0, None)
        and elements[1].get_value(5) is None  # the id is one leaf, so the vectors are leaf 1
    )
    if not expected:
        return None
    path = [e.get_value(4).decode() for e in (vector, repeated, leaf)]
    fields = {k: meta[k] for k in (2, 5, 7) if k in meta}
    return _Layout(path, fields)


def _arrow_file(table: pa.Table, schema: pa.Schema) -> tuple[pa.Buffer, thrift.Struct, int]:
    """``table`` (columns of a segment of ``schema``) as Arrow writes it: the file,
    its decoded footer, and where the footer starts."""
    stream = pa.BufferOutputStream()
    pq.write_table(table, stream, **_arrow_options(schema, table.column_names))
    data = stream.getvalue()
    footer_end = len(data) - 8
    start = footer_end - int.from_bytes(data[footer_end : footer_end + 4], "little")
    meta, _ = thrift.decode(data, start)
    return data, meta, start


def _arrow_options(schema: pa.Schema, columns: list[str]) -> dict[str, Any]:
    """Arrow's writer options for ``columns`` of a segment of ``schema``."""
    return dict(
        compression=COMPRESSION,
        compression_level=COMPRESSION_LEVEL,
        row_group_size=row_group_rows(schema.field(VECTOR).type.list_size),
        use_dictionary=[name for name in columns if name not in RESERVED],
        use_byte_stream_split=[f"{VECTOR}.list.element"] if VECTOR in columns else False,
        write_statistics=[ID],
    )


def _encode_with_arrow(table: pa.Table) -> pa.Buffer:
    """The whole segment through Arrow's writer."""
    stream = pa.BufferOutputStream()
    pq.write_table(table, stream, **_arrow_options(table.schema, table.column_names))
    return stream.getvalue()


def decode_segment(
    data: bytes | pa.Buffer,
    name: str = "segment",
    columns: list[str] | None = None,
    *,
    rows: int | None = None,
    schema: pa.Schema | None = None,
) -> pa.Table:
    """Parse Parquet bytes; a truncated or malformed file is an :class:`IntegrityError`.

    With ``rows`` (the manifest's count), the footer and page headers are checked
    first (:func:`vecdr.format.footer.check_parquet`): the row count, the columns
    and their types (``schema``: the manifest's), and the sizes the file declares,
    so a crafted file is refused before it is decoded.
    """
    try:
        if rows is not None:
            return check_segment(data, name, rows, schema).read(columns=columns)
        return pq.read_table(pa.BufferReader(data), columns=columns)
    except (pa.ArrowException, OSError, ValueError) as exc:  # ArrowException: every error Arrow raises on bad bytes
        raise IntegrityError(f"{name}: not a readable Parquet segment ({_first_line(exc)})", path=name) from exc


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def check_segment(data: bytes | pa.Buffer, name: str, rows: int, schema: pa.Schema | None) -> pq.ParquetFile:
    """Refuse a segment whose footer disagrees with its manifest entry (see
    :func:`decode_segment`); returns it opened with the checked footer."""
    if schema is not None:
        dimension = schema.field(VECTOR).type.list_size if VECTOR in schema.names else 1
        if rows > max_segment_rows(dimension):
            raise IntegrityError(f"{name}: {rows} rows is more than a segment holds", path=name)
    return footer.check_parquet(data, name, rows=rows, schema=schema, what="segment")
