"""Checking a Parquet object from its footer and page headers, before decoding any of it.

A Parquet reader allocates what the file declares: the rows of its footer, the
uncompressed size of each page, the values of each dictionary. A crafted object of a
few hundred kilobytes can declare millions of rows, or a zstd page that expands to
gigabytes; and Arrow's reader stops the whole process (``std::terminate``) on some
inconsistent footers. So every reader of repository objects first decodes the footer
itself (:mod:`vecdr.format.thrift`, bounded by the footer's size), compares what it
declares with what the manifest says (row count, columns and their physical types)
and with a memory budget, walks the page headers (never a page), and then hands Arrow
a footer of its own making: the checked fields only, no statistics, page indexes,
bloom filters, external column files or encryption, and the schema vecdr expects.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vecdr.errors import IntegrityError
from vecdr.format import thrift
from vecdr.format.thrift import BINARY, I16, I32, I64, LIST, STRUCT

#: What an object may declare beyond the rows it must hold: this much, plus
#: :data:`RATIO` times its own size (text attributes compress well, vectors do not).
SLACK_BYTES = 16 << 20
RATIO = 64
#: The most bytes the fixed-width columns of one object may need, decoded.
MAX_FIXED_BYTES = 1 << 30

# parquet.thrift's PageType and physical types
_DATA_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2 = 0, 2, 3
_BYTE_ARRAY, _FIXED_LEN_BYTE_ARRAY = 6, 7

# The fields of each footer struct that reading needs, and their Thrift types; every
# other field (statistics, page indexes, bloom filters, encryption) is left out.
_FILE = {1: I32, 2: LIST, 3: I64, 4: LIST, 5: LIST}
_GROUP = {1: LIST, 2: I64, 3: I64, 5: I64, 6: I64, 7: I16}
_CHUNK = {2: I64, 3: STRUCT}
_COLUMN = {1: I32, 2: LIST, 3: LIST, 4: I32, 5: I64, 6: I64, 7: I64, 9: I64, 11: I64}
_RANGES = {I16: 1 << 15, I32: 1 << 31, I64: 1 << 63}
#: A schema element's fields that decide how its values are read (type, length,
#: repetition, name, children, converted type): they must be the ones vecdr writes.
_ESSENTIAL = (1, 2, 3, 4, 5, 6)


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
    schema: pa.Schema | Sequence[pa.Schema] | None,
    what: str = "object",
    max_rows: int = 0,
) -> pq.ParquetFile:
    """Refuse, from its footer and page headers alone, a Parquet object that does not
    hold ``rows`` rows of ``schema`` (one of several, or ``None``: any columns) or
    would decode to more than :func:`budget` allows; ``rows=None``: as many as the
    footer declares, up to ``max_rows``. Returns the file opened with the checked
    footer, to decode it through; never decode the object any other way.
    """
    size = len(data)
    view = memoryview(data).cast("B") if not isinstance(data, pa.Buffer) else memoryview(data)
    if size < 12 or bytes(view[:4]) != b"PAR1" or bytes(view[-4:]) != b"PAR1":
        raise _problem(name, f"not a Parquet {what}")
    footer_start = size - 8 - int.from_bytes(view[-8:-4], "little")
    if footer_start < 4:
        raise _problem(name, "its footer is longer than the file")
    try:
        meta, end = thrift.decode(view, footer_start)
    except (thrift.ThriftError, RecursionError) as exc:
        raise _problem(name, f"a damaged footer ({exc})") from None
    if end != size - 8:
        raise _problem(name, "a damaged footer (it does not end where its length says)")
    footer = _Footer(name, what, meta)

    expected = _match(footer, name, what, schema)
    if rows is None:
        if not 0 <= footer.rows <= max_rows:
            raise _problem(name, f"its footer declares {footer.rows} rows; a {what} holds at most {max_rows}")
        rows = footer.rows
    if footer.rows != rows:
        raise _problem(name, f"its footer declares {footer.rows} rows, the manifest says {rows}")
    if len(footer.groups) > rows + 1:
        raise _problem(name, f"{len(footer.groups)} row groups for {rows} rows")
    arrow = expected if expected is not None else _arrow_schema(footer, name)
    fixed = rows * row_width(arrow)
    if fixed > MAX_FIXED_BYTES:
        raise _problem(name, f"{rows} rows of its columns need {fixed} bytes, more than a {what} may hold")
    limit = budget(size, fixed)

    declared = expansion = values = counted = 0
    dictionaries: set[str] = set()
    for i, group in enumerate(footer.groups):
        group_rows = group.get_value(3)
        if group_rows < 0:
            raise _problem(name, f"row group {i} declares {group_rows} rows")
        counted += group_rows
        columns = group.get_value(1)[1]
        if len(columns) != len(footer.leaves):
            raise _problem(name, f"row group {i} has {len(columns)} column chunks for {len(footer.leaves)} columns")
        for leaf, chunk in zip(footer.leaves, columns, strict=True):
            column = chunk.get_value(3)
            path = ".".join(p.decode("utf-8", "replace") for p in column.get_value(3)[1])
            if path != leaf.path or column.get_value(1) != leaf.type:
                raise _problem(name, f"row group {i}: a column chunk of {path!r} where {leaf.path!r} belongs")
            flat = leaf.path.count(".") == 0
            dictionary = _check_pages(view, name, column, leaf.path, footer_start, group_rows if flat else None)
            declared += column.get_value(6)
            values += column.get_value(5)
            if dictionary and leaf.type in (_BYTE_ARRAY, _FIXED_LEN_BYTE_ARRAY):
                # Each value may repeat the longest dictionary entry.
                expansion += column.get_value(5) * dictionary
                dictionaries.add(leaf.path)
            if declared > limit or 8 * values > limit:
                raise _problem(name, f"it declares more than {limit} bytes of values for {rows} rows")
    if counted != rows:
        raise _problem(name, f"its row groups hold {counted} rows, the manifest says {rows}")

    metadata = footer.sanitized(expected)
    parquet = _open(data, name, metadata)
    if declared + expansion > limit:
        _check_dictionaries(data, name, metadata, arrow, dictionaries, limit - declared)
    return parquet


class _Leaf:
    __slots__ = ("path", "type")

    def __init__(self, path: str, typ: int) -> None:
        self.path, self.type = path, typ


class _Footer:
    """A decoded footer whose every field reading needs has the right Thrift type."""

    def __init__(self, name: str, what: str, meta: thrift.Struct) -> None:
        self.name = name
        _fields(name, meta, _FILE, required=(2, 3, 4))
        self.meta = meta
        self.rows: int = meta.get_value(3)
        self.elements: list[thrift.Struct] = _structs(name, meta[2], "schema")
        self.groups: list[thrift.Struct] = _structs(name, meta[4], "row group")
        for group in self.groups:
            _fields(name, group, _GROUP, required=(1, 3))
            for chunk in _structs(name, group[1], "column chunk"):
                if 1 in chunk or 8 in chunk:
                    raise _problem(name, "a column chunk kept in another file, or encrypted")
                _fields(name, chunk, _CHUNK, required=(3,))
                _fields(name, chunk.get_value(3), _COLUMN, required=(1, 3, 4, 5, 6, 7, 9))
                if chunk.get_value(3).get_value(3)[0] != BINARY:
                    raise _problem(name, "a column chunk's path is not text")
        self.leaves = self._leaves()

    def _leaves(self) -> list[_Leaf]:
        """The schema's leaf columns, in order, from its depth-first element list."""
        leaves: list[_Leaf] = []
        if not self.elements:
            raise _problem(self.name, "an empty schema")
        stack: list[tuple[str, int]] = []  # (path so far, children left) of open groups
        for i, element in enumerate(self.elements):
            label = element.get_value(4)
            children = element.get_value(5)
            if not isinstance(label, bytes) or not (children is None or isinstance(children, int)):
                raise _problem(self.name, f"schema element {i} is malformed")
            if i == 0:
                stack.append(("", children or 0))
                continue
            if not stack:
                raise _problem(self.name, "a schema with elements outside its root")
            prefix = stack[-1][0]
            path = f"{prefix}.{label.decode('utf-8', 'replace')}" if prefix else label.decode("utf-8", "replace")
            stack[-1] = (prefix, stack[-1][1] - 1)
            if children:
                if children < 0 or children > len(self.elements):
                    raise _problem(self.name, f"schema element {i} declares {children} children")
                stack.append((path, children))
            else:
                typ = element.get_value(1)
                if not isinstance(typ, int):
                    raise _problem(self.name, f"schema leaf {path!r} has no physical type")
                leaves.append(_Leaf(path, typ))
            while stack and stack[-1][1] == 0:
                stack.pop()
        if stack:
            raise _problem(self.name, "a schema whose groups lack children")
        return leaves

    def sanitized(self, expected: pa.Schema | None) -> bytes:
        """A footer of the checked fields only; with ``expected``, the schema (elements and
        Arrow schema) written for it, which the file's was checked to match."""
        keep = thrift.Struct({k: self.meta[k] for k in (1, 2, 3, 4, 5) if k in self.meta})
        keep[1] = (I32, 1)
        keep[4] = (LIST, (STRUCT, [
            thrift.Struct({
                **{k: g[k] for k in _GROUP if k in g},
                1: (LIST, (STRUCT, [
                    thrift.Struct({2: c.get(2, (I64, 0)), 3: (STRUCT, _only(c.get_value(3), _COLUMN))})
                    for c in g.get_value(1)[1]
                ])),
            })
            for g in self.groups
        ]))
        if expected is not None:
            written = _written(expected)
            keep[2] = written[2]
            others = [kv for kv in (self.meta.get_value(5) or (STRUCT, []))[1]
                      if isinstance(kv, thrift.Struct) and kv.get_value(1) != b"ARROW:schema"]
            keep[5] = (LIST, (STRUCT, [*written.get_value(5, (STRUCT, []))[1], *others]))
        encoded = thrift.encode(keep)
        return b"PAR1" + encoded + len(encoded).to_bytes(4, "little") + b"PAR1"


def _only(struct: thrift.Struct, fields: dict[int, int]) -> thrift.Struct:
    return thrift.Struct({k: struct[k] for k in fields if k in struct})


def _fields(name: str, struct: Any, fields: dict[int, int], required: tuple[int, ...]) -> None:
    if not isinstance(struct, thrift.Struct):
        raise _problem(name, "a damaged footer (a struct where it has none)")
    for field, typ in fields.items():
        if field not in struct:
            if field in required:
                raise _problem(name, f"a damaged footer (field {field} missing)")
            continue
        got, value = struct[field]
        if got != typ:
            raise _problem(name, f"a damaged footer (field {field} of the wrong type)")
        if typ in _RANGES and not -_RANGES[typ] <= value < _RANGES[typ]:
            raise _problem(name, f"a damaged footer (field {field} out of range)")


def _structs(name: str, field: tuple[int, Any], what: str) -> list[thrift.Struct]:
    elem, items = field[1]
    if elem != STRUCT:
        raise _problem(name, f"a damaged footer ({what} list of the wrong type)")
    return items


@functools.lru_cache(maxsize=64)
def _written(schema: pa.Schema) -> thrift.Struct:
    """The footer Arrow writes for an empty file of ``schema``."""
    sink = pa.BufferOutputStream()
    pq.write_table(schema.empty_table(), sink)
    data = sink.getvalue()
    start = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    return thrift.decode(data, start)[0]


def _essentials(elements: list[thrift.Struct]) -> list[tuple[Any, ...]]:
    return [tuple(e.get_value(k) for k in _ESSENTIAL) for e in elements]


def _match(footer: _Footer, name: str, what: str, schema: pa.Schema | Sequence[pa.Schema] | None) -> pa.Schema | None:
    """The one of ``schema`` whose physical layout the file has (None when any will do)."""
    if schema is None:
        return None
    candidates = [schema] if isinstance(schema, pa.Schema) else list(schema)
    found = _essentials(footer.elements)
    for candidate in candidates:
        if _essentials(_written(candidate).get_value(2)[1]) == found:
            return candidate
    columns = ", ".join(leaf.path for leaf in footer.leaves)
    wanted = ", ".join(f"{f.name}: {f.type}" for f in candidates[0])
    raise _problem(name, f"its columns ({_short(columns)}) are not those of this {what} ({_short(wanted)})")


def _arrow_schema(footer: _Footer, name: str) -> pa.Schema:
    try:
        return pq.read_metadata(pa.BufferReader(footer.sanitized(None))).schema.to_arrow_schema()
    except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
        raise _problem(name, f"an unreadable schema ({_short(str(exc))})") from exc


def _open(data: bytes | pa.Buffer, name: str, metadata: bytes, **options: Any) -> pq.ParquetFile:
    try:
        checked = pq.read_metadata(pa.BufferReader(metadata))
        return pq.ParquetFile(pa.BufferReader(data), metadata=checked, **options)
    except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
        raise _problem(name, f"an unreadable Parquet footer ({_short(str(exc))})") from exc


def _check_pages(view: memoryview, name: str, column: thrift.Struct, where: str, end: int, rows: int | None) -> int:
    """Walk one column chunk's page headers; returns its dictionary's uncompressed size (0: none)."""
    start = column.get_value(9)
    if column.get_value(11):
        start = min(start, column.get_value(11))
    total, unpacked_total, count = column.get_value(7), column.get_value(6), column.get_value(5)
    stop = start + total
    where = f"column {where!r}"
    if not 4 <= start <= stop <= end or unpacked_total < 0 or count < 0:
        raise _problem(name, f"{where} lies outside the file's data")
    if rows is not None and count != rows:
        raise _problem(name, f"{where} declares {count} values for {rows} rows")
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
        if unpacked > unpacked_total:
            raise _problem(name, f"{where}: its pages declare more than its {unpacked_total} uncompressed bytes")
        if page == _DICTIONARY_PAGE:
            dictionary = max(dictionary, raw)
        elif page in (_DATA_PAGE, _DATA_PAGE_V2):
            inner = header.get_value(5 if page == _DATA_PAGE else 8)
            got = inner.get_value(1) if isinstance(inner, thrift.Struct) else None
            if not isinstance(got, int) or got < 0:
                raise _problem(name, f"{where}: a data page without a value count")
            values += got
        pos = body + packed
    if values != count:
        raise _problem(name, f"{where}: its pages hold {values} values, its footer says {count}")
    return dictionary


def _check_dictionaries(
    data: bytes | pa.Buffer, name: str, metadata: bytes, schema: pa.Schema, paths: set[str], room: int
) -> None:
    """Dictionary-encoded text that could expand past the budget: read it still encoded
    (the indices and the dictionaries, both bounded above) and count its real size."""
    top = [f.name for f in schema if f.name in paths]
    if len(top) != len(paths):
        raise _problem(name, "nested dictionary-encoded columns that could expand past the memory budget")
    parquet = _open(data, name, metadata, read_dictionary=top)
    try:
        table = parquet.read(columns=top, use_threads=False)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _problem(name, f"unreadable dictionary pages ({_short(str(exc))})") from exc
    total = 0
    for column in table.columns:
        for chunk in column.chunks:
            if isinstance(chunk, pa.DictionaryArray) and len(chunk):
                lengths = pc.binary_length(chunk.dictionary).fill_null(0)
                total += pc.sum(pc.take(lengths, chunk.indices)).as_py() or 0
    if total > room:
        raise _problem(name, f"its dictionaries expand to {total} bytes, more than the {room} its size allows")


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."
