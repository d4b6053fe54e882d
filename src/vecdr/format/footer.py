"""Checking a Parquet object from its footer and page headers, before decoding any of it.

A Parquet reader allocates what the file declares: the rows of its footer, the
uncompressed size of each page, the values of each dictionary. A crafted object of a
few hundred kilobytes can declare millions of rows, or a zstd page that expands to
gigabytes. So every reader of repository objects first compares what the object
declares with what the manifest says (row count, columns and types) and with a
memory budget, and decodes only an object that passes; the checks read the footer
and the page headers, never a page.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vecdr.errors import IntegrityError
from vecdr.format import thrift

#: What an object may declare beyond the rows it must hold: this much, plus
#: :data:`RATIO` times its own size (text attributes compress well, vectors do not).
SLACK_BYTES = 16 << 20
RATIO = 64

# parquet.thrift's PageType
_DATA_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2 = 0, 2, 3
_BYTE_ARRAYS = ("BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY")


#: The most bytes the fixed-width columns of one object may need, decoded.
MAX_FIXED_BYTES = 1 << 30


def budget(data_size: int, fixed_bytes: int) -> int:
    """The most bytes an object of ``data_size`` bytes may decode to, given that its
    fixed-width columns need ``fixed_bytes`` (twice that, for levels and headers)."""
    return 2 * fixed_bytes + SLACK_BYTES + RATIO * data_size


def row_width(schema: pa.Schema) -> int:
    """Bytes per row of the fixed-width columns of ``schema`` (vectors, numbers, times)."""
    return sum(_width(field.type) for field in schema)


def _width(typ: pa.DataType) -> int:
    if pa.types.is_fixed_size_list(typ):
        return typ.list_size * _width(typ.value_type)
    try:
        return max(1, typ.bit_width // 8)
    except ValueError:  # variable width: counted by its pages
        return 0


def _problem(name: str, message: str) -> IntegrityError:
    return IntegrityError(f"{name}: {message}; refusing to decode it", path=name)


def check_parquet(
    data: bytes | pa.Buffer,
    name: str,
    *,
    rows: int | None,
    schema: pa.Schema | None,
    what: str = "object",
    max_rows: int = 0,
) -> pq.ParquetFile:
    """Refuse, from its footer and page headers alone, a Parquet object that does not
    hold ``rows`` rows of ``schema`` (names and types; ``None``: any) or would decode
    to more than :func:`budget` allows. ``rows=None``: as many as the footer declares,
    up to ``max_rows``. Returns the opened file for reading.
    """
    size = len(data)
    view = memoryview(data).cast("B") if not isinstance(data, pa.Buffer) else memoryview(data)
    if size < 12 or bytes(view[:4]) != b"PAR1" or bytes(view[-4:]) != b"PAR1":
        raise _problem(name, f"not a Parquet {what}")
    footer_start = size - 8 - int.from_bytes(view[-8:-4], "little")
    if footer_start < 4:
        raise _problem(name, "its footer is longer than the file")
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        meta = parquet.metadata
        found = parquet.schema_arrow
    except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
        raise _problem(name, f"unreadable Parquet footer ({' '.join(str(exc).split())[:200]})") from exc
    if rows is None:
        if not 0 <= meta.num_rows <= max_rows:
            raise _problem(name, f"its footer declares {meta.num_rows} rows; a {what} holds at most {max_rows}")
        rows = meta.num_rows
    if meta.num_rows != rows:
        raise _problem(name, f"its footer declares {meta.num_rows} rows, the manifest says {rows}")
    if schema is not None and _columns(found) != _columns(schema):
        raise _problem(
            name, f"its columns ({_describe(found)}) are not those of this {what} ({_describe(schema)})"
        )
    if meta.num_row_groups > rows + 1:
        raise _problem(name, f"{meta.num_row_groups} row groups for {rows} rows")
    fixed = rows * row_width(found)
    if fixed > MAX_FIXED_BYTES:
        raise _problem(name, f"{rows} rows of its columns need {fixed} bytes, more than a {what} may hold")
    limit = budget(size, fixed)
    declared = expansion = values = counted = 0
    dictionaries: set[str] = set()
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        if group.num_rows < 0:
            raise _problem(name, f"row group {i} declares {group.num_rows} rows")
        counted += group.num_rows
        for j in range(group.num_columns):
            column = group.column(j)
            dictionary = _check_pages(view, name, column, footer_start, group.num_rows)
            declared += column.total_uncompressed_size
            values += column.num_values
            if dictionary and column.physical_type in _BYTE_ARRAYS:
                # Each value may repeat the longest dictionary entry.
                expansion += column.num_values * dictionary
                dictionaries.add(column.path_in_schema)
            if declared > limit or 8 * values > limit:
                raise _problem(name, f"it declares more than {limit} bytes of values for {rows} rows")
    if counted != rows:
        raise _problem(name, f"its row groups hold {counted} rows, the manifest says {rows}")
    if declared + expansion > limit:
        _check_dictionaries(data, name, found, dictionaries, limit - declared)
    return parquet


def _check_pages(view: memoryview, name: str, column: pq.ColumnChunkMetaData, end: int, rows: int) -> int:
    """Walk one column chunk's page headers; returns its dictionary's uncompressed size (0: none)."""
    start = column.data_page_offset
    if column.has_dictionary_page and column.dictionary_page_offset:
        start = min(start, column.dictionary_page_offset)
    stop = start + column.total_compressed_size
    where = f"column {column.path_in_schema!r}"
    if not 4 <= start <= stop <= end or column.total_uncompressed_size < 0 or column.num_values < 0:
        raise _problem(name, f"{where} lies outside the file's data")
    if "." not in column.path_in_schema and column.num_values != rows:
        raise _problem(name, f"{where} declares {column.num_values} values for {rows} rows")
    pos, unpacked, values, dictionary = start, 0, 0, 0
    while pos < stop:
        try:
            header, body = thrift.decode(view, pos)
        except (thrift.ThriftError, RecursionError) as exc:
            raise _problem(name, f"{where}: a damaged page header ({exc})") from None
        page, raw, packed = header.get_value(1), header.get_value(2), header.get_value(3)
        if not all(isinstance(v, int) for v in (page, raw, packed)) or raw < 0 or packed < 0 or body + packed > stop:
            raise _problem(name, f"{where}: a page header declares sizes outside the column")
        unpacked += body - pos + raw
        if unpacked > column.total_uncompressed_size:
            raise _problem(
                name, f"{where}: its pages declare more than its {column.total_uncompressed_size} uncompressed bytes"
            )
        if page == _DICTIONARY_PAGE:
            dictionary = max(dictionary, raw)
        elif page in (_DATA_PAGE, _DATA_PAGE_V2):
            inner = header.get_value(5 if page == _DATA_PAGE else 8)
            count = inner.get_value(1) if isinstance(inner, thrift.Struct) else None
            if not isinstance(count, int) or count < 0:
                raise _problem(name, f"{where}: a data page without a value count")
            values += count
        pos = body + packed
    if values != column.num_values:
        raise _problem(name, f"{where}: its pages hold {values} values, its footer says {column.num_values}")
    return dictionary


def _check_dictionaries(
    data: bytes | pa.Buffer, name: str, schema: pa.Schema, paths: set[str], room: int
) -> None:
    """Dictionary-encoded text that could expand past the budget: read it still encoded
    (the indices and the dictionaries, both bounded above) and count its real size."""
    top = [f.name for f in schema if f.name in paths]
    if len(top) != len(paths):
        raise _problem(name, "nested dictionary-encoded columns that could expand past the memory budget")
    try:
        table = pq.read_table(pa.BufferReader(data), columns=top, read_dictionary=top)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _problem(name, f"unreadable dictionary pages ({' '.join(str(exc).split())[:200]})") from exc
    total = 0
    for column in table.columns:
        for chunk in column.chunks:
            if isinstance(chunk, pa.DictionaryArray) and len(chunk):
                lengths = pc.binary_length(chunk.dictionary).fill_null(0)
                total += pc.sum(pc.take(lengths, chunk.indices)).as_py() or 0
    if total > room:
        raise _problem(name, f"its dictionaries expand to {total} bytes, more than the {room} its size allows")


def _columns(schema: pa.Schema) -> list[tuple[str, pa.DataType]]:
    return [(f.name, f.type) for f in schema]


def _describe(schema: pa.Schema | Sequence[pa.Field]) -> str:
    text = ", ".join(f"{f.name}: {f.type}" for f in schema)
    return text if len(text) <= 200 else text[:197] + "..."
