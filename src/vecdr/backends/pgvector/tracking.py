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

import uuid
from typing import Any

import psycopg

from vecdr.backends.pgvector import names
from vecdr.backends.pgvector.catalog import TableInfo, describe, split_table
from vecdr.backends.pgvector.dsn import Dsn, connect, first_line
from vecdr.backends.pgvector.types import quote
from vecdr.errors import BackendError

STATE = "vecdr_tracking"
#: The triggers on a tracked table: when each fires and the transition tables it reads.
TRIGGERS = {
    "ins": ("AFTER INSERT", "REFERENCING NEW TABLE AS vecdr_new"),
    "upd": ("AFTER UPDATE", "REFERENCING OLD TABLE AS vecdr_old NEW TABLE AS vecdr_new"),
    "del": ("AFTER DELETE", "REFERENCING OLD TABLE AS vecdr_old"),
    "truncate": ("BEFORE TRUNCATE", ""),
}
TRIGGER_NAMES = tuple(f"vecdr_track_{name}" for name in TRIGGERS)


def log_name(table: str) -> str:
    return names.derived(table, "_vecdr_log")


def function_name(table: str) -> str:
    return names.derived(table, "_vecdr_track")


def _state_table(schema: str) -> str:
    return f"{quote(schema)}.{quote(STATE)}"


def enable(dsn: Dsn, table: str, schema: str | None = None, id: str | None = None) -> str:
    """Install the change log and triggers on ``table``; returns the log's name. Idempotent.

    Run again on a table tracked by an older vecdr, it upgrades the triggers in place
    (to fire always) and keeps the log.
    """
    try:
        return _enable(dsn, table, schema, id)
    except psycopg.Error as exc:  # e.g. no privilege to create the log or the triggers
        raise BackendError(f"cannot enable change tracking on {table} ({dsn.shown}): {first_line(exc)}") from exc


def _enable(dsn: Dsn, table: str, schema: str | None, id: str | None) -> str:
    with connect(dsn) as conn:
        info = describe(conn, table, schema, id, None)
        s, t, idc = quote(info.schema), quote(info.name), quote(info.id.name)
        state = _state_table(info.schema)
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {state} (tbl text PRIMARY KEY, log text NOT NULL, base text, broken_by xid8)"
        )
        row = conn.execute(f"SELECT log FROM {state} WHERE tbl = %s FOR UPDATE", (info.name,)).fetchone()
        # A log an earlier vecdr made keeps its name (PostgreSQL may have cut it): the state row says which.
        log_table = row[0] if row is not None else log_name(info.name)
        log = f"{s}.{quote(log_table)}"
        fn = f"{s}.{quote(function_name(info.name))}"
        old_functions = _trigger_functions(conn, info.qualified)
        firing_always = _firing_always(conn, info.qualified)
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {log} (id {info.id.pg_type} NOT NULL, "
            "xid xid8 NOT NULL DEFAULT pg_current_xact_id(), at timestamptz NOT NULL DEFAULT now())"
        )
        body = f"""
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    UPDATE {state} SET broken_by = pg_current_xact_id() WHERE tbl = {_literal(info.name)};
    RETURN NULL;
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    INSERT INTO {log} (id) SELECT {idc} FROM vecdr_old;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO {log} (id) SELECT {idc} FROM vecdr_new;
  END IF;
  RETURN NULL;
END """
        tag = "$vecdr$"
        while tag in body:  # a table or schema name holding the quote's tag would end the body early
            tag = f"$vecdr_{uuid.uuid4().hex[:8]}$"
        conn.execute(f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS {tag}{body}{tag}")
        for name, (event, referencing) in TRIGGERS.items():
            trigger = quote(f"vecdr_track_{name}")
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {s}.{t}")
            conn.execute(
                f"CREATE TRIGGER {trigger} {event} ON {s}.{t} {referencing} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {fn}()"
            )
            # Fire also under session_replication_role = replica (logical replication's
            # apply workers, pg_restore --disable-triggers): an ordinary trigger does not.
            conn.execute(f"ALTER TABLE {s}.{t} ENABLE ALWAYS TRIGGER {trigger}")
        for old in old_functions:
            if conn.execute("SELECT %s::regprocedure::oid <> %s::regprocedure::oid", (old, f"{fn}()")).fetchone()[0]:
                conn.execute(f"DROP FUNCTION IF EXISTS {old}")  # an older vecdr's function, under a cut name
        if row is None:
            conn.execute(f"INSERT INTO {state} (tbl, log) VALUES (%s, %s)", (info.name, log_table))
        elif not firing_always:
            # Until now the triggers missed some changes (replica sessions, or they were off):
            # the log does not continue the last snapshot, so the next one compares every row.
            conn.execute(f"UPDATE {state} SET broken_by = pg_current_xact_id() WHERE tbl = %s", (info.name,))
        conn.commit()
        return f"{info.schema}.{log_table}"


def _trigger_functions(conn: psycopg.Connection[Any], qualified: str) -> list[str]:
    """The functions vecdr's triggers on the table call (as ``regprocedure`` text)."""
    rows = conn.execute(
        "SELECT DISTINCT tgfoid::regprocedure::text FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = ANY(%s)",
        (qualified, list(TRIGGER_NAMES)),
    ).fetchall()
    return [r[0] for r in rows]


def _firing_always(conn: psycopg.Connection[Any], qualified: str) -> bool:
    """Whether every one of vecdr's triggers on the table exists and fires in every session."""
    always = conn.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = ANY(%s) AND tgenabled = 'A'",
        (qualified, list(TRIGGER_NAMES)),
    ).fetchone()[0]
    return int(always) == len(TRIGGER_NAMES)


def disable(dsn: Dsn, table: str, schema: str | None = None) -> None:
    """Remove the triggers, the log and the state row. Idempotent."""
    try:
        _disable(dsn, table, schema)
    except psycopg.Error as exc:
        raise BackendError(f"cannot disable change tracking on {table} ({dsn.shown}): {first_line(exc)}") from exc


def _disable(dsn: Dsn, table: str, schema: str | None) -> None:
    schema, name = split_table(table, schema)
    s, t = quote(schema), quote(name)
    state = _state_table(schema)
    with connect(dsn) as conn:
        functions = [f"{s}.{quote(function_name(name))}()"]
        if conn.execute("SELECT to_regclass(%s)", (f"{s}.{t}",)).fetchone()[0] is not None:
            functions += _trigger_functions(conn, f"{s}.{t}")
            for trigger in TRIGGER_NAMES:
                conn.execute(f"DROP TRIGGER IF EXISTS {quote(trigger)} ON {s}.{t}")
        for function in functions:
            if conn.execute("SELECT to_regprocedure(%s)", (function,)).fetchone()[0] is not None:
                conn.execute(f"DROP FUNCTION {function}")
        logs = [log_name(name)]
        if conn.execute("SELECT to_regclass(%s)", (state,)).fetchone()[0] is not None:
            logs += [r[0] for r in conn.execute(f"DELETE FROM {state} WHERE tbl = %s RETURNING log", (name,))]
        for log in dict.fromkeys(logs):
            conn.execute(f"DROP TABLE IF EXISTS {s}.{quote(log)}")
        conn.commit()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def read_state(conn: psycopg.Connection[Any], table: TableInfo) -> tuple[str | None, str, str | None] | None:
    """(base snapshot, quoted log table, why the log is incomplete) when the table is tracked, else None.

    A log that missed changes (a TRUNCATE) reports no base, so the next snapshot
    compares every row; so does one whose triggers do not all fire in every session
    (disabled, dropped, or installed by an older vecdr that did not make them fire
    always), and then the third item says so.
    """
    state = _state_table(table.schema)
    if conn.execute("SELECT to_regclass(%s)", (state,)).fetchone()[0] is None:
        return None
    row = conn.execute(f"SELECT log, base, broken_by FROM {state} WHERE tbl = %s", (table.name,)).fetchone()
    if row is None:
        return None
    log, base, broken_by = row
    incomplete = None
    if not _firing_always(conn, table.qualified):
        incomplete = (
            f"the change-tracking triggers on {table.schema}.{table.name} do not all fire in every session "
            "(disabled, or installed by an older vecdr: changes made with session_replication_role = replica "
            "bypass them), so the change log may be incomplete; comparing every row. Run "
            "`vecdr pgvector enable-tracking` on the table again to make them fire always"
        )
        base = None
    elif conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_subscription_rel WHERE srrelid = %s::regclass)", (table.qualified,)
    ).fetchone()[0]:
        incomplete = (
            f"{table.schema}.{table.name} is written by a logical replication subscription, whose apply worker "
            "fires no statement triggers, so the change log misses its changes; comparing every row"
        )
        base = None
    return (base if broken_by is None else None), f"{quote(table.schema)}.{quote(log)}", incomplete


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
