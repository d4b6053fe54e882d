"""A segment's vector column, written as Parquet pages directly.

Arrow's writer spends most of a snapshot's CPU on this column: it computes a
repetition and a definition level for every float (768 per row), and its zstd runs
at a fixed level. Every vector of a segment has the same length and no nulls, so
the levels are one short pattern repeated, and the floats need only
BYTE_STREAM_SPLIT and zstd. The pages written here are standard Parquet
(DATA_PAGE_V2, RLE levels, BYTE_STREAM_SPLIT values, zstd), read by any reader.

zstd runs with a tiny match table and long minimum matches: of the four byte
streams of float embeddings, three are noise, and the exponent stream compresses
by entropy coding, not matching. Measured on 768-d normalized vectors: 2.5 times
the speed of zstd level 1 at a slightly better ratio (0.836 against 0.842).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import zstandard

from vecdr.format import thrift as t

#: Raw vector bytes per data page (Arrow's default page size).
PAGE_BYTES = 1 << 20

# parquet.thrift enums
FLOAT = 4
RLE = 3
BYTE_STREAM_SPLIT = 9
ZSTD = 6
DATA_PAGE_V2 = 3


def compressor() -> zstandard.ZstdCompressor:
    """A zstd compressor for vector pages (one per thread: they are not thread-safe)."""
    params = zstandard.ZstdCompressionParameters.from_level(1, hash_log=8, min_match=7)
    return zstandard.ZstdCompressor(compression_params=params)


def _run(count: int, value: int) -> bytes:
    """One RLE run of the RLE/bit-packing hybrid, for levels of bit width 1."""
    out = bytearray()
    t.write_varint(out, count << 1)
    out.append(value)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class ColumnChunk:
    """The encoded pages of one row group's vectors, as consecutive byte strings."""

    parts: list[bytes]
    values: int
    uncompressed: int

    @property
    def size(self) -> int:
        return sum(len(p) for p in self.parts)

    def metadata(self, path: list[str], offset: int) -> t.Struct:
        """The footer's ColumnChunk for these pages, written at ``offset`` in the file."""
        meta = t.Struct({
            1: (t.I32, FLOAT),
            2: (t.LIST, (t.I32, [RLE, BYTE_STREAM_SPLIT])),
            3: (t.LIST, (t.BINARY, [p.encode() for p in path])),
            4: (t.I32, ZSTD),
            5: (t.I64, self.values),
            6: (t.I64, self.uncompressed),
            7: (t.I64, self.size),
            9: (t.I64, offset),
        })
        return t.Struct({2: (t.I64, 0), 3: (t.STRUCT, meta)})


def encode_vectors(vectors: np.ndarray, zstd: zstandard.ZstdCompressor) -> ColumnChunk:
    """Encode an ``(n, d)`` float32 matrix as one column chunk of ``FixedSizeList<float32, d>``.

    The list and its elements are required, so each float has definition level 1
    and repetition level 0 (a row's first float) or 1.
    """
    n, d = vectors.shape
    flat = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1)
    page_rows = max(1, PAGE_BYTES // (4 * d))
    row_levels = _run(1, 0) + _run(d - 1, 1) if d > 1 else b""
    split = np.empty((4, page_rows * d), dtype=np.uint8)
    parts, uncompressed = [], 0
    for start in range(0, n, page_rows):
        rows = min(page_rows, n - start)
        values = rows * d
        page = split[:, :values]
        page[...] = flat[start * d : start * d + values].view(np.uint8).reshape(values, 4).T
        raw = page if values == page_rows * d else np.ascontiguousarray(page)
        body = zstd.compress(raw)
        rep = row_levels * rows if d > 1 else _run(rows, 0)
        dfn = _run(values, 1)
        header = t.encode(t.Struct({
            1: (t.I32, DATA_PAGE_V2),
            2: (t.I32, len(rep) + len(dfn) + raw.nbytes),
            3: (t.I32, len(rep) + len(dfn) + len(body)),
            8: (t.STRUCT, t.Struct({
                1: (t.I32, values),
                2: (t.I32, 0),
                3: (t.I32, rows),
                4: (t.I32, BYTE_STREAM_SPLIT),
                5: (t.I32, len(dfn)),
                6: (t.I32, len(rep)),
                7: (t.BOOL, True),
            })),
        }))
        parts += [header + rep + dfn, body]
        uncompressed += len(header) + len(rep) + len(dfn) + raw.nbytes
    return ColumnChunk(parts, n * d, uncompressed)
