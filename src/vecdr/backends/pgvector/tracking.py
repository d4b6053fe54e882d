"""Tracked mode for PostgreSQL: a change log fed by triggers, trimmed only after a commit.

``enable`` creates, next to the table, a log table ``<table>_vecdr_log`` (the id of
every inserted, updated or deleted row and the transaction that changed it), three
statement-level triggers that fill it from transition tables (cheap for bulk
changes), a TRUNCATE trigger that marks the log as no longer complete, and a row
in ``vecdr_tracking`` holding the snapshot the log continues.

An incremental snapshot reads, in its own REPEATABLE READ transaction, the current
rows of the logged ids (upserts) and the logged ids that are gone (deletes). After
the commit, exactly the log rows that transaction saw are deleted (by transaction
visibility, never by a sequence range, so a change committed meanwhile is kept).
"""

from __future__ import annotations

from typing import Any

import psycopg

from vecdr.backends.pgvector.catalog import TableInfo, describe, split_table
from vecdr.backends.pgvector.dsn import Dsn, connect, first_line
from vecdr.backends.pgvector.types import quote
from vecdr.errors import BackendError

STATE = "vecdr_tracking"


def log_name(table: str) -> str:
    return f"{table}_vecdr_log"


def _state_table(schema: str) -> str:
    return f"{quote(schema)}.{quote(STATE)}"


def enable(dsn: Dsn, table: str, schema: str | None = None, id: str | None = None) -> str:
    """Install the change log and triggers on ``table``; returns the log's name. Idempotent."""
    try:
        return _enable(dsn, table, schema, id)
    except psycopg.Error as exc:  # e.g. no privilege to create the log or the triggers
        raise BackendError(f"cannot enable change tracking on {table} ({dsn.shown}): {first_line(exc)}") from exc


def _enable(dsn: Dsn, table: str, schema: str | None, id: str | None) -> str:
    with connect(dsn) as conn:
        info = describe(conn, table, schema, id, None)
        s, t, idc = quote(info.schema), quote(info.name), quote(info.id.name)
        log = f"{s}.{quote(log_name(info.name))}"
        fn = f"{s}.{quote(info.name + '_vecdr_track')}"
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {_state_table(info.schema)} "
            "(tbl text PRIMARY KEY, log text NOT NULL, base text, broken_by xid8)"
        )
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {log} (id {info.id.pg_type} NOT NULL, "
            "xid xid8 NOT NULL DEFAULT pg_current_xact_id(), at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(
            f"""CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $vecdr$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    UPDATE {_state_table(info.schema)} SET broken_by = pg_current_xact_id() WHERE tbl = {_literal(info.name)};
    RETURN NULL;
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    INSERT INTO {log} (id) SELECT {idc} FROM vecdr_old;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO {log} (id) SELECT {idc} FROM vecdr_new;
  END IF;
  RETURN NULL;
END $vecdr$"""
        )
        for name, event, referencing in (
            ("ins", "INSERT", "REFERENCING NEW TABLE AS vecdr_new"),
            ("upd", "UPDATE", "REFERENCING OLD TABLE AS vecdr_old NEW TABLE AS vecdr_new"),
            ("del", "DELETE", "REFERENCING OLD TABLE AS vecdr_old"),
        ):
            trigger = quote(f"vecdr_track_{name}")
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {s}.{t}")
            conn.execute(
                f"CREATE TRIGGER {trigger} AFTER {event} ON {s}.{t} {referencing} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {fn}()"
            )
        conn.execute(f"DROP TRIGGER IF EXISTS vecdr_track_truncate ON {s}.{t}")
        conn.execute(
            f"CREATE TRIGGER vecdr_track_truncate BEFORE TRUNCATE ON {s}.{t} FOR EACH STATEMENT EXECUTE FUNCTION {fn}()"
        )
        conn.execute(
            f"INSERT INTO {_state_table(info.schema)} (tbl, log) VALUES (%s, %s) ON CONFLICT (tbl) DO NOTHING",
            (info.name, log_name(info.name)),
        )
        conn.commit()
        return f"{info.schema}.{log_name(info.name)}"


def disable(dsn: Dsn, table: str, schema: str | None = None) -> None:
    """Remove the triggers, the log and the state row. Idempotent."""
    try:
        _disable(dsn, table, schema)
    except psycopg.Error as exc:
        raise BackendError(f"cannot disable change tracking on {table} ({dsn.shown}): {first_line(exc)}") from exc


def _disable(dsn: Dsn, table: str, schema: str | None) -> None:
    schema, name = split_table(table, schema)
    s, t = quote(schema), quote(name)
    with connect(dsn) as conn:
        if conn.execute("SELECT to_regclass(%s)", (f"{s}.{t}",)).fetchone()[0] is not None:
            for trigger in ("ins", "upd", "del", "truncate"):
                conn.execute(f"DROP TRIGGER IF EXISTS {quote('vecdr_track_' + trigger)} ON {s}.{t}")
        conn.execute(f"DROP FUNCTION IF EXISTS {s}.{quote(name + '_vecdr_track')}()")
        conn.execute(f"DROP TABLE IF EXISTS {s}.{quote(log_name(name))}")
        if conn.execute("SELECT to_regclass(%s)", (_state_table(schema),)).fetchone()[0] is not None:
            conn.execute(f"DELETE FROM {_state_table(schema)} WHERE tbl = %s", (name,))
        conn.commit()



def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def read_state(conn: psycopg.Connection[Any], table: TableInfo) -> tuple[str | None, str] | None:
    """(base snapshot, quoted log table) when the table is tracked, else None.

    A log that missed changes (a TRUNCATE) reports no base, so the next snapshot
    compares every row.
    """
    state = _state_table(table.schema)
    if conn.execute("SELECT to_regclass(%s)", (state,)).fetchone()[0] is None:
        return None
    row = conn.execute(f"SELECT log, base, broken_by FROM {state} WHERE tbl = %s", (table.name,)).fetchone()
    if row is None:
        return None
    log, base, broken_by = row
    return (base if broken_by is None else None), f"{quote(table.schema)}.{quote(log)}"


def deleted_ids_query(table: TableInfo, log: str) -> str:
    """COPY of the logged ids no longer in the table (as the source's id column reads them)."""
    idc = quote(table.id.name)
    select = "l.id::text" if table.id.kind == "cast" else "l.id"
    return (
        f"COPY (SELECT DISTINCT {select} FROM {log} l WHERE NOT EXISTS "
        f"(SELECT 1 FROM {table.qualified} t WHERE t.{idc} = l.id)) TO STDOUT (FORMAT BINARY)"
    )


def trim(dsn: Dsn, table: TableInfo, snapshot: str, seen: str) -> None:
    """After a commit: drop the log rows the snapshot's transaction saw; record the new base."""
    with connect(dsn) as conn:
        state = _state_table(table.schema)
        row = conn.execute(f"SELECT log FROM {state} WHERE tbl = %s FOR UPDATE", (table.name,)).fetchone()
        if row is None:
            return
        log = f"{quote(table.schema)}.{quote(row[0])}"
        conn.execute(f"DELETE FROM {log} WHERE pg_visible_in_snapshot(xid, %s::pg_snapshot)", (seen,))
        # A TRUNCATE the snapshot saw is in it; one it did not see still breaks the log.
        conn.execute(
            f"UPDATE {state} SET base = %s, broken_by = CASE WHEN broken_by IS NOT NULL AND "
            "pg_visible_in_snapshot(broken_by, %s::pg_snapshot) THEN NULL ELSE broken_by END WHERE tbl = %s",
            (snapshot, seen, table.name),
        )
        conn.commit()
