"""The quality sample: query vectors and what the live index answered, kept with a snapshot.

A row count says a restore has every vector; it does not say the restored index
finds them as well as the live one did. At snapshot time a source can record a few
query vectors and its own index's top-k ids for each (``answers``); a drill runs
the same queries on the restored index and compares. A source that searches
exhaustively (a flat index) records no answers: its answers are the exact top-k of
the snapshot's rows, which a drill computes.

Stored as a small Parquet artifact: ``query`` (FixedSizeList<float32, d>) and
``answer`` (a list of ids per query), with ``k`` and the metric in the metadata.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vecdr.errors import IntegrityError
from vecdr.format.footer import check_parquet
from vecdr.format.segment import vectors_from_arrow, vectors_to_arrow

METRICS = ("L2", "IP", "cosine")


@dataclass(frozen=True, slots=True)
class QualitySample:
    queries: np.ndarray  # (q, d) float32
    answers: list[list[object]] | None  # the live index's top-k ids per query; None: it is exact
    k: int
    metric: str

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, not {self.metric!r}")


def encode_quality(sample: QualitySample, id_type: pa.DataType) -> bytes:
    columns = {"query": vectors_to_arrow(np.ascontiguousarray(sample.queries, dtype=np.float32))}
    if sample.answers is not None:
        columns["answer"] = pa.array(sample.answers, pa.list_(id_type))
    table = pa.table(columns).replace_schema_metadata(
        {"vecdr.k": str(sample.k), "vecdr.metric": sample.metric, "vecdr.exact": str(sample.answers is None)}
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


#: The most queries a stored quality sample may hold; a sample declaring more is
#: refused before it is decoded (see :mod:`vecdr.format.footer`).
MAX_QUERIES = 100_000


def decode_quality(data: bytes, name: str = "quality sample") -> QualitySample:
    parquet = check_parquet(data, name, rows=None, schema=None, what="quality sample", max_rows=MAX_QUERIES)
    try:
        table = parquet.read()
        meta = table.schema.metadata or {}
        k = int(meta[b"vecdr.k"])
        metric = meta[b"vecdr.metric"].decode()
        vector = table.schema.field("query").type
        queries = vectors_from_arrow(table.column("query").combine_chunks(), vector.list_size)
        answers = table.column("answer").to_pylist() if "answer" in table.column_names else None
        return QualitySample(np.array(queries, dtype=np.float32), answers, k, metric)
    except (pa.ArrowInvalid, KeyError, ValueError, AttributeError, OSError) as exc:
        raise IntegrityError(f"{name}: unreadable quality sample ({exc})", path=name) from exc
