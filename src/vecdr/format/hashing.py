"""Content hashes (sha256 over whole objects) and per-row change hashes."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

#: Bytes kept of each row's sha256: 128 bits, collision-free for any real collection.
ROW_HASH_BYTES = 16


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


def row_hashes(ids: pa.Array, vectors: np.ndarray, attributes: pa.Table | None = None) -> np.ndarray:
    """Return an ``(n, 16)`` uint8 array: a truncated sha256 of each row.

    A row is its id, its vector bytes and its attribute values; two rows hash
    equal exactly when all three are equal.
    """
    n = len(ids)
    if n == 0:
        return np.empty((0, ROW_HASH_BYTES), dtype=np.uint8)
    vec = np.ascontiguousarray(vectors, dtype=np.float32).view(np.uint8).reshape(n, -1)
    if pa.types.is_integer(ids.type):
        heads: list[bytes] | np.ndarray = (
            np.asarray(ids.to_numpy(zero_copy_only=False), dtype="<i8").view(np.uint8).reshape(n, 8)
        )
    else:
        heads = [len(b).to_bytes(4, "little") + b for b in (s.encode() for s in ids.to_pylist())]
    sha = hashlib.sha256
    digests: list[bytes] = []
    append = digests.append
    if attributes is not None and attributes.num_columns:
        cols = [_attribute_bytes(attributes.column(i)) for i in range(attributes.num_columns)]
        extra = [b"\x1f".join(parts) for parts in zip(*cols, strict=True)]
        for head, row, more in zip(heads, vec, extra, strict=True):
            h = sha(head)
            h.update(row)
            h.update(more)
            append(h.digest()[:ROW_HASH_BYTES])
    else:
        for head, row in zip(heads, vec, strict=True):
            h = sha(head)
            h.update(row)
            append(h.digest()[:ROW_HASH_BYTES])
    return np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(n, ROW_HASH_BYTES)
