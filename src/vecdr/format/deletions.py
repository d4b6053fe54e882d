"""Deletion vectors: which rows of a segment are no longer live.

One vector is a bitmap (one bit per row, ``numpy.packbits``) compressed with zstd:
a few hundred bytes for a sparse set, never more than n/8 for a dense one. A
snapshot stores every vector it changes in one deletion file, their
concatenation, and each manifest entry names its vector's byte range there: one
object per snapshot, however many segments it touches (Iceberg keeps its
deletion vectors in one Puffin file per commit for the same reason).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import zstandard

_MAGIC = b"VDV1"


def encode_deletions(dead: np.ndarray) -> bytes:
    """Encode a boolean mask (True = deleted) of a segment's rows."""
    dead = np.asarray(dead, dtype=bool)
    body = len(dead).to_bytes(8, "little") + np.packbits(dead, bitorder="little").tobytes()
    return _MAGIC + zstandard.ZstdCompressor(level=3).compress(body)


def decode_deletions(data: bytes | memoryview, rows: int) -> np.ndarray:
    """Decode to a boolean mask of ``rows`` rows; ValueError when malformed."""
    data = bytes(data)
    if not data.startswith(_MAGIC):
        raise ValueError("not a deletion vector")
    # The frame must declare exactly the size its rows need: the decompressor then
    # stops there, so a crafted frame cannot expand into gigabytes of zeros.
    expected = 8 + (rows + 7) // 8
    try:
        declared = zstandard.frame_content_size(data[len(_MAGIC) :])
    except zstandard.ZstdError as exc:
        raise ValueError(f"damaged deletion vector ({exc})") from exc
    if declared != expected:
        raise ValueError(f"deletion vector declares {declared} bytes, {rows} rows need {expected}")
    frame = zstandard.ZstdDecompressor().decompressobj()
    try:
        body = frame.decompress(data[len(_MAGIC) :])
    except zstandard.ZstdError as exc:
        raise ValueError(f"damaged deletion vector ({exc})") from exc
    if not frame.eof or frame.unused_data:
        raise ValueError("damaged deletion vector (truncated, or followed by other bytes)")
    count = int.from_bytes(body[:8], "little")
    if count != rows:
        raise ValueError(f"deletion vector covers {count} rows, segment has {rows}")
    bits = np.frombuffer(body[8:], dtype=np.uint8)
    if len(bits) != (rows + 7) // 8:
        raise ValueError(f"deletion vector holds {len(bits)} bytes of bits for {rows} rows")
    return np.unpackbits(bits, count=count, bitorder="little").astype(bool)


def encode_deletion_file(masks: Sequence[np.ndarray]) -> tuple[bytes, list[tuple[int, int]]]:
    """One file holding the vectors of ``masks``, and the ``(offset, length)`` of each."""
    blobs = [encode_deletions(mask) for mask in masks]
    ends = np.cumsum([0] + [len(b) for b in blobs]).tolist()
    return b"".join(blobs), [(ends[i], ends[i + 1] - ends[i]) for i in range(len(blobs))]


def decode_deletion_slice(data: bytes, offset: int, length: int, rows: int) -> np.ndarray:
    """The vector at ``data[offset:offset + length]``; ValueError when out of range or malformed."""
    if offset < 0 or length <= 0 or offset + length > len(data):
        raise ValueError(f"range {offset}+{length} lies outside the {len(data)}-byte deletion file")
    return decode_deletions(memoryview(data)[offset : offset + length], rows)
