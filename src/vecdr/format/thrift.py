"""The Thrift compact protocol, as far as a Parquet footer and page header need it.

Structs are decoded generically, without a schema: a :class:`Struct` maps each
field id to ``(type, value)``, in the order the fields were read, so a footer that
is decoded, edited and encoded again keeps every field vecdr does not know about.
Lists are ``(element type, [values])``; booleans are ``(BOOL, True/False)``.
Encoding a decoded struct gives back the same bytes.
"""

from __future__ import annotations

import struct
from typing import Any

STOP, BOOL, FALSE, BYTE, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT = range(13)
# On the wire a bool field's value is its type code: BOOL (1) is true, FALSE (2) false.


class Struct(dict[int, tuple[int, Any]]):
    """A Thrift struct: field id -> (type, value)."""

    def get_value(self, field: int, default: Any = None) -> Any:
        found = self.get(field)
        return default if found is None else found[1]


class ThriftError(ValueError):
    """Bytes that are not a well-formed compact-protocol struct."""


def decode(data: bytes | memoryview, pos: int = 0) -> tuple[Struct, int]:
    """Decode one struct at ``pos``; returns it and the position just past it."""
    reader = _Reader(memoryview(data).cast("B"), pos)
    try:
        return reader.struct(), reader.pos
    except IndexError:
        raise ThriftError("truncated Thrift struct") from None


def encode(value: Struct) -> bytes:
    out = bytearray()
    _write_struct(out, value)
    return bytes(out)


class _Reader:
    def __init__(self, data: memoryview, pos: int) -> None:
        self.data = data
        self.pos = pos

    def byte(self) -> int:
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 70:
                raise ThriftError("varint too long")

    def zigzag(self) -> int:
        v = self.varint()
        return (v >> 1) ^ -(v & 1)

    def value(self, typ: int) -> Any:
        if typ == BYTE:
            b = self.byte()
            return b - 256 if b > 127 else b
        if typ in (I16, I32, I64):
            return self.zigzag()
        if typ == DOUBLE:
            (d,) = struct.unpack_from("<d", self.data, self.pos)
            self.pos += 8
            return d
        if typ == BINARY:
            size = self.varint()
            if self.pos + size > len(self.data):
                raise IndexError
            raw = bytes(self.data[self.pos : self.pos + size])
            self.pos += size
            return raw
        if typ in (LIST, SET):
            head = self.byte()
            size, elem = head >> 4, head & 0x0F
            if size == 15:
                size = self.varint()
            if elem in (BOOL, FALSE):
                return (BOOL, [self.byte() == BOOL for _ in range(size)])
            return (elem, [self.value(elem) for _ in range(size)])
        if typ == STRUCT:
            return self.struct()
        raise ThriftError(f"unsupported Thrift type {typ}")

    def struct(self) -> Struct:
        fields = Struct()
        last = 0
        while True:
            head = self.byte()
            if head == STOP:
                return fields
            typ, delta = head & 0x0F, head >> 4
            field = last + delta if delta else self.zigzag()
            if typ in (BOOL, FALSE):
                fields[field] = (BOOL, typ == BOOL)
            else:
                fields[field] = (typ, self.value(typ))
            last = field


def write_varint(out: bytearray, v: int) -> None:
    """Append ``v`` (unsigned) as a ULEB128 varint, the encoding Thrift and Parquet share."""
    while v > 0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _zigzag(out: bytearray, v: int) -> None:
    write_varint(out, (v << 1) ^ (v >> 63) if v < 0 else v << 1)


def _write_value(out: bytearray, typ: int, value: Any) -> None:
    if typ == BYTE:
        out.append(value & 0xFF)
    elif typ in (I16, I32, I64):
        _zigzag(out, value)
    elif typ == DOUBLE:
        out += struct.pack("<d", value)
    elif typ == BINARY:
        raw = value.encode() if isinstance(value, str) else bytes(value)
        write_varint(out, len(raw))
        out += raw
    elif typ in (LIST, SET):
        elem, items = value
        if len(items) < 15:
            out.append(len(items) << 4 | elem)
        else:
            out.append(0xF0 | elem)
            write_varint(out, len(items))
        for item in items:
            if elem == BOOL:
                out.append(BOOL if item else FALSE)
            else:
                _write_value(out, elem, item)
    elif typ == STRUCT:
        _write_struct(out, value)
    else:
        raise ThriftError(f"unsupported Thrift type {typ}")


def _write_struct(out: bytearray, fields: Struct) -> None:
    last = 0
    for field, (typ, value) in fields.items():
        wire = (BOOL if value else FALSE) if typ == BOOL else typ
        if 0 < field - last <= 15:
            out.append((field - last) << 4 | wire)
        else:
            out.append(wire)
            _zigzag(out, field)
        if typ != BOOL:
            _write_value(out, typ, value)
        last = field
    out.append(STOP)
