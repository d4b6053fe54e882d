"""pgvector against a real PostgreSQL 16 with pgvector (pgserver): the conformance
suite, then what only PostgreSQL has: column types and indexes, point-in-time
snapshots under concurrent writers, the trigger-fed change log, atomic restores,
cross-engine restores, bad input and secrets."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import vecdr
from vecdr.backends.base import Source, Target
from vecdr.backends.pgvector import PgvectorSource, disable_tracking, enable_tracking, tracking
from vecdr.backends.registry import open_source, open_target
from vecdr.errors import (
    BackendConnectionError,
    BackendError,
    CommitError,
    DimensionMismatchError,
    DuplicateIdError,
    NotFoundInBackendError,
    SchemaError,
    TargetError,
    TargetExistsError,
    UsageError,
    VecdrError,
)
from vecdr.format.segment import vectors_to_arrow
from vecdr.testing.backends import (
    BackendTests,
    MakeSource,
    MakeTarget,
    Rows,
    assert_same_rows,
    faiss_rows,
    make_rows,
)

D = 16
VECDR = shutil.which("vecdr", path=str(Path(sys.executable).parent)) or shutil.which("vecdr")


# -- reading and writing tables without vecdr ------------------------------------------


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def vector_text(vector: np.ndarray) -> str:
    # repr of the float64 that holds a float32 exactly: PostgreSQL parses it back to the same float32.
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def vector_bits(blob: bytes | None) -> np.ndarray | None:
    """pgvector's own binary form (``vector_send``): int16 dimension, int16 unused, big-endian float4s."""
    if blob is None:
        return None
    dimension = int.from_bytes(blob[:2], "big")
    return np.frombuffer(blob, ">f4", dimension, 4).astype(np.float32)


def load_table(conn: Any, table: str, ids: Any, vectors: np.ndarray, **columns: str) -> None:
    """A fresh ``table (id bigint PRIMARY KEY, embedding vector(d), …columns)`` holding the rows."""
    extra = "".join(f", {q(name)} {type_}" for name, type_ in columns.items())
    conn.execute(f"DROP TABLE IF EXISTS {q(table)}")
    conn.execute(f"CREATE TABLE {q(table)} (id bigint PRIMARY KEY, embedding vector({vectors.shape[1]}){extra})")
    with conn.cursor().copy(f"COPY {q(table)} (id, embedding) FROM STDIN") as copy:
        for i, v in zip(np.asarray(ids).tolist(), vectors, strict=True):
            copy.write_row((i, vector_text(v)))


def table_rows(conn: Any, table: str, id: str = "id", vector: str = "embedding", dimension: int = D) -> Rows:
    """(ids, vectors) of a table, read with pgvector's send function, not vecdr."""
    rows = conn.execute(f"SELECT {q(id)}, vector_send({q(vector)}) FROM {q(table)} ORDER BY 1").fetchall()
    ids = np.array([r[0] for r in rows], np.int64)
    vectors = np.array([vector_bits(r[1]) for r in rows], np.float32).reshape(len(rows), dimension)
    return ids, vectors


def row_texts(conn: Any, table: str, order: str = "id") -> list[str]:
    """Every row as PostgreSQL prints it (all columns, in table order), ordered by ``order``."""
    return [r[0] for r in conn.execute(f"SELECT t::text FROM {q(table)} t ORDER BY {q(order)}")]


def vectors_of(conn: Any, table: str, column: str, order: str = "id") -> list[bytes | None]:
    return [r[0] for r in conn.execute(f"SELECT vector_send({q(column)}) FROM {q(table)} ORDER BY {q(order)}")]


def columns_of(conn: Any, table: str) -> list[tuple[str, str, bool]]:
    """(name, type as format_type prints it, NOT NULL) per column, in table order."""
    return conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (q(table),),
    ).fetchall()


def indexes_of(conn: Any, table: str) -> dict[str, tuple[Any, ...]]:
    """index name -> (method, columns, operator classes, sorted WITH options, unique, primary,
    on an expression, key columns, per-column flags such as DESC and NULLS FIRST)."""
    rows = conn.execute(
        "SELECT i.relname, am.amname, "
        "  ARRAY(SELECT a.attname::text FROM unnest(x.indkey) WITH ORDINALITY k(n, o) "
        "        JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n ORDER BY k.o), "
        "  ARRAY(SELECT c.opcname::text FROM unnest(x.indclass) WITH ORDINALITY k(n, o) "
        "        JOIN pg_opclass c ON c.oid = k.n ORDER BY k.o), "
        "  coalesce(i.reloptions, '{}'), x.indisunique, x.indisprimary, x.indexprs IS NOT NULL, "
        "  x.indnkeyatts, x.indoption::int2[] "
        "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am am ON am.oid = i.relam "
        "WHERE x.indrelid = %s::regclass",
        (q(table),),
    ).fetchall()
    return {r[0]: (r[1], r[2], r[3], sorted(r[4]), *r[5:]) for r in rows}


def staging_tables(conn: Any) -> list[str]:
    """Relations named like a restore's staging table (``<table>_vecdr_<8 hex>``) or its indexes."""
    return [r[0] for r in conn.execute("SELECT relname FROM pg_class WHERE relname ~ '_vecdr_[0-9a-f]{8}'")]


def log_count(conn: Any, table: str = "items") -> int:
    return int(conn.execute(f"SELECT count(*) FROM {q(table + '_vecdr_log')}").fetchone()[0])


# -- the conformance suite ---------------------------------------------------------------


class TestPgvectorBackend(BackendTests):
    """``postgresql://…?table=items`` in, new tables out."""

    dimension = D
    rows = 400

    @pytest.fixture
    def make_source(self, pg: Any) -> MakeSource:
        def make(ids: np.ndarray, vectors: np.ndarray) -> Source:
            with pg.connect() as conn:
                load_table(conn, "items", ids, vectors.reshape(-1, self.dimension))
            return open_source(pg.uri("items"))

        return make

    @pytest.fixture
    def make_target(self, pg: Any) -> MakeTarget:
        def make(folder: Path) -> tuple[Target, Callable[[], Rows]]:
            table = "r_" + folder.name

            def read() -> Rows:
                with pg.connect() as conn:
                    return table_rows(conn, table)

            return open_target(pg.uri(table)), read

        return make


class TestPgvectorBackendNamedColumns(BackendTests):
    """``pgvector://…&id=key&vector=emb`` on a table without a primary key, with attribute columns."""

    dimension = 8
    rows = 300

    @pytest.fixture
    def make_source(self, pg: Any) -> MakeSource:
        def make(ids: np.ndarray, vectors: np.ndarray) -> Source:
            with pg.connect() as conn:
                conn.execute("DROP TABLE IF EXISTS docs")
                conn.execute("CREATE TABLE docs (note text, emb vector(8), key bigint NOT NULL, other vector(8))")
                with conn.cursor().copy("COPY docs (key, emb, note) FROM STDIN") as copy:
                    for i, v in zip(ids.tolist(), vectors.reshape(-1, 8), strict=True):
                        copy.write_row((i, vector_text(v), "fixed note"))
            return open_source(pg.uri("docs", id="key", vector="emb").replace("postgresql:", "pgvector:"))

        return make

    @pytest.fixture
    def make_target(self, pg: Any) -> MakeTarget:
        def make(folder: Path) -> tuple[Target, Callable[[], Rows]]:
            table = "r_" + folder.name

            def read() -> Rows:
                with pg.connect() as conn:
                    return table_rows(conn, table, id="key", vector="emb", dimension=8)

            return open_target(pg.uri(table).replace("postgresql:", "pgvector:")), read

        return make


# -- every type, every index, other names, other databases ---------------------------------


RICH_TABLE = """CREATE TABLE {table} (
    title text NOT NULL,
    id {id_type} PRIMARY KEY,
    name varchar(40),
    doc jsonb,
    raw json,
    blob bytea,
    flag boolean,
    n integer,
    x double precision,
    r real,
    s smallint,
    big bigint,
    ts timestamp,
    tstz timestamptz,
    day date,
    price numeric(10,2),
    u uuid,
    embedding vector(8) NOT NULL,
    other vector(4),
    tags text[]
)"""
RICH_INSERT = (
    "INSERT INTO {table} (title, id, name, doc, raw, blob, flag, n, x, r, s, big, ts, tstz, day, price, u, "
    "embedding, other, tags) VALUES (%s, %s::{id_type}, %s, %s::jsonb, %s::json, %s::bytea, %s::boolean, "
    "%s::integer, %s::float8, %s::real, %s::smallint, %s::bigint, %s::timestamp, %s::timestamptz, %s::date, "
    "%s::numeric, %s::uuid, %s::vector, %s::vector, %s::text[])"
)


def rich_id(id_type: str, i: int) -> str:
    if id_type == "text":
        return f"doc-{i:03d}-é✓"
    if id_type == "uuid":
        return str(uuid.UUID(int=(i + 1) * 0x9E3779B97F4A7C15))
    return str(i * 3 - 40)  # negative, zero and positive ids that fit a smallint


def rich_rows(id_type: str, n: int = 40) -> list[tuple[str | None, ...]]:
    """``n`` rows with NULLs interleaved in every attribute, then rows of edge values, then a row of NULLs."""
    _, vectors = make_rows(n + 3, 8, seed=31)
    rng = np.random.default_rng(32)
    others = rng.standard_normal((n + 3, 4)).astype(np.float32)
    rows: list[tuple[str | None, ...]] = []
    for i in range(n):
        rows.append(
            (
                f"title {i} é✓",
                rich_id(id_type, i),
                None if i % 5 == 0 else f"name {i}",
                None if i % 6 == 1 else json.dumps({"i": i, "tags": ["a", "ü"], "f": 1.5}),
                None if i % 7 == 2 else f'{{"z" :  {i},  "z": 2}}',  # json keeps spacing and duplicate keys
                None if i % 4 == 3 else "\\x" + bytes([i, 0, 255, i]).hex(),
                None if i % 3 == 0 else ("t" if i % 2 else "f"),
                None if i % 8 == 4 else str(i * 7919 - 100000),
                None if i % 9 == 5 else repr(i / 3),
                None if i % 10 == 6 else repr(float(np.float32(i / 7))),
                None if i % 11 == 7 else str(i - 20),
                None if i % 12 == 8 else str(i * 10**15),
                None if i % 13 == 9 else f"2024-01-{1 + i % 28:02d} 03:04:05.{i:06d}",
                None if i % 14 == 10 else f"1999-12-31 23:59:{i % 60:02d}.{i:06d}+05:30",
                None if i % 15 == 11 else f"{1950 + i}-03-{1 + i % 28:02d}",
                None if i % 16 == 12 else f"{i * 12.34 - 100:.2f}",
                None if i % 17 == 13 else str(uuid.UUID(int=i * 7919 + 1)),
                vector_text(vectors[i]),
                None if i % 5 == 2 else vector_text(others[i]),
                None if i % 6 == 3 else '{a,"b c",NULL}',
            )
        )
    rows.append(
        (
            'line one\nline two\t\\ "quoted" \x01',
            rich_id(id_type, n),
            "",
            '{"k": "ü", "big": 1e400, "neg": -0}',
            "[]",
            "\\x",
            "t",
            "-2147483648",
            "NaN",
            "-0",
            "-32768",
            "-9223372036854775808",
            "0001-01-01 00:00:00",
            "9999-12-31 23:59:59.999999+00",
            "0001-01-01",
            "NaN",
            "00000000-0000-0000-0000-000000000000",
            vector_text(vectors[n]),
            vector_text(np.full(4, -0.0, np.float32)),
            "{}",
        )
    )
    rows.append(
        (
            "",
            rich_id(id_type, n + 1),
            "x" * 40,
            "null",
            "null",
            "\\x00",
            "f",
            "2147483647",
            "-Infinity",
            "Infinity",
            "32767",
            "9223372036854775807",
            "9999-12-31 23:59:59.999999",
            "0001-01-01 00:00:00+00",
            "9999-12-31",
            "-99999999.99",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
            vector_text(vectors[n + 1]),
            vector_text(np.full(4, np.finfo(np.float32).smallest_subnormal, np.float32)),
            '{"{}"}',
        )
    )
    nulls: list[str | None] = [None] * 20
    nulls[0], nulls[1], nulls[17] = "all nulls", rich_id(id_type, n + 2), vector_text(vectors[n + 2])
    rows.append(tuple(nulls))
    return rows


def create_rich(conn: Any, table: str, id_type: str) -> None:
    conn.execute(RICH_TABLE.format(table=q(table), id_type=id_type))
    with conn.cursor() as cur:
        cur.executemany(RICH_INSERT.format(table=q(table), id_type=id_type), rich_rows(id_type))
    conn.execute(
        f"CREATE INDEX ON {q(table)} USING hnsw (embedding vector_cosine_ops) WITH (m = 8, ef_construction = 20)"
    )
    conn.execute(f"CREATE INDEX ON {q(table)} USING ivfflat (other vector_ip_ops) WITH (lists = 2)")
    conn.execute(f"CREATE INDEX ON {q(table)} USING hnsw (other vector_l2_ops)")
    conn.execute(f"CREATE INDEX ON {q(table)} (title)")
    conn.execute(f"CREATE UNIQUE INDEX ON {q(table)} (big)")
    conn.execute(f"CREATE INDEX ON {q(table)} (n DESC, s NULLS FIRST, day DESC NULLS LAST) INCLUDE (price, r)")


def assert_same_table(conn_a: Any, a: str, conn_b: Any, b: str) -> None:
    """Row for row, column types and NOT NULL flags, vectors bit for bit, every index."""
    assert columns_of(conn_b, b) == columns_of(conn_a, a)
    assert row_texts(conn_b, b) == row_texts(conn_a, a)
    for column in ("embedding", "other"):
        assert vectors_of(conn_b, b, column) == vectors_of(conn_a, a, column), column
    original = {name.replace(a, b, 1): spec for name, spec in indexes_of(conn_a, a).items()}
    assert indexes_of(conn_b, b) == original


@pytest.mark.parametrize("id_type", ["bigint", "integer", "smallint", "text", "uuid"])
def test_every_type_round_trips_into_another_table_and_another_database(
    id_type: str, pg: Any, postgres: Any, repo: vecdr.Repository
) -> None:
    other_db = f"t_{uuid.uuid4().hex[:12]}"
    postgres.create_database(other_db, vector=False)  # the restore creates the extension there
    with pg.connect() as conn:
        create_rich(conn, "items", id_type)
        snap = vecdr.snapshot(repo, pg.uri("items"))
        assert snap.rows == 43 and snap.mode == "full"
        manifest = vecdr.engines.open_snapshot(repo, snap.snapshot)
        assert manifest.id_type == ("int64" if id_type in ("bigint", "integer", "smallint") else "string")
        hnsw = [i for i in manifest.index["indexes"] if i["columns"] == ["embedding"]]
        assert [(i["method"], i["opclasses"], i["params"]) for i in hnsw] == [
            ("hnsw", ["vector_cosine_ops"], {"m": "8", "ef_construction": "20"})
        ]

        result = vecdr.restore(repo, pg.uri("copy"), snap.snapshot)
        assert result.rows == 43
        assert_same_table(conn, "items", conn, "copy")
        assert sorted(indexes_of(conn, "copy")) == [
            "copy_big_idx", "copy_embedding_idx", "copy_n_s_day_price_r_idx", "copy_other_idx", "copy_other_idx1",
            "copy_pkey", "copy_title_idx",
        ]  # fmt: skip

        vecdr.restore(repo, pg.uri("items", db=other_db), snap.snapshot)
        with pg.connect(other_db) as there:
            assert_same_table(conn, "items", there, "items")
            assert staging_tables(there) == []
        assert staging_tables(conn) == []


def test_timestamps_and_dates_beyond_pythons_range_round_trip(pg: Any, repo: vecdr.Repository) -> None:
    with pg.connect() as conn:
        conn.execute(
            "CREATE TABLE items (id bigint PRIMARY KEY, embedding vector(4), ts timestamp, tstz timestamptz, day date)"
        )
        conn.execute(
            "INSERT INTO items VALUES (1, '[1,2,3,4]', 'infinity', '-infinity', 'infinity'), "
            "(2, '[1,2,3,4]', '-infinity', 'infinity', '-infinity'), "
            "(3, '[1,2,3,4]', '4713-01-01 00:00:00 BC', '294276-12-31 23:59:59.999999+00', '5874897-12-31'), "
            "(4, '[1,2,3,4]', NULL, NULL, '4713-01-01 BC')"
        )
        snap = vecdr.snapshot(repo, pg.uri("items"))
        vecdr.restore(repo, pg.uri("copy"), snap.snapshot)
        assert row_texts(conn, "copy") == row_texts(conn, "items")


def test_fixed_width_attributes_without_nulls_round_trip(pg: Any, repo: vecdr.Repository) -> None:
    """No NULL and only fixed-width types: rows are encoded in one numpy pass both ways."""
    with pg.connect() as conn:
        conn.execute(
            "CREATE TABLE items (id integer PRIMARY KEY, embedding vector(8) NOT NULL, flag boolean NOT NULL, "
            "s smallint, n integer, big bigint, r real, x double precision, ts timestamp, tstz timestamptz, day date)"
        )
        conn.execute(
            "INSERT INTO items SELECT i, array_fill(i * 0.5 - 7, ARRAY[8])::real[]::vector, i % 3 = 0, i - 100, "
            "i * 1000, i * 10000000000, i / 7.0, i / 3.0, "
            "timestamp '2000-01-01' + i * interval '1 day 1.000001 second', "
            "timestamptz '1970-01-01 00:00:00+00' - i * interval '1 hour', date '1900-02-28' + i * 400 "
            "FROM generate_series(1, 300) i"
        )
        snap = vecdr.snapshot(repo, pg.uri("items"))
        vecdr.restore(repo, pg.uri("copy"), snap.snapshot)
        assert columns_of(conn, "copy") == columns_of(conn, "items")
        assert row_texts(conn, "copy") == row_texts(conn, "items")
        assert vectors_of(conn, "copy", "embedding") == vectors_of(conn, "items", "embedding")


def test_schemas_and_dotted_table_names(pg: Any, repo: vecdr.Repository) -> None:
    ids, vectors = make_rows(50, D, seed=33)
    with pg.connect() as conn:
        conn.execute("CREATE SCHEMA src")
        conn.execute("CREATE SCHEMA dst")
        conn.execute("SET search_path = src, public")
        load_table(conn, "items", ids, vectors)
        first = vecdr.snapshot(repo, pg.uri("src.items"), collection="c")
        second = vecdr.snapshot(repo, pg.uri("items", schema="src"), collection="c")
        assert (second.mode, second.added, second.changed, second.deleted) == ("diff", 0, 0, 0)
        vecdr.restore(repo, pg.uri("items", schema="dst"), first.snapshot)
        conn.execute("SET search_path = dst, public")
        assert_same_rows(table_rows(conn, "items"), (ids, vectors))
        assert conn.execute("SELECT to_regclass('public.items')").fetchone()[0] is None


LONG_NAMES = {
    "63 bytes": "t" * 63,
    "50 bytes": "items_with_a_name_that_is_fifty_characters_long_50",
    "multibyte": "é" * 31,  # 62 bytes: a cut in the middle of a character would be invalid
    "quote": 'a"b',
    "markup": "[bold]x[/]",
}


def table_uri(pg: Any, name: str) -> str:
    return pg.uri(urllib.parse.quote(name, safe=""))


@pytest.mark.fault("table name of 50-63 bytes or with quotes ({name})", store="pgvector")
@pytest.mark.parametrize("name", list(LONG_NAMES))
def test_long_and_quoted_table_names_snapshot_restore_and_drill(name: str, pg: Any, repo: vecdr.Repository) -> None:
    """Every name vecdr derives from a table's (staging table, its key and indexes, the change
    log, the trigger function) fits in 63 bytes and collides with nothing, so such a table
    snapshots (full and tracked), restores, restores again with force, and drills."""
    table = LONG_NAMES[name]
    restored = ("r" + table[1:]) if table != 'a"b' else 'r"b'
    assert len(table.encode()) >= len(restored.encode()) > 2
    ids, vectors = make_rows(60, D, seed=34)
    with pg.connect() as conn:
        load_table(conn, table, ids, vectors, title="text")
        conn.execute(f"CREATE INDEX ON {q(table)} USING hnsw (embedding vector_l2_ops) WITH (m = 4)")
        conn.execute(f"CREATE INDEX ON {q(table)} (title)")
        log = enable_tracking(table_uri(pg, table))
        assert len(log.removeprefix("public.").encode()) <= 63
        first = vecdr.snapshot(repo, table_uri(pg, table), collection="c")
        conn.execute(f"UPDATE {q(table)} SET title = 'changed' WHERE id = %s", (int(ids[0]),))
        conn.execute(f"DELETE FROM {q(table)} WHERE id = %s", (int(ids[1]),))
        second = vecdr.snapshot(repo, table_uri(pg, table), collection="c")
        assert (second.mode, second.changed, second.deleted) == ("tracked", 1, 1)
        for force in (False, True):  # a new table, then over the one just restored
            vecdr.restore(repo, table_uri(pg, restored), second.snapshot, force=force)
            assert row_texts(conn, restored) == row_texts(conn, table)
            assert sorted(map(str, indexes_of(conn, restored).values())) == sorted(
                map(str, indexes_of(conn, table).values())
            )
        with pytest.raises(TargetExistsError):
            vecdr.restore(repo, table_uri(pg, restored), first.snapshot)
        vecdr.restore(repo, table_uri(pg, table), first.snapshot, force=True)  # over the tracked table itself
        assert_same_rows(table_rows(conn, table), (ids, vectors))
        assert staging_tables(conn) == []
        result = vecdr.drill(repo, second.snapshot, target=table_uri(pg, "d" + table[1:]))
        assert result.rows_restored == len(ids) - 1 and result.passed
        assert conn.execute("SELECT to_regclass(%s)", (q("d" + table[1:]),)).fetchone()[0] is None
        disable_tracking(table_uri(pg, table))
        left = conn.execute("SELECT relname FROM pg_class WHERE relname LIKE '%vecdr%'").fetchall()
        assert left == [("vecdr_tracking",)] or left == [("vecdr_tracking",), ("vecdr_tracking_pkey",)]


def test_a_table_name_postgresql_would_cut_is_refused(pg: Any, repo: vecdr.Repository) -> None:
    with pytest.raises(UsageError, match="at most 63 bytes"):
        vecdr.snapshot(repo, pg.uri("t" * 64))
    with pytest.raises(UsageError, match="at most 63 bytes"):
        open_target(pg.uri("é" * 32))


def test_expression_and_partial_indexes_are_skipped_with_a_warning(pg: Any, repo: vecdr.Repository) -> None:
    with pg.connect() as conn:
        load_table(conn, "items", *make_rows(30, D, seed=34), title="text")
        conn.execute("CREATE INDEX items_lower ON items (lower(title))")
        conn.execute("CREATE INDEX items_some ON items (title) WHERE id > 0")
        snap = vecdr.snapshot(repo, pg.uri("items"))
        with pytest.warns(UserWarning, match="items_lower") as caught:
            vecdr.restore(repo, pg.uri("copy"), snap.snapshot)
        assert any("items_some" in str(w.message) for w in caught)
        assert sorted(indexes_of(conn, "copy")) == ["copy_pkey"]


# -- one point in time while writers write ---------------------------------------------------

TOTAL = 100


class Transfers(threading.Thread):
    """A writer that, one transaction at a time, moves balance between rows, moves some into a
    new row, or deletes a row and hands its balance on. Every committed state has
    ``sum(balance) = rows × 100`` and ``embedding = [balance, id, 0, 0]`` in every row; the
    states in between exist only inside a transaction. ``log`` holds, per commit in commit
    order, the balance each row it touched was left with (None: deleted)."""

    def __init__(self, pg: Any, rows: int) -> None:
        super().__init__(daemon=True)
        self.conn = pg.connect(autocommit=False)
        self.ids = list(range(rows))
        self.initial = dict.fromkeys(self.ids, TOTAL)
        self.balances = dict(self.initial)
        self.log: list[dict[int, int | None]] = []
        self.next_id = rows
        self.commits = 0
        self.gate = threading.Lock()  # held around each transaction
        self.halt = threading.Event()
        self.error: BaseException | None = None
        self.rng = random.Random(35)

    def move(self, id: int, amount: int) -> None:
        self.conn.execute(
            "UPDATE bank SET balance = balance + %s, "
            "embedding = ARRAY[(balance + %s)::real, id::real, 0, 0]::vector WHERE id = %s",
            (amount, amount, id),
        )

    def step(self) -> None:
        a, b = self.rng.sample(self.ids, 2)
        k = self.rng.randint(1, 9)
        op = self.rng.random()
        bal = self.balances
        if op < 0.2:
            new = self.next_id
            self.move(a, -k)
            self.conn.execute(
                "INSERT INTO bank VALUES (%s, ARRAY[%s::real, %s::real, 0, 0]::vector, %s)", (new, k, new, k)
            )
            self.next_id += 1
            self.ids.append(new)
            bal[a], bal[new] = bal[a] - k, k
            change: dict[int, int | None] = {a: bal[a], new: k}
        elif op < 0.35 and len(self.ids) > 100:
            (balance,) = self.conn.execute("DELETE FROM bank WHERE id = %s RETURNING balance", (a,)).fetchone()
            assert balance == bal.pop(a)
            self.move(b, balance)
            self.ids.remove(a)
            bal[b] += balance
            change = {a: None, b: bal[b]}
        else:
            self.move(a, -k)
            self.move(b, k)
            bal[a], bal[b] = bal[a] - k, bal[b] + k
            change = {a: bal[a], b: bal[b]}
        self.conn.commit()
        self.log.append(change)

    def prefix(self, state: dict[int, int]) -> int | None:
        """How many of the logged commits, applied in order to the first state, give ``state``; None if none."""
        replayed: dict[int, int | None] = dict(self.initial)
        differ = {i for i in replayed.keys() | state.keys() if replayed.get(i) != state.get(i)}
        for length in range(len(self.log) + 1):
            if not differ:
                return length
            if length == len(self.log):
                break
            for id, balance in self.log[length].items():
                replayed[id] = balance
                (differ.discard if balance == state.get(id) else differ.add)(id)
        return None

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                with self.gate:
                    self.step()
                    self.commits += 1
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.conn.close()

    def wait_for(self, commits: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.commits < commits:
            assert self.error is None, self.error
            assert time.monotonic() < deadline, "the writer stalled"
            time.sleep(0.002)

    def stop(self) -> None:
        self.halt.set()
        self.join(30)
        assert self.error is None, self.error


def assert_consistent(conn: Any, table: str, rows: int) -> None:
    total, bad = conn.execute(
        f"SELECT sum(balance), count(*) FILTER (WHERE embedding <> ARRAY[balance::real, id::real, 0, 0]::vector) "
        f"FROM {q(table)}"
    ).fetchone()
    assert (total, bad) == (rows * TOTAL, 0), f"{table}: sum {total}, {bad} rows whose vector disagrees"


def balances(conn: Any, table: str) -> dict[int, int]:
    return dict(conn.execute(f"SELECT id, balance FROM {q(table)}").fetchall())


@pytest.mark.fault("pgvector snapshots while a writer commits (tracked={tracked}, pass_rows={pass_rows})",
                   store="pgvector")
@pytest.mark.parametrize(
    ("tracked", "pass_rows"), [(False, None), (True, None), (False, 300)], ids=["diff", "tracked", "diff-in-id-ranges"]
)
def test_snapshots_are_one_point_in_time_while_a_writer_commits(
    tracked: bool, pass_rows: int | None, pg: Any, repo: vecdr.Repository
) -> None:
    rows = 2000
    # With pass_rows, a diff reads the table in several id-range scans (7 here) while the
    # writer commits between them: all of them must see the one point in time.
    options = {"diff_pass_rows": pass_rows} if pass_rows else {}
    with pg.connect() as conn:
        conn.execute("CREATE TABLE bank (id bigint PRIMARY KEY, embedding vector(4) NOT NULL, balance bigint NOT NULL)")
        conn.execute(
            f"INSERT INTO bank SELECT i, ARRAY[{TOTAL}, i, 0, 0]::vector, {TOTAL} FROM generate_series(0, {rows - 1}) i"
        )
    if tracked:
        enable_tracking(pg.uri("bank"))
    writer = Transfers(pg, rows)
    writer.start()
    snaps: list[tuple[str, list[str] | None]] = []
    try:
        for pinned in (True, False, True, False, True):
            if pinned:
                # Open the source between two of the writer's transactions and note the table as
                # it is then; let the writer commit more before vecdr reads a single row.
                with writer.gate:
                    source = open_source(pg.uri("bank"))
                    with pg.connect() as conn:
                        expected: list[str] | None = row_texts(conn, "bank")
                writer.wait_for(writer.commits + 20)
                snap = vecdr.snapshot(repo, source, **options)
            else:  # as users take them: the writer may or may not commit while this one reads
                snap = vecdr.snapshot(repo, pg.uri("bank"), **options)
                expected = None
            snaps.append((snap.snapshot, expected))
            if len(snaps) > 1:
                assert snap.mode == ("tracked" if tracked else "diff")
            writer.wait_for(writer.commits + 20)
    finally:
        writer.stop()
    with pg.connect() as conn:
        for i, (snapshot, expected) in enumerate(snaps):
            vecdr.restore(repo, pg.uri(f"at_{i}"), snapshot)
            assert_consistent(conn, f"at_{i}", rows)
            # The writer's log, replayed: each snapshot is the table after some number of its commits.
            assert writer.prefix(balances(conn, f"at_{i}")) is not None, f"snapshot {i}: no state the writer committed"
            if expected is not None:
                assert row_texts(conn, f"at_{i}") == expected
        # With the writer stopped, one more snapshot is the table exactly: no change was lost.
        last = vecdr.snapshot(repo, pg.uri("bank"), **options)
        assert last.mode == ("tracked" if tracked else "diff")
        vecdr.restore(repo, pg.uri("last"), last.snapshot)
        assert row_texts(conn, "last") == row_texts(conn, "bank")
        assert writer.prefix(balances(conn, "last")) == len(writer.log)
        if tracked:
            assert log_count(conn, "bank") == 0


# -- incremental snapshots -------------------------------------------------------------------


def create_items(conn: Any, n: int = 200, seed: int = 40) -> None:
    ids, vectors = make_rows(n, D, seed=seed)
    load_table(conn, "items", ids, vectors, title="text", n="integer")
    conn.execute("UPDATE items SET title = 'title ' || (id % 1000), n = id % 97")


def change_items(conn: Any) -> dict[str, int]:
    """Two vectors and one attribute updated, three inserts, two deletes, and rows that come and go."""
    ids = [r[0] for r in conn.execute("SELECT id FROM items ORDER BY id LIMIT 10")]
    conn.execute(
        "UPDATE items SET embedding = (embedding::real[])[1:15] || ARRAY[-0.0::real] WHERE id = ANY(%s)", (ids[:2],)
    )
    conn.execute("UPDATE items SET title = NULL WHERE id = %s", (ids[2],))
    conn.execute("UPDATE items SET n = n WHERE id = %s", (ids[3],))  # an update that changes nothing
    conn.execute("DELETE FROM items WHERE id = ANY(%s)", (ids[4:6],))
    conn.execute(
        "INSERT INTO items (id, embedding, title, n) "
        "SELECT -i, array_fill(i::real, ARRAY[16])::vector, 'new', i FROM generate_series(1, 3) i"
    )
    conn.execute("INSERT INTO items (id, embedding, n) VALUES (-99, array_fill(0, ARRAY[16])::vector, 0)")
    conn.execute("DELETE FROM items WHERE id = -99")  # inserted and deleted between snapshots
    conn.execute("UPDATE items SET title = 'gone' WHERE id = %s", (ids[6],))
    conn.execute("DELETE FROM items WHERE id = %s", (ids[6],))  # updated, then deleted
    return {"added": 3, "changed": 3, "deleted": 3}


def counts(snap: vecdr.SnapshotResult) -> dict[str, int]:
    return {"added": snap.added, "changed": snap.changed, "deleted": snap.deleted}


def test_diff_snapshots_restore_the_new_and_the_old_state(pg: Any, repo: vecdr.Repository) -> None:
    with pg.connect() as conn:
        create_items(conn)
        v1 = row_texts(conn, "items")
        first = vecdr.snapshot(repo, pg.uri("items"))
        expected = change_items(conn)
        v2 = row_texts(conn, "items")
        second = vecdr.snapshot(repo, pg.uri("items"))
        assert second.mode == "diff" and counts(second) == expected and second.rows == len(v2)
        assert second.bytes_written < first.bytes_written
        vecdr.restore(repo, pg.uri("v2"), second.snapshot)
        vecdr.restore(repo, pg.uri("v1"), first.snapshot)
        assert row_texts(conn, "v2") == v2
        assert row_texts(conn, "v1") == v1


@pytest.mark.parametrize("id_type", ["bigint", "text", "uuid"])
def test_a_diff_in_id_range_passes_finds_what_one_pass_finds(
    id_type: str, pg: Any, repo: vecdr.Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ranges: list[tuple[Any, Any]] = []
    real = PgvectorSource.scan_range

    def spy(self: PgvectorSource, batch_rows: int, lo: Any, hi: Any) -> Any:
        ranges.append((lo, hi))
        return real(self, batch_rows, lo, hi)

    monkeypatch.setattr(PgvectorSource, "scan_range", spy)
    one_pass = vecdr.init(tmp_path / "one-pass")
    with pg.connect() as conn:
        create_rich(conn, "r", id_type)
        for target in (repo, one_pass):
            vecdr.snapshot(target, pg.uri("r"))
        # Ids whose order differs between byte order and a language's collation, at both ends.
        low, high = {"bigint": ("-9000", "9000"), "text": ("Zz", "zz"), "uuid": (str(uuid.UUID(int=1)),
                     str(uuid.UUID(int=(1 << 128) - 1)))}[id_type]
        conn.execute(f"INSERT INTO r (title, id, embedding) SELECT 'new', id::{id_type}, "
                     "array_fill(1, ARRAY[8])::vector FROM unnest(ARRAY[%s, %s]) id", (low, high))
        conn.execute("DELETE FROM r WHERE id IN (SELECT id FROM r ORDER BY id DESC LIMIT 3 OFFSET 2)")
        conn.execute("UPDATE r SET embedding = array_fill(2, ARRAY[8])::vector WHERE id IN "
                     "(SELECT id FROM r ORDER BY id LIMIT 5 OFFSET 10)")
        passes = vecdr.snapshot(repo, pg.uri("r"), diff_pass_rows=6)
        assert len(ranges) >= 5 and ranges[0][0] is None and ranges[-1][1] is None
        whole = vecdr.snapshot(one_pass, pg.uri("r"))
        assert passes.mode == whole.mode == "diff"
        assert counts(passes) == counts(whole) == {"added": 2, "changed": 5, "deleted": 3}
        vecdr.restore(repo, pg.uri("restored"), passes.snapshot)
        assert_same_table(conn, "r", conn, "restored")


def test_a_null_in_a_numeric_attribute_changes_only_its_row(pg: Any, repo: vecdr.Repository) -> None:
    with pg.connect() as conn:
        create_items(conn)
        vecdr.snapshot(repo, pg.uri("items"))
        conn.execute("UPDATE items SET n = NULL WHERE id = (SELECT min(id) FROM items)")
        snap = vecdr.snapshot(repo, pg.uri("items"))
        assert counts(snap) == {"added": 0, "changed": 1, "deleted": 0}


def test_tracked_snapshots_read_the_log_and_trim_it_after_the_commit(pg: Any, repo: vecdr.Repository) -> None:
    uri = pg.uri("items")
    with pg.connect() as conn:
        create_items(conn)
        assert enable_tracking(uri) == "public.items_vecdr_log"
        assert enable_tracking(uri) == "public.items_vecdr_log"  # idempotent
        v1 = row_texts(conn, "items")
        first = vecdr.snapshot(repo, uri)
        assert first.mode == "full"
        assert log_count(conn) == 0

        expected = change_items(conn)
        v2 = row_texts(conn, "items")
        assert log_count(conn) > 0
        second = vecdr.snapshot(repo, uri)
        assert (second.mode, counts(second), second.rows) == ("tracked", expected, len(v2))
        assert log_count(conn) == 0

        third = vecdr.snapshot(repo, uri)
        assert (third.mode, counts(third)) == ("tracked", {"added": 0, "changed": 0, "deleted": 0})

        vecdr.restore(repo, pg.uri("v2"), second.snapshot)
        vecdr.restore(repo, pg.uri("v1"), first.snapshot)
        assert row_texts(conn, "v2") == v2
        assert row_texts(conn, "v1") == v1

        # A diff snapshot asked for explicitly reads every row, and still trims what it saw.
        conn.execute("UPDATE items SET n = -1 WHERE id = (SELECT min(id) FROM items)")
        diff = vecdr.snapshot(repo, uri, mode="diff")
        assert (diff.mode, counts(diff)) == ("diff", {"added": 0, "changed": 1, "deleted": 0})
        assert log_count(conn) == 0

        disable_tracking(uri)
        disable_tracking(uri)  # idempotent
        assert conn.execute("SELECT to_regclass('items_vecdr_log')").fetchone()[0] is None
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass AND NOT tgisinternal"
            ).fetchone()[0]
            == 0
        )
        conn.execute("DELETE FROM items WHERE id = (SELECT max(id) FROM items)")
        after = vecdr.snapshot(repo, uri)
        assert (after.mode, counts(after)) == ("diff", {"added": 0, "changed": 0, "deleted": 1})


def test_a_snapshot_that_fails_before_its_commit_leaves_the_log(
    pg: Any, repo: vecdr.Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = pg.uri("items")
    with pg.connect() as conn:
        create_items(conn)
        enable_tracking(uri)
        vecdr.snapshot(repo, uri)
        expected = change_items(conn)
        logged = log_count(conn)
        commits = repo.commits()

        def refuse(*args: object, **kwargs: object) -> None:
            raise CommitError("the store refused the commit record")

        monkeypatch.setattr(repo, "commit", refuse)
        with pytest.raises(CommitError):
            vecdr.snapshot(repo, uri)
        monkeypatch.undo()
        assert repo.commits() == commits
        assert log_count(conn) == logged

        again = vecdr.snapshot(repo, uri)
        assert (again.mode, counts(again)) == ("tracked", expected)
        assert log_count(conn) == 0
        vecdr.restore(repo, pg.uri("copy"), again.snapshot)
        assert row_texts(conn, "copy") == row_texts(conn, "items")


def test_a_commit_whose_log_was_not_trimmed_makes_the_next_snapshot_compare_rows(
    pg: Any, repo: vecdr.Repository
) -> None:
    """A crash after the commit record but before the trim: the log does not continue the
    latest snapshot, so the next snapshot compares every row, and then tracking resumes."""
    uri = pg.uri("items")
    with pg.connect() as conn:
        create_items(conn)
        enable_tracking(uri)
        vecdr.snapshot(repo, uri)
        change_items(conn)
        source = open_source(uri)
        source.committed = lambda snapshot, changes: None  # type: ignore[method-assign]
        vecdr.snapshot(repo, source)
        assert log_count(conn) > 0
        conn.execute("UPDATE items SET title = 'after' WHERE id = (SELECT max(id) FROM items)")
        with pytest.warns(UserWarning, match="does not continue"):
            recovered = vecdr.snapshot(repo, uri, mode="tracked")
        assert (recovered.mode, counts(recovered)) == ("diff", {"added": 0, "changed": 1, "deleted": 0})
        conn.execute("UPDATE items SET title = 'later' WHERE id = (SELECT min(id) FROM items)")
        resumed = vecdr.snapshot(repo, uri)
        assert (resumed.mode, counts(resumed)) == ("tracked", {"added": 0, "changed": 1, "deleted": 0})
        vecdr.restore(repo, pg.uri("copy"), resumed.snapshot)
        assert row_texts(conn, "copy") == row_texts(conn, "items")


def test_truncate_forces_a_full_comparison_then_tracking_resumes(pg: Any, repo: vecdr.Repository) -> None:
    uri = pg.uri("items")
    with pg.connect() as conn:
        create_items(conn)
        enable_tracking(uri)
        vecdr.snapshot(repo, uri)
        kept = conn.execute("SELECT count(*) FROM items WHERE id % 2 = 0").fetchone()[0]
        conn.execute("CREATE TEMP TABLE keep AS SELECT * FROM items WHERE id % 2 = 0")
        conn.execute("TRUNCATE items")
        conn.execute("INSERT INTO items SELECT * FROM keep")
        after_truncate = vecdr.snapshot(repo, uri)
        assert after_truncate.mode == "diff"
        assert after_truncate.rows == kept and after_truncate.added == 0 and after_truncate.deleted == 200 - kept
        vecdr.restore(repo, pg.uri("copy"), after_truncate.snapshot)
        assert row_texts(conn, "copy") == row_texts(conn, "items")

        conn.execute("DELETE FROM items WHERE id = (SELECT min(id) FROM items)")
        resumed = vecdr.snapshot(repo, uri)
        assert (resumed.mode, counts(resumed)) == ("tracked", {"added": 0, "changed": 0, "deleted": 1})


def test_a_change_committed_during_a_tracked_snapshot_is_kept_for_the_next(pg: Any, repo: vecdr.Repository) -> None:
    uri = pg.uri("items")
    with pg.connect() as conn:
        create_items(conn)
        enable_tracking(uri)
        vecdr.snapshot(repo, uri)
        conn.execute("UPDATE items SET title = 'before' WHERE id = (SELECT min(id) FROM items)")
        before = row_texts(conn, "items")

        source = open_source(uri)  # the snapshot's point in time
        expected = change_items(conn)  # committed by another connection while it runs
        during = vecdr.snapshot(repo, source)
        assert (during.mode, counts(during)) == ("tracked", {"added": 0, "changed": 1, "deleted": 0})
        assert log_count(conn) > 0  # what the snapshot did not see is still logged

        after = vecdr.snapshot(repo, uri)
        assert (after.mode, counts(after)) == ("tracked", expected)
        assert log_count(conn) == 0
        vecdr.restore(repo, pg.uri("during"), during.snapshot)
        vecdr.restore(repo, pg.uri("after"), after.snapshot)
        assert row_texts(conn, "during") == before
        assert row_texts(conn, "after") == row_texts(conn, "items")


def test_changes_that_bypass_the_log_are_caught_by_the_row_count(pg: Any, repo: vecdr.Repository) -> None:
    uri = pg.uri("items")
    with pg.connect() as conn:
        create_items(conn)
        enable_tracking(uri)
        vecdr.snapshot(repo, uri)
        # The trigger is off for one insert and back on (firing always) before the snapshot.
        conn.execute("ALTER TABLE items DISABLE TRIGGER vecdr_track_ins")
        conn.execute("INSERT INTO items (id, embedding, n) VALUES (-7, array_fill(7, ARRAY[16])::vector, 7)")
        conn.execute("ALTER TABLE items ENABLE ALWAYS TRIGGER vecdr_track_ins")
        assert log_count(conn) == 0
        with pytest.warns(UserWarning, match="accounts for"):
            snap = vecdr.snapshot(repo, uri)
        assert (snap.mode, counts(snap)) == ("diff", {"added": 1, "changed": 0, "deleted": 0})


@pytest.mark.fault("pgvector change made with session_replication_role = replica", store="pgvector")
def test_changes_made_in_a_replica_session_are_tracked(pg: Any, repo: vecdr.Repository) -> None:
    """Logical replication's apply workers and pg_restore --disable-triggers run with
    session_replication_role = replica, where ordinary triggers stay silent; vecdr's fire always."""
    uri = pg.uri("items")
    with pg.connect() as conn:
        create_items(conn)
        enable_tracking(uri)
        vecdr.snapshot(repo, uri)
        conn.execute("SET session_replication_role = replica")
        expected = change_items(conn)
        conn.execute("SET session_replication_role = origin")
        assert log_count(conn) > 0
        snap = vecdr.snapshot(repo, uri)
        assert (snap.mode, counts(snap)) == ("tracked", expected)
        vecdr.restore(repo, pg.uri("copy"), snap.snapshot)
        assert row_texts(conn, "copy") == row_texts(conn, "items")


@pytest.mark.fault("pgvector tracking triggers that do not fire always (older vecdr)", store="pgvector")
def test_triggers_that_do_not_fire_always_are_detected_and_upgraded(pg: Any, repo: vecdr.Repository) -> None:
    """Triggers as an older vecdr installed them (enabled, but not ALWAYS) miss replica
    sessions' changes: snapshots compare every row and say why until tracking is enabled
    again, which upgrades them in place and keeps the log."""
    uri = pg.uri("items")
    with pg.connect() as conn:
        create_items(conn)
        enable_tracking(uri)
        for trigger in ("ins", "upd", "del", "truncate"):
            conn.execute(f"ALTER TABLE items ENABLE TRIGGER vecdr_track_{trigger}")  # fires in origin sessions only
        with pytest.warns(UserWarning, match="session_replication_role"):
            vecdr.snapshot(repo, uri)
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE items SET title = 'unlogged' WHERE id = (SELECT min(id) FROM items)")
        conn.execute("SET session_replication_role = origin")
        assert log_count(conn) == 0  # missed by the old trigger
        with pytest.warns(UserWarning, match="enable-tracking"):
            missed = vecdr.snapshot(repo, uri)
        assert (missed.mode, counts(missed)) == ("diff", {"added": 0, "changed": 1, "deleted": 0})

        conn.execute("UPDATE items SET title = 'before the upgrade' WHERE id = (SELECT max(id) FROM items)")
        assert enable_tracking(uri) == "public.items_vecdr_log"
        assert conn.execute(
            "SELECT array_agg(DISTINCT tgenabled::text) FROM pg_trigger WHERE tgrelid = 'items'::regclass "
            "AND NOT tgisinternal"
        ).fetchone()[0] == ["A"]
        upgraded = vecdr.snapshot(repo, uri)  # the log may lack changes from before: compare once
        assert (upgraded.mode, counts(upgraded)) == ("diff", {"added": 0, "changed": 1, "deleted": 0})
        conn.execute("SET session_replication_role = replica")
        conn.execute("DELETE FROM items WHERE id = (SELECT min(id) FROM items)")
        conn.execute("SET session_replication_role = origin")
        resumed = vecdr.snapshot(repo, uri)
        assert (resumed.mode, counts(resumed)) == ("tracked", {"added": 0, "changed": 0, "deleted": 1})
        vecdr.restore(repo, pg.uri("copy"), resumed.snapshot)
        assert row_texts(conn, "copy") == row_texts(conn, "items")


@pytest.mark.fault("pgvector tracking of a long-named table installed by an older vecdr", store="pgvector")
def test_tracking_an_older_vecdr_installed_on_a_long_name_is_upgraded_in_place(
    pg: Any, repo: vecdr.Repository
) -> None:
    """An older vecdr named the log and the trigger function ``<table>_vecdr_log`` and
    ``<table>_vecdr_track``, which PostgreSQL cut at 63 bytes, and made ordinary triggers.
    Enabling tracking again keeps that log (it may hold changes), points the triggers at
    the new function, drops the old one, and disabling removes everything."""
    table = "items_" + "x" * 54  # 60 bytes: "_vecdr_log" and "_vecdr_track" were cut
    old_log, old_fn = (table + "_vecdr_log")[:63], (table + "_vecdr_track")[:63]
    uri = table_uri(pg, table)
    with pg.connect() as conn:
        ids, vectors = make_rows(30, D, seed=36)
        load_table(conn, table, ids, vectors)
        log = enable_tracking(uri).removeprefix("public.")
        # Made as the older vecdr left it: cut names, triggers that fire in origin sessions only.
        conn.execute(f"ALTER TABLE {q(log)} RENAME TO {q(old_log)}")
        conn.execute("UPDATE vecdr_tracking SET log = %s WHERE tbl = %s", (old_log, table))
        conn.execute(
            f"CREATE FUNCTION {q(old_fn)}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF TG_OP IN ('UPDATE', 'DELETE') THEN INSERT INTO {q(old_log)} (id) SELECT id FROM vecdr_old; END IF; "
            f"IF TG_OP IN ('INSERT', 'UPDATE') THEN INSERT INTO {q(old_log)} (id) SELECT id FROM vecdr_new; END IF; "
            "RETURN NULL; END $$"
        )
        for trigger, event, referencing in (
            ("ins", "INSERT", "REFERENCING NEW TABLE AS vecdr_new"),
            ("upd", "UPDATE", "REFERENCING OLD TABLE AS vecdr_old NEW TABLE AS vecdr_new"),
            ("del", "DELETE", "REFERENCING OLD TABLE AS vecdr_old"),
        ):
            conn.execute(f"DROP TRIGGER vecdr_track_{trigger} ON {q(table)}")
            conn.execute(f"CREATE TRIGGER vecdr_track_{trigger} AFTER {event} ON {q(table)} {referencing} "
                         f"FOR EACH STATEMENT EXECUTE FUNCTION {q(old_fn)}()")
        conn.execute(f"ALTER TABLE {q(table)} ENABLE TRIGGER vecdr_track_truncate")
        conn.execute(f"DELETE FROM {q(table)} WHERE id = %s", (int(ids[0]),))  # logged in the old log
        with pytest.warns(UserWarning, match="older vecdr"):
            vecdr.snapshot(repo, uri)

        assert enable_tracking(uri) == f"public.{old_log}"
        functions = conn.execute(
            "SELECT DISTINCT tgfoid::regproc::text FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
            (q(table),),
        ).fetchall()
        assert functions == [(tracking.function_name(table),)]
        assert conn.execute("SELECT to_regproc(%s)", (q(old_fn),)).fetchone()[0] is None
        conn.execute(f"UPDATE {q(table)} SET embedding = embedding WHERE id = %s", (int(ids[1]),))
        assert vecdr.snapshot(repo, uri).mode == "diff"  # once, after the upgrade
        conn.execute(f"DELETE FROM {q(table)} WHERE id = %s", (int(ids[2]),))
        tracked = vecdr.snapshot(repo, uri)
        assert (tracked.mode, counts(tracked)) == ("tracked", {"added": 0, "changed": 0, "deleted": 1})
        vecdr.restore(repo, pg.uri("copy"), tracked.snapshot)
        assert row_texts(conn, "copy") == row_texts(conn, table)
        disable_tracking(uri)
        assert conn.execute(
            "SELECT count(*) FROM pg_class WHERE relname LIKE %s", (table[:20] + "%vecdr%",)
        ).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE '%vecdr_track%'").fetchone()[0] == 0


@pytest.mark.fault("pgvector table written by a logical replication subscription", store="pgvector")
def test_a_table_a_subscription_writes_is_compared_row_by_row(pg: Any, repo: vecdr.Repository) -> None:
    """A subscription's apply worker fires row triggers only, never vecdr's statement triggers."""
    uri = pg.uri("items")
    with pg.connect() as conn:
        create_items(conn)
        enable_tracking(uri)
        vecdr.snapshot(repo, uri)
        conn.execute("CREATE PUBLICATION vecdr_pub FOR TABLE items")
        # Registered, never started (no slot): enough for PostgreSQL to list the table as subscribed.
        dsn = pg.dsn().replace("'", "''")
        conn.execute(
            f"CREATE SUBSCRIPTION vecdr_sub CONNECTION '{dsn}' PUBLICATION vecdr_pub "
            "WITH (connect = true, enabled = false, create_slot = false, slot_name = NONE, copy_data = false)"
        )
        try:
            conn.execute("UPDATE items SET title = 'logged' WHERE id = (SELECT min(id) FROM items)")
            with pytest.warns(UserWarning, match="logical replication subscription"):
                snap = vecdr.snapshot(repo, uri)
            assert (snap.mode, counts(snap)) == ("diff", {"added": 0, "changed": 1, "deleted": 0})
        finally:
            conn.execute("DROP SUBSCRIPTION vecdr_sub")


# -- across engines ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "metric", "options", "method", "opclass", "params"),
    [
        ("IDMap2,HNSW16", faiss.METRIC_L2, {}, "hnsw", "vector_l2_ops", ["ef_construction=40", "m=16"]),
        ("IDMap2,HNSW8", faiss.METRIC_INNER_PRODUCT, {"id": "doc_id", "vector": "emb"}, "hnsw", "vector_ip_ops",
         ["ef_construction=40", "m=8"]),
        ("IVF4,Flat", faiss.METRIC_L2, {}, "ivfflat", "vector_l2_ops", ["lists=4"]),
    ],
)  # fmt: skip
def test_a_faiss_snapshot_restores_into_pgvector(
    factory: str,
    metric: int,
    options: dict[str, str],
    method: str,
    opclass: str,
    params: list[str],
    pg: Any,
    repo: vecdr.Repository,
    tmp_path: Path,
) -> None:
    ids, vectors = make_rows(500, D, seed=41)
    vectors[3:5] = np.random.default_rng(42).standard_normal((2, D))  # no float32 extremes for k-means
    index = faiss.index_factory(D, factory, metric)
    index.train(vectors)
    index.add_with_ids(vectors, ids)
    path = tmp_path / "index.faiss"
    faiss.write_index(index, str(path))
    snap = vecdr.snapshot(repo, f"faiss:{path}")
    vecdr.restore(repo, pg.uri("fromfaiss", **options), snap.snapshot)
    id_name, vector_name = options.get("id", "id"), options.get("vector", "embedding")
    with pg.connect() as conn:
        assert_same_rows(table_rows(conn, "fromfaiss", id_name, vector_name), (ids, vectors))
        assert columns_of(conn, "fromfaiss") == [(id_name, "bigint", True), (vector_name, f"vector({D})", True)]
        assert sorted(indexes_of(conn, "fromfaiss").values()) == sorted(
            [
                ("btree", [id_name], ["int8_ops"], [], True, True, False, 1, [0]),
                (method, [vector_name], [opclass], params, False, False, False, 1, [0]),
            ]
        )


def test_a_pgvector_snapshot_restores_into_faiss(pg: Any, repo: vecdr.Repository, tmp_path: Path) -> None:
    ids, vectors = make_rows(400, D, seed=43)
    with pg.connect() as conn:
        load_table(conn, "items", ids, vectors, title="text")
        conn.execute("UPDATE items SET title = 'doc ' || id")
        conn.execute(
            "CREATE INDEX ON items USING hnsw (embedding vector_cosine_ops) WITH (m = 8, ef_construction = 24)"
        )
    snap = vecdr.snapshot(repo, pg.uri("items"))
    with pytest.warns(UserWarning, match="cosine"):
        index = vecdr.restore_index(repo, snap.snapshot)
    assert_same_rows(faiss_rows(index), (ids, vectors))
    hnsw = faiss.downcast_index(faiss.downcast_index(index).index)
    assert isinstance(hnsw, faiss.IndexHNSWFlat)
    assert (hnsw.hnsw.nb_neighbors(1), hnsw.hnsw.efConstruction) == (8, 24)
    assert hnsw.metric_type == faiss.METRIC_INNER_PRODUCT

    path = tmp_path / "restored.faiss"
    with pytest.warns(UserWarning, match="cosine"):
        vecdr.restore(repo, f"faiss:{path}", snap.snapshot)
    assert_same_rows(faiss_rows(faiss.read_index(str(path))), (ids, vectors))


def test_a_parquet_snapshot_keeps_its_attributes_as_columns(pg: Any, repo: vecdr.Repository, tmp_path: Path) -> None:
    ids, vectors = make_rows(120, 8, seed=44)
    rng = np.random.default_rng(45)
    n = len(ids)
    attrs = {
        "title": pa.array([f"t{i} ✓" if i % 7 else None for i in range(n)], pa.string()),
        "year": pa.array([int(y) if i % 5 else None for i, y in enumerate(rng.integers(1900, 2030, n))], pa.int32()),
        "score": pa.array(rng.random(n), pa.float64()),
        "weight": pa.array(rng.random(n), pa.float32()),
        "flag": pa.array([bool(i % 2) if i % 3 else None for i in range(n)], pa.bool_()),
        "day": pa.array([19000 + i if i % 4 else None for i in range(n)], pa.date32()),
        "at": pa.array([1_700_000_000_000_000 + i for i in range(n)], pa.timestamp("us")),
        "blob": pa.array([bytes([i % 256, 0]) for i in range(n)], pa.binary()),
    }
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"id": pa.array(ids, pa.int64()), "vector": vectors_to_arrow(vectors), **attrs}), path)
    snap = vecdr.snapshot(repo, f"parquet:{path}")
    vecdr.restore(repo, pg.uri("docs"), snap.snapshot)
    with pg.connect() as conn:
        assert columns_of(conn, "docs") == [
            ("id", "bigint", True), ("embedding", "vector(8)", True), ("title", "text", False),
            ("year", "integer", False), ("score", "double precision", False), ("weight", "real", False),
            ("flag", "boolean", False), ("day", "date", False), ("at", "timestamp without time zone", False),
            ("blob", "bytea", False),
        ]  # fmt: skip
        assert_same_rows(table_rows(conn, "docs", dimension=8), (ids, vectors))
        got = conn.execute(f"SELECT {', '.join(attrs)} FROM docs ORDER BY id").fetchall()
    order = np.argsort(ids)
    expected = [tuple(r.values()) for r in pa.table(attrs).take(pa.array(order)).to_pylist()]
    # pyarrow gives a float32 as its shortest decimal, psycopg as the exact double: compare as float32.
    assert [(*r[:3], np.float32(r[3]), *r[4:]) for r in expected] == [(*r[:3], np.float32(r[3]), *r[4:]) for r in got]


# -- bad input --------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def nowhere() -> Iterator[str]:
    """A folder where no server listens (short: a socket path must fit in about 100 bytes)."""
    folder = tempfile.mkdtemp(prefix="vecdr-nopg-")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def database_of(pg: Any) -> str:
    return str(pg.uri("items").split("/", 3)[3].split("?")[0])


@pytest.fixture
def bad(pg: Any, nowhere: str) -> dict[str, str]:
    """Tables for the bad-input cases, and URIs that go nowhere."""
    with pg.connect() as conn:
        load_table(conn, "items", *make_rows(20, 8, seed=46), note="text")
        conn.execute("CREATE TABLE noid (key bigint, embedding vector(8))")
        conn.execute("CREATE TABLE novector (id bigint PRIMARY KEY, x real[])")
        conn.execute("CREATE TABLE ragged (id bigint PRIMARY KEY, embedding vector)")
        conn.execute("INSERT INTO ragged VALUES (1, '[1,2,3]'), (2, '[1,2]')")
        load_table(conn, "wide", *make_rows(5, 12, seed=47))
        conn.execute("CREATE TABLE dups (key bigint, embedding vector(8))")  # no primary key to keep ids unique
        conn.execute("INSERT INTO dups SELECT i % 7, array_fill(i, ARRAY[8])::vector FROM generate_series(1, 20) i")
    db = database_of(pg)
    return {
        "no server (socket)": f"postgresql://postgres@/{db}?host={nowhere}&table=items",
        "no server (tcp)": f"postgresql://postgres@127.0.0.1:{closed_port()}/{db}?table=items&connect_timeout=5",
        "no database": pg.uri("items", db="no_such_db"),
        "no role": pg.uri("items").replace("postgres@", "nobody@"),
    }


SOURCE_ERRORS = {
    "no server (socket)": (BackendConnectionError, "cannot connect"),
    "no server (tcp)": (BackendConnectionError, "cannot connect"),
    "no database": (BackendConnectionError, "no_such_db"),
    "no role": (BackendConnectionError, "nobody"),
    "missing table": (NotFoundInBackendError, "no table public.missing"),
    "missing id column": (NotFoundInBackendError, "no column 'nope'"),
    "no id column": (SchemaError, "id=COLUMN"),
    "missing vector column": (NotFoundInBackendError, "no column 'nope'"),
    "not a vector": (SchemaError, "not a vector"),
    "no vector column": (SchemaError, "no vector"),
    "vectors of two dimensions": (DimensionMismatchError, "dimension"),
    "duplicate ids": (DuplicateIdError, "duplicated id"),
    "no table option": (UsageError, "needs the table"),
    "unknown option": (UsageError, "bogus"),
    "dimension of the collection": (DimensionMismatchError, "12"),
}


def source_uri(case: str, pg: Any, bad: dict[str, str]) -> str:
    return (
        bad.get(case)
        or {
            "missing table": pg.uri("missing"),
            "missing id column": pg.uri("items", id="nope"),
            "no id column": pg.uri("noid"),
            "missing vector column": pg.uri("items", vector="nope"),
            "not a vector": pg.uri("items", vector="note"),
            "no vector column": pg.uri("novector"),
            "vectors of two dimensions": pg.uri("ragged"),
            "duplicate ids": pg.uri("dups", id="key"),
            "no table option": pg.uri("items").replace("&table=items", ""),
            "unknown option": pg.uri("items", bogus="1"),
            "dimension of the collection": pg.uri("wide"),
        }[case]
    )


@pytest.mark.parametrize("case", list(SOURCE_ERRORS))
def test_bad_sources_are_typed_errors(case: str, pg: Any, bad: dict[str, str], repo: vecdr.Repository) -> None:
    vecdr.snapshot(repo, pg.uri("items"))
    commits = repo.commits()
    error, needle = SOURCE_ERRORS[case]
    with pytest.raises(error, match=needle.replace("(", r"\(")):
        vecdr.snapshot(repo, source_uri(case, pg, bad), collection="items" if case.startswith("dimension") else "c")
    assert repo.commits() == commits


def test_bad_targets_are_typed_errors(pg: Any, bad: dict[str, str], repo: vecdr.Repository) -> None:
    snap = vecdr.snapshot(repo, pg.uri("items"))
    for case in ("no server (socket)", "no server (tcp)", "no database", "no role"):
        with pytest.raises(BackendConnectionError):
            vecdr.restore(repo, bad[case].replace("table=items", "table=copy"), snap.snapshot)
    with pytest.raises(UsageError, match="needs the table"):
        vecdr.restore(repo, pg.uri("items").replace("&table=items", ""), snap.snapshot)
    with pytest.raises(SchemaError, match="collide"):
        vecdr.restore(repo, pg.uri("copy", vector="note"), snap.snapshot)
    with pytest.raises(TargetExistsError, match="--force") as caught:
        vecdr.restore(repo, pg.uri("wide"), snap.snapshot)
    assert isinstance(caught.value, FileExistsError)
    with pg.connect() as conn:
        assert len(row_texts(conn, "wide")) == 5
        assert conn.execute("SELECT to_regclass('copy')").fetchone()[0] is None
        assert staging_tables(conn) == []


@pytest.fixture
def password_role(pg: Any) -> Iterator[tuple[str, str]]:
    """A role that must log in with its password (the server trusts every other local role)."""
    role, password = f"pw_{uuid.uuid4().hex[:8]}", f"right-{uuid.uuid4().hex[:8]}"
    with pg.connect() as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'")
        hba = Path(conn.execute("SHOW hba_file").fetchone()[0])
        rules = hba.read_text()
        hba.write_text(f"local all {role} scram-sha-256\n{rules}")
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield role, password
    finally:
        with pg.connect() as conn:
            hba.write_text(rules)
            conn.execute("SELECT pg_reload_conf()")
            conn.execute(f"DROP ROLE {role}")


def test_a_wrong_password_is_a_connection_error_that_does_not_show_it(
    pg: Any, repo: vecdr.Repository, password_role: tuple[str, str]
) -> None:
    role, password = password_role
    with pg.connect() as conn:
        load_table(conn, "items", *make_rows(20, 8, seed=51))
    as_role = pg.uri("items").replace("postgres@", f"{role}:{{}}@")
    snap = vecdr.snapshot(repo, as_role.format(password))  # the right one works
    for uri, reason in ((as_role.format("wrong-secret"), "password authentication failed"),
                        (as_role.format(""), "no password supplied")):  # fmt: skip
        with pytest.raises(BackendConnectionError, match=reason) as caught:
            vecdr.snapshot(repo, uri)
        assert "wrong-secret" not in str(caught.value) and password not in str(caught.value)
        with pytest.raises(BackendConnectionError, match=reason):
            vecdr.restore(repo, uri.replace("table=items", "table=copy"), snap.snapshot)
    proc = cli("snapshot", str(repo.url), as_role.format("wrong-secret"))
    assert_one_line_error(proc, "password authentication failed")
    assert "wrong-secret" not in proc.stderr + proc.stdout
    assert [c.snapshot for c in repo.commits()] == [snap.snapshot]


@pytest.fixture
def unprivileged(pg: Any) -> Iterator[str]:
    """A role that may log in and nothing more."""
    role = f"plain_{uuid.uuid4().hex[:8]}"
    with pg.connect() as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
    yield role
    with pg.connect() as conn:
        conn.execute(f"DROP ROLE {role}")


def test_missing_privileges_are_typed_errors(pg: Any, postgres: Any, repo: vecdr.Repository, unprivileged: str) -> None:
    with pg.connect() as conn:
        load_table(conn, "items", *make_rows(20, 8, seed=50))
    snap = vecdr.snapshot(repo, pg.uri("items"))
    bare = f"t_{uuid.uuid4().hex[:12]}"
    postgres.create_database(bare, vector=False)

    def as_role(uri: str) -> str:
        return uri.replace("postgres@", f"{unprivileged}@")

    with pytest.raises(BackendError, match="permission denied for table items"):
        vecdr.snapshot(repo, as_role(pg.uri("items")))
    with pytest.raises(TargetError, match="permission denied for schema public"):
        vecdr.restore(repo, as_role(pg.uri("copy")), snap.snapshot)
    with pytest.raises(BackendError, match="permission denied to create extension"):
        vecdr.restore(repo, as_role(pg.uri("copy", db=bare)), snap.snapshot)
    with pytest.raises(BackendError, match="permission denied"):
        enable_tracking(as_role(pg.uri("items")))
    assert len(repo.commits()) == 1
    with pg.connect() as conn:
        assert staging_tables(conn) == []
        assert conn.execute("SELECT to_regclass('items_vecdr_log')").fetchone()[0] is None
    for proc in cli_all([("snapshot", str(repo.url), as_role(pg.uri("items"))),
                         ("restore", str(repo.url), "latest", as_role(pg.uri("copy")))]):  # fmt: skip
        assert_one_line_error(proc, "permission denied")
        assert proc.returncode == 1


class Interrupt(Exception):
    pass


class CallbackReporter:
    """A reporter that calls ``on_advance`` as rows stream into the target."""

    def __init__(self, on_advance: Callable[[], None]) -> None:
        self.on_advance = on_advance

    def start(self, phase: str, total: int | None = None, unit: str = "rows") -> None:
        pass

    def advance(self, amount: int = 1) -> None:
        self.on_advance()

    def finish(self) -> None:
        pass

    def warn(self, message: str) -> None:
        pass


def test_force_replaces_a_table_atomically_and_a_failed_replace_keeps_the_old_one(
    pg: Any, repo: vecdr.Repository
) -> None:
    with pg.connect() as conn:
        conn.execute("CREATE DOMAIN score AS integer")
        ids, vectors = make_rows(200, D, seed=48)
        load_table(conn, "items", ids, vectors, points="score")
        conn.execute("UPDATE items SET points = 5")
        snap = vecdr.snapshot(repo, pg.uri("items"))
        conn.execute("DELETE FROM items WHERE id % 2 = 0")
        conn.execute("UPDATE items SET points = 6")
        live = row_texts(conn, "items")

        # Every value fails the domain's new check; the failure comes after all rows are loaded.
        conn.execute("ALTER DOMAIN score ADD CONSTRAINT small CHECK (VALUE < 5) NOT VALID")
        with pytest.raises(TargetError, match="small"):
            vecdr.restore(repo, pg.uri("items"), snap.snapshot, force=True)
        assert row_texts(conn, "items") == live
        assert staging_tables(conn) == []

        # A failure while rows stream in: rolled back too.
        def interrupt() -> None:
            raise Interrupt

        with pytest.raises(Interrupt):
            vecdr.restore(repo, pg.uri("items"), snap.snapshot, force=True, reporter=CallbackReporter(interrupt))
        assert row_texts(conn, "items") == live
        assert staging_tables(conn) == []

        # While the replacement loads, others still read the old table and see no staging table.
        conn.execute("ALTER DOMAIN score DROP CONSTRAINT small")
        seen: list[tuple[int, list[str]]] = []

        def look() -> None:
            with pg.connect() as other:
                other.execute("SET lock_timeout = '5s'")
                seen.append((len(row_texts(other, "items")), staging_tables(other)))

        vecdr.restore(repo, pg.uri("items"), snap.snapshot, force=True, reporter=CallbackReporter(look))
        assert seen and all(s == (len(live), []) for s in seen)
        assert_same_rows(table_rows(conn, "items"), (ids, vectors))
        assert columns_of(conn, "items")[2] == ("points", "score", False)
        assert sorted(indexes_of(conn, "items")) == ["items_pkey"]
        assert staging_tables(conn) == []


def test_a_killed_restore_leaves_nothing_behind(pg: Any, repo: vecdr.Repository, tmp_path: Path) -> None:
    with pg.connect() as conn:
        load_table(conn, "items", *make_rows(300, D, seed=49))
    vecdr.snapshot(repo, pg.uri("items"))
    script = tmp_path / "die.py"
    script.write_text(
        "import os, sys, vecdr\n"
        "class Die:\n"
        "    def start(self, *a, **k): pass\n"
        "    def advance(self, n=1): os._exit(9)  # no rollback, no close: the process is gone\n"
        "    def finish(self): pass\n"
        "    def warn(self, m): pass\n"
        "vecdr.restore(sys.argv[1], sys.argv[2], 'latest', reporter=Die())\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script), str(repo.url), pg.uri("copy")], capture_output=True, timeout=120
    )
    assert proc.returncode == 9, proc.stderr
    with pg.connect() as conn:
        deadline = time.monotonic() + 10  # the server notices the closed connection and rolls back
        while staging_tables(conn) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert staging_tables(conn) == []
        assert conn.execute("SELECT to_regclass('copy')").fetchone()[0] is None


# -- the CLI ----------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VECDR_REPOSITORY", "VECDR_DEBUG")}
    assert VECDR, "the vecdr console script is not installed"
    return subprocess.run([VECDR, *args], capture_output=True, text=True, env=env, timeout=120)


def cli_all(calls: list[tuple[str, ...]]) -> list[subprocess.CompletedProcess[str]]:
    """Several commands at once: each is a process that mostly waits on imports and the server."""
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda args: cli(*args), calls))


def cli_json(*args: str) -> dict[str, Any]:
    proc = cli(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode not in (0, 70), proc  # 70: an error vecdr did not type
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("vecdr: error: "), lines[0]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_cli_round_trip_with_tracking(pg: Any, repo: vecdr.Repository) -> None:
    uri = pg.uri("items")
    with pg.connect() as conn:
        create_items(conn)
        assert cli_json("pgvector", "enable-tracking", uri) == {"tracking": True, "log": "public.items_vecdr_log"}
        first = cli_json("snapshot", str(repo.url), uri)
        assert (first["mode"], first["rows"]) == ("full", 200)
        expected = change_items(conn)
        second = cli_json("snapshot", str(repo.url), uri)
        assert second["mode"] == "tracked"
        assert {k: second[k] for k in expected} == expected
        restored = cli_json("restore", str(repo.url), "latest", pg.uri("copy"))
        assert restored["rows"] == second["rows"]
        assert row_texts(conn, "copy") == row_texts(conn, "items")
        assert cli_json("pgvector", "disable-tracking", uri) == {"tracking": False}


def test_cli_errors_are_one_line(pg: Any, bad: dict[str, str], repo: vecdr.Repository) -> None:
    vecdr.snapshot(repo, pg.uri("items"))
    r = str(repo.url)
    cases = ["no server (socket)", "no server (tcp)", "missing table", "missing id column", "missing vector column",
             "not a vector", "no table option", "unknown option", "dimension of the collection"]  # fmt: skip
    calls = [
        (("snapshot", r, source_uri(case, pg, bad), "--collection", "items"), SOURCE_ERRORS[case][1]) for case in cases
    ]
    calls += [
        (("restore", r, "latest", pg.uri("wide")), "--force"),
        (("restore", r, "latest", bad["no server (socket)"]), "cannot connect"),
        (("restore", r, "latest", pg.uri("items").replace("&table=items", "")), "needs the table"),
        (("pgvector", "enable-tracking", pg.uri("missing")), "no table public.missing"),
    ]
    procs = cli_all([args for args, _ in calls])
    for (args, needle), proc in zip(calls, procs, strict=True):
        assert_one_line_error(proc, needle)
        assert proc.returncode == (2 if needle in ("needs the table", "bogus") else 1), args  # usage errors: 2
    with pg.connect() as conn:
        assert len(row_texts(conn, "wide")) == 5


# -- secrets ----------------------------------------------------------------------------------

SECRET = "s3cret-Pw9"
PARAM_SECRET = "p4ram-Secret7"


def test_passwords_appear_nowhere(pg: Any, repo: vecdr.Repository, nowhere: str) -> None:
    """pgserver trusts local connections, so any password connects; it must never be shown or stored."""
    with pg.connect() as conn:
        create_items(conn, n=50)
    in_authority = pg.uri("items").replace("postgres@", f"postgres:{SECRET}@")
    as_param = pg.uri("items") + f"&password={PARAM_SECRET}"
    target_in_authority = pg.uri("copy").replace("postgres@", f"postgres:{SECRET}@")
    target_as_param = pg.uri("copy2") + f"&password={PARAM_SECRET}"

    r = str(repo.url)
    outputs = [
        cli_json("pgvector", "enable-tracking", in_authority),
        cli_json("snapshot", r, in_authority),
        cli_json("snapshot", r, as_param, "--tag", "param"),
    ]
    reads = [("snapshots", r), ("show", r, "latest"), ("restore", r, "latest", target_in_authority),
             ("restore", r, "latest", target_as_param)]  # fmt: skip
    for proc in cli_all([(*args, "--json") for args in reads]):
        assert proc.returncode == 0, proc.stderr
        outputs.append(json.loads(proc.stdout))
    api = [
        vecdr.snapshot(repo, in_authority).to_dict(),
        vecdr.restore(repo, target_in_authority.replace("copy", "copy3"), "latest").to_dict(),
        vecdr.restore(repo, target_as_param.replace("copy2", "copy4"), "latest").to_dict(),
    ]
    shown = json.dumps(outputs + api)
    assert "postgresql://postgres@" in shown  # the URIs are there, without their passwords
    db = database_of(pg)
    bad_uris = [
        in_authority.replace("table=items", "table=missing"),
        as_param.replace("table=items", "table=missing"),
        f"postgresql://postgres:{SECRET}@127.0.0.1:{closed_port()}/{db}?table=items",
        f"postgresql://postgres@127.0.0.1:{closed_port()}/{db}?table=items&password={PARAM_SECRET}",
        as_param + "&bogus=1",
        in_authority.replace(str(pg.folder), nowhere),
        as_param.replace(str(pg.folder), nowhere),
    ]
    failures = cli_all(
        [("snapshot", r, uri) for uri in bad_uris[::2]]  # the API below meets every one
        + [
            ("restore", r, "latest", target_in_authority),  # exists
            ("restore", r, "latest", target_as_param.replace(str(pg.folder), nowhere)),
            ("pgvector", "enable-tracking", bad_uris[1]),
        ]
    )
    for proc in failures:
        assert_one_line_error(proc)
    errors: list[str] = []
    for uri in bad_uris:
        with pytest.raises(VecdrError) as caught:
            vecdr.snapshot(repo, uri)
        errors.append(f"{caught.value} {caught.value!r}")
    text = shown + "".join(p.stdout + p.stderr for p in failures) + "".join(errors)
    for secret in (SECRET, PARAM_SECRET):
        assert secret not in text
        stored = [p for p in Path(repo.url).rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
        assert stored == []
