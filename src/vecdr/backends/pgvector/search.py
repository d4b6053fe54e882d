"""Nearest-neighbour queries through SQL: what the table's own index answers.

Used at snapshot time to record the live index's answers to a sample of queries,
and in a drill to ask the restored table the same. ``ORDER BY column <op> q LIMIT
k`` is what pgvector serves from an HNSW or IVFFlat index of that operator's class.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg

from vecdr.backends.pgvector.types import quote

#: pgvector's distance operator per metric
OPERATOR = {"L2": "<->", "IP": "<#>", "cosine": "<=>"}


def vector_literal(row: np.ndarray) -> str:
    """A float32 vector as pgvector text; every value round-trips exactly."""
    return "[" + ",".join(repr(float(x)) for x in row) + "]"


def nearest(
    conn: psycopg.Connection[Any], table: str, id_column: str, vector_expr: str, queries: np.ndarray, k: int,
    metric: str,
) -> list[list[Any]]:
    """The ``k`` nearest ids to each query, as the table's index finds them."""
    op = OPERATOR.get(metric, "<->")
    sql = f"SELECT {quote(id_column)} FROM {table} ORDER BY {vector_expr} {op} %s::vector LIMIT {int(k)}"
    # Ids as the snapshot stores them: integers, or text (a uuid's canonical text form).
    return [[r[0] if isinstance(r[0], int | str) else str(r[0]) for r in conn.execute(sql, (vector_literal(q),))]
            for q in queries]


def sample_vectors(conn: psycopg.Connection[Any], table: str, id_column: str, vector_expr: str, n: int,
                   rows: int) -> np.ndarray:
    """``n`` stored vectors as queries: a sample of the table's pages (a few of them, not a scan)."""
    percent = min(100.0, 100.0 * 8 * n / max(rows, 1))
    picked = conn.execute(
        f"SELECT {vector_expr}::real[] FROM {table} TABLESAMPLE SYSTEM ({percent}) REPEATABLE (7) LIMIT {int(n)}"
    ).fetchall()
    if len(picked) < min(n, rows):  # a small table: its pages sampled too few rows
        picked = conn.execute(
            f"SELECT {vector_expr}::real[] FROM {table} ORDER BY md5({quote(id_column)}::text) LIMIT {int(n)}"
        ).fetchall()
    return np.array([r[0] for r in picked], dtype=np.float32)
