"""Content hashes (sha256 over whole objects) and per-row change hashes (XXH3-128)."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import xxhash

#: Bytes of a row hash (XXH3-128).
ROW_HASH_BYTES = 16
ROW_HASH = "xxh3_128"


def sha256_hex(data: bytes | memoryview | pa.Buffer) -> str:
    return hashlib.sha256(data).hexdigest()


#: Objects larger than this also record the sha256 of each part of this size, so a
#: reader checks them on every core at once (one sha256 runs on one core).
PART_BYTES = 32 << 20


def part_hashes(data: bytes | memoryview | pa.Buffer, threads: int = 0) -> tuple[str, ...]:
    """The sha256 of each ``PART_BYTES`` slice of ``data``, computed on ``threads`` threads
    (hashlib lets go of the interpreter lock while it hashes); ``()`` for a small object."""
    view = memoryview(data).cast("B") if not isinstance(data, pa.Buffer) else memoryview(data)
    if len(view) <= PART_BYTES:
        return ()
    parts = [view[start : start + PART_BYTES] for start in range(0, len(view), PART_BYTES)]
    workers = threads or max(1, min(len(parts), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vecdr-hash") as pool:
        return tuple(pool.map(lambda part: hashlib.sha256(part).hexdigest(), parts))


def _fixed_width(column: pa.Array) -> pa.Array | None:
    """The column as plain integers or floats of the same width, where it is fixed-width."""
    typ = column.type
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        return column
    if pa.types.is_boolean(typ):
        return column.cast(pa.uint8())
    if pa.types.is_temporal(typ) and not pa.types.is_interval(typ):
        # Temporal values as their stored integers: any value hashes, even years past
        # 9999 or PostgreSQL's ±infinity, which no Python datetime holds.
        return column.cast(pa.int64() if typ.bit_width == 64 else pa.int32())
    return None


def _attribute_bytes(column: pa.ChunkedArray | pa.Array) -> list[bytes]:
    """One byte string per row that changes whenever the row's value changes.

    A NULL flag byte, then the value: fixed-width values by their bytes, strings
    and binaries by their length and bytes, anything else by the length and bytes
    of its repr. A row's encoding never depends on the other rows of its batch.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    valid = (
        np.ones(len(column), dtype=bool) if column.null_count == 0 else column.is_valid().to_numpy(zero_copy_only=False)
    )
    fixed = _fixed_width(column)
    if fixed is not None:
        width = fixed.type.bit_width // 8
        raw = np.frombuffer(fixed.buffers()[1], dtype=np.uint8)
        start = fixed.offset * width
        raw = raw[start : start + len(fixed) * width].reshape(len(fixed), width).copy()
        raw[~valid] = 0  # a NULL's slot holds arbitrary bytes
        rows = np.hstack([valid.astype(np.uint8)[:, None], raw])
        return [row.tobytes() for row in rows]
    typ = column.type
    text = any(
        check(typ)
        for check in (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)
    )
    out = []
    for value in column.to_pylist():
        if value is None:
            out.append(b"\x00")
            continue
        data = (value.encode() if isinstance(value, str) else value) if text else repr(value).encode()
        out.append(b"\x01" + len(data).to_bytes(8, "little") + data)
    return out


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
        extra = [b"".join(parts) for parts in zip(*cols, strict=True)]
        digests = []
        for row, more in zip(vec, extra, strict=True):
            h = xxhash.xxh3_128(row)
            h.update(more)
            digests.append(h.digest())
    else:
        digest = xxhash.xxh3_128_digest
        digests = [digest(row) for row in vec]
    return np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(n, ROW_HASH_BYTES)
