"""The row index: where every live row of a snapshot sits, and its change hash.

One Parquet artifact per snapshot with columns ``id``, ``segment`` (position in the
manifest's segment list), ``row`` (position in that segment) and ``hash`` (16 bytes).
The next snapshot compares rows against it (diff mode) and uses it to find the row
to mark deleted when an id is overwritten or removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vecdr.errors import IntegrityError
from vecdr.format.hashing import ROW_HASH_BYTES


@dataclass(slots=True)
class RowIndex:
    ids: pa.Array
    segment: np.ndarray  # int32
    row: np.ndarray  # int32
    hash: np.ndarray  # (n, 16) uint8

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls, id_type: pa.DataType) -> RowIndex:
        return cls(
            ids=pa.array([], type=id_type),
            segment=np.empty(0, np.int32),
            row=np.empty(0, np.int32),
            hash=np.empty((0, ROW_HASH_BYTES), np.uint8),
        )

    def to_bytes(self) -> bytes:
        hashes = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(ROW_HASH_BYTES), len(self), [None, pa.py_buffer(self.hash.tobytes())]
        )
        table = pa.table(
            {
                "id": self.ids,
                "segment": pa.array(self.segment, pa.int32()),
                "row": pa.array(self.row, pa.int32()),
                "hash": hashes,
            }
        )
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd", use_dictionary=False)
        return sink.getvalue().to_pybytes()

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "row index") -> RowIndex:
        try:
            table = pq.read_table(pa.BufferReader(data))
            hashes = table.column("hash").combine_chunks()
            raw = np.frombuffer(hashes.buffers()[1], dtype=np.uint8)
            start = hashes.offset * ROW_HASH_BYTES
            return cls(
                ids=table.column("id").combine_chunks(),
                segment=table.column("segment").to_numpy().astype(np.int32),
                row=table.column("row").to_numpy().astype(np.int32),
                hash=raw[start : start + len(hashes) * ROW_HASH_BYTES].reshape(-1, ROW_HASH_BYTES),
            )
        except (pa.ArrowInvalid, KeyError, OSError, ValueError) as exc:
            raise IntegrityError(f"{name}: unreadable row index ({exc})", path=name) from exc
