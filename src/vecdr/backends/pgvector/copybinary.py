"""PostgreSQL's binary COPY format, to and from Arrow, bit for bit.

A stream is a header, then one tuple per row (``int16`` field count, then per field
an ``int32`` length, -1 for NULL, and the value's binary form), then ``int16 -1``.
All integers are big-endian. pgvector's ``vector`` is ``int16`` dimension,
``int16`` unused, then the float4 values.

Reading finds every field's offset and length (with numpy when every row has the
same layout, the usual case of an id and a vector, else row by row), then gathers
each column in one pass. Writing packs the same layout with numpy when no value
is NULL and every column has a fixed width, else row by row.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecdr.backends.pgvector.types import ARROW_OF_KIND, PG_EPOCH_DAYS, PG_EPOCH_US, Column
from vecdr.errors import DimensionMismatchError, SchemaError, SourceError
from vecdr.format.segment import vector_type

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
HEADER = SIGNATURE + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")

_NUMPY_OF_KIND = {
    "bool": ">u1",
    "int2": ">i2",
    "int4": ">i4",
    "int8": ">i8",
    "float4": ">u4",  # floats move as their bit patterns
    "float8": ">u8",
    "timestamp": ">i8",
    "timestamptz": ">i8",
    "date": ">i4",
}


#: Bytes of COPY stream buffered before rows are decoded (memory stays near this).
READ_CHUNK_BYTES = 16 << 20


def read_tables(
    chunks: Iterable[bytes | memoryview], reader: CopyReader, chunk_bytes: int = READ_CHUNK_BYTES
) -> Iterator[pa.Table]:
    """Decode a COPY stream given in chunks of any size, about ``chunk_bytes`` at a time."""
    for chunk in chunks:
        reader.feed(chunk)
        if reader.buffered() >= chunk_bytes:
            yield from reader.tables()
    yield from reader.tables(final=True)


class CopyReader:
    """Turn a binary COPY stream, fed in chunks of any size, into Arrow tables.

    ``columns`` are in the stream's order; the first vector column named
    ``vector_column`` becomes the ``vector`` FixedSizeList of ``dimension`` floats.
    """

    def __init__(self, columns: list[Column], names: list[str], dimension: int, vector_column: int) -> None:
        self.columns = columns
        self.names = names
        self.dimension = dimension
        self.vector_column = vector_column
        self._buf = bytearray()
        self._pos = 0
        self._header = False
        self._done = False
        widths = [c.width for c in columns]
        if vector_column >= 0:
            widths[vector_column] = 4 + 4 * dimension
        self._widths = widths
        # The one layout every row has when no value is NULL and all widths are fixed.
        if all(w is not None for w in widths):
            self._field_at = np.cumsum([2] + [4 + int(w) for w in widths])[:-1] + 4  # value offsets
            self._row_bytes = 2 + sum(4 + int(w) for w in widths)
        else:
            self._field_at = None
            self._row_bytes = 0

    def feed(self, chunk: bytes | memoryview) -> None:
        self._buf += chunk

    def buffered(self) -> int:
        return len(self._buf)

    def tables(self, final: bool = False) -> Iterator[pa.Table]:
        """Tables of the complete rows buffered so far (with ``final``, all of them)."""
        if not self._header:
            if len(self._buf) < len(HEADER):
                if final:
                    raise SourceError("the COPY stream ended before its header")
                return
            if bytes(self._buf[: len(SIGNATURE)]) != SIGNATURE:
                raise SourceError("not a binary COPY stream")
            (extension,) = _I32.unpack_from(self._buf, len(SIGNATURE) + 4)
            self._pos = len(HEADER) + extension
            self._header = True
        offsets, lengths, end = self._locate()
        if len(offsets):
            yield self._build(offsets, lengths)
        # A fresh buffer for what is left: the big one goes back to the system now.
        self._buf = bytearray(memoryview(self._buf)[end:])
        self._pos = 0
        if final and not self._done:
            raise SourceError("the COPY stream ended in the middle of a row")

    def _locate(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(offsets, lengths) per complete row and field, and where the rows end."""
        pos, end = self._pos, len(self._buf)
        nfields = len(self.columns)
        found_off: list[np.ndarray] = []
        found_len: list[np.ndarray] = []
        while pos < end and not self._done:
            fast = self._fixed_rows(pos, end)
            if fast is not None:
                off, ln, pos = fast
                found_off.append(off)
                found_len.append(ln)
                continue
            row = self._one_row(pos, end, nfields)
            if row is None:
                break
            if row is TRAILER:
                self._done = True
                pos += 2
                break
            off, ln, pos = row
            found_off.append(off[None, :])
            found_len.append(ln[None, :])
        if not found_off:
            return np.empty((0, nfields), np.int64), np.empty((0, nfields), np.int64), pos
        return np.concatenate(found_off), np.concatenate(found_len), pos

    def _fixed_rows(self, pos: int, end: int) -> tuple[np.ndarray, np.ndarray, int] | None:
        """The longest run of rows from ``pos`` that have the common fixed layout."""
        if self._field_at is None:
            return None
        count = (end - pos) // self._row_bytes
        if count < 2:
            return None
        raw = np.frombuffer(self._buf, np.uint8, count * self._row_bytes, pos).reshape(count, self._row_bytes)
        ok = raw[:, :2].copy().view(">i2")[:, 0] == len(self.columns)
        for at, width in zip(self._field_at, self._widths, strict=True):
            ok &= raw[:, at - 4 : at].copy().view(">i4")[:, 0] == width
        good = count if ok.all() else int(np.argmin(ok))
        if good == 0:
            return None
        starts = pos + np.arange(good, dtype=np.int64) * self._row_bytes
        offsets = starts[:, None] + self._field_at[None, :]
        lengths = np.broadcast_to(np.array(self._widths, np.int64), offsets.shape)
        return offsets, lengths, pos + good * self._row_bytes

    def _one_row(self, pos: int, end: int, nfields: int) -> tuple[np.ndarray, np.ndarray, int] | bytes | None:
        buf = self._buf
        if pos + 2 > end:
            return None
        (count,) = _I16.unpack_from(buf, pos)
        if count == -1:
            return TRAILER
        if count != nfields:
            raise SourceError(f"a COPY row has {count} fields, expected {nfields}")
        off = np.empty(nfields, np.int64)
        ln = np.empty(nfields, np.int64)
        p = pos + 2
        for i in range(nfields):
            if p + 4 > end:
                return None
            (length,) = _I32.unpack_from(buf, p)
            p += 4
            off[i], ln[i] = p, length
            if length > 0:
                p += length
        if p > end:
            return None
        return off, ln, p

    def _build(self, offsets: np.ndarray, lengths: np.ndarray) -> pa.Table:
        arrays = []
        for i, column in enumerate(self.columns):
            if i == self.vector_column:
                arrays.append(self._vectors(offsets[:, i], lengths[:, i], column))
            else:
                arrays.append(_decode(self._buf, offsets[:, i], lengths[:, i], column))
        return pa.Table.from_arrays(arrays, names=self.names)

    def _vectors(self, offsets: np.ndarray, lengths: np.ndarray, column: Column) -> pa.Array:
        d = self.dimension
        if (lengths < 0).any():
            nulls = int((lengths < 0).sum())
            raise SourceError(f"column {column.name!r} is NULL in {nulls} rows: every row needs a vector")
        if (lengths != 4 + 4 * d).any():
            bad = int(lengths[lengths != 4 + 4 * d][0])
            raise DimensionMismatchError(
                f"column {column.name!r} holds a {(bad - 4) // 4}-dimensional vector among {d}-dimensional ones"
            )
        raw = _gather(self._buf, offsets + 4, 4 * d)
        if not raw.flags.writeable:
            raw = raw.copy()
        bits = raw.view(np.uint32)
        if sys.byteorder == "little":
            bits.byteswap(inplace=True)  # big-endian to native, in the copy _gather made
        values = pa.array(bits.view(np.float32).reshape(-1))
        return pa.FixedSizeListArray.from_arrays(values, type=vector_type(d))


def _gather(buf: bytearray, offsets: np.ndarray, width: int) -> np.ndarray:
    """The ``width`` bytes at each offset, as an ``(n, width)`` uint8 array."""
    n = len(offsets)
    if n == 0 or width == 0:
        return np.zeros((n, width), np.uint8)
    whole = np.frombuffer(buf, np.uint8)
    if n > 1:
        steps = np.diff(offsets)
        if (steps == steps[0]).all() and steps[0] >= width:
            view = np.lib.stride_tricks.as_strided(whole[offsets[0] :], (n, width), (int(steps[0]), 1))
            return view.copy()
    mv = memoryview(buf)
    return np.frombuffer(b"".join([mv[o : o + width] for o in offsets.tolist()]), np.uint8).reshape(n, width)


def _decode(buf: bytearray, offsets: np.ndarray, lengths: np.ndarray, column: Column) -> pa.Array:
    kind = column.kind
    valid = lengths >= 0
    mask = None if valid.all() else ~valid
    if kind in _NUMPY_OF_KIND:
        width = int(_NUMPY_OF_KIND[kind][2:])
        if (lengths[valid] != width).any():
            raise SourceError(f"column {column.name!r}: unexpected value size for {column.pg_type}")
        safe = np.where(valid, offsets, offsets[valid][0] if valid.any() else 0)
        raw = _gather(buf, safe, width) if valid.any() else np.zeros((len(offsets), width), np.uint8)
        values = raw.reshape(-1).view(_NUMPY_OF_KIND[kind]).astype(_NUMPY_OF_KIND[kind].replace(">", "<"))
        if kind == "bool":
            return pa.array(values.astype(bool), mask=mask)
        if kind in ("float4", "float8"):
            values = values.view(np.float32 if kind == "float4" else np.float64)
        elif kind in ("timestamp", "timestamptz"):
            values = values + np.int64(PG_EPOCH_US)  # wraps like PostgreSQL's infinities do back
        elif kind == "date":
            values = values + np.int32(PG_EPOCH_DAYS)
        return pa.array(values, type=ARROW_OF_KIND[kind], mask=mask)
    skip = 1 if kind == "jsonb" else 0  # jsonb's binary form is a version byte, then text
    if kind == "vector":
        return _vector_list(buf, offsets, lengths, column)
    starts = offsets + skip
    sizes = np.where(valid, lengths - skip, 0)
    mv = memoryview(buf)
    data = b"".join([mv[o : o + s] for o, s in zip(starts.tolist(), sizes.tolist(), strict=True) if s])
    value_offsets = np.zeros(len(offsets) + 1, np.int32)
    np.cumsum(sizes, out=value_offsets[1:])
    validity = None if mask is None else pa.array(valid).buffers()[1]  # packed bits
    typ = ARROW_OF_KIND[kind]
    array = pa.Array.from_buffers(
        typ, len(offsets), [validity, pa.py_buffer(value_offsets), pa.py_buffer(data)], null_count=int((~valid).sum())
    )
    if typ == pa.string():
        array.validate(full=True)
    return array


def _vector_list(buf: bytearray, offsets: np.ndarray, lengths: np.ndarray, column: Column) -> pa.Array:
    """A vector attribute: list<float32>, NULL where the value is NULL."""
    valid = lengths >= 0
    sizes = np.where(valid, lengths - 4, 0)
    mv = memoryview(buf)
    data = b"".join([mv[o + 4 : o + 4 + s] for o, s in zip(offsets.tolist(), sizes.tolist(), strict=True) if s])
    floats = np.frombuffer(data, ">u4").astype("<u4").view(np.float32)
    list_offsets = np.zeros(len(offsets) + 1, np.int32)
    np.cumsum(sizes // 4, out=list_offsets[1:])
    return pa.ListArray.from_arrays(
        pa.array(list_offsets), pa.array(floats), mask=None if valid.all() else pa.array(~valid, pa.bool_())
    ).cast(ARROW_OF_KIND["vector"])


# --- writing ---------------------------------------------------------------------


def encode_rows(arrays: list[pa.Array], columns: list[Column], header: bool) -> bytes:
    """Binary COPY bytes for rows given column by column, in ``columns`` order."""
    n = len(arrays[0]) if arrays else 0
    head = HEADER if header else b""
    fixed = all(c.kind == "vector" or c.kind in _NUMPY_OF_KIND for c in columns)
    if fixed and all(a.null_count == 0 for a in arrays):
        return head + _encode_fixed(arrays, columns, n)
    return head + _encode_rowwise(arrays, columns, n)


def _vector_matrix(array: pa.Array) -> np.ndarray:
    if pa.types.is_fixed_size_list(array.type):
        return array.flatten().to_numpy(zero_copy_only=False).reshape(len(array), array.type.list_size)
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != lengths[0]).any():
        raise DimensionMismatchError("vectors of different dimensions in one column")
    d = int(lengths[0]) if len(lengths) else 0
    return array.flatten().to_numpy(zero_copy_only=False).reshape(len(array), d)


def _numeric(array: pa.Array, column: Column) -> np.ndarray:
    kind = column.kind
    if kind in ("timestamp", "timestamptz"):
        values = array.cast(pa.timestamp("us", tz=array.type.tz)).to_numpy(zero_copy_only=False).view(np.int64)
        return values - np.int64(PG_EPOCH_US)
    if kind == "date":
        # Through int32: numpy's datetime64[D] is 8 bytes a day, not date32's 4.
        days = array.cast(pa.date32()).cast(pa.int32()).to_numpy(zero_copy_only=False)
        return days - np.int32(PG_EPOCH_DAYS)
    target = ARROW_OF_KIND[kind]
    values = array.cast(target).to_numpy(zero_copy_only=False)
    if kind == "float4":
        return values.view(np.uint32)
    if kind == "float8":
        return values.view(np.uint64)
    return values.astype(np.uint8) if kind == "bool" else values


def _encode_fixed(arrays: list[pa.Array], columns: list[Column], n: int) -> bytes:
    fields: list[tuple[str, object] | tuple[str, object, tuple[int, ...]]] = [("count", ">i2")]
    values: list[tuple[str, np.ndarray, int]] = []
    for i, (array, column) in enumerate(zip(arrays, columns, strict=True)):
        fields.append((f"len{i}", ">i4"))
        if column.kind == "vector":
            matrix = np.ascontiguousarray(_vector_matrix(array), dtype=np.float32)
            d = matrix.shape[1]
            fields += [(f"dim{i}", ">i2"), (f"pad{i}", ">i2"), (f"v{i}", ">u4", (d,))]
            values.append((f"v{i}", matrix.view(np.uint32), 4 + 4 * d))
            values.append((f"dim{i}", np.full(n, d, np.int16), -1))
        else:
            fields.append((f"v{i}", _NUMPY_OF_KIND[column.kind]))
            values.append((f"v{i}", _numeric(array, column), int(_NUMPY_OF_KIND[column.kind][2:])))
    rows = np.zeros(n, dtype=np.dtype(fields))
    rows["count"] = len(columns)
    for name, data, width in values:
        rows[name] = data
        if width >= 0:
            rows[f"len{name[1:]}"] = width
    return rows.tobytes()


def _encode_rowwise(arrays: list[pa.Array], columns: list[Column], n: int) -> bytes:
    per_column = [_values_as_bytes(a, c) for a, c in zip(arrays, columns, strict=True)]
    count = _I16.pack(len(columns))
    null = _I32.pack(-1)
    out = bytearray()
    for row in range(n):
        out += count
        for values in per_column:
            value = values[row]
            if value is None:
                out += null
            else:
                out += _I32.pack(len(value))
                out += value
    return bytes(out)


def _values_as_bytes(array: pa.Array, column: Column) -> list[bytes | None]:
    valid = np.ones(len(array), bool) if array.null_count == 0 else array.is_valid().to_numpy(zero_copy_only=False)
    kind = column.kind
    if kind in _NUMPY_OF_KIND:
        zero = pa.scalar(False) if kind == "bool" else pa.scalar(0, array.type)  # NULLs' slots, never sent
        filled = array.fill_null(zero) if array.null_count else array
        if kind in ("timestamp", "timestamptz", "date") and array.null_count:
            filled = array.cast(pa.int64() if kind != "date" else pa.int32()).fill_null(0).cast(array.type)
        raw = _numeric(filled, column).astype(_NUMPY_OF_KIND[kind])
        width = raw.itemsize
        blob = raw.tobytes()
        return [blob[i * width : (i + 1) * width] if valid[i] else None for i in range(len(array))]
    if kind == "vector":
        out: list[bytes | None] = []
        for value, ok in zip(array.to_pylist(), valid.tolist(), strict=True):
            if not ok:
                out.append(None)
                continue
            floats = np.asarray(value, np.float32)
            out.append(struct.pack(">hh", len(floats), 0) + floats.view(np.uint32).astype(">u4").tobytes())
        return out
    if kind == "bytea":
        return [bytes(v) if v is not None else None for v in array.to_pylist()]
    if kind in ("text", "cast", "jsonb"):
        prefix = b"\x01" if kind == "jsonb" else b""
        return [prefix + v.encode() if v is not None else None for v in array.cast(pa.string()).to_pylist()]
    raise SchemaError(f"cannot write column {column.name!r} of kind {kind}")
