"""Content hashes (sha256 over whole objects) and per-row change hashes (XXH3-128)."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import xxhash

#: Bytes of a row hash (XXH3-128).
ROW_HASH_BYTES = 16
ROW_HASH = "xxh3_128"


def sha256_hex(data: bytes | memoryview | pa.Buffer) -> str:
    return hashlib.sha256(data).hexdigest()


def _attribute_bytes(column: pa.ChunkedArray | pa.Array) -> list[bytes]:
    """One byte string per row that changes whenever the row's value changes."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    typ = column.type
    if (pa.types.is_integer(typ) or pa.types.is_floating(typ)) and column.null_count == 0:
        width = typ.bit_width // 8
        raw = np.frombuffer(column.buffers()[1], dtype=np.uint8)
        start = column.offset * width
        raw = raw[start : start + len(column) * width].reshape(len(column), width)
        return [row.tobytes() for row in raw]
    return [repr(value).encode() for value in column.to_pylist()]


def row_hashes(vectors: np.ndarray, attributes: pa.Table | None = None) -> np.ndarray:
    """Return an ``(n, 16)`` uint8 array: the XXH3-128 hash of each row's content.

    A row's content is its vector bytes and its attribute values. Rows are matched
    by id first, so the id itself is not hashed: two rows of the same id hash equal
    exactly when their contents are equal (bit for bit: -0.0 differs from 0.0).
    XXH3 is not cryptographic; it only has to notice accidental change, at about
    a fifth of sha256's cost, and every object's integrity is sha256-checked anyway.
    """
    n = len(vectors)
    if n == 0:
        return np.empty((0, ROW_HASH_BYTES), dtype=np.uint8)
    vec = np.ascontiguousarray(vectors, dtype=np.float32).view(np.uint8).reshape(n, -1)
    if attributes is not None and attributes.num_columns:
        cols = [_attribute_bytes(attributes.column(i)) for i in range(attributes.num_columns)]
        extra = [b"\x1f".join(parts) for parts in zip(*cols, strict=True)]
        digests = []
        for row, more in zip(vec, extra, strict=True):
            h = xxhash.xxh3_128(row)
            h.update(more)
            digests.append(h.digest())
    else:
        digest = xxhash.xxh3_128_digest
        digests = [digest(row) for row in vec]
    return np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(n, ROW_HASH_BYTES)
