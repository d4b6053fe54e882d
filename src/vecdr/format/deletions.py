"""Deletion vectors: which rows of a segment are no longer live.

Stored as a bitmap (one bit per row, ``numpy.packbits``) compressed with zstd:
a few hundred bytes for a sparse set, never more than n/8 for a dense one.
"""

from __future__ import annotations

import numpy as np
import zstandard

_MAGIC = b"VDV1"


def encode_deletions(dead: np.ndarray) -> bytes:
    """Encode a boolean mask (True = deleted) of a segment's rows."""
    dead = np.asarray(dead, dtype=bool)
    body = len(dead).to_bytes(8, "little") + np.packbits(dead, bitorder="little").tobytes()
    return _MAGIC + zstandard.ZstdCompressor(level=3).compress(body)


def decode_deletions(data: bytes, rows: int) -> np.ndarray:
    """Decode to a boolean mask of ``rows`` rows; ValueError when malformed."""
    if not data.startswith(_MAGIC):
        raise ValueError("not a deletion vector")
    body = zstandard.ZstdDecompressor().decompress(data[len(_MAGIC) :])
    count = int.from_bytes(body[:8], "little")
    if count != rows:
        raise ValueError(f"deletion vector covers {count} rows, segment has {rows}")
    bits = np.frombuffer(body[8:], dtype=np.uint8)
    return np.unpackbits(bits, count=count, bitorder="little").astype(bool)
