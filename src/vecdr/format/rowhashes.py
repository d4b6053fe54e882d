"""Row hashes: a small Parquet sidecar per segment with each row's id and change hash.

Written once with its segment and referenced from every manifest that uses the
segment, so an incremental snapshot writes sidecars only for its new segments.
The next snapshot reads the live rows' hashes from the sidecars to tell added,
changed and unchanged rows apart (diff mode), and to find the row to mark
deleted when an id is overwritten or removed.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vecdr.errors import IntegrityError
from vecdr.format.footer import check_parquet
from vecdr.format.hashing import ROW_HASH, ROW_HASH_BYTES

#: The two layouts of a sidecar (integer or string ids), which a sidecar must have.
_SCHEMAS = [pa.schema([("id", kind), ("hash", pa.binary(ROW_HASH_BYTES))]) for kind in (pa.int64(), pa.string())]


def encode_row_hashes(ids: pa.Array, hashes: np.ndarray) -> bytes:
    """Serialize ids and their ``(n, 16)`` uint8 hashes."""
    n = len(ids)
    column = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(ROW_HASH_BYTES), n, [None, pa.py_buffer(np.ascontiguousarray(hashes).tobytes())]
    )
    table = pa.table({"id": ids, "hash": column}).replace_schema_metadata({"vecdr.row_hash": ROW_HASH})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", use_dictionary=False)
    return sink.getvalue().to_pybytes()


def decode_row_hashes(data: bytes, name: str = "row hashes", rows: int | None = None) -> tuple[pa.Array, np.ndarray]:
    """The ids and ``(n, 16)`` uint8 hashes of a sidecar.

    With ``rows`` (the segment's count in the manifest), its footer is checked first:
    the row count, the columns, and the sizes it declares (see :mod:`vecdr.format.footer`).
    """
    try:
        if rows is not None:
            parquet = check_parquet(data, name, rows=rows, schema=_SCHEMAS, what="row-hash sidecar")
        else:
            parquet = pq.ParquetFile(pa.BufferReader(data))
        table = parquet.read(use_threads=False)  # one per thread already
        algorithm = (table.schema.metadata or {}).get(b"vecdr.row_hash", b"").decode()
        if algorithm != ROW_HASH:
            raise ValueError(f"row hash {algorithm or 'unknown'!r}, this vecdr uses {ROW_HASH!r}")
        hashes = table.column("hash").combine_chunks()
        raw = np.frombuffer(hashes.buffers()[1], dtype=np.uint8)
        start = hashes.offset * ROW_HASH_BYTES
        matrix = raw[start : start + len(hashes) * ROW_HASH_BYTES].reshape(-1, ROW_HASH_BYTES)
        return table.column("id").combine_chunks(), matrix
    except (pa.ArrowException, KeyError, OSError, ValueError, IndexError, TypeError) as exc:
        raise IntegrityError(f"{name}: unreadable row hashes ({' '.join(str(exc).split())[:300]})", path=name) from exc
