"""Judging a restored index: exact top-k over a snapshot's rows, and recall.

The exact answers are computed by brute force, streaming the snapshot's live rows
segment by segment (memory: one segment, a bounded block of scores and a (queries, k) running best), with the
collection's metric: L2 distance, inner product, or cosine.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from vecdr.engines.segments import iter_live
from vecdr.format.manifest import Manifest
from vecdr.format.segment import vectors_from_arrow
from vecdr.repository import Repository

#: (query, row) scores held at once: 2^22 float64, 32 MiB.
_SCORES_AT_ONCE = 1 << 22


def _scores(queries: np.ndarray, vectors: np.ndarray, metric: str) -> np.ndarray:
    """Lower is better, for every (query, row) pair; in float64, where even float32's
    extremes square without overflowing."""
    vectors = vectors.astype(np.float64)
    dots = queries @ vectors.T
    if metric == "IP":
        return -dots
    if metric == "cosine":
        norms = np.linalg.norm(vectors, axis=1)
        norms[norms == 0] = 1
        return -dots / norms[None, :]
    # L2: |q|^2 is the same for a query's every row, so |x|^2 - 2 q.x ranks alike.
    return np.einsum("ij,ij->i", vectors, vectors)[None, :] - 2 * dots


def exact_top_k(repo: Repository, manifest: Manifest, queries: np.ndarray, k: int, metric: str) -> list[list[object]]:
    """The ``k`` nearest live rows' ids for each query, best first."""
    q = np.ascontiguousarray(queries, dtype=np.float64)
    if metric == "cosine":
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
    best_scores = np.empty((len(q), 0), np.float64)
    best_idx = np.empty((len(q), 0), np.int64)
    seen: list[pa.Array] = []
    offset = 0
    # Rows are scored a block at a time, so memory is bounded whatever the queries times rows.
    step = max(1, _SCORES_AT_ONCE // max(len(q), 1))
    for table in iter_live(repo, manifest, columns=["id", "vector"]):
        if not table.num_rows:
            continue
        all_vectors = vectors_from_arrow(table.column("vector"), manifest.dimension)
        for start in range(0, table.num_rows, step):
            vectors = all_vectors[start:start + step]
            scores = np.concatenate([best_scores, _scores(q, vectors, metric)], axis=1)
            first = offset + start
            idx = np.concatenate([best_idx, np.broadcast_to(np.arange(first, first + len(vectors)),
                                                            (len(q), len(vectors)))], axis=1)
            keep = min(k, scores.shape[1])
            part = np.argpartition(scores, keep - 1, axis=1)[:, :keep]
            best_scores = np.take_along_axis(scores, part, axis=1)
            best_idx = np.take_along_axis(idx, part, axis=1)
        seen.append(table.column("id").combine_chunks())
        offset += table.num_rows
    if not seen:
        return [[] for _ in range(len(q))]
    order = np.argsort(best_scores, axis=1, kind="stable")
    best_idx = np.take_along_axis(best_idx, order, axis=1)
    all_ids = pa.concat_arrays(seen)
    return [all_ids.take(pa.array(row)).to_pylist() for row in best_idx]


def recall(found: list[list[object]], truth: list[list[object]], k: int) -> float:
    """Share of the true top-k found, over all queries."""
    if not truth:
        return 1.0
    hits = sum(len(set(f[:k]) & set(t[:k])) for f, t in zip(found, truth, strict=True))
    wanted = sum(min(k, len(t)) for t in truth)
    return hits / wanted if wanted else 1.0
