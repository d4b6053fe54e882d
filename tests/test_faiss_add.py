"""The fast IVF add builds the same index FAISS's own add builds."""

from __future__ import annotations

from functools import cache

import faiss
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vecdr.backends.faiss_add import add_vectors
from vecdr.backends.faiss_index import serialize

D = 32


@cache
def _trained_blob(factory: str, metric: int) -> bytes:
    index = faiss.index_factory(D, factory, metric)
    index.train(TRAIN)
    return serialize(index)


def trained(factory: str, metric: int = faiss.METRIC_L2) -> faiss.Index:
    """A fresh copy of a trained, empty index (each kind is trained once per session)."""
    return faiss.deserialize_index(np.frombuffer(_trained_blob(factory, metric), np.uint8))


def data(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


TRAIN = data(2500, 99)  # ≥ 39 × 64 points for the coarse quantizer


@pytest.mark.parametrize(
    "factory",
    ["IVF64,Flat", "IVF64,PQ8np", "IVF64,PQ4np", "OPQ4,IVF16,PQ4np", "PCA16,IVF16,Flat"],
)
@pytest.mark.parametrize("metric", [faiss.METRIC_L2, faiss.METRIC_INNER_PRODUCT], ids=["L2", "IP"])
def test_same_index_as_faiss_add(factory: str, metric: int) -> None:
    ours, theirs = trained(factory, metric), trained(factory, metric)
    x = data(5000, 1)
    ids = np.random.default_rng(2).permutation(10_000)[:5000].astype(np.int64)
    # Two batches, as a restore streams them: lists must grow in input order.
    for part in (slice(0, 3000), slice(3000, None)):
        assert add_vectors(ours, x[part], ids[part])
        theirs.add_with_ids(x[part], ids[part])
    assert ours.ntotal == theirs.ntotal == 5000
    assert serialize(ours) == serialize(theirs)


def test_search_results_match() -> None:
    ours, theirs = trained("IVF64,PQ8np"), trained("IVF64,PQ8np")
    x, ids = data(4000, 3), np.arange(4000, dtype=np.int64) * 7
    assert add_vectors(ours, x, ids)
    theirs.add_with_ids(x, ids)
    faiss.extract_index_ivf(ours).nprobe = faiss.extract_index_ivf(theirs).nprobe = 8
    queries = data(50, 4)
    assert np.array_equal(ours.search(queries, 10)[1], theirs.search(queries, 10)[1])


@pytest.mark.parametrize(
    "make",
    [
        lambda: faiss.IndexFlatL2(D),
        lambda: faiss.IndexHNSWFlat(D, 8),
        lambda: trained("IVF16,SQ8"),
        lambda: trained("IVF16,PQ4x4fs"),
        lambda: trained("IVF16,PQ4x6np"),
        lambda: trained("IVF16_HNSW8,Flat"),
        lambda: faiss.index_factory(D, "IVF16,PQ4np"),  # not trained
    ],
    ids=["flat", "hnsw", "ivf-sq", "ivf-fastscan", "pq-6bit", "hnsw-quantizer", "untrained"],
)
def test_other_indexes_are_left_to_faiss(make) -> None:
    index = make()
    before = index.ntotal
    assert not add_vectors(index, data(10, 5), np.arange(10, dtype=np.int64))
    assert index.ntotal == before


def test_direct_map_is_left_to_faiss() -> None:
    index = trained("IVF16,Flat")
    index.make_direct_map()
    assert not add_vectors(index, data(10, 5), np.arange(10, dtype=np.int64))


def test_empty_batch_adds_nothing() -> None:
    index = trained("IVF16,PQ4np")
    assert add_vectors(index, np.empty((0, D), np.float32), np.empty(0, np.int64))
    assert index.ntotal == 0


@given(n=st.integers(1, 300), seed=st.integers(0, 2**16))
def test_any_batch_matches_faiss(n: int, seed: int) -> None:
    ours, theirs = trained("IVF16,PQ4np"), trained("IVF16,PQ4np")
    x = data(n, seed)
    ids = np.random.default_rng(seed).integers(-(2**40), 2**40, n)
    assert add_vectors(ours, x, ids)
    theirs.add_with_ids(x, ids)
    assert serialize(ours) == serialize(theirs)
